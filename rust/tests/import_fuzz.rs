//! Property test: whatever bytes an import file holds, the importer either imports it or
//! rejects it with an input error, never panics, and a rejected import writes nothing.

mod common;

use common::*;
use mrrec_core::{Error, ImportKind, ImportOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// Lines that look like real rows (so parsing gets deep) mixed with arbitrary bytes.
fn file_bytes(header: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[a-z0-9]{1,4},[A-Za-z ,\"]{0,12},[0-9.]{0,4},[0-9-]{0,10},[a-z|]{0,8}",
        "\\PC{0,30}",
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        Just("{\"user_id\": \"u\", \"item_id\": \"i1\", \"rating\": 3}".to_string()),
    ];
    proptest::collection::vec(line, 0..8).prop_map(move |lines| {
        let mut out = header.as_bytes().to_vec();
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out
    })
}

#[test]
fn importers_never_panic_and_rejections_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let catalog = dir.path().join("catalog.csv");
    std::fs::write(&catalog, "item_id,title\ni1,Dune\ni2,Emma\n").unwrap();
    store.import(ImportKind::ItemsCsv, &catalog, &ImportOptions::default(), &mut no_progress()).unwrap();

    let kinds: [(ImportKind, &'static str); 6] = [
        (ImportKind::ItemsCsv, "item_id,title,year,categories\n"),
        (ImportKind::ItemsJsonl, ""),
        (ImportKind::InteractionsCsv, "user_id,item_id,rating,timestamp,text\n"),
        (ImportKind::InteractionsJsonl, ""),
        (ImportKind::Letterboxd, "Date,Name,Year,Letterboxd URI,Rating\n"),
        (ImportKind::Goodreads, "Book Id,Title,Author,My Rating,Exclusive Shelf,Date Read\n"),
    ];
    let config = Config { cases: 64, rng_seed: RngSeed::Fixed(7), failure_persistence: None, ..Config::default() };
    for (kind, header) in kinds {
        let path = dir.path().join(format!("input-{}", kind.name()));
        let opts = ImportOptions { user: Some("me".into()), ..Default::default() };
        let mut runner = TestRunner::new(config.clone());
        runner
            .run(&file_bytes(header), |bytes| {
                std::fs::write(&path, &bytes).unwrap();
                let before = store.stats().unwrap();
                match store.import(kind, &path, &opts, &mut no_progress()) {
                    Ok(_) => {}
                    Err(Error::Input { .. }) => prop_assert_eq!(store.stats().unwrap(), before),
                    Err(other) => prop_assert!(false, "{}: unexpected error {other:?}", kind.name()),
                }
                Ok(())
            })
            .unwrap();
    }
    assert!(store.check_integrity().unwrap().is_empty());
}
