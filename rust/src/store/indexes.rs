//! The in-memory side of the store: both dense indexes and the per-entry metadata that filtered
//! dense search needs (user, tier, categories), kept in step with SQLite.

use std::collections::HashMap;
use std::sync::RwLockWriteGuard;

use rusqlite::{params_from_iter, Connection};

use super::lexical::{Lexicon, TermCounts};
use super::{for_id_chunks, read_generations, Changes, Generations, MemoryStore};
use super::{CATALOG_INDEX_FILE, MEMORY_INDEX_FILE};
use crate::dense::{DenseIndex, OpenOutcome};
use crate::error::Result;
use crate::vector::from_blob;

/// Filter metadata of one memory entry, parsed from its scope tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntryMeta {
    pub user: Option<i64>,
    pub tier: u8,
    pub categories: Vec<i64>,
    /// The item whose vector this entry uses (behavior entries without their own text).
    pub borrowed_item: Option<u64>,
    /// Its text's terms, for the in-memory BM25 scan.
    pub terms: TermCounts,
}

impl EntryMeta {
    /// Scope strings look like `u12 t0 c3 c7` (see `text::user_token` and friends).
    pub fn from_scope(scope: &str) -> EntryMeta {
        let mut meta = EntryMeta::default();
        for token in scope.split_whitespace() {
            let (kind, rest) = token.split_at(1);
            let Ok(n) = rest.parse::<i64>() else { continue };
            match kind {
                "u" => meta.user = Some(n),
                "t" => meta.tier = n as u8,
                "c" => meta.categories.push(n),
                _ => {}
            }
        }
        meta
    }
}

#[derive(Default)]
pub(crate) struct MemoryMeta {
    pub entries: HashMap<u64, EntryMeta>,
    pub by_user: HashMap<i64, Vec<u64>>,
    pub by_tier: [Vec<u64>; 4],
    /// Entries that borrow each item's vector.
    pub by_item: HashMap<u64, Vec<u64>>,
    pub lexicon: Lexicon,
}

impl MemoryMeta {
    /// Adds or replaces an entry; `text` is tokenized into its term counts.
    pub fn insert(&mut self, key: u64, mut meta: EntryMeta, text: &str) {
        self.remove(key);
        meta.terms = self.lexicon.add(key, text);
        if let Some(u) = meta.user {
            self.by_user.entry(u).or_default().push(key);
        }
        if let Some(list) = self.by_tier.get_mut(meta.tier as usize) {
            list.push(key);
        }
        if let Some(item) = meta.borrowed_item {
            self.by_item.entry(item).or_default().push(key);
        }
        self.entries.insert(key, meta);
    }

    pub fn remove(&mut self, key: u64) {
        if let Some(old) = self.entries.remove(&key) {
            self.lexicon.remove(key, &old.terms);
            if let Some(u) = old.user {
                if let Some(list) = self.by_user.get_mut(&u) {
                    list.retain(|k| *k != key);
                }
            }
            if let Some(list) = self.by_tier.get_mut(old.tier as usize) {
                list.retain(|k| *k != key);
            }
            if let Some(list) = old.borrowed_item.and_then(|i| self.by_item.get_mut(&i)) {
                list.retain(|k| *k != key);
            }
        }
    }
}

pub(crate) struct Indexes {
    pub memory: DenseIndex,
    pub catalog: DenseIndex,
    pub generations: Generations,
    pub meta: MemoryMeta,
    pub item_categories: HashMap<u64, Vec<i64>>,
    /// Changed since last saved.
    pub dirty: bool,
}

/// What opening or rebuilding the indexes did, for `mrrec index rebuild` and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexReport {
    pub memory_vectors: usize,
    pub catalog_vectors: usize,
    pub memory_rebuilt: bool,
    pub catalog_rebuilt: bool,
}

/// Entries with a vector of their own; the others are searched through their item's vector.
const MEMORY_VECTORS_SQL: &str = "SELECT id, embedding FROM memory WHERE embedding IS NOT NULL";
/// Columns that [`insert_meta`] reads.
const META_COLUMNS: &str = "id, scope, CASE WHEN vector_from_item = 1 THEN item_id END, text";

