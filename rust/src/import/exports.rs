//! Personal exports from services: Letterboxd (films) and Goodreads (books). Each belongs to
//! one person, named by `ImportOptions::user`. Items are matched to the catalog by title and
//! year, or added to it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::movielens::PROGRESS_EVERY;
use super::source::{CsvSource, Encoding, Fields, Row};
use super::{ImportOptions, InteractionRow, ItemRef, ItemRow, Sink};
use crate::error::{Error, Result};
use crate::text::normalize_title;

const LETTERBOXD_FILES: [&str; 3] = ["ratings.csv", "reviews.csv", "watched.csv"];

pub(super) fn letterboxd_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files: Vec<PathBuf> = LETTERBOXD_FILES.iter().map(|f| path.join(f)).filter(|p| p.is_file()).collect();
    if files.is_empty() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a Letterboxd export (expected ratings.csv, reviews.csv or watched.csv)",
            ),
        ));
    }
    Ok(files)
}

/// A film's identity in an export: its Letterboxd URI, else its title and year.
fn letterboxd_key(row: &Row<'_>) -> Result<String> {
    match row.get("letterboxd uri")? {
        Some(uri) => Ok(uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri).to_string()),
        None => {
            let title = row.required("name")?;
            Ok(format!("{}-{}", normalize_title(&title).replace(' ', "-"), row.get("year")?.unwrap_or("")))
        }
    }
}

fn letterboxd_interaction(row: &Row<'_>, user: &str, review: Option<String>) -> Result<InteractionRow> {
    let item = ItemRow {
        alias: format!("letterboxd:{}", letterboxd_key(row)?),
        title: row.required("name")?,
        year: row.year("year")?,
        ..Default::default()
    };
    let timestamp = match row.timestamp("watched date")? {
        Some(t) => Some(t),
        None => row.timestamp("date")?,
    };
    let tags = row.get("tags")?.map(|t| format!("Tags: {t}"));
    let text = match (review, tags) {
        (Some(r), Some(t)) => Some(format!("{r}\n{t}")),
        (r, t) => r.or(t),
    };
    Ok(InteractionRow {
        user: user.to_string(),
        item: ItemRef::Row(item),
        rating: row.rating("rating")?,
        timestamp,
        text,
    })
}

