//! Fused grounding: the named signals that rank catalog items for a request, each normalised
//! over the candidates (a z-score, soft-clipped at ±[`SATURATION`]) and summed with weights fit
//! on the train split
//! (`mrrec_edge.grounding`). The store computes the signals (`store/collab.rs`); this module owns
//! their names, the normalisation and the fusion, so every caller ranks the same way.

use crate::error::{Error, Result};

/// The signals, in the order of [`Weights`] and of every per-signal vector.
pub const SIGNALS: [&str; 5] = ["profile", "request", "user_cf", "seed_cf", "popularity"];
pub const PROFILE: usize = 0;
pub const REQUEST: usize = 1;
pub const USER_CF: usize = 2;
pub const SEED_CF: usize = 3;
pub const POPULARITY: usize = 4;

/// Where a normalised signal saturates: `z ↦ S·tanh(z/S)`. The collaborative scores are
/// heavy-tailed (z up to ~15 for a few dozen items, where the text signals stay within ±3.5),
/// so without it a handful of co-watched items outrank everything the request asks for.
/// Measured: docs/RESULTS.md, "soft-clipped signals".
pub const SATURATION: f32 = 3.0;

/// One weight per signal, in [`SIGNALS`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights(pub [f32; SIGNALS.len()]);

impl Weights {
    /// Weights by signal name; signals not named weigh 0. Unknown names or non-finite weights
    /// are errors (a typo would silently drop a signal).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, f32)>) -> Result<Weights> {
        let mut w = [0f32; SIGNALS.len()];
        for (name, value) in pairs {
            let Some(at) = SIGNALS.iter().position(|s| *s == name) else {
                return Err(Error::InvalidArgument(format!(
                    "unknown grounding signal {name:?} (one of {})",
                    SIGNALS.join(", ")
                )));
            };
            if !value.is_finite() {
                return Err(Error::InvalidArgument(format!("grounding weight {name} = {value} is not finite")));
            }
            w[at] = value;
        }
        Ok(Weights(w))
    }

    pub fn uses(&self, signal: usize) -> bool {
        self.0[signal] != 0.0
    }
}

/// Raw signal values over the candidates: `values[s][c]` for signal `s`, candidate `c`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    pub items: Vec<i64>,
    pub values: [Vec<f32>; SIGNALS.len()],
    /// Added to each candidate's fused score by what the conversation ruled out or asked for
    /// (empty: nothing). Not a fitted signal: the evaluation's requests carry no such thing.
    pub adjustment: Vec<f32>,
}

impl Signals {
    /// Each signal as z-scores over the candidates, soft-clipped at ±[`SATURATION`]; a signal
    /// that is constant over them (absent: no history, no seeds, no profile) becomes all zeros
    /// and so carries no weight.
    pub fn normalize(&mut self) {
        for v in self.values.iter_mut() {
            *v = Self::zscores(std::mem::take(v));
            for x in v.iter_mut() {
                *x = SATURATION * (*x / SATURATION).tanh();
            }
        }
    }

    /// `v` as z-scores; all zeros when `v` is constant.
    pub fn zscores(mut v: Vec<f32>) -> Vec<f32> {
        let n = v.len().max(1) as f64;
        let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        let var = v.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        for x in v.iter_mut() {
            *x = if sd > 1e-12 { ((f64::from(*x) - mean) / sd) as f32 } else { 0.0 };
        }
        v
    }

    /// Each candidate's weighted contributions, per signal.
    pub fn contributions(&self, weights: &Weights, candidate: usize) -> [f32; SIGNALS.len()] {
        std::array::from_fn(|s| weights.0[s] * self.values[s][candidate])
    }

    /// The fused score of every candidate: `Σ_s w_s · z_s`, plus its adjustment.
    pub fn fuse(&self, weights: &Weights) -> Vec<f32> {
        let mut out = vec![0f32; self.items.len()];
        for (o, a) in out.iter_mut().zip(&self.adjustment) {
            *o += a;
        }
        for (s, v) in self.values.iter().enumerate() {
            let w = weights.0[s];
            if w != 0.0 {
                for (o, x) in out.iter_mut().zip(v) {
                    *o += w * x;
                }
            }
        }
        out
    }

    /// The `k` best candidates by fused score, ties by smaller item id: (position, score).
    pub fn top(&self, weights: &Weights, k: usize) -> Vec<(usize, f32)> {
        let scores = self.fuse(weights);
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        let cmp = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(self.items[*a].cmp(&self.items[*b]));
        if order.len() > k {
            order.select_nth_unstable_by(k, cmp);
            order.truncate(k);
        }
        order.sort_unstable_by(cmp);
        order.into_iter().map(|c| (c, scores[c])).collect()
    }
}

