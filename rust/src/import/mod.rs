//! Importers: each parses one source format, streaming, into [`ItemRow`]s and
//! [`InteractionRow`]s that the store's [`ImportWriter`] writes inside one transaction (this module
//! holds no SQL). A bad row aborts the whole import with `file:line: field: problem` and nothing
//! is written.

mod exports;
mod generic;
pub(crate) mod movielens;
mod source;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Location, Result};
use crate::store::import_writer::ImportWriter;
use crate::store::MemoryStore;

pub use source::{parse_rating, MAX_FIELD_BYTES};

/// The formats `mrrec import` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    MovieLens100k,
    MovieLensCsv,
    ItemsCsv,
    ItemsJsonl,
    InteractionsCsv,
    InteractionsJsonl,
    Letterboxd,
    Goodreads,
}

impl ImportKind {
    pub const ALL: [ImportKind; 8] = [
        ImportKind::MovieLens100k,
        ImportKind::MovieLensCsv,
        ImportKind::ItemsCsv,
        ImportKind::ItemsJsonl,
        ImportKind::InteractionsCsv,
        ImportKind::InteractionsJsonl,
        ImportKind::Letterboxd,
        ImportKind::Goodreads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ImportKind::MovieLens100k => "movielens-100k",
            ImportKind::MovieLensCsv => "movielens-csv",
            ImportKind::ItemsCsv => "items-csv",
            ImportKind::ItemsJsonl => "items-jsonl",
            ImportKind::InteractionsCsv => "interactions-csv",
            ImportKind::InteractionsJsonl => "interactions-jsonl",
            ImportKind::Letterboxd => "letterboxd",
            ImportKind::Goodreads => "goodreads",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            Error::InvalidArgument(format!("unknown import kind {name:?} (one of: {})", names.join(", ")))
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The user the rows belong to, for exports of one person (letterboxd, goodreads).
    pub user: Option<String>,
    /// MovieLens 25M keyword catalog used to enrich MovieLens 100K items.
    pub keywords: Option<PathBuf>,
}

/// A catalog item as a source describes it. `alias` is its external id, namespaced by source
/// (`ml100k:1`, `ml:1`, `letterboxd:heat`, or as given in generic files).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemRow {
    pub alias: String,
    pub title: String,
    pub year: Option<i32>,
    pub categories: Vec<String>,
    pub keywords: Vec<String>,
    pub description: Option<String>,
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemRef {
    /// An item already in the catalog (or earlier in this import).
    Alias(String),
    /// An item described inline (exports): matched to the catalog or created.
    Row(ItemRow),
}

#[derive(Debug, Clone, PartialEq)]
pub struct InteractionRow {
    pub user: String,
    pub item: ItemRef,
    /// 0..=5.
    pub rating: Option<f64>,
    pub timestamp: Option<i64>,
    pub text: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub kind: String,
    pub files: Vec<PathBuf>,
    pub items_added: u64,
    /// Items that matched one already in the catalog (same id, or same title and year).
    pub items_matched: u64,
    pub users_added: u64,
    pub records_added: u64,
    /// Records already present (re-import of the same file).
    pub records_skipped: u64,
    pub memory_added: u64,
    /// MovieLens 100K items enriched with MovieLens 25M keywords.
    pub keywords_matched: u64,
    pub rows: u64,
}

/// Callback with (bytes done, bytes total); returning an error aborts (and rolls back) the import.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64) -> Result<()>;

/// Receives parsed rows. Implemented by [`ImportWriter`]; parsers know nothing of SQLite.
pub trait Sink {
    fn item(&mut self, row: ItemRow, at: &Location) -> Result<()>;
    fn interaction(&mut self, row: InteractionRow, at: &Location) -> Result<()>;
    fn user(&mut self, ext_id: &str, attributes: Map<String, Value>, at: &Location) -> Result<()>;
    /// Called now and then with the bytes consumed so far across all files.
    fn progress(&mut self, bytes: u64) -> Result<()>;
    fn report(&mut self) -> &mut ImportReport;
}

/// The files an import of `kind` at `path` will read (for progress totals and the report).
fn files_for(kind: ImportKind, path: &Path, opts: &ImportOptions) -> Result<Vec<PathBuf>> {
    let mut files = match kind {
        ImportKind::MovieLens100k => movielens::files_100k(path)?,
        ImportKind::MovieLensCsv => movielens::files_csv(path)?,
        ImportKind::Letterboxd => exports::letterboxd_files(path)?,
        _ => {
            if !path.is_file() {
                return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
            }
            vec![path.to_path_buf()]
        }
    };
    if let Some(k) = &opts.keywords {
        files.push(k.clone());
    }
    Ok(files)
}

fn check_options(kind: ImportKind, opts: &ImportOptions) -> Result<()> {
    if opts.keywords.is_some() && kind != ImportKind::MovieLens100k {
        return Err(Error::InvalidArgument("--keywords applies to movielens-100k imports only".into()));
    }
    if matches!(kind, ImportKind::Letterboxd | ImportKind::Goodreads) && opts.user.is_none() {
        return Err(Error::InvalidArgument(format!("a {} import needs the user it belongs to", kind.name())));
    }
    Ok(())
}

/// Parses the rows of an import of `kind` at `path` into `sink`.
fn parse_rows(kind: ImportKind, path: &Path, opts: &ImportOptions, sink: &mut dyn Sink) -> Result<()> {
    match kind {
        ImportKind::MovieLens100k => movielens::import_100k(path, opts, sink),
        ImportKind::MovieLensCsv => movielens::import_csv(path, sink),
        ImportKind::ItemsCsv => generic::import_items(path, false, sink),
        ImportKind::ItemsJsonl => generic::import_items(path, true, sink),
        ImportKind::InteractionsCsv => generic::import_interactions(path, false, sink),
        ImportKind::InteractionsJsonl => generic::import_interactions(path, true, sink),
        ImportKind::Letterboxd => exports::import_letterboxd(path, opts, sink),
        ImportKind::Goodreads => exports::import_goodreads(path, opts, sink),
    }
}

/// The rows an import of `kind` at `path` would write, handed to `sink` with no store involved:
/// the parsing half of [`MemoryStore::import`]. The fuzz targets (`rust/fuzz`) drive it.
pub fn parse(kind: ImportKind, path: &Path, opts: &ImportOptions, sink: &mut dyn Sink) -> Result<()> {
    check_options(kind, opts)?;
    parse_rows(kind, path, opts, sink)
}

impl MemoryStore {
    /// Imports a file (or export folder) in one transaction: all of it, or none of it.
    pub fn import(
        &self,
        kind: ImportKind,
        path: &Path,
        opts: &ImportOptions,
        progress: Progress<'_>,
    ) -> Result<ImportReport> {
        check_options(kind, opts)?;
        let files = files_for(kind, path, opts)?;
        let report = self.write("while importing", |tx, changes| {
            let mut writer = ImportWriter::for_import(tx, changes, kind, &files, progress)?;
            parse_rows(kind, path, opts, &mut writer)?;
            writer.finish()
        })?;
        Ok(report)
    }
}
