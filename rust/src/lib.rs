//! mrrec-edge core: the memory store (SQLite + FTS5 + usearch), hybrid retrieval, catalog
//! grounding, importers and ranking metrics. Free of Python types so `cargo test` covers it;
//! the bindings live in `python.rs` behind the `python` feature.

pub mod collab;
pub mod dense;
pub mod error;
pub mod grounding;
pub mod import;
pub mod metrics;
pub mod model;
pub mod orchestrator;
pub mod schema;
pub mod store;
pub mod text;
pub mod vector;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Location, Result};
pub use import::{ImportKind, ImportOptions, ImportReport};
pub use model::{Item, ItemHit, MemoryEntry, MemoryFilter, MemoryHit, NewMemory, SearchMode, Stats, Tier};
pub use store::{MemoryStore, StoreOptions};

/// Property tests run with a fixed seed so the suite is deterministic; `MRREC_PROPTEST_CASES`
/// raises the number of cases for a long fuzzing run (docs/RELIABILITY.md).
#[cfg(test)]
pub(crate) fn deterministic_proptest() -> proptest::test_runner::Config {
    let cases = std::env::var("MRREC_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512);
    proptest::test_runner::Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261127),
        cases,
        ..Default::default()
    }
}
