//! Shared helpers for the integration tests: the real MovieLens data and a deterministic
//! feature-hashing embedder (the real one is a Python/onnxruntime model).

#![allow(dead_code)]

use std::path::PathBuf;

use mrrec_core::store::EmbeddingTarget;
use mrrec_core::{MemoryStore, StoreOptions};

pub const DIMS: usize = 64;

pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

pub fn ml100k() -> PathBuf {
    shared_data().join("movielens-100k")
}

pub fn keywords_csv() -> PathBuf {
    shared_data().join("movielens-25m-keywords/movies_w_keywords.csv")
}

pub fn open(dir: &std::path::Path) -> MemoryStore {
    MemoryStore::open(dir, StoreOptions { dimensions: DIMS, ..Default::default() }).unwrap()
}

/// Hashes each lower-cased word into one of DIMS buckets: texts sharing words are similar.
pub fn hash_embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMS];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut h: u64 = 1469598103934665603;
        for b in word.to_lowercase().bytes() {
            h = (h ^ b as u64).wrapping_mul(1099511628211);
        }
        v[(h % DIMS as u64) as usize] += 1.0;
    }
    v[0] += 1e-3; // never all-zero
    v
}

/// Embeds everything pending, the way the Python side does in batches.
pub fn embed_all(store: &MemoryStore) -> usize {
    let mut n = 0;
    loop {
        let batch = store.pending_embeddings(512).unwrap();
        if batch.is_empty() {
            return n;
        }
        for target in [EmbeddingTarget::Item, EmbeddingTarget::Memory] {
            let (ids, vecs): (Vec<i64>, Vec<Vec<f32>>) =
                batch.iter().filter(|b| b.0 == target).map(|b| (b.1, hash_embed(&b.2))).unzip();
            n += store.set_embeddings(target, &ids, &vecs).unwrap();
        }
    }
}

pub fn no_progress() -> impl FnMut(u64, u64) -> mrrec_core::Result<()> {
    |_, _| Ok(())
}
