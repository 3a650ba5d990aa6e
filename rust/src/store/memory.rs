//! Memory entries: writing, reading, forgetting and hybrid search.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::indexes::MemoryMeta;
use super::{for_id_chunks, json_list, now, Indexes, MemoryStore};
use crate::dense::{exact_top_k, top_k, top_k_f64};
use crate::error::{Error, Result};
use crate::model::{MemoryEntry, MemoryFilter, MemoryHit, NewMemory, SearchMode, Tier};
use crate::text::{category_token, query_terms, tier_token, user_token};
use crate::vector::{normalized, to_blob};

/// Reciprocal rank fusion constant (Cormack et al.): dampens the weight of the very top ranks.
const RRF_K: f64 = 60.0;
/// Query terms beyond this add little and slow FTS5 down.
const MAX_QUERY_TERMS: usize = 24;

/// A memory row to insert; shared by imports (behavior entries) and `add_memory`.
pub(crate) struct MemoryRow<'a> {
    pub tier: Tier,
    pub user_id: Option<i64>,
    pub categories: &'a [String],
    pub category_ids: &'a [i64],
    pub text: &'a str,
    pub source_ids: &'a [i64],
    pub item_id: Option<i64>,
    pub vector_from_item: bool,
    pub embedding: Option<&'a [f32]>,
}

pub(crate) fn scope_of(user_id: Option<i64>, tier: Tier, category_ids: &[i64]) -> String {
    let mut parts = Vec::with_capacity(2 + category_ids.len());
    if let Some(u) = user_id {
        parts.push(user_token(u));
    }
    parts.push(tier_token(tier as u8));
    parts.extend(category_ids.iter().map(|c| category_token(*c)));
    parts.join(" ")
}

pub(crate) fn insert_memory(tx: &Connection, row: &MemoryRow<'_>) -> Result<i64> {
    let ts = now();
    tx.prepare_cached(
        "INSERT INTO memory (tier, user_id, categories, text, source_ids, item_id, \
         vector_from_item, embedding, scope, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        row.tier as i64,
        row.user_id,
        serde_json::to_string(row.categories).expect("strings serialise"),
        row.text,
        serde_json::to_string(row.source_ids).expect("ids serialise"),
        row.item_id,
        row.vector_from_item as i64,
        row.embedding.map(to_blob),
        scope_of(row.user_id, row.tier, row.category_ids),
        ts,
    ])?;
    Ok(tx.last_insert_rowid())
}

const ENTRY_COLUMNS: &str = "m.id, m.tier, u.ext_id, m.categories, m.text, m.source_ids, \
     i.ext_id, m.created_at, m.updated_at FROM memory m \
     LEFT JOIN users u ON u.id = m.user_id LEFT JOIN items i ON i.id = m.item_id";

