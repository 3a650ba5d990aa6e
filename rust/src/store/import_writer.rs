//! Writing imported rows: the importers (`crate::import`) parse files into rows and hand them to an
//! [`ImportWriter`], which resolves items, users and categories and writes records and their
//! behavior memory inside the import's transaction. Feedback writes through it too, one record
//! at a time. All of an import's SQL is here, beside the schema.

use std::collections::HashMap;
use std::path::PathBuf;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use crate::error::{Error, Location, Result};
use crate::import::{ImportKind, ImportReport, InteractionRow, ItemRef, ItemRow, Progress, Sink};
use crate::model::Tier;
use crate::store::memory::{insert_memory, MemoryRow};
use crate::store::{now, Changes, MemoryStore};
use crate::text::{category_token, civil_from_unix, title_variants, truncate_chars};

/// Brief facts about an item, cached for building behavior memory text.
#[derive(Debug, Clone)]
struct ItemBrief {
    title: String,
    year: Option<i32>,
    categories: Vec<String>,
    category_ids: Vec<i64>,
}

/// Writes rows into an open transaction, resolving items and users.
pub struct ImportWriter<'a> {
    tx: &'a Connection,
    changes: &'a mut Changes,
    report: ImportReport,
    /// The `imports` row of a file import; `None` for feedback written one record at a time.
    import_id: Option<i64>,
    source: String,
    /// The (record, memory entry) ids the last interaction wrote, if it was new.
    pub(crate) last_written: Option<(i64, i64)>,
    users: HashMap<String, i64>,
    items: HashMap<i64, ItemBrief>,
    categories: HashMap<String, i64>,
    progress: Progress<'a>,
    total_bytes: u64,
}

fn alias_namespace(alias: &str) -> Option<&str> {
    alias.split_once(':').map(|(ns, _)| ns)
}

/// The text that represents an item for embedding and lexical search.
pub fn item_text(
    title: &str,
    year: Option<i32>,
    categories: &[String],
    keywords: &[String],
    description: Option<&str>,
) -> String {
    let mut t = match year {
        Some(y) => format!("{title} ({y})."),
        None => format!("{title}."),
    };
    if !categories.is_empty() {
        t.push_str(&format!(" Genres: {}.", categories.join(", ")));
    }
    if !keywords.is_empty() {
        t.push_str(&format!(" Keywords: {}.", keywords.join(", ")));
    }
    if let Some(d) = description.filter(|d| !d.trim().is_empty()) {
        t.push(' ');
        t.push_str(&truncate_chars(d.trim(), 1000));
    }
    t
}

/// The text of a behavior-tier memory entry.
pub fn behavior_text(
    title: &str,
    year: Option<i32>,
    categories: &[String],
    rating: Option<f64>,
    timestamp: Option<i64>,
    review: Option<&str>,
) -> String {
    let mut t = match rating {
        Some(r) if r.fract() == 0.0 => format!("Rated {r:.0}/5: {title}"),
        Some(r) => format!("Rated {r:.1}/5: {title}"),
        None => format!("Watched: {title}"),
    };
    if let Some(y) = year {
        t.push_str(&format!(" ({y})"));
    }
    if !categories.is_empty() {
        t.push_str(&format!(" [{}]", categories.join(", ")));
    }
    if let Some(ts) = timestamp {
        let (y, m, d) = civil_from_unix(ts);
        t.push_str(&format!(" on {y:04}-{m:02}-{d:02}"));
    }
    t.push('.');
    if let Some(r) = review.filter(|r| !r.trim().is_empty()) {
        t.push_str(&format!(" Review: {}", truncate_chars(r.trim(), 500)));
    }
    t
}

fn union_into(target: &mut Vec<String>, extra: &[String]) -> bool {
    let mut changed = false;
    for e in extra {
        if !target.iter().any(|t| t.eq_ignore_ascii_case(e)) {
            target.push(e.clone());
            changed = true;
        }
    }
    changed
}

