//! Collaborative grounding over the real MovieLens 100K store: the interactions generation that
//! tells the collaborative index how much changed, feedback reaching a user's scores at once, and
//! the fused ranking's exclusions.

mod common;

use common::*;
use mrrec_core::grounding::Weights;
use mrrec_core::store::GroundRequest;
use mrrec_core::{ImportKind, ImportOptions};

fn interactions_generation(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("memory.sqlite3")).unwrap();
    conn.query_row("SELECT value FROM meta WHERE key = 'interactions_generation'", [], |r| r.get(0)).unwrap()
}

#[test]
fn the_generation_counts_interaction_changes_and_feedback_counts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.import(ImportKind::MovieLens100k, &ml100k(), &ImportOptions::default(), &mut no_progress()).unwrap();
    embed_all(&store);
    assert_eq!(interactions_generation(dir.path()), 100_000, "one per imported record");
    let report = store.rebuild_collab().unwrap();
    assert_eq!((report.items, report.interactions, report.ease), (1682, 100_000, true));

    let cf = Weights::from_pairs([("user_cf", 1.0)]).unwrap();
    let ask = GroundRequest { user: Some("1".into()), ..Default::default() };
    let before: Vec<i64> = store.ground_fused(&ask, &cf, 20).unwrap().iter().map(|g| g.hit.item_id).collect();
    let seen = store.consumed_item_ids("1").unwrap();
    assert!(before.iter().all(|i| !seen.contains(i)));

    // A dislike of the top pick: recorded, counted, and at once out of the list (seen) with
    // its neighbours pushed down, without rebuilding the item-item model (1 change < 1%).
    let top = store.items_by_id(&before[..1]).unwrap().remove(0);
    store.add_feedback("1", &top.ext_id, None, Some("Disliked it."), "feedback:dislike", 0).unwrap();
    assert_eq!(interactions_generation(dir.path()), 100_001);
    let after: Vec<i64> = store.ground_fused(&ask, &cf, 20).unwrap().iter().map(|g| g.hit.item_id).collect();
    assert!(!after.contains(&top.item_id));
    assert_ne!(after, before[1..].to_vec(), "the dislike changed the others' order too");

    // Every signal in use, with a request and a profile vector: one list, no seen item.
    let all = Weights::from_pairs([
        ("profile", 0.5),
        ("request", 1.0),
        ("user_cf", 1.0),
        ("seed_cf", 0.5),
        ("popularity", 0.2),
    ])
    .unwrap();
    let full = GroundRequest {
        user: Some("1".into()),
        request: Some(hash_embed("a comedy")),
        profile: Some(hash_embed("a comedy like Fargo")),
        profile_text: Some("A comedy like Fargo (1996).".into()),
        ..Default::default()
    };
    let items = store.ground_fused(&full, &all, 10).unwrap();
    assert_eq!(items.len(), 10);
    let seen = store.consumed_item_ids("1").unwrap();
    assert!(items.iter().all(|g| !seen.contains(&g.hit.item_id)));
    for g in &items {
        assert!((g.contributions.iter().sum::<f32>() - g.hit.score).abs() < 1e-4);
    }
}

#[test]
fn the_index_is_saved_for_the_next_process_and_a_damaged_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Weights::from_pairs([("user_cf", 1.0)]).unwrap();
    let ask = GroundRequest { user: Some("7".into()), ..Default::default() };
    let top = |store: &mrrec_core::MemoryStore| -> Vec<i64> {
        store.ground_fused(&ask, &cf, 20).unwrap().iter().map(|g| g.hit.item_id).collect()
    };
    let first = {
        let store = open(dir.path());
        store.import(ImportKind::MovieLens100k, &ml100k(), &ImportOptions::default(), &mut no_progress()).unwrap();
        embed_all(&store);
        top(&store)
    };
    let saved = dir.path().join(mrrec_core::store::COLLAB_FILE);
    let size = std::fs::metadata(&saved).unwrap().len();
    assert!(size > 1682 * 1682 * 4, "EASE's weights are saved");
    assert_eq!(top(&open(dir.path())), first, "read back by the next process");
    std::fs::write(&saved, b"MRRCOLB1 cut off").unwrap();
    assert_eq!(top(&open(dir.path())), first, "rebuilt from the records");
    assert_eq!(std::fs::metadata(&saved).unwrap().len(), size, "and saved again");
}
