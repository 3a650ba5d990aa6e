//! Generic catalogs and interaction logs, as CSV (with a header) or JSON Lines.
//!
//! Items: `item_id`, `title`, optional `text` (a description), `categories` (`a|b` or a JSON
//! list), `year`; other columns are kept as attributes. Interactions: `user_id`, `item_id`,
//! optional `rating` (0..5), `timestamp` (unix seconds or YYYY-MM-DD), `text` (review or tags).

use std::path::Path;

use super::movielens::PROGRESS_EVERY;
use super::source::{CsvSource, Encoding, Fields, JsonlSource};
use super::{InteractionRow, ItemRef, ItemRow, Sink};
use crate::error::Result;

const ITEM_FIELDS: [&str; 5] = ["item_id", "title", "text", "categories", "year"];

fn item_row(row: &dyn Fields) -> Result<ItemRow> {
    Ok(ItemRow {
        alias: row.required("item_id")?,
        title: row.required("title")?,
        year: row.year("year")?,
        categories: row.list("categories")?,
        keywords: Vec::new(),
        description: row.text("text")?,
        attributes: row.extra(&ITEM_FIELDS)?,
    })
}

fn interaction_row(row: &dyn Fields) -> Result<InteractionRow> {
    Ok(InteractionRow {
        user: row.required("user_id")?,
        item: ItemRef::Alias(row.required("item_id")?),
        rating: row.rating("rating")?,
        timestamp: row.timestamp("timestamp")?,
        text: row.text("text")?,
    })
}

/// Feeds every row of a CSV or JSONL file to `each`, reporting progress as it goes.
fn for_each_row(
    path: &Path,
    jsonl: bool,
    required: &[&str],
    sink: &mut dyn Sink,
    mut each: impl FnMut(&dyn Fields, &mut dyn Sink) -> Result<()>,
) -> Result<()> {
    let mut n = 0u64;
    if jsonl {
        let mut src = JsonlSource::open(path)?;
        while let Some(row) = src.next_row()? {
            each(&row, sink)?;
            n += 1;
            if n % PROGRESS_EVERY == 0 {
                sink.progress(src.bytes_read())?;
            }
        }
        sink.progress(src.bytes_read())
    } else {
        let mut src = CsvSource::open(path, b',', true, None, Encoding::Utf8)?;
        src.require(required)?;
        loop {
            let Some(row) = src.next_row()? else { break };
            each(&row, sink)?;
            n += 1;
            if n % PROGRESS_EVERY == 0 {
                let bytes = src.bytes_read();
                sink.progress(bytes)?;
            }
        }
        sink.progress(src.bytes_read())
    }
}

pub(super) fn import_items(path: &Path, jsonl: bool, sink: &mut dyn Sink) -> Result<()> {
    for_each_row(path, jsonl, &["item_id", "title"], sink, |row, sink| {
        let item = item_row(row)?;
        sink.item(item, row.at())
    })
}

pub(super) fn import_interactions(path: &Path, jsonl: bool, sink: &mut dyn Sink) -> Result<()> {
    for_each_row(path, jsonl, &["user_id", "item_id"], sink, |row, sink| {
        let interaction = interaction_row(row)?;
        sink.interaction(interaction, row.at())
    })
}