impl<'a> ImportWriter<'a> {
    /// A writer for records that arrive one at a time (feedback), tagged with `source`.
    pub(crate) fn new(tx: &'a Connection, changes: &'a mut Changes, source: &str, progress: Progress<'a>) -> Self {
        ImportWriter {
            tx,
            changes,
            report: ImportReport { kind: source.into(), ..Default::default() },
            import_id: None,
            source: source.into(),
            last_written: None,
            users: HashMap::new(),
            items: HashMap::new(),
            categories: HashMap::new(),
            progress,
            total_bytes: 0,
        }
    }

    /// A writer for a file import, logged in the `imports` table.
    pub(crate) fn for_import(
        tx: &'a Connection,
        changes: &'a mut Changes,
        kind: ImportKind,
        files: &[PathBuf],
        progress: Progress<'a>,
    ) -> Result<Self> {
        let path = files.first().map(|p| p.display().to_string()).unwrap_or_default();
        tx.execute(
            "INSERT INTO imports (kind, path, started_at) VALUES (?1, ?2, ?3)",
            params![kind.name(), path, now()],
        )?;
        let mut writer = ImportWriter::new(tx, changes, kind.name(), progress);
        writer.import_id = Some(tx.last_insert_rowid());
        writer.report.files = files.to_vec();
        writer.total_bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        Ok(writer)
    }

    /// Logs the import's totals and reports its end to the progress callback.
    pub(crate) fn finish(self) -> Result<ImportReport> {
        let report = self.report.clone();
        self.tx.execute(
            "UPDATE imports SET items = ?2, records = ?3 WHERE id = ?1",
            params![self.import_id, report.items_added as i64, report.records_added as i64],
        )?;
        (self.progress)(self.total_bytes, self.total_bytes)?;
        Ok(report)
    }

    fn ensure_user(&mut self, ext_id: &str, attributes: Option<&Map<String, Value>>, at: &Location) -> Result<i64> {
        if ext_id.trim().is_empty() {
            return Err(Error::input(at.field("user_id"), "empty user id"));
        }
        if let Some(id) = self.users.get(ext_id) {
            return Ok(*id);
        }
        let id = match MemoryStore::user_id(self.tx, ext_id)? {
            Some(id) => id,
            None => {
                let attrs = attributes.map(|a| Value::Object(a.clone()).to_string()).unwrap_or_else(|| "{}".into());
                self.tx
                    .prepare_cached("INSERT INTO users (ext_id, attributes, created_at) VALUES (?1, ?2, ?3)")?
                    .execute(params![ext_id, attrs, now()])?;
                self.report.users_added += 1;
                self.tx.last_insert_rowid()
            }
        };
        self.users.insert(ext_id.to_string(), id);
        Ok(id)
    }

    fn category_ids(&mut self, names: &[String]) -> Result<Vec<i64>> {
        names.iter().map(|n| MemoryStore::ensure_category(self.tx, &mut self.categories, n)).collect()
    }

