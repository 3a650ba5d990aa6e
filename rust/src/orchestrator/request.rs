//! What a request asks for once the conversation is taken into account: the orchestrator's
//! structural reading of a follow-up ("a comedy instead", "nothing too gory", "more like #3",
//! "older ones"), so grounding can act on it.
//!
//! A rule, not the model: the 135M model ignores negations ("nothing too gory" had no effect)
//! and mixes a refinement up with the request before it, and teaching it two-turn dialogue needs
//! GPU hours this project does not have. The cues a refinement uses are few and fixed, and a rule
//! over them is exact, instant and testable. The model still reasons and writes the ideal item
//! profile, from the request this module composes.

use std::collections::HashSet;

use serde::Serialize;

/// An earlier exchange of the conversation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prior {
    pub query: String,
    /// What the answer showed, in rank order: (item id, year).
    pub shown: Vec<(i64, Option<i32>)>,
    pub liked: Vec<i64>,
    pub disliked: Vec<i64>,
}

/// How a request relates to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowUp {
    /// The first request of a conversation.
    New,
    /// A new request in the same conversation ("a comedy instead"): it replaces the subject
    /// and keeps what the user ruled out.
    Replace,
    /// A refinement of the request before it ("nothing too gory", "older ones", "something else").
    Refine,
}

/// A request as grounding acts on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestPlan {
    /// The request the model answers and the request signal embeds: the text itself for a new
    /// request or a replacement, the earlier request and the refinement for a refinement.
    pub request: String,
    pub follow_up: FollowUp,
    /// Catalog categories the request asks for (synonyms folded: "scary" is Horror).
    pub wanted: Vec<String>,
    /// Categories ruled out ("not a drama", "instead" of the earlier subject): never shown.
    pub avoided: Vec<String>,
    /// The wanted categories grounding favours: those of a request that rules something out
    /// or follows another. There the request embedding alone drifts (a war film that is not a
    /// drama reads like an action thriller), while the user has named the set they want. A
    /// plain first request leaves the ranking to the fitted signals, as the evaluation measures.
    pub preferred: Vec<String>,
    /// Other things ruled out or to tone down ("nothing too gory": "gory"), one phrase each:
    /// grounding penalises items close to them.
    pub avoid_phrases: Vec<String>,
    /// Shown items the request points at ("more like #3"): they seed collaborative similarity.
    pub anchors: Vec<i64>,
    /// Everything the conversation showed: not shown again.
    pub exclude: Vec<i64>,
    /// Items liked in the conversation (seeds) and disliked or ruled out ("not #2"): items
    /// similar to them are penalised.
    pub liked: Vec<i64>,
    pub disliked: Vec<i64>,
    pub min_year: Option<i32>,
    pub max_year: Option<i32>,
}

/// Catalog category names and the words people use for them. A key is matched as whole words;
/// a category the catalog lacks is ignored.
#[rustfmt::skip]
const CATEGORY_WORDS: &[(&str, &[&str])] = &[
    ("Action", &["action"]),
    ("Adventure", &["adventure", "adventures", "adventurous"]),
    ("Animation", &["animation", "animated", "cartoon", "cartoons", "anime"]),
    // Not "family": "to watch with my family" says who watches, not what.
    ("Children's", &["children's", "childrens", "children", "kids", "kid's", "kids'"]),
    ("Comedy", &["comedy", "comedies", "funny", "hilarious", "comic", "humor", "humour", "laugh", "laughs"]),
    ("Crime", &["crime", "heist", "gangster", "gangsters", "mafia", "mob"]),
    ("Documentary", &["documentary", "documentaries"]),
    ("Drama", &["drama", "dramas", "dramatic"]),
    ("Fantasy", &["fantasy"]),
    ("Film-Noir", &["noir", "film-noir"]),
    ("Horror", &["horror", "scary", "spooky", "frightening", "creepy", "terrifying", "slasher"]),
    ("Musical", &["musical", "musicals"]),
    ("Mystery", &["mystery", "mysteries", "whodunit"]),
    ("Romance", &["romance", "romances", "romantic", "love story"]),
    ("Sci-Fi", &["sci-fi", "scifi", "science fiction", "science-fiction"]),
    ("Thriller", &["thriller", "thrillers", "suspense", "suspenseful"]),
    ("War", &["war", "wartime"]),
    ("Western", &["western", "westerns", "cowboy", "cowboys"]),
];

