//! The collaborative model: item-item similarity learned from every user's interactions, and the
//! popularity prior. Pure math over plain vectors (the store loads the interactions and keeps the
//! model current, `store/collab.rs`), so `cargo test` covers it.
//!
//! Two similarities, both over the items anyone interacted with:
//! - item-kNN: cosine between item columns of the interaction matrix, each item keeping its
//!   [`CollabParams::neighbors`] most similar items (any catalog size);
//! - EASE (Steck 2019): the closed-form linear item-item model `B = I - P diag(1/diag P)`,
//!   `P = (XᵀX + λI)⁻¹`, with a zero diagonal. Dense and cubic in the item count, so it is built
//!   only up to [`CollabParams::ease_max_items`] items.
//!
//! An interaction's value is its sign: +1 for anything consumed (a rating, "seen", a like), -1
//! for a dislike, so a disliked item pushes its neighbours down in that user's scores.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollabParams {
    /// Neighbours each item keeps in the item-kNN model of a catalog above `ease_max_items`
    /// (smaller ones keep them all).
    pub neighbors: usize,
    /// EASE's L2 regularisation.
    pub ease_lambda: f64,
    /// EASE is built only when at most this many items have interactions (its cost is cubic).
    pub ease_max_items: usize,
}

impl Default for CollabParams {
    fn default() -> Self {
        // λ = 1000: the value that gave EASE + request NDCG@10 0.130 in the offline study of
        // issue 16. 1000 neighbours (8 kB an item) on large catalogs: on MovieLens 100K even
        // 1000 of 1681 reorder some users' top 10 against the full cosine.
        CollabParams { neighbors: 1000, ease_lambda: 1000.0, ease_max_items: 5000 }
    }
}

/// Which item-item similarity scores a user's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Similarity {
    Knn,
    Ease,
}

impl Similarity {
    pub fn parse(name: &str) -> crate::Result<Self> {
        match name {
            "knn" => Ok(Similarity::Knn),
            "ease" => Ok(Similarity::Ease),
            other => Err(crate::Error::InvalidArgument(format!("unknown similarity {other:?} (knn or ease)"))),
        }
    }
}

/// One user's interactions: (item id, value ±1).
pub type History = Vec<(i64, f32)>;

pub struct CollabModel {
    /// Model position -> item id, ascending.
    items: Vec<i64>,
    position: HashMap<i64, u32>,
    /// Distinct users who interacted with each item (any sign).
    popularity: Vec<f32>,
    knn: Vec<Vec<(u32, f32)>>,
    /// Row-major `items × items` EASE weights, when built.
    ease: Option<Vec<f32>>,
    /// Interactions the model was built from.
    pub interactions: usize,
}

impl CollabModel {
    /// Builds both similarities from every user's history (duplicate items in a history count
    /// once, the last value wins).
    pub fn build(histories: &[History], params: CollabParams) -> CollabModel {
        let histories: Vec<History> = histories.iter().map(|h| dedupe(h)).collect();
        let mut items: Vec<i64> = histories.iter().flatten().map(|(i, _)| *i).collect();
        items.sort_unstable();
        items.dedup();
        let position: HashMap<i64, u32> = items.iter().enumerate().map(|(p, i)| (*i, p as u32)).collect();
        let n = items.len();
        let rows: Vec<Vec<(u32, f32)>> =
            histories.iter().map(|h| h.iter().map(|(i, v)| (position[i], *v)).collect()).collect();
        let mut popularity = vec![0f32; n];
        for row in &rows {
            for (p, _) in row {
                popularity[*p as usize] += 1.0;
            }
        }
        // Users of each item with their value: the columns, for co-occurrence by accumulation.
        let mut by_item: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for (u, row) in rows.iter().enumerate() {
            for (p, v) in row {
                by_item[*p as usize].push((u as u32, *v));
            }
        }
        // Up to EASE's size every neighbour is kept (no larger than EASE's own matrix).
        let keep = if n <= params.ease_max_items { n } else { params.neighbors };
        let knn = knn_neighbors(&rows, &by_item, &popularity, keep);
        let ease = (n > 0 && n <= params.ease_max_items).then(|| ease_weights(&rows, n, params.ease_lambda));
        let interactions = rows.iter().map(Vec::len).sum();
        CollabModel { items, position, popularity, knn, ease, interactions }
    }

    pub fn items(&self) -> &[i64] {
        &self.items
    }

    pub fn has_ease(&self) -> bool {
        self.ease.is_some()
    }

    /// Users who interacted with `item` (0 for an item nobody has).
    pub fn popularity(&self, item: i64) -> f32 {
        self.position_of(item).map_or(0.0, |p| self.popularity[p])
    }

    /// EASE when it was built, item-kNN otherwise.
    pub fn best_similarity(&self) -> Similarity {
        if self.has_ease() {
            Similarity::Ease
        } else {
            Similarity::Knn
        }
    }

