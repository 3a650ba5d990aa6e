//! The memory store: SQLite is the source of truth; dense indexes are derived and rebuildable.
//!
//! One writer connection and one reader connection (WAL lets reads run beside a write). Every
//! write runs in one IMMEDIATE transaction through [`MemoryStore::write`], which also applies the
//! change to the in-memory dense indexes after commit, so the two never drift apart silently.

mod catalog;
mod collab;
mod conversations;
mod embeddings;
mod history;
pub(crate) mod import_writer;
mod indexes;
mod lexical;
pub(crate) mod memory;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::dense::DenseParams;
use crate::error::{Error, Result};
use crate::model::Stats;
use crate::schema;

pub use collab::{CollabReport, GroundRequest, GroundedItem, COLLAB_FILE};
pub use conversations::{Conversation, Message};
pub use embeddings::EmbeddingTarget;
pub use history::{Draft, FeedbackOutcome, HistoryRecord};
pub use import_writer::{behavior_text, item_text};
pub use indexes::IndexReport;
pub(crate) use indexes::Indexes;

pub const DB_FILE: &str = "memory.sqlite3";
pub const MEMORY_INDEX_FILE: &str = "memory.usearch";
pub const CATALOG_INDEX_FILE: &str = "catalog.usearch";

#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Embedding dimensions used until the first embedding fixes them in the database.
    pub dimensions: usize,
    pub dense: DenseParams,
    /// How long a write waits for another process's write lock before failing.
    pub busy_timeout_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { dimensions: 384, dense: DenseParams::default(), busy_timeout_ms: 5000 }
    }
}

/// What a write changed, so the dense indexes can follow after commit.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub memory_upserts: Vec<i64>,
    pub memory_removals: Vec<i64>,
    pub item_upserts: Vec<i64>,
    pub item_removals: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generations {
    pub memory: i64,
    pub catalog: i64,
}

pub struct MemoryStore {
    home: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    indexes: RwLock<Option<Indexes>>,
    /// The catalog matrix and collaborative index that fused grounding reads (store/collab.rs).
    grounding: collab::GroundingCache,
    opts: StoreOptions,
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite half-written (transactions roll back on
    // drop), so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error opening the database: [`Error::Disk`] for a full or read-only home, else
/// [`Error::Schema`] naming the file.
fn open_failed(path: &Path, e: rusqlite::Error, what: &str) -> Error {
    match Error::Sqlite(e).on_disk(path) {
        Error::Sqlite(e) => Error::Schema { path: path.to_path_buf(), message: format!("{what}{e}") },
        other => other,
    }
}

fn open_connection(path: &Path, opts: &StoreOptions) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| open_failed(path, e, "cannot open: "))?;
    conn.busy_timeout(std::time::Duration::from_millis(opts.busy_timeout_ms))?;
    // WAL: readers never block the writer; NORMAL sync survives a process crash.
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| open_failed(path, e, ""))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Schema {
            path: path.to_path_buf(),
            message: format!("cannot enable WAL journal (got {mode})"),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten with zeros, so forgotten memory and deleted conversations
    // do not linger in free pages of the file (docs/RELIABILITY.md, privacy).
    conn.pragma_update(None, "secure_delete", "ON")?;
    // A large import is one transaction; a page cache that holds it avoids spilling to the WAL
    // and reading pages back (measured: ~30% of import time with the 2 MB default).
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) fn read_generations(conn: &Connection) -> Result<Generations> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM meta WHERE key LIKE '%_generation'")?;
    let mut g = Generations { memory: 0, catalog: 0 };
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (key, value) = row?;
        match key.as_str() {
            "memory_generation" => g.memory = value,
            "catalog_generation" => g.catalog = value,
            _ => {}
        }
    }
    Ok(g)
}

/// The largest row ids when a write began: rows above them were inserted by the write.
struct RowHighWater {
    memory: i64,
    items: i64,
    records: i64,
}

impl RowHighWater {
    fn read(conn: &Connection) -> Result<Self> {
        let max = |table: &str| -> Result<i64> {
            Ok(conn.query_row(&format!("SELECT ifnull(max(id), 0) FROM {table}"), [], |r| r.get(0))?)
        };
        Ok(RowHighWater { memory: max("memory")?, items: max("items")?, records: max("records")? })
    }

