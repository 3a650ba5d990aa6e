//! A user's history as memory construction reads it, feedback as it arrives, and the writes
//! that replace a derived tier (patterns, profile, global) in one transaction.

use std::collections::HashMap;

use rusqlite::params;

use super::memory::{insert_memory, MemoryRow};
use super::{json_list, MemoryStore};
use crate::error::{Error, Location, Result};
use crate::import::{InteractionRow, ItemRef, Sink};
use crate::model::Tier;
use crate::store::import_writer::ImportWriter;
use crate::vector::normalized;

/// One behavior record with the facts about its item that summaries need.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    pub record_id: i64,
    pub item_id: i64,
    pub item: String,
    pub title: String,
    pub year: Option<i32>,
    pub categories: Vec<String>,
    pub keywords: Vec<String>,
    pub rating: Option<f64>,
    pub timestamp: Option<i64>,
    pub text: Option<String>,
    pub source: String,
}

/// A derived memory entry to write (a pattern, a profile chunk or a global aspect).
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub text: String,
    pub categories: Vec<String>,
    pub source_ids: Vec<i64>,
    pub vector: Option<Vec<f32>>,
}

/// What a feedback write did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackOutcome {
    /// `None` when the same feedback was already recorded.
    pub record_id: Option<i64>,
    pub memory_id: Option<i64>,
    pub item_id: i64,
    /// The item's categories: the patterns to refresh.
    pub categories: Vec<String>,
}

impl MemoryStore {
    /// A user's behavior records, oldest first.
    pub fn user_history(&self, user: &str) -> Result<Vec<HistoryRecord>> {
        let conn = self.reader();
        let uid = Self::require_user(&conn, user)?;
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, i.id, i.ext_id, i.title, i.year, i.categories, i.keywords, r.rating, \
             r.timestamp, r.text, r.source FROM records r JOIN items i ON i.id = r.item_id \
             WHERE r.user_id = ?1 ORDER BY r.timestamp, r.id",
        )?;
        let mut rows = stmt.query(params![uid])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(HistoryRecord {
                record_id: row.get(0)?,
                item_id: row.get(1)?,
                item: row.get(2)?,
                title: row.get(3)?,
                year: row.get(4)?,
                categories: json_list(row.get_ref(5)?.as_str()?),
                keywords: json_list(row.get_ref(6)?.as_str()?),
                rating: row.get(7)?,
                timestamp: row.get(8)?,
                text: row.get(9)?,
                source: row.get(10)?,
            });
        }
        Ok(out)
    }

    /// Replaces a derived tier in one transaction: the user's (or, for global memory, the
    /// store's) entries of `tier` — only those of `category` when given — are deleted and
    /// `drafts` written in their place. Returns the new ids.
    pub fn replace_memory(
        &self,
        user: Option<&str>,
        tier: Tier,
        category: Option<&str>,
        drafts: &[Draft],
    ) -> Result<Vec<i64>> {
        if tier == Tier::Behavior {
            return Err(Error::InvalidArgument("behavior memory comes from records, not drafts".into()));
        }
        if (tier == Tier::Global) != user.is_none() {
            return Err(Error::InvalidArgument("global memory has no user; every other tier needs one".into()));
        }
        let vectors =
            drafts.iter().map(|d| d.vector.as_deref().map(normalized).transpose()).collect::<Result<Vec<_>>>()?;
        if let Some(d) = drafts.iter().find(|d| d.text.trim().is_empty()) {
            return Err(Error::InvalidArgument(format!("empty memory text (categories {:?})", d.categories)));
        }
        self.write("while replacing memory", |tx, changes| {
            let user_id = match user {
                Some(u) => Some(Self::require_user(tx, u)?),
                None => None,
            };
            let old: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM memory WHERE tier = ?1 AND user_id IS ?2 AND (?3 IS NULL OR \
                     (json_array_length(categories) = 1 AND json_extract(categories, '$[0]') = ?3))",
                )?;
                let rows = stmt.query_map(params![tier as i64, user_id, category], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut delete = tx.prepare_cached("DELETE FROM memory WHERE id = ?1")?;
            for id in &old {
                delete.execute(params![id])?;
                changes.memory_removals.push(*id);
            }
            let mut cache = HashMap::new();
            let mut ids = Vec::with_capacity(drafts.len());
            for (draft, vector) in drafts.iter().zip(&vectors) {
                if let Some(v) = vector {
                    self.check_dimensions(tx, v.len())?;
                }
                let category_ids = draft
                    .categories
                    .iter()
                    .map(|c| Self::ensure_category(tx, &mut cache, c))
                    .collect::<Result<Vec<_>>>()?;
                let id = insert_memory(
                    tx,
                    &MemoryRow {
                        tier,
                        user_id,
                        categories: &draft.categories,
                        category_ids: &category_ids,
                        text: draft.text.trim(),
                        source_ids: &draft.source_ids,
                        item_id: None,
                        vector_from_item: false,
                        embedding: vector.as_deref(),
                    },
                )?;
                changes.memory_upserts.push(id);
                ids.push(id);
            }
            Ok(ids)
        })
    }

    /// Records feedback on an item (a like, a rating, "seen it") as a behavior record with its
    /// memory entry, in one transaction. `source` names the kind, e.g. `feedback:like`.
    pub fn add_feedback(
        &self,
        user: &str,
        item: &str,
        rating: Option<f64>,
        text: Option<&str>,
        source: &str,
        timestamp: i64,
    ) -> Result<FeedbackOutcome> {
        if let Some(r) = rating {
            if !(0.0..=5.0).contains(&r) || !r.is_finite() {
                return Err(Error::InvalidArgument(format!("rating {r} is outside 0..5")));
            }
        }
        self.write("while recording feedback", |tx, changes| {
            let item_id = Self::resolve_item(tx, item)?;
            let alias: String =
                tx.query_row("SELECT ext_id FROM items WHERE id = ?1", params![item_id], |r| r.get(0))?;
            let categories: Vec<String> =
                json_list(&tx.query_row("SELECT categories FROM items WHERE id = ?1", params![item_id], |r| {
                    r.get::<_, String>(0)
                })?);
            let mut progress = |_: u64, _: u64| Ok(());
            let mut writer = ImportWriter::new(tx, changes, source, &mut progress);
            let row = InteractionRow {
                user: user.to_string(),
                item: ItemRef::Alias(alias),
                rating,
                timestamp: Some(timestamp),
                text: text.map(str::to_string),
            };
            writer.interaction(row, &Location::new(std::path::Path::new("<feedback>"), 0))?;
            let written = writer.last_written;
            Ok(FeedbackOutcome {
                record_id: written.map(|w| w.0),
                memory_id: written.map(|w| w.1),
                item_id,
                categories,
            })
        })
    }
}