/// Words that open a hard negation: what follows in the clause is ruled out.
#[rustfmt::skip]
const NEGATIONS: &[&str] =
    &["not", "no", "nothing", "without", "except", "avoid", "never", "don't", "dont", "nor", "neither", "isn't"];
/// Words that make a negation soft ("nothing too gory", "less scary"): tone down, not rule out.
const SOFTENERS: &[&str] = &["too", "less", "overly", "very", "so"];
/// Words that end a clause's negation ("no gore and a happy ending").
const CLAUSE_ENDS: &[&str] = &["and", "but", "instead", "though", "although"];
/// Words that say "a refinement of what you showed", not a new request.
#[rustfmt::skip]
const REFINE_CUES: &[&str] = &[
    "else", "another", "other", "others", "more", "less", "lighter", "darker", "older", "newer", "recent", "shorter",
    "longer", "similar", "like", "again", "different", "too", "not", "no", "nothing", "without", "but", "ones",
    "one", "those", "these", "that", "this",
];
/// Words that carry no subject of their own.
#[rustfmt::skip]
const FILLER: &[&str] = &[
    "a", "an", "the", "too", "very", "so", "any", "some", "more", "less", "movie", "movies", "film", "films", "one",
    "ones", "something", "anything", "stuff", "please", "really", "that", "this", "those", "these", "is", "it", "of",
    "or", "for", "to", "me", "i", "i'm", "want", "with", "in", "on", "at", "be", "overly", "much", "thing", "things",
    "kind", "type", "sort", "maybe", "just", "quite", "at", "all", "thanks", "ok", "okay", "now", "then",
];
#[rustfmt::skip]
const ORDINALS: &[&str] = &["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];

/// One request read on its own.
#[derive(Debug, Default)]
struct Reading {
    wanted: Vec<String>,
    avoided: Vec<String>,
    avoid_phrases: Vec<String>,
    /// Positions (1-based) in the last answer the request points at, and those it rules out.
    refs: Vec<usize>,
    negated_refs: Vec<usize>,
    instead: bool,
    /// "… again": the user asks to see shown items again.
    again: bool,
    older: bool,
    newer: bool,
    min_year: Option<i32>,
    max_year: Option<i32>,
    refine_cue: bool,
    content_words: usize,
}

/// The catalog's name for a category of [`CATEGORY_WORDS`], compared without case or
/// punctuation ("Children's" is MovieLens 25M's "Children").
fn catalog_name(canonical: &str, categories: &[String]) -> Option<String> {
    let squash = |s: &str| -> String {
        let mut out: String = s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
        if out.ends_with('s') {
            out.pop();
        }
        out
    };
    let want = squash(canonical);
    categories.iter().find(|c| squash(c) == want).cloned()
}

fn words_of(clause: &str) -> Vec<String> {
    clause
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '#' || c == '\'' || c == '-')))
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Positions of the whole-word occurrences of `key` (one or more words) in `words`.
fn find_key(words: &[String], key: &str) -> Vec<usize> {
    let key: Vec<&str> = key.split(' ').collect();
    if words.len() < key.len() {
        return Vec::new();
    }
    (0..=words.len() - key.len()).filter(|&i| key.iter().enumerate().all(|(j, k)| words[i + j] == *k)).collect()
}

