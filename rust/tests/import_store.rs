mod common;

use common::*;
use mrrec_core::{ImportKind, ImportOptions, MemoryFilter, NewMemory, SearchMode, Tier};

#[test]
fn movielens_100k_import_counts_and_reimport_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = ImportOptions { keywords: Some(keywords_csv()), ..Default::default() };
    let report = store.import(ImportKind::MovieLens100k, &ml100k(), &opts, &mut no_progress()).unwrap();
    assert_eq!(report.items_added, 1682);
    assert_eq!(report.users_added, 943);
    assert_eq!(report.records_added, 100_000);
    assert!(report.keywords_matched >= 1390, "keywords matched {}", report.keywords_matched);
    let stats = store.stats().unwrap();
    assert_eq!((stats.users, stats.items, stats.interactions), (943, 1682, 100_000));
    assert_eq!(stats.memory_by_tier[Tier::Behavior as usize], 100_000);
    assert_eq!(stats.pending_item_embeddings, 1682);
    // Behavior entries without review text borrow their item's vector: nothing else to embed.
    assert_eq!(stats.pending_memory_embeddings, 0);

    let again =
        store.import(ImportKind::MovieLens100k, &ml100k(), &ImportOptions::default(), &mut no_progress()).unwrap();
    assert_eq!((again.records_added, again.records_skipped, again.items_added), (0, 100_000, 0));
    assert_eq!(store.stats().unwrap().interactions, 100_000);
    assert!(store.check_integrity().unwrap().is_empty());
}

#[test]
fn hybrid_search_filters_and_forget_removes_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.import(ImportKind::MovieLens100k, &ml100k(), &ImportOptions::default(), &mut no_progress()).unwrap();
    embed_all(&store);

    let query = "star wars space adventure";
    let filter = MemoryFilter { user: Some("1".into()), tiers: vec![Tier::Behavior], ..Default::default() };
    let hits = store.search_memory(Some(&hash_embed(query)), Some(query), 5, &filter, SearchMode::Hybrid).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.entry.user.as_deref() == Some("1") && h.entry.tier == Tier::Behavior));
    assert!(hits[0].entry.text.contains("Star Wars"), "top hit: {}", hits[0].entry.text);
    assert!(hits[0].dense_score.is_some() && hits[0].lexical_score.is_some());

    // Category filter and exclusion.
    let filter = MemoryFilter {
        user: Some("1".into()),
        categories: vec!["Horror".into()],
        exclude: vec![hits[0].entry.id],
        ..Default::default()
    };
    let horror =
        store.search_memory(Some(&hash_embed("scary")), Some("scary night"), 10, &filter, SearchMode::Hybrid).unwrap();
    assert!(!horror.is_empty());
    assert!(horror.iter().all(|h| h.entry.categories.iter().any(|c| c == "Horror")));

    // Global memory passes the user filter; a pattern entry is found lexically and densely.
    let pattern = NewMemory {
        tier: Some(Tier::Pattern),
        user: Some("1".into()),
        categories: vec!["Sci-Fi".into()],
        text: "Loves zyzzyva space operas with practical effects".into(),
        source_ids: vec![1, 2],
        vector: Some(hash_embed("Loves zyzzyva space operas with practical effects")),
    };
    let pid = store.add_memory(&pattern).unwrap();
    let gid = store
        .add_memory(&NewMemory {
            tier: Some(Tier::Global),
            text: "tone: zyzzyva dark versus light".into(),
            vector: Some(hash_embed("tone: zyzzyva dark versus light")),
            ..Default::default()
        })
        .unwrap();
    let filter = MemoryFilter { user: Some("1".into()), ..Default::default() };
    let found = store.search_memory(None, Some("zyzzyva"), 10, &filter, SearchMode::Lexical).unwrap();
    let ids: Vec<i64> = found.iter().map(|h| h.entry.id).collect();
    assert!(ids.contains(&pid) && ids.contains(&gid), "{ids:?}");
    let other_user = MemoryFilter { user: Some("2".into()), ..Default::default() };
    let found = store.search_memory(None, Some("zyzzyva"), 10, &other_user, SearchMode::Lexical).unwrap();
    assert_eq!(found.iter().map(|h| h.entry.id).collect::<Vec<_>>(), vec![gid]);
    let dense =
        store.search_memory(Some(&hash_embed("zyzzyva space operas")), None, 3, &filter, SearchMode::Dense).unwrap();
    assert_eq!(dense[0].entry.id, pid);

    // Forget: gone from SQLite, FTS and the dense index.
    assert_eq!(store.forget_memory(&[pid]).unwrap(), 1);
    assert!(store.get_memory(pid).is_err());
    let found = store.search_memory(None, Some("zyzzyva"), 10, &filter, SearchMode::Lexical).unwrap();
    assert!(found.iter().all(|h| h.entry.id != pid));
    let dense =
        store.search_memory(Some(&hash_embed("zyzzyva space operas")), None, 50, &filter, SearchMode::Dense).unwrap();
    assert!(dense.iter().all(|h| h.entry.id != pid));
    assert!(store.check_integrity().unwrap().is_empty());
}

#[test]
fn grounding_excludes_consumed_items_and_indexes_survive_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.import(ImportKind::MovieLens100k, &ml100k(), &ImportOptions::default(), &mut no_progress()).unwrap();
    embed_all(&store);
    // Items are found by full id or, when unambiguous, the id without its source prefix; LIKE
    // wildcards in the text match nothing.
    assert_eq!(store.item("ml100k:50").unwrap().title, "Star Wars");
    assert_eq!(store.item("50").unwrap().title, "Star Wars");
    assert!(matches!(store.item("5%"), Err(mrrec_core::Error::NotFound(_))));
    assert!(matches!(store.item("_0"), Err(mrrec_core::Error::NotFound(_))));
    let seen = store.consumed_item_ids("1").unwrap();
    assert_eq!(seen.len(), 272);
    let v = hash_embed("Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War.");
    let all = store.ground(&v, 10, None, false, &[], &[]).unwrap();
    assert_eq!(all[0].title, "Star Wars");
    let unseen = store.ground(&v, 10, Some("1"), false, &[], &[]).unwrap();
    assert_eq!(unseen.len(), 10);
    assert!(unseen.iter().all(|h| !seen.contains(&h.item_id)));
    let comedies = store.ground(&v, 5, Some("1"), false, &["Comedy".into()], &[]).unwrap();
    assert!(comedies.iter().all(|h| h.categories.iter().any(|c| c == "Comedy")));
    store.flush().unwrap();
    drop(store);

    // A saved index is loaded as is; a deleted or corrupted one is rebuilt from SQLite.
    let store = open(dir.path());
    let report = store.open_indexes().unwrap();
    assert!(!report.memory_rebuilt && !report.catalog_rebuilt);
    // Behavior entries without reviews borrow their item's vector: only items are indexed.
    assert_eq!((report.memory_vectors, report.catalog_vectors), (0, 1682));
    drop(store);
    std::fs::remove_file(dir.path().join("catalog.usearch")).unwrap();
    std::fs::write(dir.path().join("memory.usearch"), b"not an index").unwrap();
    let store = open(dir.path());
    let report = store.open_indexes().unwrap();
    assert!(report.memory_rebuilt && report.catalog_rebuilt);
    assert_eq!(report.catalog_vectors, 1682);
    let again = store.ground(&v, 10, Some("1"), false, &[], &[]).unwrap();
    assert_eq!(again, unseen);
}