    /// An existing item this row describes: same alias, else same title variant and year from
    /// another source (within one source, equal titles are distinct items, as in MovieLens).
    fn find_item(&self, row: &ItemRow) -> Result<Option<i64>> {
        if let Some(id) = MemoryStore::item_id_for_alias(self.tx, &row.alias)? {
            return Ok(Some(id));
        }
        let namespace = alias_namespace(&row.alias);
        let mut stmt = self.tx.prepare_cached("SELECT item_id FROM item_keys WHERE key = ?1 ORDER BY item_id")?;
        let mut same_ns = self.tx.prepare_cached(
            "SELECT 1 FROM item_aliases WHERE item_id = ?1 AND \
             (CASE WHEN ?2 IS NULL THEN instr(alias, ':') = 0 ELSE alias LIKE ?2 || ':%' END)",
        )?;
        for variant in title_variants(&row.title) {
            let key = crate::text::norm_key(&variant, row.year);
            let candidates: Vec<i64> = stmt.query_map(params![key], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            for id in candidates {
                if same_ns.query_row(params![id, namespace], |_| Ok(())).optional()?.is_none() {
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    fn add_keys_and_alias(&self, item_id: i64, row: &ItemRow) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO item_aliases (alias, item_id) VALUES (?1, ?2)")?
            .execute(params![row.alias, item_id])?;
        let mut stmt = self.tx.prepare_cached("INSERT OR IGNORE INTO item_keys (key, item_id) VALUES (?1, ?2)")?;
        for variant in title_variants(&row.title) {
            stmt.execute(params![crate::text::norm_key(&variant, row.year), item_id])?;
        }
        Ok(())
    }

    fn upsert_item(&mut self, row: ItemRow, at: &Location) -> Result<i64> {
        if row.alias.trim().is_empty() {
            return Err(Error::input(at.field("item_id"), "empty item id"));
        }
        if row.title.trim().is_empty() {
            return Err(Error::input(at.field("title"), "empty title"));
        }
        match self.find_item(&row)? {
            Some(id) => {
                self.merge_item(id, &row)?;
                self.add_keys_and_alias(id, &row)?;
                self.report.items_matched += 1;
                Ok(id)
            }
            None => {
                let category_ids = self.category_ids(&row.categories)?;
                let scope = category_ids.iter().map(|c| category_token(*c)).collect::<Vec<_>>().join(" ");
                let text = item_text(&row.title, row.year, &row.categories, &row.keywords, row.description.as_deref());
                self.tx
                    .prepare_cached(
                        "INSERT INTO items (ext_id, title, year, categories, keywords, description, \
                         text, attributes, scope) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        row.alias,
                        row.title,
                        row.year,
                        serde_json::to_string(&row.categories).expect("serialise"),
                        serde_json::to_string(&row.keywords).expect("serialise"),
                        row.description,
                        text,
                        Value::Object(row.attributes.clone()).to_string(),
                        scope,
                    ])?;
                let id = self.tx.last_insert_rowid();
                self.add_keys_and_alias(id, &row)?;
                self.changes.item_upserts.push(id);
                self.report.items_added += 1;
                self.items.insert(
                    id,
                    ItemBrief { title: row.title, year: row.year, categories: row.categories, category_ids },
                );
                Ok(id)
            }
        }
    }

    /// Fills what the existing item lacks (year, description) and unions categories and
    /// keywords; a changed text clears the embedding so it is recomputed.
    fn merge_item(&mut self, id: i64, row: &ItemRow) -> Result<()> {
        let (title, mut year, cats, kws, mut description, attrs): (
            String,
            Option<i32>,
            String,
            String,
            Option<String>,
            String,
        ) = self
            .tx
            .prepare_cached(
                "SELECT title, year, categories, keywords, description, attributes FROM items WHERE id = ?1",
            )?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?;
        let mut categories: Vec<String> = crate::store::json_list(&cats);
        let mut keywords: Vec<String> = crate::store::json_list(&kws);
        let mut attributes: Map<String, Value> = serde_json::from_str(&attrs).unwrap_or_default();
        let mut changed = union_into(&mut categories, &row.categories) | union_into(&mut keywords, &row.keywords);
        if year.is_none() && row.year.is_some() {
            year = row.year;
            changed = true;
        }
        if description.is_none() && row.description.is_some() {
            description = row.description.clone();
            changed = true;
        }
        for (k, v) in &row.attributes {
            if !attributes.contains_key(k) {
                attributes.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        self.items.remove(&id);
        if !changed {
            return Ok(());
        }
        let category_ids = self.category_ids(&categories)?;
        let scope = category_ids.iter().map(|c| category_token(*c)).collect::<Vec<_>>().join(" ");
        let text = item_text(&title, year, &categories, &keywords, description.as_deref());
        self.tx
            .prepare_cached(
                "UPDATE items SET year = ?2, categories = ?3, keywords = ?4, description = ?5, \
                 attributes = ?6, scope = ?7, text = ?8, \
                 embedding = CASE WHEN text = ?8 THEN embedding END WHERE id = ?1",
            )?
            .execute(params![
                id,
                year,
                serde_json::to_string(&categories).expect("serialise"),
                serde_json::to_string(&keywords).expect("serialise"),
                description,
                Value::Object(attributes).to_string(),
                scope,
                text,
            ])?;
        self.changes.item_upserts.push(id);
        Ok(())
    }

    fn brief(&mut self, item_id: i64) -> Result<ItemBrief> {
        if let Some(b) = self.items.get(&item_id) {
            return Ok(b.clone());
        }
        let (title, year, cats): (String, Option<i32>, String) = self
            .tx
            .prepare_cached("SELECT title, year, categories FROM items WHERE id = ?1")?
            .query_row(params![item_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let categories: Vec<String> = crate::store::json_list(&cats);
        let category_ids = self.category_ids(&categories)?;
        let brief = ItemBrief { title, year, categories, category_ids };
        self.items.insert(item_id, brief.clone());
        Ok(brief)
    }
}

impl Sink for ImportWriter<'_> {
    fn item(&mut self, row: ItemRow, at: &Location) -> Result<()> {
        self.report.rows += 1;
        self.upsert_item(row, at).map(|_| ())
    }

    fn user(&mut self, ext_id: &str, attributes: Map<String, Value>, at: &Location) -> Result<()> {
        self.report.rows += 1;
        self.ensure_user(ext_id, Some(&attributes), at).map(|_| ())
    }

    fn interaction(&mut self, row: InteractionRow, at: &Location) -> Result<()> {
        self.report.rows += 1;
        if let Some(r) = row.rating {
            if !(0.0..=5.0).contains(&r) || !r.is_finite() {
                return Err(Error::input(at.field("rating"), format!("rating {r} is outside 0..5")));
            }
        }
        let user_id = self.ensure_user(&row.user, None, at)?;
        let item_id = match &row.item {
            ItemRef::Alias(alias) => MemoryStore::item_id_for_alias(self.tx, alias)?.ok_or_else(|| {
                Error::input(at.field("item_id"), format!("unknown item {alias:?} (import the catalog first)"))
            })?,
            ItemRef::Row(item) => self.upsert_item(item.clone(), at)?,
        };
        let text = row.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO records (user_id, item_id, rating, text, timestamp, source, import_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![user_id, item_id, row.rating, text, row.timestamp, self.source, self.import_id])?;
        if inserted == 0 {
            self.report.records_skipped += 1;
            self.last_written = None;
            return Ok(());
        }
        let record_id = self.tx.last_insert_rowid();
        self.report.records_added += 1;
        let brief = self.brief(item_id)?;
        let memory_text = behavior_text(&brief.title, brief.year, &brief.categories, row.rating, row.timestamp, text);
        let id = insert_memory(
            self.tx,
            &MemoryRow {
                tier: Tier::Behavior,
                user_id: Some(user_id),
                categories: &brief.categories,
                category_ids: &brief.category_ids,
                text: &memory_text,
                source_ids: &[record_id],
                item_id: Some(item_id),
                // Without a review the entry says no more than its item, so it shares the
                // item's vector instead of embedding near-duplicate text once per rating.
                vector_from_item: text.is_none(),
                embedding: None,
            },
        )?;
        self.changes.memory_upserts.push(id);
        self.report.memory_added += 1;
        self.last_written = Some((record_id, id));
        Ok(())
    }

    fn progress(&mut self, bytes: u64) -> Result<()> {
        (self.progress)(bytes.min(self.total_bytes), self.total_bytes)
    }

    fn report(&mut self) -> &mut ImportReport {
        &mut self.report
    }
}
