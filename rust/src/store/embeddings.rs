//! Embedding is a derived, resumable step: imports write text, and the host (the Python
//! embedder) fills vectors in batches through `pending_embeddings` / `set_embeddings`.

use rusqlite::params;

use super::MemoryStore;
use crate::error::{Error, Result};
use crate::vector::{normalized, to_blob};

/// Which table a pending text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingTarget {
    Item,
    Memory,
}

impl EmbeddingTarget {
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingTarget::Item => "item",
            EmbeddingTarget::Memory => "memory",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "item" => Ok(EmbeddingTarget::Item),
            "memory" => Ok(EmbeddingTarget::Memory),
            _ => Err(Error::InvalidArgument(format!("unknown embedding target {name:?} (item or memory)"))),
        }
    }
}

impl MemoryStore {
    /// Up to `limit` texts still waiting for a vector, items first (memory entries borrow them).
    pub fn pending_embeddings(&self, limit: usize) -> Result<Vec<(EmbeddingTarget, i64, String)>> {
        let conn = self.reader();
        let mut out = Vec::new();
        let mut stmt =
            conn.prepare_cached("SELECT id, text FROM items WHERE embedding IS NULL ORDER BY id LIMIT ?1")?;
        for row in stmt.query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (id, text) = row?;
            out.push((EmbeddingTarget::Item, id, text));
        }
        let left = limit - out.len();
        if left > 0 {
            let mut stmt = conn.prepare_cached(
                "SELECT id, text FROM memory WHERE embedding IS NULL AND vector_from_item = 0 \
                 ORDER BY id LIMIT ?1",
            )?;
            for row in stmt.query_map(params![left as i64], |r| Ok((r.get(0)?, r.get(1)?)))? {
                let (id, text) = row?;
                out.push((EmbeddingTarget::Memory, id, text));
            }
        }
        Ok(out)
    }

    /// Stores vectors (one per id, normalised here) in one transaction and indexes them.
    pub fn set_embeddings(&self, target: EmbeddingTarget, ids: &[i64], vectors: &[Vec<f32>]) -> Result<usize> {
        if ids.len() != vectors.len() {
            return Err(Error::InvalidArgument(format!("{} ids but {} vectors", ids.len(), vectors.len())));
        }
        let Some(first) = vectors.first() else { return Ok(0) };
        let dims = first.len();
        let blobs = vectors
            .iter()
            .map(|v| {
                if v.len() != dims {
                    return Err(Error::InvalidArgument("vectors differ in length".into()));
                }
                Ok(to_blob(&normalized(v)?))
            })
            .collect::<Result<Vec<_>>>()?;
        self.write("while storing embeddings", |tx, changes| {
            self.check_dimensions(tx, dims)?;
            let sql = match target {
                EmbeddingTarget::Item => "UPDATE items SET embedding = ?2 WHERE id = ?1",
                EmbeddingTarget::Memory => "UPDATE memory SET embedding = ?2 WHERE id = ?1",
            };
            let mut stmt = tx.prepare_cached(sql)?;
            let mut updated = 0;
            for (id, blob) in ids.iter().zip(&blobs) {
                if stmt.execute(params![id, blob])? > 0 {
                    updated += 1;
                    match target {
                        EmbeddingTarget::Item => changes.item_upserts.push(*id),
                        EmbeddingTarget::Memory => changes.memory_upserts.push(*id),
                    }
                }
            }
            Ok(updated)
        })
    }
}
