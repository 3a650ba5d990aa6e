//! Text helpers shared by importers and search: title normalisation for cross-source matching,
//! date parsing, lexical query building and scope tokens.

/// Lower-cases, folds the trailing-article form ("Matrix, The" -> "the matrix"), keeps only
/// letters and digits separated by single spaces.
pub fn normalize_title(title: &str) -> String {
    let mut t = title.trim().to_lowercase();
    for article in ["the", "a", "an", "les", "la", "le", "il", "el", "der", "die", "das"] {
        let suffix = format!(", {article}");
        if t.ends_with(&suffix) {
            t.truncate(t.len() - suffix.len());
            t = format!("{article} {t}");
            break;
        }
    }
    let mut out = String::with_capacity(t.len());
    let mut pending_space = false;
    for c in t.chars() {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else if c != '\'' {
            pending_space = true;
        }
    }
    out
}

/// Title variants tried when matching an item across sources: the whole title, and the title
/// without a trailing parenthetical alternative name ("Shanghai Triad (Yao a yao ...)").
pub fn title_variants(title: &str) -> Vec<String> {
    let mut out = vec![normalize_title(title)];
    let trimmed = title.trim();
    if trimmed.ends_with(')') {
        if let Some(open) = trimmed.rfind('(') {
            let base = normalize_title(&trimmed[..open]);
            if !base.is_empty() && !out.contains(&base) {
                out.push(base);
            }
        }
    }
    out
}

/// The key items are matched on across sources.
pub fn norm_key(title: &str, year: Option<i32>) -> String {
    match year {
        Some(y) => format!("{}|{y}", normalize_title(title)),
        None => normalize_title(title),
    }
}

/// Splits "Heat (1995)" into ("Heat", Some(1995)); titles without a trailing year are unchanged.
pub fn split_title_year(raw: &str) -> (String, Option<i32>) {
    let t = raw.trim();
    // Compare bytes: the tail is all ASCII when it matches, so the slices below are on char
    // boundaries.
    let b = t.as_bytes();
    let n = b.len();
    if n >= 6 && b[n - 6] == b'(' && b[n - 1] == b')' && b[n - 5..n - 1].iter().all(u8::is_ascii_digit) {
        return (t[..n - 6].trim_end().to_string(), t[n - 5..n - 1].parse().ok());
    }
    (t.to_string(), None)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a unix timestamp, as (year, month, day).
pub fn civil_from_unix(ts: i64) -> (i64, u32, u32) {
    let z = ts.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses a timestamp as unix seconds (integer or float) or a date `YYYY-MM-DD` / `YYYY/MM/DD`,
/// optionally followed by a time `[T ]HH:MM[:SS]` (taken as UTC).
pub fn parse_timestamp(raw: &str) -> Option<i64> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v as i64);
    }
    let (date, time) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split(['-', '/']).collect();
    if parts.len() != 3 || parts[0].len() != 4 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (parts[0].parse().ok()?, parts[1].parse().ok()?, parts[2].parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let t = t.trim_end_matches('Z');
        let hms: Vec<&str> = t.split(':').collect();
        if hms.len() < 2 || hms.len() > 3 {
            return None;
        }
        let h: i64 = hms[0].parse().ok()?;
        let mi: i64 = hms[1].parse().ok()?;
        let sec: f64 = hms.get(2).map_or(Some(0.0), |v| v.parse().ok())?;
        if h > 23 || mi > 59 || !(0.0..61.0).contains(&sec) {
            return None;
        }
        secs += h * 3600 + mi * 60 + sec as i64;
    }
    Some(secs)
}

/// Words too common to help ranking; dropping them keeps FTS5 from walking huge posting lists.
const STOPWORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "but", "by", "for", "from", "i", "if", "in", "into",
    "is", "it", "its", "me", "my", "of", "on", "or", "s", "so", "some", "t", "that", "the", "their", "them", "this",
    "to", "want", "was", "what", "with", "you",
];

/// Folds the accented Latin letters that titles and reviews commonly carry to their base letter,
/// as FTS5's `remove_diacritics` does, so both lexical paths see the same tokens.
fn fold_diacritic(c: char) -> char {
    match c {
        'à'..='å' => 'a',
        'ç' => 'c',
        'è'..='ë' => 'e',
        'ì'..='ï' => 'i',
        'ñ' => 'n',
        'ò'..='ö' | 'ø' => 'o',
        'ù'..='ü' => 'u',
        'ý' | 'ÿ' => 'y',
        _ => c,
    }
}