/// A reference to a position of the last answer at `words[i]`: "#3", "number 3", "the third
/// (one)", "the last one". Returns the position and how many words it spans.
fn reference_at(words: &[String], i: usize) -> Option<(usize, usize)> {
    let w = words[i].as_str();
    if let Some(n) = w.strip_prefix('#').and_then(|n| n.parse::<usize>().ok()) {
        return (n >= 1).then_some((n, 1));
    }
    if (w == "number" || w == "no") && i + 1 < words.len() {
        if let Ok(n) = words[i + 1].trim_end_matches('.').parse::<usize>() {
            return (1..=100).contains(&n).then_some((n, 2));
        }
    }
    if w == "the" && i + 1 < words.len() {
        let next = words[i + 1].as_str();
        let ordinal = ORDINALS.iter().position(|o| *o == next).map(|p| p + 1);
        let ordinal = ordinal.or((next == "last").then_some(usize::MAX));
        // "the first one", or "the first" closing the clause ("more like the first").
        let closes = i + 2 >= words.len() || words[i + 2] == "one";
        if let (Some(n), true) = (ordinal, closes) {
            return Some((n, if i + 2 < words.len() { 3 } else { 2 }));
        }
    }
    None
}

/// A year span a word names: "80s", "1980s", "'90s".
fn decade(word: &str) -> Option<(i32, i32)> {
    let digits = word.strip_suffix('s')?.trim_start_matches('\'');
    let start: i32 = digits.parse().ok()?;
    let start = match digits.len() {
        2 if start % 10 == 0 => 1900 + start,
        4 if start % 10 == 0 && (1880..=2090).contains(&start) => start,
        _ => return None,
    };
    Some((start, start + 9))
}

fn read(text: &str, categories: &[String]) -> Reading {
    let mut r = Reading::default();
    let lower = text.to_lowercase();
    for clause in lower.split([',', '.', ';', '!', '?', ':', '(', ')']) {
        let words = words_of(clause);
        // Which words a negation covers, and whether it is soft.
        let mut negated = vec![None::<bool>; words.len()];
        let mut open: Option<bool> = None;
        for (i, w) in words.iter().enumerate() {
            let w = w.as_str();
            if CLAUSE_ENDS.contains(&w) {
                open = None;
            }
            if w == "instead" {
                if words.get(i + 1).is_some_and(|n| n == "of") {
                    open = Some(false);
                } else {
                    r.instead = true;
                }
                continue;
            }
            if NEGATIONS.contains(&w) && !(w == "no" && words.get(i + 1).is_some_and(|n| n.parse::<usize>().is_ok())) {
                open = Some(false);
                continue;
            }
            if let Some(soft) = open.as_mut() {
                *soft |= SOFTENERS.contains(&w);
                negated[i] = Some(*soft);
            } else if w == "less" {
                open = Some(true);
            }
        }
        r.refine_cue |= words.iter().any(|w| REFINE_CUES.contains(&w.as_str()));

        let mut used = vec![false; words.len()];
        let mut i = 0;
        while i < words.len() {
            if let Some((n, span)) = reference_at(&words, i) {
                if negated[i].is_some() {
                    r.negated_refs.push(n);
                } else {
                    r.refs.push(n);
                }
                used[i..i + span].iter_mut().for_each(|u| *u = true);
                i += span;
                continue;
            }
            let w = words[i].as_str();
            match w {
                "again" => r.again = negated[i].is_none(),
                "older" | "earlier" => r.older = negated[i].is_none(),
                "newer" | "recent" | "modern" | "latest" => r.newer = negated[i].is_none(),
                "before" | "after" | "since" => {
                    if let Some(year) =
                        words.get(i + 1).and_then(|y| y.parse::<i32>().ok()).filter(|y| (1880..=2100).contains(y))
                    {
                        if w == "before" {
                            r.max_year = Some(year - 1);
                        } else {
                            r.min_year = Some(if w == "after" { year + 1 } else { year });
                        }
                        used[i] = true;
                        used[i + 1] = true;
                    }
                }
                _ => {
                    if let (Some((from, to)), None) = (decade(w), negated[i]) {
                        r.min_year = Some(from);
                        r.max_year = Some(to);
                        used[i] = true;
                    }
                }
            }
            i += 1;
        }

        for (canonical, keys) in CATEGORY_WORDS {
            let Some(name) = catalog_name(canonical, categories) else { continue };
            for key in *keys {
                for at in find_key(&words, key) {
                    let span = key.split(' ').count();
                    if used[at..at + span].iter().any(|u| *u) {
                        continue;
                    }
                    used[at..at + span].iter_mut().for_each(|u| *u = true);
                    match negated[at] {
                        None => push_new(&mut r.wanted, &name),
                        Some(false) => push_new(&mut r.avoided, &name),
                        // Toned down, not ruled out: the word itself is what to keep away from.
                        Some(true) => push_new(&mut r.avoid_phrases, &words[at..at + span].join(" ")),
                    }
                }
            }
        }
        let mut phrase: Vec<&str> = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let content = !used[i] && !FILLER.contains(&w.as_str()) && !NEGATIONS.contains(&w.as_str());
            if content && !REFINE_CUES.contains(&w.as_str()) && w != "instead" {
                r.content_words += 1;
            }
            if content && negated[i].is_some() && !CLAUSE_ENDS.contains(&w.as_str()) {
                phrase.push(w);
            }
        }
        if !phrase.is_empty() {
            push_new(&mut r.avoid_phrases, &phrase.join(" "));
        }
    }
    r
}

