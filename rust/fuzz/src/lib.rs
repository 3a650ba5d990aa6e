//! What the fuzz targets share: a scratch folder for import files, the carving of one input into
//! a folder's files, a sink that checks what the parsers promise about every row they hand on,
//! and the check of how an import ended.
//!
//! The importer targets drive `mrrec_core::import::parse`, the parsing half of
//! `MemoryStore::import`, and build each row's item and memory text as the store's writer does
//! (`item_text`, `behavior_text`). The SQL writer itself is covered by the property tests
//! (`rust/tests/import_fuzz.rs`, `tests/reliability/test_hostile_import.py`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mrrec_core::import::{ImportReport, InteractionRow, ItemRef, ItemRow, Sink};
use mrrec_core::store::{behavior_text, item_text};
use mrrec_core::{Error, Location, Result};
use serde_json::{Map, Value};

/// Separates the files of a folder inside one fuzz input: a line no real import file holds.
/// `scripts/fuzz` joins a folder's seed files with it, and the dictionaries list it.
pub const FILE_SEPARATOR: &[u8] = b"\n--8<--\n";

/// This process's scratch folder for the files an input becomes (under `$TMPDIR`; `scripts/fuzz`
/// points that at a tmpfs when there is one).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mrrec-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

/// Splits `data` at [`FILE_SEPARATOR`] into at most `n` parts (the last keeps any further
/// separators); fewer parts when the input holds fewer separators.
pub fn split_files(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(FILE_SEPARATOR.len()).position(|w| w == FILE_SEPARATOR) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + FILE_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

/// Makes `dir` hold exactly the given files: each `Some` is written, each `None` removed.
pub fn write_folder(dir: &Path, files: &[(&str, Option<&[u8]>)]) {
    std::fs::create_dir_all(dir).expect("create the folder");
    for (name, bytes) in files {
        let path = dir.join(name);
        match bytes {
            Some(b) => std::fs::write(&path, b).expect("write a scratch file"),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {}: {e}", path.display()),
                _ => {}
            },
        }
    }
}

/// A sink that keeps no rows but checks each against what the parsers promise, and builds the
/// text the store's writer would build from it.
#[derive(Default)]
pub struct CheckingSink {
    /// Years read with `parse_year` lie in 1000..=3000; MovieLens titles carry any four digits.
    pub any_year: bool,
    last_progress: u64,
    report: ImportReport,
}

impl CheckingSink {
    pub fn new(any_year: bool) -> Self {
        CheckingSink { any_year, ..Default::default() }
    }

    fn check_item(&self, row: &ItemRow) {
        assert!(!row.alias.trim().is_empty(), "an item with an empty id: {row:?}");
        if let Some(y) = row.year {
            assert!(self.any_year || (1000..=3000).contains(&y), "year {y} out of range: {row:?}");
        }
        for list in [&row.categories, &row.keywords] {
            assert!(list.iter().all(|c| !c.trim().is_empty()), "an empty list entry: {row:?}");
        }
        let text = item_text(&row.title, row.year, &row.categories, &row.keywords, row.description.as_deref());
        assert!(text.starts_with(&row.title), "item text {text:?} does not start with the title");
        // What the writer stores as the item's attributes must serialise.
        let _ = Value::Object(row.attributes.clone()).to_string();
    }
}

impl Sink for CheckingSink {
    fn item(&mut self, row: ItemRow, _at: &Location) -> Result<()> {
        self.report.rows += 1;
        self.check_item(&row);
        Ok(())
    }

    fn interaction(&mut self, row: InteractionRow, _at: &Location) -> Result<()> {
        self.report.rows += 1;
        assert!(!row.user.trim().is_empty(), "an interaction with an empty user: {row:?}");
        if let Some(r) = row.rating {
            assert!(r.is_finite() && (0.0..=5.0).contains(&r), "rating {r} out of range: {row:?}");
        }
        let (title, year, categories) = match &row.item {
            ItemRef::Alias(alias) => {
                assert!(!alias.trim().is_empty(), "an interaction with an empty item id: {row:?}");
                (alias.clone(), None, Vec::new())
            }
            ItemRef::Row(item) => {
                self.check_item(item);
                (item.title.clone(), item.year, item.categories.clone())
            }
        };
        if let Some(ts) = row.timestamp {
            let (_, m, d) = mrrec_core::text::civil_from_unix(ts);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "timestamp {ts} gave month {m}, day {d}");
        }
        let text = behavior_text(&title, year, &categories, row.rating, row.timestamp, row.text.as_deref());
        assert!(text.contains(&title), "memory text {text:?} lost the title");
        Ok(())
    }

    fn user(&mut self, ext_id: &str, attributes: Map<String, Value>, _at: &Location) -> Result<()> {
        self.report.rows += 1;
        assert!(!ext_id.trim().is_empty(), "a user with an empty id");
        let _ = Value::Object(attributes).to_string();
        Ok(())
    }

    fn progress(&mut self, bytes: u64) -> Result<()> {
        assert!(bytes >= self.last_progress, "progress went back from {} to {bytes}", self.last_progress);
        self.last_progress = bytes;
        Ok(())
    }

    fn report(&mut self) -> &mut ImportReport {
        &mut self.report
    }
}

/// How an import may end: imported, or refused with an input error that names one of its files
/// and a line. `missing_files` allows the not-found error of a folder that lacks a file.
pub fn check_outcome(result: Result<()>, files: &[PathBuf], missing_files: bool) {
    match result {
        Ok(()) => {}
        Err(e @ Error::Input { .. }) => {
            let message = e.to_string();
            let Error::Input { location, message: problem } = &e else { unreachable!() };
            assert!(files.contains(&location.file), "{message:?} names a file the import did not read");
            assert!(location.line >= 1, "{message:?} names no line");
            assert!(!problem.is_empty(), "{message:?} says no problem");
        }
        Err(Error::Io { path, source }) if missing_files && source.kind() == std::io::ErrorKind::NotFound => {
            assert!(path.starts_with(scratch()), "not found: {} is outside the input", path.display());
        }
        Err(other) => panic!("an import ended in {other:?}, neither imported nor an input error"),
    }
}