/// The lexical tokens of a text: lower-cased, diacritics folded, split on anything that is not a
/// letter or digit, stop words dropped. Used for documents and queries alike.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).filter_map(|word| {
        let w: String = word.chars().flat_map(char::to_lowercase).map(fold_diacritic).collect();
        (!STOPWORDS.contains(&w.as_str())).then_some(w)
    })
}

/// The distinct search terms of free text, at most `max` of them.
pub fn query_terms(text: &str, max: usize) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for w in tokens(text) {
        if !terms.contains(&w) {
            terms.push(w);
            if terms.len() == max {
                break;
            }
        }
    }
    terms
}

/// An FTS5 MATCH expression for `terms` OR-ed over the `text` column, restricted by `scope`
/// groups (each an OR of scope tokens, the groups AND-ed). Terms are double-quoted so no user
/// text is ever read as FTS5 syntax.
pub fn fts_match(terms: &[String], scope: &[Vec<String>]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let quoted: Vec<String> = terms.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect();
    let mut expr = format!("text : ({})", quoted.join(" OR "));
    for group in scope.iter().filter(|g| !g.is_empty()) {
        expr.push_str(&format!(" AND scope : ({})", group.join(" OR ")));
    }
    Some(expr)
}

pub fn user_token(user_id: i64) -> String {
    format!("u{user_id}")
}

pub fn tier_token(tier: u8) -> String {
    format!("t{tier}")
}

pub fn category_token(category_id: i64) -> String {
    format!("c{category_id}")
}

/// Shortens `text` to at most `max` characters on a char boundary, marking the cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", text[..i].trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn titles_match_across_article_forms() {
        assert_eq!(normalize_title("Shawshank Redemption, The"), "the shawshank redemption");
        assert_eq!(normalize_title("The Shawshank Redemption"), "the shawshank redemption");
        assert_eq!(normalize_title("Schindler's List"), "schindlers list");
        assert_eq!(norm_key("Heat", Some(1995)), "heat|1995");
        assert_eq!(
            title_variants("Shanghai Triad (Yao a yao yao dao waipo qiao)"),
            vec!["shanghai triad yao a yao yao dao waipo qiao", "shanghai triad"]
        );
    }

    #[test]
    fn splits_year() {
        assert_eq!(split_title_year("Heat (1995)"), ("Heat".into(), Some(1995)));
        assert_eq!(split_title_year("Heat"), ("Heat".into(), None));
        assert_eq!(split_title_year("(500) Days of Summer (2009)"), ("(500) Days of Summer".into(), Some(2009)));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("881250949"), Some(881_250_949));
        assert_eq!(parse_timestamp("881250949.0"), Some(881_250_949));
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400));
        assert_eq!(parse_timestamp("2000/03/01"), Some(951_868_800));
        assert_eq!(parse_timestamp("2000-03-01T01:02:03Z"), Some(951_868_800 + 3723));
        assert_eq!(parse_timestamp("2000-13-01"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(civil_from_unix(951_868_800), (2000, 3, 1));
    }

    #[test]
    fn tokens_fold_case_and_accents() {
        let t: Vec<String> = tokens("Les Misérables: THE musical's 10th").collect();
        assert_eq!(t, vec!["les", "miserables", "musical", "10th"]);
    }

    #[test]
    fn fts_expression_quotes_terms() {
        let terms = query_terms("The \"dark\" OR comedy NEAR(x) of the 90s", 16);
        assert_eq!(terms, vec!["dark", "comedy", "near", "x", "90s"]);
        let expr = fts_match(&terms, &[vec!["u1".into()], vec![]]).unwrap();
        assert_eq!(expr, "text : (\"dark\" OR \"comedy\" OR \"near\" OR \"x\" OR \"90s\") AND scope : (u1)");
        assert!(fts_match(&[], &[]).is_none());
    }

    proptest! {
        #![proptest_config(crate::deterministic_proptest())]
        #[test]
        fn timestamp_parser_never_panics(s in ".{0,40}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn civil_round_trip(days in -100_000i64..100_000) {
            let (y, m, d) = civil_from_unix(days * 86_400);
            prop_assert_eq!(days_from_civil(y, m as i64, d as i64), days);
        }

        #[test]
        fn split_title_year_never_panics(s in "\\PC{0,12}") {
            let (title, _) = split_title_year(&s);
            prop_assert!(s.contains(title.as_str()));
        }

        #[test]
        fn normalize_is_idempotent(s in "\\PC{0,40}") {
            let once = normalize_title(&s);
            prop_assert_eq!(normalize_title(&once), once.clone());
        }

        #[test]
        fn query_terms_are_plain_words(s in "\\PC{0,80}") {
            for t in query_terms(&s, 16) {
                prop_assert!(t.chars().all(char::is_alphanumeric));
            }
        }
    }
}
