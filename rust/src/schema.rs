//! The SQLite schema and its migrations. `PRAGMA user_version` holds the schema version; each
//! migration runs in its own transaction so an interrupted upgrade leaves the old version intact.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Migrations in order; migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: catalog, users, behavior records, tiered memory with FTS5, conversations.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
    -- Bumped by triggers on every change that affects a dense index, so a saved index file can
    -- tell whether it still matches the database.
    INSERT INTO meta (key, value) VALUES ('memory_generation', 0), ('catalog_generation', 0);

    CREATE TABLE categories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE
    ) STRICT;

    -- AUTOINCREMENT: ids are never reused, so a cited or forgotten id never names a new row.
    CREATE TABLE items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ext_id TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        year INTEGER,
        categories TEXT NOT NULL DEFAULT '[]',   -- JSON array of category names
        keywords TEXT NOT NULL DEFAULT '[]',     -- JSON array
        description TEXT,
        text TEXT NOT NULL,                      -- the text that is embedded and searched
        attributes TEXT NOT NULL DEFAULT '{}',   -- JSON object
        embedding BLOB,                          -- f32 little-endian; NULL until embedded
        scope TEXT NOT NULL DEFAULT ''           -- category tokens for filtered lexical search
    ) STRICT;
    -- Normalised title (+ year) variants, for matching one item across sources.
    CREATE TABLE item_keys (
        key TEXT NOT NULL,
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        PRIMARY KEY (key, item_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX items_pending ON items (id) WHERE embedding IS NULL;

    -- Every external id an item is known by (its own and those of matched sources).
    CREATE TABLE item_aliases (
        alias TEXT PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        ext_id TEXT NOT NULL UNIQUE,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        items INTEGER NOT NULL DEFAULT 0,
        records INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        rating REAL,                -- 0..5, NULL when the source has none
        text TEXT,                  -- review or tags
        timestamp INTEGER,          -- unix seconds
        source TEXT NOT NULL,       -- importer kind or 'feedback'
        import_id INTEGER REFERENCES imports (id)
    ) STRICT;
    CREATE INDEX records_user ON records (user_id, timestamp);
    -- Re-importing the same file adds nothing.
    CREATE UNIQUE INDEX records_dedupe ON records (user_id, item_id, ifnull(timestamp, -1), source);
    CREATE INDEX records_item ON records (item_id);

    CREATE TABLE memory (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tier INTEGER NOT NULL CHECK (tier BETWEEN 0 AND 3),  -- behavior, pattern, profile, global
        user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
        categories TEXT NOT NULL DEFAULT '[]',               -- JSON array of category names
        text TEXT NOT NULL,
        source_ids TEXT NOT NULL DEFAULT '[]',               -- JSON array of record / memory ids
        item_id INTEGER REFERENCES items (id) ON DELETE CASCADE,
        -- 1: this entry's vector is its item's (a behavior record without its own text). Such
        -- entries stay out of the memory index: they are searched through the catalog index.
        vector_from_item INTEGER NOT NULL DEFAULT 0,
        embedding BLOB,
        scope TEXT NOT NULL,                                 -- user/tier/category tokens
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((tier = 3) = (user_id IS NULL))
    ) STRICT;
    CREATE INDEX memory_user ON memory (user_id, tier);
    CREATE INDEX memory_item ON memory (item_id);
    CREATE INDEX memory_pending ON memory (id) WHERE embedding IS NULL AND vector_from_item = 0;

    -- The catalog's text index, for finding items by title or description. Memory is searched
    -- lexically in memory instead (store/lexical.rs): FTS5 needed 10-25 ms per query at 100k
    -- entries against a sub-millisecond budget. Both tokenize alike (no stemmer).
    CREATE VIRTUAL TABLE items_fts USING fts5 (
        text, scope, content = 'items', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    -- Rank by the text column only: scope tokens are filters, not evidence.
    INSERT INTO items_fts (items_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)');

    -- Inserted rows reach items_fts and bump the generations in one statement per write
    -- (MemoryStore::write): a per-row trigger makes FTS5 flush a segment per row, which made
    -- bulk imports 3x slower. Deletes and updates are rare and stay on triggers. A generation
    -- tells a process whether its in-memory indexes still match the database.
    CREATE TRIGGER memory_ad AFTER DELETE ON memory BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'memory_generation';
    END;
    CREATE TRIGGER memory_au AFTER UPDATE OF text, scope, embedding, vector_from_item, item_id ON memory
    BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'memory_generation';
    END;

    CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, text, scope)
            VALUES ('delete', old.id, old.text, old.scope);
        UPDATE meta SET value = value + 1 WHERE key = 'catalog_generation';
    END;
    CREATE TRIGGER items_au AFTER UPDATE OF text, scope ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, text, scope)
            VALUES ('delete', old.id, old.text, old.scope);
        INSERT INTO items_fts (rowid, text, scope) VALUES (new.id, new.text, new.scope);
    END;
    CREATE TRIGGER items_vector_au AFTER UPDATE OF embedding ON items BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'catalog_generation';
    END;

    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        title TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',   -- JSON: tool calls, recommendations, cited memories
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX messages_conversation ON messages (conversation_id, id);
    "#,
    // 2: the collaborative index (store/collab.rs) follows the interactions. Inserts bump the
    // generation by their row count in MemoryStore::write; deletes and rating changes by trigger.
    r#"
    INSERT INTO meta (key, value) VALUES ('interactions_generation', 0);
    CREATE TRIGGER records_ad AFTER DELETE ON records BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'interactions_generation';
    END;
    CREATE TRIGGER records_au AFTER UPDATE OF user_id, item_id, source ON records BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'interactions_generation';
    END;
    "#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to the current schema version; true when it changed anything.
pub fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Schema {
            path: path.to_path_buf(),
            message: format!(
                "schema version {version} is newer than this mrrec-edge understands \
                 ({SCHEMA_VERSION}); upgrade mrrec-edge"
            ),
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.commit()?;
    }
    Ok(version < SCHEMA_VERSION)
}
