//! Ranking metrics over many queries with binary relevance: Recall@k and NDCG@k.

use std::collections::HashSet;

/// Recall@k: the share of a query's relevant items found in its top `k`.
pub fn recall_at_k(ranked: &[i64], relevant: &[i64], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let rel: HashSet<i64> = relevant.iter().copied().collect();
    let hits = ranked.iter().take(k).collect::<HashSet<_>>().into_iter().filter(|i| rel.contains(i)).count();
    hits as f64 / rel.len() as f64
}

/// NDCG@k with gains of 1 for relevant items and log2 position discounts.
pub fn ndcg_at_k(ranked: &[i64], relevant: &[i64], k: usize) -> f64 {
    let rel: HashSet<i64> = relevant.iter().copied().collect();
    if rel.is_empty() {
        return 0.0;
    }
    let mut seen = HashSet::new();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, item)| rel.contains(item) && seen.insert(**item))
        .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..rel.len().min(k)).map(|i| 1.0 / (i as f64 + 2.0).log2()).sum();
    dcg / ideal
}

/// Per-query metric values for each cut-off: `out[c][q]` is metric at `ks[c]` for query `q`.
pub fn per_query(
    rankings: &[Vec<i64>],
    relevant: &[Vec<i64>],
    ks: &[usize],
    metric: fn(&[i64], &[i64], usize) -> f64,
) -> Vec<Vec<f64>> {
    ks.iter().map(|&k| rankings.iter().zip(relevant).map(|(r, rel)| metric(r, rel, k)).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_target() {
        assert_eq!(recall_at_k(&[5, 3, 9], &[3], 2), 1.0);
        assert_eq!(recall_at_k(&[5, 3, 9], &[9], 2), 0.0);
        assert!((ndcg_at_k(&[5, 3, 9], &[3], 10) - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(ndcg_at_k(&[3], &[3], 1), 1.0);
        assert_eq!(ndcg_at_k(&[1, 2], &[], 10), 0.0);
    }

    #[test]
    fn duplicates_count_once() {
        assert_eq!(ndcg_at_k(&[3, 3], &[3], 2), 1.0);
    }

    proptest! {
        #![proptest_config(crate::deterministic_proptest())]
        #[test]
        fn metrics_are_bounded(ranked in proptest::collection::vec(0i64..50, 0..30),
                               relevant in proptest::collection::vec(0i64..50, 0..5),
                               k in 1usize..40) {
            let n = ndcg_at_k(&ranked, &relevant, k);
            let r = recall_at_k(&ranked, &relevant, k);
            prop_assert!((0.0..=1.0 + 1e-12).contains(&n));
            prop_assert!((0.0..=1.0).contains(&r));
        }
    }
}