/// Calls `each` for every row of a Letterboxd CSV (after checking its header).
fn each_letterboxd_row(
    path: &Path,
    sink: &mut dyn Sink,
    offset: u64,
    mut each: impl FnMut(&Row<'_>, &mut dyn Sink) -> Result<()>,
) -> Result<u64> {
    let mut src = CsvSource::open(path, b',', true, None, Encoding::Utf8)?;
    src.require(&["name"])?;
    let mut n = 0u64;
    while let Some(row) = src.next_row()? {
        each(&row, sink)?;
        n += 1;
        if n % PROGRESS_EVERY == 0 {
            sink.progress(offset + src.bytes_read())?;
        }
    }
    let done = offset + src.bytes_read();
    sink.progress(done)?;
    Ok(done)
}

pub(super) fn import_letterboxd(path: &Path, opts: &ImportOptions, sink: &mut dyn Sink) -> Result<()> {
    let user = opts.user.as_deref().expect("checked by the caller");
    if path.is_file() {
        each_letterboxd_row(path, sink, 0, |row, sink| {
            let review = row.get("review")?.map(str::to_string);
            sink.interaction(letterboxd_interaction(row, user, review)?, &row.at)
        })?;
        return Ok(());
    }
    // A whole export: ratings carry the rating, reviews.csv adds text to the same film, and
    // watched.csv adds films seen but never rated.
    let (ratings, reviews, watched) = (path.join("ratings.csv"), path.join("reviews.csv"), path.join("watched.csv"));
    let mut review_text: HashMap<String, String> = HashMap::new();
    let mut review_rows_done = 0;
    if reviews.is_file() {
        review_rows_done = each_letterboxd_row(&reviews, sink, 0, |row, _| {
            if let Some(text) = row.get("review")? {
                review_text.insert(letterboxd_key(row)?, text.to_string());
            }
            Ok(())
        })?;
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut done = review_rows_done;
    if ratings.is_file() {
        done = each_letterboxd_row(&ratings, sink, done, |row, sink| {
            let key = letterboxd_key(row)?;
            let interaction = letterboxd_interaction(row, user, review_text.remove(&key))?;
            seen.insert(key);
            sink.interaction(interaction, &row.at)
        })?;
    }
    if reviews.is_file() {
        // Reviewed films that were never rated on their own.
        done = each_letterboxd_row(&reviews, sink, done, |row, sink| {
            let key = letterboxd_key(row)?;
            if let Some(text) = review_text.remove(&key) {
                seen.insert(key);
                sink.interaction(letterboxd_interaction(row, user, Some(text))?, &row.at)?;
            }
            Ok(())
        })?;
    }
    if watched.is_file() {
        each_letterboxd_row(&watched, sink, done, |row, sink| {
            let key = letterboxd_key(row)?;
            if seen.insert(key) {
                sink.interaction(letterboxd_interaction(row, user, None)?, &row.at)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Goodreads writes ISBNs as `="0439554934"` so spreadsheets keep leading zeros.
fn clean_isbn(raw: Option<&str>) -> Option<String> {
    let v = raw?.trim_start_matches('=').trim_matches('"').trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Review HTML to plain text: `<br/>` becomes a newline, other tags are dropped.
fn strip_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut tag = String::new();
    let mut in_tag = false;
    for c in raw.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                if tag.trim_start_matches('/').to_lowercase().starts_with("br") {
                    out.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Shelves that say where a book is, not what it is about.
const STATUS_SHELVES: [&str; 3] = ["read", "to-read", "currently-reading"];

pub(super) fn import_goodreads(path: &Path, opts: &ImportOptions, sink: &mut dyn Sink) -> Result<()> {
    let user = opts.user.as_deref().expect("checked by the caller");
    let mut src = CsvSource::open(path, b',', true, None, Encoding::Utf8)?;
    src.require(&["book id", "title", "my rating", "exclusive shelf"])?;
    let mut n = 0u64;
    while let Some(row) = src.next_row()? {
        let year = match row.year("original publication year")? {
            Some(y) => Some(y),
            None => row.year("year published")?,
        };
        let mut attributes = Map::new();
        for (key, value) in [
            ("author", row.get("author")?.map(str::to_string)),
            ("isbn13", clean_isbn(row.get("isbn13")?)),
            ("isbn", clean_isbn(row.get("isbn")?)),
            ("pages", row.get("number of pages")?.map(str::to_string)),
            ("publisher", row.get("publisher")?.map(str::to_string)),
        ] {
            if let Some(v) = value {
                attributes.insert(key.into(), Value::String(v));
            }
        }
        let categories =
            row.list("bookshelves")?.into_iter().filter(|s| !STATUS_SHELVES.contains(&s.as_str())).collect();
        let item = ItemRow {
            alias: format!("goodreads:{}", row.required("book id")?),
            title: row.required("title")?,
            year,
            categories,
            description: row.get("author")?.map(|a| format!("A book by {a}.")),
            attributes,
            ..Default::default()
        };
        let shelf = row.required("exclusive shelf")?;
        if shelf == "to-read" {
            // Wanted, not yet read: it belongs in the catalog, not in the reading history.
            sink.item(item, &row.at)?;
        } else {
            // Goodreads writes 0 for "not rated".
            let rating = row.rating("my rating")?.filter(|r| *r > 0.0);
            let timestamp = match row.timestamp("date read")? {
                Some(t) => Some(t),
                None => row.timestamp("date added")?,
            };
            let text = row.get("my review")?.map(strip_html).filter(|t| !t.is_empty());
            sink.interaction(
                InteractionRow { user: user.to_string(), item: ItemRef::Row(item), rating, timestamp, text },
                &row.at,
            )?;
        }
        n += 1;
        if n % PROGRESS_EVERY == 0 {
            sink.progress(src.bytes_read())?;
        }
    }
    sink.progress(src.bytes_read())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_isbn_cleanup() {
        assert_eq!(strip_html("Loved it.<br/><br/>Would <b>reread</b>."), "Loved it.\n\nWould reread.");
        assert_eq!(clean_isbn(Some("=\"0439554934\"")), Some("0439554934".into()));
        assert_eq!(clean_isbn(Some("=\"\"")), None);
    }
}
