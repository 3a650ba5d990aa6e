//! Times a MovieLens 100K import (no embeddings): `cargo run --release --example import_timing`.
use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = mrrec_core::MemoryStore::open(dir.path(), Default::default()).unwrap();
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/movielens-100k");
    let t = Instant::now();
    let r =
        store.import(mrrec_core::ImportKind::MovieLens100k, &data, &Default::default(), &mut |_, _| Ok(())).unwrap();
    println!("import: {:?} ({} records)", t.elapsed(), r.records_added);
}