fn insert_meta(meta: &mut MemoryMeta, row: &rusqlite::Row<'_>) -> Result<u64> {
    let id = row.get::<_, i64>(0)? as u64;
    let mut entry = EntryMeta::from_scope(row.get_ref(1)?.as_str()?);
    entry.borrowed_item = row.get::<_, Option<i64>>(2)?.map(|i| i as u64);
    meta.insert(id, entry, row.get_ref(3)?.as_str()?);
    Ok(id)
}

fn fill_from(conn: &Connection, sql: &str, dims: usize, add: &mut dyn FnMut(u64, &[f32]) -> Result<()>) -> Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if let Some(blob) = row.get_ref(1)?.as_blob_or_null()? {
            add(id as u64, &from_blob(blob, dims)?)?;
        }
    }
    Ok(())
}

fn load_memory_meta(conn: &Connection) -> Result<MemoryMeta> {
    let mut meta = MemoryMeta::default();
    let mut stmt = conn.prepare(&format!("SELECT {META_COLUMNS} FROM memory"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        insert_meta(&mut meta, row)?;
    }
    Ok(meta)
}

fn load_item_categories(conn: &Connection) -> Result<HashMap<u64, Vec<i64>>> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, scope FROM items")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        out.insert(id as u64, EntryMeta::from_scope(row.get_ref(1)?.as_str()?).categories);
    }
    Ok(out)
}

impl MemoryStore {
    /// Runs `f` with indexes that match the database, loading or rebuilding them first if needed.
    pub(crate) fn with_indexes<R>(&self, f: impl FnOnce(&Indexes) -> Result<R>) -> Result<R> {
        let current = read_generations(&self.reader())?;
        {
            let guard = self.indexes.read().unwrap_or_else(|p| p.into_inner());
            if let Some(ix) = guard.as_ref() {
                if ix.generations == current {
                    return f(ix);
                }
            }
        }
        let mut guard = self.indexes.write().unwrap_or_else(|p| p.into_inner());
        self.ensure_loaded(&mut guard, false)?;
        f(guard.as_ref().expect("indexes loaded"))
    }

    /// Loads the indexes (or rebuilds them when `force` or when they are stale or damaged).
    fn ensure_loaded(&self, guard: &mut RwLockWriteGuard<'_, Option<Indexes>>, force: bool) -> Result<IndexReport> {
        let conn = self.reader();
        // Read generations, metadata and vectors in one snapshot so they agree.
        conn.execute_batch("BEGIN")?;
        let result = (|| {
            let generations = read_generations(&conn)?;
            if !force {
                if let Some(ix) = guard.as_ref() {
                    if ix.generations == generations {
                        return Ok(IndexReport {
                            memory_vectors: ix.memory.len(),
                            catalog_vectors: ix.catalog.len(),
                            memory_rebuilt: false,
                            catalog_rebuilt: false,
                        });
                    }
                }
            }
            let dims = Self::stored_dimensions(&conn)?.unwrap_or(self.opts.dimensions);
            let params = self.opts.dense;
            let memory_path = self.home.join(MEMORY_INDEX_FILE);
            let catalog_path = self.home.join(CATALOG_INDEX_FILE);
            if force {
                for p in [&memory_path, &catalog_path] {
                    let _ = std::fs::remove_file(p);
                }
            }
            let (memory, memory_outcome) = DenseIndex::open(&memory_path, dims, generations.memory, params, |add| {
                fill_from(&conn, MEMORY_VECTORS_SQL, dims, add)
            })?;
            let (catalog, catalog_outcome) =
                DenseIndex::open(&catalog_path, dims, generations.catalog, params, |add| {
                    fill_from(&conn, "SELECT id, embedding FROM items", dims, add)
                })?;
            let rebuilt = memory_outcome == OpenOutcome::Rebuilt || catalog_outcome == OpenOutcome::Rebuilt;
            let ix = Indexes {
                meta: load_memory_meta(&conn)?,
                item_categories: load_item_categories(&conn)?,
                memory,
                catalog,
                generations,
                dirty: rebuilt,
            };
            let report = IndexReport {
                memory_vectors: ix.memory.len(),
                catalog_vectors: ix.catalog.len(),
                memory_rebuilt: memory_outcome == OpenOutcome::Rebuilt,
                catalog_rebuilt: catalog_outcome == OpenOutcome::Rebuilt,
            };
            **guard = Some(ix);
            Ok(report)
        })();
        conn.execute_batch("COMMIT")?;
        result
    }

