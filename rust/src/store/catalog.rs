//! The catalog: item lookup and grounding a profile vector to catalog items.

use std::collections::HashSet;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{for_id_chunks, json_list, MemoryStore};
use crate::error::{Error, Result};
use crate::model::{Item, ItemHit};
use crate::text::{category_token, fts_match, query_terms};

const ITEM_COLUMNS: &str = "id, ext_id, title, year, categories, keywords, description, text FROM items";

fn item_from_row(row: &rusqlite::Row<'_>) -> Result<Item> {
    Ok(Item {
        item_id: row.get(0)?,
        ext_id: row.get(1)?,
        title: row.get(2)?,
        year: row.get(3)?,
        categories: json_list(row.get_ref(4)?.as_str()?),
        keywords: json_list(row.get_ref(5)?.as_str()?),
        description: row.get(6)?,
        text: row.get(7)?,
    })
}

impl MemoryStore {
    /// Internal item id for any of its external ids (aliases).
    pub(crate) fn item_id_for_alias(conn: &Connection, alias: &str) -> Result<Option<i64>> {
        Ok(conn
            .prepare_cached("SELECT item_id FROM item_aliases WHERE alias = ?1")?
            .query_row(params![alias], |r| r.get(0))
            .optional()?)
    }

    /// The item a person means by `text`: one of its external ids, or the id without its
    /// source prefix (`50` for `ml100k:50`) when exactly one item has it.
    pub(crate) fn resolve_item(conn: &Connection, text: &str) -> Result<i64> {
        if let Some(id) = Self::item_id_for_alias(conn, text)? {
            return Ok(id);
        }
        let mut stmt = conn.prepare_cached(
            r"SELECT DISTINCT item_id FROM item_aliases WHERE alias LIKE '%:' || ?1 ESCAPE '\' LIMIT 2",
        )?;
        let escaped = text.replace('\\', r"\\").replace('%', r"\%").replace('_', r"\_");
        let ids: Vec<i64> = stmt.query_map(params![escaped], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        match ids.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::NotFound(format!("unknown item {text:?}"))),
            _ => Err(Error::NotFound(format!("{text:?} names several items; use its full id (source:id)"))),
        }
    }

    /// An item by any of its external ids (see [`MemoryStore::resolve_item`]).
    pub fn item(&self, alias: &str) -> Result<Item> {
        let conn = self.reader();
        let id = Self::resolve_item(&conn, alias)?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {ITEM_COLUMNS} WHERE id = ?1"))?;
        let mut rows = stmt.query(params![id])?;
        item_from_row(rows.next()?.expect("alias points at an item"))
    }

    /// Items by internal id, in the order given (unknown ids are skipped).
    pub fn items_by_id(&self, ids: &[i64]) -> Result<Vec<Item>> {
        let conn = self.reader();
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for_id_chunks(ids, |ph, chunk| {
            let mut stmt = conn.prepare(&format!("SELECT {ITEM_COLUMNS} WHERE id IN ({ph})"))?;
            let mut rows = stmt.query(params_from_iter(chunk))?;
            while let Some(row) = rows.next()? {
                let item = item_from_row(row)?;
                found.insert(item.item_id, item);
            }
            Ok(())
        })?;
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// Internal ids of the items a user has a behavior record for.
    pub fn consumed_item_ids(&self, user: &str) -> Result<Vec<i64>> {
        let conn = self.reader();
        let uid = Self::require_user(&conn, user)?;
        let mut stmt =
            conn.prepare_cached("SELECT DISTINCT item_id FROM records WHERE user_id = ?1 ORDER BY item_id")?;
        let rows = stmt.query_map(params![uid], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
    }

    /// Catalog items whose text matches `text` (FTS5 BM25 over title, genres, keywords and
    /// description), best first; for finding an item by name.
    pub fn search_items(&self, text: &str, k: usize, categories: &[String]) -> Result<Vec<ItemHit>> {
        let conn = self.reader();
        let category_ids = Self::category_ids(&conn, categories)?;
        if !categories.is_empty() && category_ids.is_empty() {
            return Ok(Vec::new());
        }
        let scope = vec![category_ids.iter().map(|c| category_token(*c)).collect()];
        let Some(expr) = fts_match(&query_terms(text, 24), &scope) else { return Ok(Vec::new()) };
        let mut stmt =
            conn.prepare_cached("SELECT rowid, rank FROM items_fts WHERE items_fts MATCH ?1 ORDER BY rank LIMIT ?2")?;
        let ranked: Vec<(i64, f64)> = stmt
            .query_map(params![expr, k as i64], |r| Ok((r.get(0)?, -r.get::<_, f64>(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        drop(conn);
        self.item_hits(ranked.into_iter().map(|(id, score)| (id, score as f32)))
    }

    /// Scored item ids to hits, in the given order.
    pub(super) fn item_hits(&self, scored: impl IntoIterator<Item = (i64, f32)>) -> Result<Vec<ItemHit>> {
        let scored: Vec<(i64, f32)> = scored.into_iter().collect();
        let ids: Vec<i64> = scored.iter().map(|s| s.0).collect();
        let mut items: std::collections::HashMap<i64, Item> =
            self.items_by_id(&ids)?.into_iter().map(|i| (i.item_id, i)).collect();
        Ok(scored
            .into_iter()
            .filter_map(|(id, score)| {
                let item = items.remove(&id)?;
                Some(ItemHit {
                    item_id: item.item_id,
                    ext_id: item.ext_id,
                    title: item.title,
                    year: item.year,
                    categories: item.categories,
                    score,
                })
            })
            .collect())
    }

    /// Top-`k` catalog items by cosine similarity to `vector`. With a `user`, items they have
    /// already consumed are left out unless `include_seen`; `exclude` removes more item ids.
    pub fn ground(
        &self,
        vector: &[f32],
        k: usize,
        user: Option<&str>,
        include_seen: bool,
        categories: &[String],
        exclude: &[i64],
    ) -> Result<Vec<ItemHit>> {
        let mut banned: HashSet<u64> = exclude.iter().map(|i| *i as u64).collect();
        if let (Some(u), false) = (user, include_seen) {
            banned.extend(self.consumed_item_ids(u)?.into_iter().map(|i| i as u64));
        }
        let category_ids = Self::category_ids(&self.reader(), categories)?;
        if !categories.is_empty() && category_ids.is_empty() {
            return Ok(Vec::new());
        }
        let hits = self.with_indexes(|ix| {
            let allow = |key: u64| {
                !banned.contains(&key)
                    && (category_ids.is_empty()
                        || ix.item_categories.get(&key).is_some_and(|cs| cs.iter().any(|c| category_ids.contains(c))))
            };
            // Small catalogs are scanned exactly (faster and perfect); large ones walk the graph.
            let all: Vec<u64>;
            let candidates = if ix.catalog.len() <= self.opts.dense.exact_threshold {
                all = ix.item_categories.keys().copied().collect();
                Some(all.as_slice())
            } else {
                None
            };
            ix.catalog.search_filtered(vector, k, candidates, &allow)
        })?;
        self.item_hits(hits.into_iter().map(|(key, score)| (key as i64, score)))
    }
}