fn push_new<T: PartialEq + Clone>(list: &mut Vec<T>, value: &T) {
    if !list.contains(value) {
        list.push(value.clone());
    }
}

fn union<T: PartialEq + Clone>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = a.to_vec();
    for x in b {
        push_new(&mut out, x);
    }
    out
}

/// The plan of `text`, the latest request of a conversation whose earlier exchanges are
/// `earlier` (oldest first). `categories` are the catalog's category names.
pub fn plan_request(text: &str, categories: &[String], earlier: &[Prior]) -> RequestPlan {
    let mut plan: Option<RequestPlan> = None;
    let mut shown_before: Vec<(i64, Option<i32>)> = Vec::new();
    for step in earlier.iter().map(Some).chain([None]) {
        let query = step.map_or(text, |p| p.query.as_str());
        let next = extend(plan.as_ref(), query, categories, &shown_before);
        plan = Some(next);
        if let Some(prior) = step {
            shown_before = prior.shown.clone();
            let p = plan.as_mut().expect("just set");
            for (id, _) in &prior.shown {
                push_new(&mut p.exclude, id);
            }
            p.liked = union(&p.liked, &prior.liked);
            p.disliked = union(&p.disliked, &prior.disliked);
        }
    }
    let mut plan = plan.expect("at least the request itself");
    let disliked: HashSet<i64> = plan.disliked.iter().copied().collect();
    plan.liked.retain(|i| !disliked.contains(i));
    let constrained = plan.follow_up != FollowUp::New || !plan.avoided.is_empty() || !plan.avoid_phrases.is_empty();
    if constrained {
        plan.preferred = plan.wanted.clone();
    }
    plan
}

