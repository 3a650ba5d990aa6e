//! Lexical scoring of small candidate sets in memory (BM25), the twin of the exact dense scan:
//! a user's memory is a few hundred entries, and scoring them directly takes microseconds where
//! an FTS5 query, which walks whole posting lists before it can filter by user, takes
//! milliseconds. Broad searches still go to FTS5.

use std::collections::HashMap;

use crate::text::tokens;

/// BM25 parameters (the usual defaults, as FTS5 uses).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Term statistics over every memory entry, plus an id per distinct term.
#[derive(Default)]
pub(crate) struct Lexicon {
    ids: HashMap<String, u32>,
    /// Document frequency per term id.
    df: Vec<u32>,
    docs: u64,
    total_len: u64,
}

/// An entry's terms as (term id, count), sorted by term id, and its length in tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermCounts {
    pub terms: Box<[(u32, u16)]>,
    pub len: u32,
}

impl Lexicon {
    /// Tokenizes `text`, interning new terms, and counts it as a document.
    pub fn add(&mut self, text: &str) -> TermCounts {
        let mut counts: HashMap<u32, u16> = HashMap::new();
        let mut len = 0u32;
        for token in tokens(text) {
            let next = self.ids.len() as u32;
            let id = *self.ids.entry(token).or_insert(next);
            if id as usize == self.df.len() {
                self.df.push(0);
            }
            let count = counts.entry(id).or_insert(0);
            *count = count.saturating_add(1);
            len += 1;
        }
        for id in counts.keys() {
            self.df[*id as usize] += 1;
        }
        self.docs += 1;
        self.total_len += u64::from(len);
        let mut terms: Vec<(u32, u16)> = counts.into_iter().collect();
        terms.sort_unstable();
        TermCounts { terms: terms.into_boxed_slice(), len }
    }

    /// Forgets a document previously returned by [`Lexicon::add`].
    pub fn remove(&mut self, doc: &TermCounts) {
        for (id, _) in doc.terms.iter() {
            if let Some(df) = self.df.get_mut(*id as usize) {
                *df = df.saturating_sub(1);
            }
        }
        self.docs = self.docs.saturating_sub(1);
        self.total_len = self.total_len.saturating_sub(u64::from(doc.len));
    }

    /// Term ids of the query terms the lexicon knows (unknown terms can match nothing).
    pub fn query(&self, terms: &[String]) -> Vec<u32> {
        terms.iter().filter_map(|t| self.ids.get(t).copied()).collect()
    }

    /// How many entries contain `term` (0 when unknown).
    pub fn document_frequency(&self, term: &str) -> u64 {
        self.ids.get(term).map_or(0, |id| u64::from(self.df[*id as usize]))
    }

    pub fn documents(&self) -> u64 {
        self.docs
    }

    fn idf(&self, id: u32) -> f64 {
        let n = self.docs as f64;
        let df = f64::from(self.df[id as usize]);
        // Lucene's form: never negative, so a very common term still counts a little.
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// BM25 of one entry for the query term ids.
    pub fn score(&self, query: &[u32], doc: &TermCounts) -> f64 {
        let avg = if self.docs == 0 { 1.0 } else { self.total_len as f64 / self.docs as f64 };
        let norm = K1 * (1.0 - B + B * f64::from(doc.len) / avg.max(1.0));
        query
            .iter()
            .filter_map(|q| {
                let i = doc.terms.binary_search_by_key(q, |(id, _)| *id).ok()?;
                let tf = f64::from(doc.terms[i].1);
                Some(self.idf(*q) * tf * (K1 + 1.0) / (tf + norm))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_prefers_rare_terms_and_tracks_removals() {
        let mut lex = Lexicon::default();
        let a = lex.add("dark comedy about a heist");
        let b = lex.add("light comedy for the family");
        let c = lex.add("comedy comedy comedy");
        let q = lex.query(&["heist".into(), "comedy".into(), "unknownword".into()]);
        assert_eq!(q.len(), 2);
        assert!(lex.score(&q, &a) > lex.score(&q, &b));
        assert!(lex.score(&q, &c) > lex.score(&q, &b));
        assert_eq!(lex.score(&lex.query(&["zebra".into()]), &a), 0.0);
        assert_eq!(lex.document_frequency("comedy"), 3);
        lex.remove(&c);
        assert_eq!((lex.document_frequency("comedy"), lex.documents()), (2, 2));
    }
}