fn entry_from_row(row: &rusqlite::Row<'_>) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        id: row.get(0)?,
        tier: Tier::from_code(row.get(1)?)?,
        user: row.get(2)?,
        categories: json_list(row.get_ref(3)?.as_str()?),
        text: row.get(4)?,
        source_ids: json_list(row.get_ref(5)?.as_str()?),
        item: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

fn fetch_entries(conn: &Connection, ids: &[i64]) -> Result<HashMap<i64, MemoryEntry>> {
    let mut out = HashMap::with_capacity(ids.len());
    for_id_chunks(ids, |ph, chunk| {
        let mut stmt = conn.prepare(&format!("SELECT {ENTRY_COLUMNS} WHERE m.id IN ({ph})"))?;
        let mut rows = stmt.query(params_from_iter(chunk))?;
        while let Some(row) = rows.next()? {
            let e = entry_from_row(row)?;
            out.insert(e.id, e);
        }
        Ok(())
    })?;
    Ok(out)
}

/// A filter with names resolved to database ids.
struct ResolvedFilter {
    user: Option<i64>,
    tiers: Vec<Tier>,
    categories: Vec<i64>,
    exclude: HashSet<u64>,
    /// A category was asked for that no entry has: nothing can match.
    impossible: bool,
}

impl ResolvedFilter {
    /// Drops a tier restriction that names every tier the store holds: it filters nothing, and
    /// an unfiltered graph walk or FTS query is several times cheaper than a filtered one.
    fn simplified(&self, meta: &MemoryMeta) -> ResolvedFilter {
        let present = Tier::ALL.iter().filter(|t| !meta.by_tier[**t as usize].is_empty());
        let covers_all = present.clone().all(|t| self.tiers.contains(t));
        ResolvedFilter {
            user: self.user,
            tiers: if covers_all { Vec::new() } else { self.tiers.clone() },
            categories: self.categories.clone(),
            exclude: self.exclude.clone(),
            impossible: self.impossible,
        }
    }

    fn is_unrestricted(&self) -> bool {
        self.user.is_none() && self.tiers.is_empty() && self.categories.is_empty() && self.exclude.is_empty()
    }

    fn allows_global(&self) -> bool {
        self.tiers.is_empty() || self.tiers.contains(&Tier::Global)
    }

    fn allows(&self, meta: &MemoryMeta, key: u64) -> bool {
        if self.exclude.contains(&key) {
            return false;
        }
        let Some(m) = meta.entries.get(&key) else { return false };
        let tier = Tier::ALL[m.tier as usize % 4];
        (self.user.is_none() || m.user == self.user || tier == Tier::Global)
            && (self.tiers.is_empty() || self.tiers.contains(&tier))
            && (self.categories.is_empty() || m.categories.iter().any(|c| self.categories.contains(c)))
    }

    /// The entries a selective filter can match (one user's, or some tiers'), when there are
    /// at most `max` of them, so they can be scored exactly; `None` otherwise.
    fn candidates(&self, meta: &MemoryMeta, max: usize) -> Option<Vec<u64>> {
        let mut lists: Vec<&[u64]> = Vec::new();
        if let Some(u) = self.user {
            lists.push(meta.by_user.get(&u).map_or(&[], Vec::as_slice));
            if self.allows_global() {
                lists.push(&meta.by_tier[Tier::Global as usize]);
            }
        } else if !self.tiers.is_empty() {
            lists.extend(self.tiers.iter().map(|t| meta.by_tier[*t as usize].as_slice()));
        } else {
            return None;
        }
        (lists.iter().map(|l| l.len()).sum::<usize>() <= max).then(|| lists.concat())
    }
}

impl MemoryStore {
    fn resolve_filter(&self, conn: &Connection, filter: &MemoryFilter) -> Result<ResolvedFilter> {
        let user = match &filter.user {
            Some(u) => Some(Self::require_user(conn, u)?),
            None => None,
        };
        let categories = Self::category_ids(conn, &filter.categories)?;
        Ok(ResolvedFilter {
            user,
            tiers: filter.tiers.clone(),
            impossible: !filter.categories.is_empty() && categories.is_empty(),
            categories,
            exclude: filter.exclude.iter().map(|id| *id as u64).collect(),
        })
    }

    /// Writes one memory entry (pattern, profile or global; behavior entries come from records).
    pub fn add_memory(&self, entry: &NewMemory) -> Result<i64> {
        let tier = entry.tier.ok_or_else(|| Error::InvalidArgument("memory entry needs a tier".into()))?;
        if entry.text.trim().is_empty() {
            return Err(Error::InvalidArgument("memory entry text is empty".into()));
        }
        if (tier == Tier::Global) != entry.user.is_none() {
            return Err(Error::InvalidArgument("global memory has no user; every other tier needs one".into()));
        }
        let vector = entry.vector.as_deref().map(normalized).transpose()?;
        self.write("while adding a memory entry", |tx, changes| {
            if let Some(v) = &vector {
                self.check_dimensions(tx, v.len())?;
            }
            let user_id = match &entry.user {
                Some(u) => Some(Self::require_user(tx, u)?),
                None => None,
            };
            let mut cache = HashMap::new();
            let category_ids = entry
                .categories
                .iter()
                .map(|c| Self::ensure_category(tx, &mut cache, c))
                .collect::<Result<Vec<_>>>()?;
            let id = insert_memory(
                tx,
                &MemoryRow {
                    tier,
                    user_id,
                    categories: &entry.categories,
                    category_ids: &category_ids,
                    text: &entry.text,
                    source_ids: &entry.source_ids,
                    item_id: None,
                    vector_from_item: false,
                    embedding: vector.as_deref(),
                },
            )?;
            changes.memory_upserts.push(id);
            Ok(id)
        })
    }

    pub fn get_memory(&self, id: i64) -> Result<MemoryEntry> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} WHERE m.id = ?1"))?;
        let mut rows = stmt.query(params![id])?;
        match rows.next()? {
            Some(row) => entry_from_row(row),
            None => Err(Error::NotFound(format!("no memory entry with id {id}"))),
        }
    }

    /// Deletes memory entries everywhere: SQLite row, lexical and dense indexes; a behavior
    /// entry's record too. Returns how many existed.
    pub fn forget_memory(&self, ids: &[i64]) -> Result<usize> {
        let removed = self.write("while forgetting memory", |tx, changes| {
            let mut removed = 0;
            // A behavior entry is the memory of one record: the record goes with it, or the next
            // memory build would bring the forgotten history (and its review text) back.
            let mut entry = tx.prepare_cached("SELECT tier, user_id, source_ids FROM memory WHERE id = ?1")?;
            let mut delete = tx.prepare_cached("DELETE FROM memory WHERE id = ?1")?;
            let mut delete_record = tx.prepare_cached("DELETE FROM records WHERE id = ?1 AND user_id = ?2")?;
            for id in ids {
                let found: Option<(i64, Option<i64>, String)> =
                    entry.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
                let Some((tier, user_id, source_ids)) = found else { continue };
                if tier == Tier::Behavior as i64 {
                    let records: Vec<i64> = serde_json::from_str(&source_ids).unwrap_or_default();
                    for record in records {
                        delete_record.execute(params![record, user_id])?;
                    }
                }
                delete.execute(params![id])?;
                removed += 1;
                changes.memory_removals.push(*id);
            }
            Ok(removed)
        })?;
        if removed > 0 {
            self.scrub_wal();
        }
        Ok(removed)
    }

    /// Memory entries of a user (all tiers, or the given ones), newest first.
    pub fn list_memory(&self, user: Option<&str>, tiers: &[Tier], limit: usize) -> Result<Vec<MemoryEntry>> {
        let conn = self.reader();
        let user_id = match user {
            Some(u) => Some(Self::require_user(&conn, u)?),
            None => None,
        };
        let tiers: Vec<i64> = if tiers.is_empty() {
            Tier::ALL.iter().map(|t| *t as i64).collect()
        } else {
            tiers.iter().map(|t| *t as i64).collect()
        };
        let tier_list = tiers.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} WHERE m.tier IN ({tier_list}) \
             AND (?1 IS NULL OR m.user_id = ?1) ORDER BY m.id DESC LIMIT ?2"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(params![user_id, limit as i64])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(entry_from_row(row)?);
        }
        Ok(out)
    }

    pub(crate) fn check_dimensions(&self, tx: &Connection, dims: usize) -> Result<()> {
        match Self::stored_dimensions(tx)? {
            Some(d) if d != dims => Err(Error::InvalidArgument(format!(
                "embedding has {dims} dimensions but this store holds {d}-dimensional embeddings \
                 (rebuild the store with the same embedder)"
            ))),
            Some(_) => Ok(()),
            None => {
                tx.execute("INSERT INTO meta (key, value) VALUES ('dimensions', ?1)", params![dims as i64])?;
                Ok(())
            }
        }
    }

    /// Hybrid memory search: dense (cosine over the usearch index, exact for small filtered
    /// sets) and lexical (FTS5 BM25), fused by reciprocal rank. Either side may be absent.
    pub fn search_memory(
        &self,
        vector: Option<&[f32]>,
        text: Option<&str>,
        k: usize,
        filter: &MemoryFilter,
        mode: SearchMode,
    ) -> Result<Vec<MemoryHit>> {
        let resolved = {
            let conn = self.reader();
            self.resolve_filter(&conn, filter)?
        };
        if k == 0 || resolved.impossible {
            return Ok(Vec::new());
        }
        // Each retriever returns a deeper pool than k so fusion has overlap to work with.
        let pool = (k * 4).max(40) + resolved.exclude.len();
        let (dense, lexical) = self.with_indexes(|ix| {
            let resolved = resolved.simplified(&ix.meta);
            let dense: Vec<(u64, f32)> = match (vector, mode) {
                (Some(v), SearchMode::Hybrid | SearchMode::Dense) => self.dense_memory(ix, v, pool, &resolved)?,
                _ => Vec::new(),
            };
            let lexical: Vec<(u64, f64)> = match (text, mode) {
                (Some(t), SearchMode::Hybrid | SearchMode::Lexical) => self.lexical_memory(ix, t, pool, &resolved),
                _ => Vec::new(),
            };
            Ok((dense, lexical))
        })?;

        let mut fused: HashMap<u64, (f64, Option<f32>, Option<f64>)> = HashMap::new();
        let single = dense.is_empty() || lexical.is_empty();
        for (rank, (key, sim)) in dense.iter().enumerate() {
            let e = fused.entry(*key).or_default();
            e.0 += if single { f64::from(*sim) } else { 1.0 / (RRF_K + rank as f64 + 1.0) };
            e.1 = Some(*sim);
        }
        for (rank, (key, bm25)) in lexical.iter().enumerate() {
            let e = fused.entry(*key).or_default();
            e.0 += if single { *bm25 } else { 1.0 / (RRF_K + rank as f64 + 1.0) };
            e.2 = Some(*bm25);
        }
        let mut ranked: Vec<(u64, f64, Option<f32>, Option<f64>)> = fused
            .into_iter()
            .filter(|(key, _)| !resolved.exclude.contains(key))
            .map(|(key, (s, d, l))| (key, s, d, l))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);

        let ids: Vec<i64> = ranked.iter().map(|r| r.0 as i64).collect();
        let mut entries = fetch_entries(&self.reader(), &ids)?;
        Ok(ranked
            .into_iter()
            .filter_map(|(key, score, dense_score, lexical_score)| {
                entries.remove(&(key as i64)).map(|entry| MemoryHit { entry, score, dense_score, lexical_score })
            })
            .collect())
    }

    fn dense_memory(&self, ix: &Indexes, vector: &[f32], pool: usize, f: &ResolvedFilter) -> Result<Vec<(u64, f32)>> {
        let allow = |key: u64| f.allows(&ix.meta, key);
        // A behavior entry without its own text is as close to the query as its item.
        let lookup = |key: u64, buf: &mut [f32]| match ix.meta.entries.get(&key).and_then(|m| m.borrowed_item) {
            Some(item) => ix.catalog.vector(item, buf),
            None => ix.memory.vector(key, buf),
        };
        if let Some(c) = f.candidates(&ix.meta, ix.memory.exact_threshold()) {
            return Ok(exact_top_k(vector, c.into_iter().filter(|k| allow(*k)), lookup, pool));
        }
        let filter: Option<&dyn Fn(u64) -> bool> = if f.is_unrestricted() { None } else { Some(&allow) };
        let mut hits = ix.memory.search(vector, pool, filter)?;
        if ix.meta.by_item.is_empty() {
            top_k(&mut hits, pool);
            return Ok(hits);
        }
        // Entries borrowing item vectors: the closest items that have one passing the filter,
        // expanded to those entries.
        let item_allow = |item: u64| ix.meta.by_item.get(&item).is_some_and(|es| es.iter().any(|e| allow(*e)));
        for (item, sim) in ix.catalog.search(vector, pool, Some(&item_allow))? {
            let entries = ix.meta.by_item.get(&item).map_or(&[][..], Vec::as_slice);
            hits.extend(entries.iter().filter(|e| allow(**e)).map(|e| (*e, sim)));
        }
        top_k(&mut hits, pool);
        Ok(hits)
    }

    fn lexical_memory(&self, ix: &Indexes, text: &str, pool: usize, f: &ResolvedFilter) -> Vec<(u64, f64)> {
        let lexicon = &ix.meta.lexicon;
        let query = lexicon.query(&query_terms(text, MAX_QUERY_TERMS));
        if query.is_empty() {
            return Vec::new();
        }
        let allow = |key: u64| f.allows(&ix.meta, key);
        let Some(candidates) = f.candidates(&ix.meta, ix.memory.exact_threshold()) else {
            let filter: Option<&dyn Fn(u64) -> bool> = if f.is_unrestricted() { None } else { Some(&allow) };
            return lexicon.search(&query, pool, filter, &|key| ix.meta.entries.get(&key).map(|e| &e.terms));
        };
        let mut scored: Vec<(u64, f64)> = candidates
            .into_iter()
            .filter(|k| allow(*k))
            .filter_map(|k| {
                let s = lexicon.score(&query, &ix.meta.entries.get(&k)?.terms);
                (s > 0.0).then_some((k, s))
            })
            .collect();
        top_k_f64(&mut scored, pool);
        scored
    }

    /// The memory entry ids a user owns, in a tier (used by tests and the inspector).
    pub fn memory_ids(&self, user: &str, tier: Tier) -> Result<Vec<i64>> {
        let conn = self.reader();
        let uid = Self::require_user(&conn, user)?;
        let mut stmt = conn.prepare_cached("SELECT id FROM memory WHERE user_id = ?1 AND tier = ?2 ORDER BY id")?;
        let rows = stmt.query_map(params![uid, tier as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
    }

    /// Whether a memory id exists (cheap; used to validate ids the model cites).
    pub fn memory_exists(&self, id: i64) -> Result<bool> {
        Ok(self
            .reader()
            .prepare_cached("SELECT 1 FROM memory WHERE id = ?1")?
            .query_row(params![id], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