    /// Score of every model item (indexed like [`CollabModel::items`]) for the seeds `history`:
    /// `Σ value(h) · sim(h, item)`. With [`Similarity::Ease`] and no EASE model, item-kNN.
    pub fn scores(&self, history: &[(i64, f32)], similarity: Similarity) -> Vec<f32> {
        let mut out = vec![0f32; self.items.len()];
        for (item, value) in dedupe(history) {
            let Some(&p) = self.position.get(&item) else { continue };
            match (similarity, &self.ease) {
                (Similarity::Ease, Some(b)) => {
                    let n = self.items.len();
                    let row = &b[p as usize * n..(p as usize + 1) * n];
                    for (o, w) in out.iter_mut().zip(row) {
                        *o += value * w;
                    }
                }
                _ => {
                    for (q, s) in &self.knn[p as usize] {
                        out[*q as usize] += value * s;
                    }
                }
            }
        }
        out
    }

    /// `sim(seed, item)` for one pair (0 when either is unknown or they are not neighbours).
    pub fn similarity(&self, seed: i64, item: i64, similarity: Similarity) -> f32 {
        let (Some(&a), Some(&b)) = (self.position.get(&seed), self.position.get(&item)) else { return 0.0 };
        match (similarity, &self.ease) {
            (Similarity::Ease, Some(w)) => w[a as usize * self.items.len() + b as usize],
            // Neighbour lists are ordered by position.
            _ => {
                let list = &self.knn[a as usize];
                list.binary_search_by_key(&b, |(q, _)| *q).map_or(0.0, |at| list[at].1)
            }
        }
    }

    /// The position of `item` in [`CollabModel::items`] (and in [`CollabModel::scores`]).
    pub fn position_of(&self, item: i64) -> Option<usize> {
        self.position.get(&item).map(|p| *p as usize)
    }
}

/// The saved form's first bytes and version: a file of another layout is rebuilt, not misread.
const MAGIC: &[u8; 8] = b"MRRCOLB1";

impl CollabModel {
    /// The model as bytes (little-endian): `generation` (what it was built from), then its
    /// parts. [`CollabModel::from_bytes`] reads it back.
    pub fn to_bytes(&self, generation: i64) -> Vec<u8> {
        let n = self.items.len();
        let mut out = Vec::with_capacity(40 + n * 16 + self.ease.as_ref().map_or(0, |e| e.len() * 4));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&(self.interactions as u64).to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.push(u8::from(self.ease.is_some()));
        for (item, pop) in self.items.iter().zip(&self.popularity) {
            out.extend_from_slice(&item.to_le_bytes());
            out.extend_from_slice(&pop.to_le_bytes());
        }
        for list in &self.knn {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (q, s) in list {
                out.extend_from_slice(&q.to_le_bytes());
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        for w in self.ease.iter().flatten() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// (generation, model) from [`CollabModel::to_bytes`]; `None` for anything else (another
    /// layout, a cut-off or damaged file): the caller rebuilds.
    pub fn from_bytes(bytes: &[u8]) -> Option<(i64, CollabModel)> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return None;
        }
        let generation = i64::from_le_bytes(r.array()?);
        let interactions = u64::from_le_bytes(r.array()?) as usize;
        let n = u64::from_le_bytes(r.array()?) as usize;
        let has_ease = r.take(1)?[0] == 1;
        let (mut items, mut popularity) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            items.push(i64::from_le_bytes(r.array()?));
            popularity.push(f32::from_le_bytes(r.array()?));
        }
        let mut knn = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32::from_le_bytes(r.array()?) as usize;
            let mut list = Vec::with_capacity(len.min(n));
            for _ in 0..len {
                let q = u32::from_le_bytes(r.array()?);
                if q as usize >= n {
                    return None;
                }
                list.push((q, f32::from_le_bytes(r.array()?)));
            }
            knn.push(list);
        }
        let ease = if has_ease {
            let raw = r.take(n.checked_mul(n)?.checked_mul(4)?)?;
            Some(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
        } else {
            None
        };
        if r.at != bytes.len() {
            return None;
        }
        let position = items.iter().enumerate().map(|(p, i)| (*i, p as u32)).collect();
        Some((generation, CollabModel { items, position, popularity, knn, ease, interactions }))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// The history with one entry per item, the last value winning, ordered by item id.
fn dedupe(history: &[(i64, f32)]) -> History {
    let mut last: HashMap<i64, f32> = HashMap::with_capacity(history.len());
    for (item, value) in history {
        last.insert(*item, *value);
    }
    let mut out: History = last.into_iter().collect();
    out.sort_unstable_by_key(|(i, _)| *i);
    out
}

/// Cosine between the (signed) item columns, the `keep` largest per item (ties by position).
fn knn_neighbors(
    rows: &[Vec<(u32, f32)>],
    by_item: &[Vec<(u32, f32)>],
    popularity: &[f32],
    keep: usize,
) -> Vec<Vec<(u32, f32)>> {
    let n = by_item.len();
    // |column|² = number of users (values are ±1).
    let norms: Vec<f32> = popularity.iter().map(|c| c.sqrt().max(f32::MIN_POSITIVE)).collect();
    let mut acc = vec![0f32; n];
    let mut marked = vec![false; n];
    let mut touched: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for (p, users) in by_item.iter().enumerate() {
        for &(u, own) in users {
            for (q, v) in &rows[u as usize] {
                if *q as usize == p {
                    continue;
                }
                if !marked[*q as usize] {
                    marked[*q as usize] = true;
                    touched.push(*q);
                }
                acc[*q as usize] += own * v;
            }
        }
        let mut scored: Vec<(u32, f32)> = touched
            .iter()
            .map(|&q| (q, acc[q as usize] / (norms[p] * norms[q as usize])))
            .filter(|(_, s)| *s != 0.0)
            .collect();
        for &q in &touched {
            acc[q as usize] = 0.0;
            marked[q as usize] = false;
        }
        touched.clear();
        scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(keep);
        scored.sort_unstable_by_key(|(q, _)| *q);
        out.push(scored);
    }
    out
}

/// EASE's weights, row-major `n × n` (rows: the seed item, columns: the scored item).
fn ease_weights(rows: &[Vec<(u32, f32)>], n: usize, lambda: f64) -> Vec<f32> {
    let mut g = vec![0f64; n * n];
    for row in rows {
        for (a, va) in row {
            let line = &mut g[*a as usize * n..(*a as usize + 1) * n];
            for (b, vb) in row {
                line[*b as usize] += f64::from(*va * *vb);
            }
        }
    }
    for i in 0..n {
        g[i * n + i] += lambda;
    }
    invert_spd(&mut g, n);
    // B[i][j] = -P[i][j] / P[j][j], zero diagonal.
    let diag: Vec<f64> = (0..n).map(|j| g[j * n + j]).collect();
    let mut b = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                b[i * n + j] = (-g[i * n + j] / diag[j]) as f32;
            }
        }
    }
    b
}

