//! Lexical (BM25) search of memory, held in memory and rebuilt from SQLite like the dense index.
//!
//! Two paths, as on the dense side: a selective filter (one user's memory, a few hundred entries)
//! scores its candidates directly from their term counts; a broad one walks the query terms'
//! posting lists. FTS5 did the same job in 10-25 ms at 100k entries; this takes well under one.

use std::collections::HashMap;

use crate::dense::top_k_f64;
use crate::text::tokens;

/// BM25 parameters (the usual defaults, as FTS5 uses).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// One entry's occurrence of a term.
#[derive(Debug, Clone, Copy)]
struct Posting {
    key: u64,
    tf: u16,
    /// The entry's length in tokens (clamped), so scoring needs no other lookup.
    len: u16,
}

/// Term statistics and posting lists over every memory entry.
#[derive(Default)]
pub(crate) struct Lexicon {
    ids: HashMap<String, u32>,
    postings: Vec<Vec<Posting>>,
    docs: u64,
    total_len: u64,
    /// The largest key ever added: sizes the dense score accumulator of a search.
    max_key: u64,
}

/// An entry's terms as (term id, count), sorted by term id, and its length in tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermCounts {
    pub terms: Box<[(u32, u16)]>,
    pub len: u32,
}

impl Lexicon {
    /// Tokenizes an entry's text, adds it to the posting lists and returns its term counts.
    pub fn add(&mut self, key: u64, text: &str) -> TermCounts {
        let mut counts: HashMap<u32, u16> = HashMap::new();
        let mut len = 0u32;
        for token in tokens(text) {
            let next = self.ids.len() as u32;
            let id = *self.ids.entry(token).or_insert(next);
            if id as usize == self.postings.len() {
                self.postings.push(Vec::new());
            }
            let count = counts.entry(id).or_insert(0);
            *count = count.saturating_add(1);
            len += 1;
        }
        let short_len = len.min(u32::from(u16::MAX)) as u16;
        for (id, tf) in &counts {
            self.postings[*id as usize].push(Posting { key, tf: *tf, len: short_len });
        }
        self.docs += 1;
        self.total_len += u64::from(len);
        self.max_key = self.max_key.max(key);
        let mut terms: Vec<(u32, u16)> = counts.into_iter().collect();
        terms.sort_unstable();
        TermCounts { terms: terms.into_boxed_slice(), len }
    }

    /// Removes an entry added with [`Lexicon::add`].
    pub fn remove(&mut self, key: u64, doc: &TermCounts) {
        for (id, _) in doc.terms.iter() {
            if let Some(list) = self.postings.get_mut(*id as usize) {
                list.retain(|p| p.key != key);
            }
        }
        self.docs = self.docs.saturating_sub(1);
        self.total_len = self.total_len.saturating_sub(u64::from(doc.len));
    }

    /// Term ids of the query terms the lexicon knows (unknown terms can match nothing).
    pub fn query(&self, terms: &[String]) -> Vec<u32> {
        terms.iter().filter_map(|t| self.ids.get(t).copied()).collect()
    }

    fn df(&self, id: u32) -> u64 {
        self.postings[id as usize].len() as u64
    }

    #[cfg(test)]
    pub fn document_frequency(&self, term: &str) -> u64 {
        self.ids.get(term).map_or(0, |id| self.df(*id))
    }