    /// Loads the dense indexes now (rebuilding stale or damaged ones) and saves what was rebuilt.
    pub fn open_indexes(&self) -> Result<IndexReport> {
        let mut guard = self.indexes.write().unwrap_or_else(|p| p.into_inner());
        let report = self.ensure_loaded(&mut guard, false)?;
        Self::save_locked(&mut guard)?;
        Ok(report)
    }

    /// Rebuilds both dense indexes from SQLite and saves them.
    pub fn rebuild_indexes(&self) -> Result<IndexReport> {
        let mut guard = self.indexes.write().unwrap_or_else(|p| p.into_inner());
        let report = self.ensure_loaded(&mut guard, true)?;
        Self::save_locked(&mut guard)?;
        Ok(report)
    }

    /// Saves the dense indexes if they changed since the last save.
    pub fn flush(&self) -> Result<()> {
        let mut guard = self.indexes.write().unwrap_or_else(|p| p.into_inner());
        Self::save_locked(&mut guard)
    }

    fn save_locked(guard: &mut RwLockWriteGuard<'_, Option<Indexes>>) -> Result<()> {
        if let Some(ix) = guard.as_mut() {
            if ix.dirty {
                ix.memory.save(ix.generations.memory)?;
                ix.catalog.save(ix.generations.catalog)?;
                ix.dirty = false;
            }
        }
        Ok(())
    }

    /// Applies a committed write to the loaded indexes. When they do not reflect the state the
    /// write started from (another process wrote), or applying fails, they are dropped and
    /// reloaded on next use: a slower path, never a wrong one.
    pub(crate) fn apply_changes(&self, conn: &Connection, before: Generations, after: Generations, changes: &Changes) {
        let mut guard = self.indexes.write().unwrap_or_else(|p| p.into_inner());
        let Some(ix) = guard.as_mut() else { return };
        if ix.generations != before {
            *guard = None;
            return;
        }
        if let Err(_e) = Self::apply_to(conn, ix, changes) {
            *guard = None;
            return;
        }
        ix.generations = after;
        ix.dirty = true;
    }

    fn apply_to(conn: &Connection, ix: &mut Indexes, changes: &Changes) -> Result<()> {
        let dims = ix.memory.dimensions();
        for &id in &changes.item_removals {
            ix.catalog.remove(id as u64)?;
            ix.item_categories.remove(&(id as u64));
        }
        for &id in &changes.memory_removals {
            ix.memory.remove(id as u64)?;
            ix.meta.remove(id as u64);
        }
        for_id_chunks(&changes.item_upserts, |ph, chunk| {
            let sql = format!("SELECT id, embedding, scope FROM items WHERE id IN ({ph})");
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(chunk))?;
            let (mut keys, mut flat) = (Vec::new(), Vec::new());
            while let Some(row) = rows.next()? {
                let id = row.get::<_, i64>(0)? as u64;
                match row.get_ref(1)?.as_blob_or_null()? {
                    Some(blob) => {
                        keys.push(id);
                        flat.extend(from_blob(blob, dims)?);
                    }
                    None => ix.catalog.remove(id)?,
                }
                ix.item_categories.insert(id, EntryMeta::from_scope(row.get_ref(2)?.as_str()?).categories);
            }
            ix.catalog.add_batch(&keys, &flat)
        })?;
        for_id_chunks(&changes.memory_upserts, |ph, chunk| {
            let sql = format!("SELECT {META_COLUMNS}, embedding FROM memory WHERE id IN ({ph})");
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(chunk))?;
            let (mut keys, mut flat) = (Vec::new(), Vec::new());
            while let Some(row) = rows.next()? {
                let id = insert_meta(&mut ix.meta, row)?;
                match row.get_ref(4)?.as_blob_or_null()? {
                    Some(blob) => {
                        keys.push(id);
                        flat.extend(from_blob(blob, dims)?);
                    }
                    None => ix.memory.remove(id)?,
                }
            }
            ix.memory.add_batch(&keys, &flat)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::EntryMeta;

    #[test]
    fn scope_parses() {
        let m = EntryMeta::from_scope("u12 t0 c3 c7");
        assert_eq!((m.user, m.tier, m.categories), (Some(12), 0, vec![3, 7]));
        let g = EntryMeta::from_scope("t3 c1");
        assert_eq!((g.user, g.tier), (None, 3));
    }
}