/// In-place inverse of a symmetric positive-definite row-major matrix (Gauss-Jordan; no pivoting
/// is needed for SPD). The row updates, `n³` multiply-adds, run on all cores.
pub(crate) fn invert_spd(a: &mut [f64], n: usize) {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
    let mut pivot_row = vec![0f64; n];
    for k in 0..n {
        let p = a[k * n + k];
        a[k * n + k] = 1.0;
        for j in 0..n {
            a[k * n + j] /= p;
        }
        pivot_row.copy_from_slice(&a[k * n..(k + 1) * n]);
        let pivot = &pivot_row;
        let eliminate = |start: usize, chunk: &mut [f64]| {
            for (r, line) in chunk.chunks_mut(n).enumerate() {
                if start + r == k {
                    continue;
                }
                let f = line[k];
                if f == 0.0 {
                    continue;
                }
                line[k] = 0.0;
                for (x, y) in line.iter_mut().zip(pivot) {
                    *x -= f * y;
                }
            }
        };
        if threads > 1 && n >= 256 {
            let rows_per = n.div_ceil(threads);
            std::thread::scope(|s| {
                for (t, chunk) in a.chunks_mut(rows_per * n).enumerate() {
                    let eliminate = &eliminate;
                    s.spawn(move || eliminate(t * rows_per, chunk));
                }
            });
        } else {
            eliminate(0, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histories() -> Vec<History> {
        // Items 1 and 2 always together, 3 with 1 once, 4 alone.
        vec![vec![(1, 1.0), (2, 1.0)], vec![(1, 1.0), (2, 1.0), (3, 1.0)], vec![(2, 1.0), (1, 1.0)], vec![(4, 1.0)]]
    }

    #[test]
    fn knn_is_cosine_of_item_columns() {
        let m = CollabModel::build(&histories(), CollabParams::default());
        assert_eq!(m.items(), &[1, 2, 3, 4]);
        // 1 and 2: 3 shared users / (√3·√3) = 1; 1 and 3: 1 / (√3·1).
        assert!((m.similarity(1, 2, Similarity::Knn) - 1.0).abs() < 1e-6);
        assert!((m.similarity(1, 3, Similarity::Knn) - 1.0 / 3f32.sqrt()).abs() < 1e-6);
        assert_eq!(m.similarity(1, 4, Similarity::Knn), 0.0);
        assert_eq!(m.similarity(1, 1, Similarity::Knn), 0.0, "no self-similarity");
        assert_eq!(m.popularity(1), 3.0);
        assert_eq!(m.popularity(99), 0.0);
    }

    #[test]
    fn knn_keeps_the_most_similar_neighbours() {
        let m =
            CollabModel::build(&histories(), CollabParams { neighbors: 1, ease_max_items: 3, ..Default::default() });
        assert!(m.similarity(1, 2, Similarity::Knn) > 0.0);
        assert_eq!(m.similarity(1, 3, Similarity::Knn), 0.0, "dropped: only the best neighbour is kept");
    }

    #[test]
    fn a_dislike_pushes_similar_items_down() {
        let m = CollabModel::build(&histories(), CollabParams::default());
        let liked = m.scores(&[(1, 1.0)], Similarity::Knn);
        let disliked = m.scores(&[(1, -1.0)], Similarity::Knn);
        let at = |item: i64| m.items().iter().position(|i| *i == item).unwrap();
        assert!(liked[at(2)] > 0.0 && disliked[at(2)] < 0.0);
        assert_eq!(m.scores(&[(99, 1.0)], Similarity::Knn), vec![0.0; 4], "unknown seeds score nothing");
    }

    #[test]
    fn ease_solves_its_closed_form() {
        let h = histories();
        let lambda = 0.5;
        let m = CollabModel::build(&h, CollabParams { ease_lambda: lambda, ..Default::default() });
        assert!(m.has_ease());
        // Check B against the definition: G·P = I with G = XᵀX + λI, B = -P/diag(P) off-diagonal.
        let n = 4;
        let mut g = vec![0f64; n * n];
        for row in &h {
            for (a, _) in row {
                for (b, _) in row {
                    g[(*a as usize - 1) * n + (*b as usize - 1)] += 1.0;
                }
            }
        }
        let mut p = g.clone();
        for i in 0..n {
            p[i * n + i] += lambda;
            g[i * n + i] += lambda;
        }
        invert_spd(&mut p, n);
        for i in 0..n {
            for j in 0..n {
                let gp: f64 = (0..n).map(|k| g[i * n + k] * p[k * n + j]).sum();
                assert!((gp - f64::from(u8::from(i == j))).abs() < 1e-9, "G·P = I at {i},{j}");
                let expected = if i == j { 0.0 } else { -p[i * n + j] / p[j * n + j] };
                let got = m.similarity(i as i64 + 1, j as i64 + 1, Similarity::Ease);
                assert!((f64::from(got) - expected).abs() < 1e-6, "B[{i}][{j}]");
            }
        }
        // Item 2 is what a user with item 1 gets first.
        let s = m.scores(&[(1, 1.0)], Similarity::Ease);
        assert!(s[1] > s[2] && s[2] > s[3]);
    }

    #[test]
    fn ease_is_skipped_above_its_size_limit() {
        let m = CollabModel::build(&histories(), CollabParams { ease_max_items: 3, ..Default::default() });
        assert!(!m.has_ease());
        assert_eq!(m.best_similarity(), Similarity::Knn);
        assert_eq!(m.scores(&[(1, 1.0)], Similarity::Ease), m.scores(&[(1, 1.0)], Similarity::Knn));
    }

    #[test]
    fn the_saved_model_reads_back_the_same_and_damage_is_refused() {
        let h = histories();
        for params in [CollabParams::default(), CollabParams { ease_max_items: 3, ..Default::default() }] {
            let m = CollabModel::build(&h, params);
            let bytes = m.to_bytes(42);
            let (generation, back) = CollabModel::from_bytes(&bytes).expect("reads back");
            assert_eq!(generation, 42);
            assert_eq!((back.items(), back.interactions, back.has_ease()), (m.items(), m.interactions, m.has_ease()));
            for s in [Similarity::Knn, Similarity::Ease] {
                assert_eq!(back.scores(&[(1, 1.0), (3, -1.0)], s), m.scores(&[(1, 1.0), (3, -1.0)], s));
            }
            assert_eq!(back.popularity(2), m.popularity(2));
            assert!(CollabModel::from_bytes(&bytes[..bytes.len() - 1]).is_none(), "cut off");
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(CollabModel::from_bytes(&longer).is_none(), "trailing bytes");
            assert!(CollabModel::from_bytes(b"MRRCOLB0").is_none(), "another layout");
        }
    }

    #[test]
    fn inverse_of_a_larger_spd_matrix() {
        let n = 300; // above the threaded threshold's half: both paths agree with the identity check
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1.0 + (i as f64 - j as f64).abs());
            }
            a[i * n + i] += n as f64;
        }
        let original = a.clone();
        invert_spd(&mut a, n);
        for i in (0..n).step_by(37) {
            for j in (0..n).step_by(41) {
                let v: f64 = (0..n).map(|k| original[i * n + k] * a[k * n + j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-9);
            }
        }
    }
}