/// The plan after one more request, given the plan so far and what the last answer showed.
fn extend(
    before: Option<&RequestPlan>,
    text: &str,
    categories: &[String],
    last_shown: &[(i64, Option<i32>)],
) -> RequestPlan {
    let r = read(text, categories);
    let at = |n: usize| -> Option<i64> {
        if n == usize::MAX {
            last_shown.last().map(|s| s.0)
        } else {
            last_shown.get(n.wrapping_sub(1)).map(|s| s.0)
        }
    };
    let anchors: Vec<i64> = r.refs.iter().filter_map(|n| at(*n)).collect();
    let ruled_out: Vec<i64> = r.negated_refs.iter().filter_map(|n| at(*n)).collect();
    let Some(before) = before else {
        return RequestPlan {
            request: text.to_string(),
            follow_up: FollowUp::New,
            wanted: r.wanted,
            avoided: r.avoided,
            preferred: Vec::new(),
            avoid_phrases: r.avoid_phrases,
            anchors,
            exclude: Vec::new(),
            liked: Vec::new(),
            disliked: ruled_out,
            min_year: r.min_year,
            max_year: r.max_year,
        };
    };
    // Shown items are not shown again, unless the user asks to see them again.
    let shown_before = if r.again { Vec::new() } else { before.exclude.clone() };
    let new_subject = r.wanted.iter().any(|w| !before.wanted.contains(w));
    let replace = r.instead || new_subject || (!r.refine_cue && r.content_words >= 3 && anchors.is_empty());
    let mut plan = if replace {
        let mut avoided = union(&before.avoided, &r.avoided);
        if r.instead {
            avoided = union(&avoided, &before.wanted);
        }
        avoided.retain(|c| !r.wanted.contains(c));
        RequestPlan {
            request: text.to_string(),
            follow_up: FollowUp::Replace,
            wanted: r.wanted,
            avoided,
            preferred: Vec::new(),
            avoid_phrases: union(&before.avoid_phrases, &r.avoid_phrases),
            anchors,
            exclude: shown_before.clone(),
            liked: before.liked.clone(),
            disliked: union(&before.disliked, &ruled_out),
            min_year: r.min_year,
            max_year: r.max_year,
        }
    } else {
        let wanted = union(&before.wanted, &r.wanted);
        // A refinement may rule out what it had asked for ("not a drama" after "a war drama").
        let avoided = union(&before.avoided, &r.avoided);
        RequestPlan {
            request: format!("{}; {}", before.request, text.trim()),
            follow_up: FollowUp::Refine,
            wanted: wanted.into_iter().filter(|c| !r.avoided.contains(c)).collect(),
            avoided,
            preferred: Vec::new(),
            avoid_phrases: union(&before.avoid_phrases, &r.avoid_phrases),
            anchors: union(&before.anchors, &anchors),
            exclude: shown_before,
            liked: before.liked.clone(),
            disliked: union(&before.disliked, &ruled_out),
            min_year: r.min_year.or(before.min_year),
            max_year: r.max_year.or(before.max_year),
        }
    };
    // "Older ones" / "newer ones": than the middle of what the last answer showed.
    let mut years: Vec<i32> = last_shown.iter().filter_map(|s| s.1).collect();
    if !years.is_empty() && (r.older || r.newer) {
        years.sort_unstable();
        let middle = years[years.len() / 2];
        if r.older {
            plan.max_year = Some(middle - 1);
        } else {
            plan.min_year = Some(middle + 1);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MovieLens 100K's genres, without its "unknown".
    fn genres() -> Vec<String> {
        crate::import::movielens::GENRES_100K[1..].iter().map(|g| g.to_string()).collect()
    }

    fn shown(ids: &[(i64, i32)]) -> Vec<(i64, Option<i32>)> {
        ids.iter().map(|(i, y)| (*i, Some(*y))).collect()
    }

    fn prior(query: &str, ids: &[(i64, i32)]) -> Prior {
        Prior { query: query.into(), shown: shown(ids), ..Prior::default() }
    }

    #[test]
    fn a_first_request_is_read_as_it_is() {
        let p = plan_request("I want a scary movie for Halloween, nothing too gory", &genres(), &[]);
        assert_eq!(p.follow_up, FollowUp::New);
        assert_eq!(p.request, "I want a scary movie for Halloween, nothing too gory");
        assert_eq!(p.wanted, ["Horror"]);
        assert!(p.avoided.is_empty());
        assert_eq!(p.avoid_phrases, ["gory"]);
        assert_eq!(p.preferred, ["Horror"], "a request that tones something down names its set");

        let p = plan_request("a war movie, but not a drama", &genres(), &[]);
        assert_eq!((p.wanted.as_slice(), p.avoided.as_slice()), (&["War".to_string()][..], &["Drama".to_string()][..]));
        assert!(p.avoid_phrases.is_empty(), "{:?}", p.avoid_phrases);

        // The evaluation's phrasings carry no negation and no year.
        let p = plan_request("Can you suggest a romantic comedy to watch with my family?", &genres(), &[]);
        assert_eq!(p.wanted, ["Comedy", "Romance"]);
        assert!(p.avoided.is_empty() && p.avoid_phrases.is_empty() && p.min_year.is_none());
        assert!(p.preferred.is_empty(), "a plain first request leaves ranking to the fitted signals");
    }

    #[test]
    fn instead_replaces_the_subject_and_rules_out_the_old_one() {
        let earlier = [prior("I want a scary movie for Halloween", &[(1, 1990), (2, 1980)])];
        let p = plan_request("something lighter, a comedy instead", &genres(), &earlier);
        assert_eq!(p.follow_up, FollowUp::Replace);
        assert_eq!(p.request, "something lighter, a comedy instead");
        assert_eq!(p.wanted, ["Comedy"]);
        assert_eq!(p.avoided, ["Horror"]);
        assert_eq!(p.preferred, ["Comedy"]);
        assert_eq!(p.exclude, [1, 2]);
    }

    #[test]
    fn a_refinement_keeps_the_request_and_adds_to_it() {
        let genres = genres();
        let earlier = [prior("a thriller for tonight", &[(1, 1995), (2, 1970), (3, 1999)])];
        let p = plan_request("nothing too violent", &genres, &earlier);
        assert_eq!(p.follow_up, FollowUp::Refine);
        assert_eq!(p.request, "a thriller for tonight; nothing too violent");
        assert_eq!(p.wanted, ["Thriller"]);
        assert_eq!(p.avoid_phrases, ["violent"]);

        let p = plan_request("older ones", &genres, &earlier);
        assert_eq!((p.max_year, p.min_year), (Some(1994), None), "older than the middle year shown");
        let p = plan_request("more like #3", &genres, &earlier);
        assert_eq!(p.anchors, [3]);
        let p = plan_request("more like the first one, but not the second", &genres, &earlier);
        assert_eq!((p.anchors.as_slice(), p.disliked.as_slice()), (&[1][..], &[2][..]));
        let p = plan_request("something else from the 80s", &genres, &earlier);
        assert_eq!((p.min_year, p.max_year, p.exclude.len()), (Some(1980), Some(1989), 3));
        let p = plan_request("show me the first one again", &genres, &earlier);
        assert_eq!((p.anchors.as_slice(), p.exclude.len()), (&[1][..], 0), "asked to see it again");
    }

    #[test]
    fn the_conversation_carries_exclusions_feedback_and_ruled_out_subjects() {
        let genres = genres();
        let mut first = prior("a war movie, but not a drama", &[(1, 1990), (2, 1985)]);
        first.liked = vec![1];
        first.disliked = vec![2];
        let second = prior("another one", &[(3, 1970)]);
        let p = plan_request("an action movie for tonight", &genres, &[first, second]);
        assert_eq!(p.follow_up, FollowUp::Replace);
        assert_eq!(p.wanted, ["Action"]);
        assert_eq!(p.avoided, ["Drama"], "what was ruled out stays ruled out");
        assert_eq!(p.exclude, [1, 2, 3]);
        assert_eq!((p.liked.as_slice(), p.disliked.as_slice()), (&[1][..], &[2][..]));
    }

    #[test]
    fn catalog_names_and_odd_text() {
        // MovieLens 25M spells it "Children"; a category the catalog lacks is not asked for.
        let p = plan_request("a kids movie, no westerns", &["Children".to_string(), "Comedy".to_string()], &[]);
        assert_eq!(p.wanted, ["Children"]);
        assert_eq!(p.avoid_phrases, ["westerns"]);
        for text in ["", "#", "#0", "the", "number", "no 99999999999999999999", "'s", "19s 0s", "not"] {
            let p = plan_request(text, &genres(), &[prior("x", &[(1, 1990)])]);
            assert!(p.anchors.is_empty(), "{text:?}");
        }
    }
}