    /// Adds the write's new items to items_fts and bumps the generations of what it changed (the
    /// interactions' by the number of new records, so the collaborative index can tell how much
    /// changed).
    fn index_new_rows(&self, tx: &Connection) -> Result<()> {
        let new_memory: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM memory WHERE id > ?1)", params![self.memory], |r| r.get(0))?;
        let new_items = tx.execute(
            "INSERT INTO items_fts (rowid, text, scope) SELECT id, text, scope FROM items WHERE id > ?1",
            params![self.items],
        )?;
        let new_records: i64 =
            tx.query_row("SELECT count(*) FROM records WHERE id > ?1", params![self.records], |r| r.get(0))?;
        let mut bump = tx.prepare_cached("UPDATE meta SET value = value + ?2 WHERE key = ?1")?;
        if new_memory {
            bump.execute(params!["memory_generation", 1])?;
        }
        if new_items > 0 {
            bump.execute(params!["catalog_generation", 1])?;
        }
        if new_records > 0 {
            bump.execute(params!["interactions_generation", new_records])?;
        }
        Ok(())
    }
}

impl MemoryStore {
    /// Opens (creating if needed) the store in `home`. Dense indexes load lazily on first use.
    pub fn open(home: &Path, opts: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(home).map_err(|e| Error::io(home, e).on_disk(home))?;
        let db_path = home.join(DB_FILE);
        let mut writer = open_connection(&db_path, &opts)?;
        let migrated = schema::migrate(&mut writer, &db_path).map_err(|e| match e {
            Error::Sqlite(s) => Error::from_sqlite(s, "while upgrading the schema").on_disk(&db_path),
            other => other,
        })?;
        if migrated {
            // Into the database file now, so that the WAL holds no committed page the file
            // lacks: then a write that fills the disk can truncate it (`write_failed`).
            let _ = writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let reader = open_connection(&db_path, &opts)?;
        Ok(MemoryStore {
            home: home.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            indexes: RwLock::new(None),
            grounding: collab::GroundingCache::default(),
            opts,
        })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn db_path(&self) -> PathBuf {
        self.home.join(DB_FILE)
    }

    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        lock(&self.reader)
    }

    /// Runs `f` in one IMMEDIATE transaction, then brings the dense indexes up to date.
    pub(crate) fn write<R>(
        &self,
        context: &str,
        f: impl FnOnce(&Transaction<'_>, &mut Changes) -> Result<R>,
    ) -> Result<R> {
        let mut conn = lock(&self.writer);
        let mut changes = Changes::default();
        let committed = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| Error::from_sqlite(e, context))?;
            let before = read_generations(&tx)?;
            let high_water = RowHighWater::read(&tx)?;
            let out = f(&tx, &mut changes)?;
            high_water.index_new_rows(&tx)?;
            let after = read_generations(&tx)?;
            tx.commit().map_err(|e| Error::from_sqlite(e, context))?;
            Ok((out, before, after))
        })(); // on an error the transaction has rolled back here
        let (out, before, after) = committed.map_err(|e| self.write_failed(&conn, e))?;
        // Still holding the writer lock: index updates are applied in commit order.
        self.apply_changes(&conn, before, after, &changes);
        Ok(out)
    }

    /// A failed write's error as the caller sees it: [`Error::Disk`] naming the database when
    /// the disk is full or read-only. On a full disk the WAL is truncated too: it still holds
    /// the rolled-back transaction's pages (as large as the transaction), space the user would
    /// otherwise have to free. Safe: a checkpoint copies committed pages only, and one that
    /// fails leaves the WAL as it was.
    fn write_failed(&self, conn: &Connection, e: Error) -> Error {
        let e = e.on_disk(&self.db_path());
        if matches!(e, Error::Disk { full: true, .. }) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        e
    }

    /// Copies the WAL into the database and truncates it, so the old versions of deleted rows
    /// that the WAL still holds are gone from disk too. Best effort: another process reading
    /// at this moment keeps its frames until the next checkpoint.
    pub(crate) fn scrub_wal(&self) {
        let conn = lock(&self.writer);
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// The embedding dimensions recorded in the database, if any embedding was written.
    pub(crate) fn stored_dimensions(conn: &Connection) -> Result<Option<usize>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = 'dimensions'", [], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|d| d as usize))
    }

    pub fn dimensions(&self) -> Result<usize> {
        Ok(Self::stored_dimensions(&self.reader())?.unwrap_or(self.opts.dimensions))
    }

    pub fn stats(&self) -> Result<Stats> {
        let conn = self.reader();
        let count = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
        let mut memory_by_tier = [0i64; 4];
        {
            let mut stmt = conn.prepare("SELECT tier, count(*) FROM memory GROUP BY tier")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (tier, n) = row?;
                if let Some(slot) = memory_by_tier.get_mut(tier as usize) {
                    *slot = n;
                }
            }
        }
        Ok(Stats {
            users: count("SELECT count(*) FROM users")?,
            items: count("SELECT count(*) FROM items")?,
            interactions: count("SELECT count(*) FROM records")?,
            memory_by_tier,
            pending_item_embeddings: count("SELECT count(*) FROM items WHERE embedding IS NULL")?,
            pending_memory_embeddings: count(
                "SELECT count(*) FROM memory WHERE embedding IS NULL AND vector_from_item = 0",
            )?,
            conversations: count("SELECT count(*) FROM conversations")?,
        })
    }

    /// `PRAGMA integrity_check` plus FTS consistency; returns the problems found (empty = ok).
    pub fn check_integrity(&self) -> Result<Vec<String>> {
        let conn = self.reader();
        let mut problems: Vec<String> = Vec::new();
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let line = row?;
            if line != "ok" {
                problems.push(line);
            }
        }
        if let Err(e) = conn.execute("INSERT INTO items_fts (items_fts, rank) VALUES ('integrity-check', 1)", []) {
            problems.push(format!("items_fts: {e}"));
        }
        Ok(problems)
    }

    /// Internal id of a user, if known.
    pub(crate) fn user_id(conn: &Connection, ext_id: &str) -> Result<Option<i64>> {
        Ok(conn
            .prepare_cached("SELECT id FROM users WHERE ext_id = ?1")?
            .query_row(params![ext_id], |r| r.get(0))
            .optional()?)
    }

    pub(crate) fn require_user(conn: &Connection, ext_id: &str) -> Result<i64> {
        Self::user_id(conn, ext_id)?.ok_or_else(|| Error::NotFound(format!("unknown user {ext_id:?}")))
    }

    /// External ids of all users, in insertion order.
    pub fn users(&self) -> Result<Vec<String>> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT ext_id FROM users ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// The catalog's category names, in the order they were first seen.
    pub fn category_names(&self) -> Result<Vec<String>> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT name FROM categories ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Category ids for names (case-insensitive); unknown names are skipped.
    pub(crate) fn category_ids(conn: &Connection, names: &[String]) -> Result<Vec<i64>> {
        let mut stmt = conn.prepare_cached("SELECT id FROM categories WHERE name = ?1")?;
        let mut out = Vec::new();
        for name in names {
            if let Some(id) = stmt.query_row(params![name], |r| r.get(0)).optional()? {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Category id for a name, created on first use.
    pub(crate) fn ensure_category(tx: &Connection, cache: &mut HashMap<String, i64>, name: &str) -> Result<i64> {
        let key = name.to_lowercase();
        if let Some(id) = cache.get(&key) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO categories (name) VALUES (?1)")?.execute(params![name])?;
        let id: i64 =
            tx.prepare_cached("SELECT id FROM categories WHERE name = ?1")?.query_row(params![name], |r| r.get(0))?;
        cache.insert(key, id);
        Ok(id)
    }
}

/// Parses a JSON array column, tolerating damage (an unreadable value reads as empty).
pub(crate) fn json_list<T: serde::de::DeserializeOwned>(raw: &str) -> Vec<T> {
    serde_json::from_str(raw).unwrap_or_default()
}

/// Runs `f` over `ids` in chunks small enough for SQLite's parameter limit, with `?` placeholders.
pub(crate) fn for_id_chunks(ids: &[i64], mut f: impl FnMut(&str, &[i64]) -> Result<()>) -> Result<()> {
    for chunk in ids.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        f(&placeholders, chunk)?;
    }
    Ok(())
}