/// Items a profile names as "Title (Year)": for each "(YYYY)" in `text`, the longest title of
/// that year that ends right before it, on a word boundary. `titles_of_year(year)` lists the
/// catalog's (lower-cased title, item id) pairs of a year.
pub fn named_items<'a>(text: &str, titles_of_year: impl Fn(i32) -> &'a [(String, i64)]) -> Vec<i64> {
    let lower = text.to_lowercase();
    let bytes = lower.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = lower[from..].find('(').map(|p| p + from) {
        from = open + 1;
        let close = open + 5;
        if close >= bytes.len() || bytes[close] != b')' || !bytes[open + 1..close].iter().all(u8::is_ascii_digit) {
            continue;
        }
        let year: i32 = lower[open + 1..close].parse().expect("four digits");
        let before = lower[..open].trim_end();
        let best = titles_of_year(year)
            .iter()
            .filter(|(title, _)| {
                !title.is_empty()
                    && before.ends_with(title.as_str())
                    && before[..before.len() - title.len()].chars().next_back().is_none_or(|c| !c.is_alphanumeric())
            })
            .max_by_key(|(title, id)| (title.len(), std::cmp::Reverse(*id)));
        if let Some((_, id)) = best {
            if !out.contains(id) {
                out.push(*id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals() -> Signals {
        Signals {
            items: vec![10, 11, 12, 13],
            values: [
                vec![0.9, 0.1, 0.5, 0.5],
                vec![1.0, 1.0, 1.0, 1.0], // constant: no information
                vec![0.0, 3.0, 0.0, 1.0],
                vec![0.0; 4],
                vec![5.0, 1.0, 2.0, 2.0],
            ],
            adjustment: Vec::new(),
        }
    }

    #[test]
    fn normalising_gives_soft_clipped_z_scores_and_drops_constant_signals() {
        let mut s = signals();
        let raw = s.values.clone();
        s.normalize();
        for (v, r) in s.values.iter().zip(&raw) {
            let z = Signals::zscores(r.clone());
            for (x, z) in v.iter().zip(&z) {
                assert!((x - SATURATION * (z / SATURATION).tanh()).abs() < 1e-6);
            }
        }
        assert_eq!(s.values[REQUEST], vec![0.0; 4]);
        assert_eq!(s.values[SEED_CF], vec![0.0; 4]);
        let sd = (Signals::zscores(raw[PROFILE].clone()).iter().map(|x| x * x).sum::<f32>() / 4.0).sqrt();
        assert!((sd - 1.0).abs() < 1e-5);
    }

    #[test]
    fn one_outlier_no_longer_outweighs_everything_else() {
        // 99 items at 0 and one at 100: its z is ~9.9; soft-clipped, it stays below 3.
        let mut s = Signals { items: (0..100).collect(), values: Default::default(), adjustment: Vec::new() };
        s.values[USER_CF] = (0..100).map(|i| if i == 0 { 100.0 } else { 0.0 }).collect();
        s.values[REQUEST] = (0..100).map(|i| i as f32).collect();
        s.normalize();
        assert!(Signals::zscores(vec![100.0].into_iter().chain(std::iter::repeat_n(0.0, 99)).collect())[0] > 9.0);
        assert!(s.values[USER_CF][0] < SATURATION && s.values[USER_CF][0] > 2.9);
        // The item the request likes most beats the outlier when both signals weigh the same.
        let even = Weights::from_pairs([("request", 1.0), ("user_cf", 1.0)]).unwrap();
        assert_eq!(s.items[s.top(&even, 1)[0].0], 99);
    }

    #[test]
    fn fusion_is_the_weighted_sum_and_ties_go_to_the_smaller_id() {
        let mut s = signals();
        s.normalize();
        let profile_only = Weights::from_pairs([("profile", 1.0)]).unwrap();
        assert_eq!(s.top(&profile_only, 4).iter().map(|(p, _)| s.items[*p]).collect::<Vec<_>>(), vec![10, 12, 13, 11]);
        let cf_only = Weights::from_pairs([("user_cf", 1.0)]).unwrap();
        assert_eq!(s.top(&cf_only, 2).iter().map(|(p, _)| s.items[*p]).collect::<Vec<_>>(), vec![11, 13]);
        let both = Weights::from_pairs([("profile", 1.0), ("user_cf", 1.0)]).unwrap();
        let fused = s.fuse(&both);
        for (c, total) in fused.iter().enumerate() {
            let parts = s.contributions(&both, c);
            assert!((parts.iter().sum::<f32>() - total).abs() < 1e-6);
        }
    }

    #[test]
    fn an_adjustment_adds_to_the_fused_score() {
        let mut s = signals();
        s.normalize();
        let profile_only = Weights::from_pairs([("profile", 1.0)]).unwrap();
        let before = s.fuse(&profile_only);
        s.adjustment = vec![0.0, 0.0, -3.0, 0.0];
        let after = s.fuse(&profile_only);
        assert_eq!(after[2], before[2] - 3.0);
        assert_eq!((after[0], after[3]), (before[0], before[3]));
        assert_eq!(s.top(&profile_only, 4).iter().map(|(p, _)| s.items[*p]).collect::<Vec<_>>(), vec![10, 13, 11, 12]);
        assert_eq!(Signals::zscores(vec![2.0, 2.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn weights_name_known_signals_only() {
        assert!(Weights::from_pairs([("profil", 1.0)]).unwrap_err().to_string().contains("profil"));
        assert!(Weights::from_pairs([("profile", f32::NAN)]).is_err());
        assert_eq!(Weights::from_pairs([]).unwrap(), Weights([0.0; 5]));
    }

    #[test]
    fn named_items_match_titles_with_their_year() {
        let titles_1996 = vec![
            ("truth about cats & dogs, the".to_string(), 1),
            ("dogs, the".to_string(), 2),
            ("fargo".to_string(), 3),
        ];
        let titles_1979 = vec![("monty python's life of brian".to_string(), 4)];
        let empty: Vec<(String, i64)> = Vec::new();
        let lookup = |y: i32| match y {
            1996 => titles_1996.as_slice(),
            1979 => titles_1979.as_slice(),
            _ => empty.as_slice(),
        };
        let text = "A comedy like Truth About Cats & Dogs, The (1996), Monty Python's Life of Brian (1979) \
                    and Fargo (1997) or (12345) or Fargo(1996).";
        // The longest title wins; Fargo (1997) is another year; "(12345)" is no year.
        assert_eq!(named_items(text, lookup), vec![1, 4, 3]);
        assert_eq!(named_items("not a dogs, the (1996)", lookup), vec![2]);
        assert_eq!(named_items("hotdogs, the (1996)", lookup), Vec::<i64>::new(), "word boundary");
    }
}