    fn idf(&self, id: u32) -> f64 {
        let n = self.docs as f64;
        let df = self.df(id) as f64;
        // Lucene's form: never negative, so a very common term still counts a little.
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    fn term_score(&self, idf: f64, tf: u16, len: u32) -> f64 {
        let avg = if self.docs == 0 { 1.0 } else { (self.total_len as f64 / self.docs as f64).max(1.0) };
        let tf = f64::from(tf);
        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * f64::from(len) / avg))
    }

    /// BM25 of one entry for the query term ids.
    pub fn score(&self, query: &[u32], doc: &TermCounts) -> f64 {
        query
            .iter()
            .filter_map(|q| {
                let i = doc.terms.binary_search_by_key(q, |(id, _)| *id).ok()?;
                Some(self.term_score(self.idf(*q), doc.terms[i].1, doc.len))
            })
            .sum()
    }

    /// Top `k` entries by BM25, among those `allow` accepts (all when `None`). `doc` gives an
    /// entry's term counts.
    ///
    /// Terms are walked rarest first. Once the k-th best partial score reaches the most the
    /// remaining terms could add, no entry unseen so far can enter the top k, so the remaining
    /// terms are scored only for the entries already found (exact top-k, like MaxScore). Terms
    /// in more than half of all entries carry almost no weight and are skipped unless nothing
    /// else is left.
    pub fn search<'a>(
        &self,
        query: &[u32],
        k: usize,
        allow: Option<&dyn Fn(u64) -> bool>,
        doc: &dyn Fn(u64) -> Option<&'a TermCounts>,
    ) -> Vec<(u64, f64)> {
        let mut terms: Vec<u32> = query.iter().copied().filter(|q| self.df(*q) * 2 <= self.docs).collect();
        if terms.is_empty() {
            terms.extend(query.iter().copied().min_by_key(|q| self.df(*q)));
        }
        terms.sort_unstable_by_key(|t| (self.df(*t), *t));
        terms.dedup();
        // The most a term can add to any entry's score (BM25 saturates at idf * (k1 + 1)).
        let bound: Vec<f64> = terms.iter().map(|t| self.idf(*t) * (K1 + 1.0)).collect();
        // A dense accumulator indexed by key (ids are dense), plus the keys it touched: several
        // times faster than a hash map when common terms' lists are walked.
        let mut acc = vec![0f64; self.max_key as usize + 1];
        let mut touched: Vec<u64> = Vec::new();
        let mut walked = 0;
        while walked < terms.len() {
            let next = terms[walked];
            // Checking costs a pass over the entries found so far; do it when walking the next
            // list would cost more.
            if touched.len() >= k && touched.len() as u64 <= self.df(next) {
                let remaining: f64 = bound[walked..].iter().sum();
                if kth_best(&acc, &touched, k) >= remaining {
                    break;
                }
            }
            let idf = self.idf(next);
            for p in &self.postings[next as usize] {
                if allow.is_none_or(|f| f(p.key)) {
                    let slot = &mut acc[p.key as usize];
                    if *slot == 0.0 {
                        touched.push(p.key);
                    }
                    *slot += self.term_score(idf, p.tf, u32::from(p.len));
                }
            }
            walked += 1;
        }
        let rest = &terms[walked..];
        let mut ranked: Vec<(u64, f64)> = if rest.is_empty() {
            touched.into_iter().map(|key| (key, acc[key as usize])).collect()
        } else {
            // Only entries that could still reach the top k are worth finishing.
            let theta = kth_best(&acc, &touched, k);
            let remaining: f64 = bound[walked..].iter().sum();
            touched
                .into_iter()
                .filter(|key| acc[*key as usize] + remaining >= theta)
                .map(|key| (key, acc[key as usize] + doc(key).map_or(0.0, |c| self.score(rest, c))))
                .collect()
        };
        top_k_f64(&mut ranked, k);
        ranked
    }
}

/// The k-th highest accumulated score among `touched` (which holds at least k keys).
fn kth_best(acc: &[f64], touched: &[u64], k: usize) -> f64 {
    let mut values: Vec<f64> = touched.iter().map(|key| acc[*key as usize]).collect();
    let (_, kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_prefers_rare_terms_and_tracks_removals() {
        let mut lex = Lexicon::default();
        let a = lex.add(1, "dark comedy about a heist");
        let b = lex.add(2, "light comedy for the family");
        let c = lex.add(3, "comedy comedy comedy");
        let others: Vec<TermCounts> = (4..8).map(|i| lex.add(i, "a slow documentary about the sea")).collect();
        let docs: HashMap<u64, TermCounts> =
            [(1, a.clone()), (2, b.clone()), (3, c.clone())].into_iter().chain((4..8).zip(others)).collect();
        let doc = |k: u64| docs.get(&k);
        let q = lex.query(&["heist".into(), "comedy".into(), "unknownword".into()]);
        assert_eq!(q.len(), 2);
        assert!(lex.score(&q, &a) > lex.score(&q, &b));
        assert!(lex.score(&q, &c) > lex.score(&q, &b));
        assert_eq!(lex.score(&lex.query(&["zebra".into()]), &a), 0.0);
        // The posting walk agrees with direct scoring.
        let all = lex.search(&q, 10, None, &doc);
        assert_eq!(all.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        for (key, score) in &all {
            assert!((score - lex.score(&q, &docs[key])).abs() < 1e-9);
        }
        // With k = 1 the walk stops after the rare term and finishes the found entry directly.
        let top = lex.search(&q, 1, None, &doc);
        assert_eq!(top.len(), 1);
        assert!((top[0].1 - lex.score(&q, &a)).abs() < 1e-9);
        let not_one = |k: u64| k != 1;
        let filtered = lex.search(&q, 10, Some(&not_one), &doc);
        assert_eq!(filtered.iter().map(|h| h.0).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(lex.document_frequency("comedy"), 3);
        lex.remove(3, &c);
        assert_eq!(lex.document_frequency("comedy"), 2);
        assert!(lex.search(&q, 10, None, &doc).iter().all(|h| h.0 != 3));
    }
}
