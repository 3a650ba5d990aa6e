//! The one error type of the core. The Python bindings map each variant onto a class of the
//! `mrrec_edge.errors` hierarchy (see `python.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input file a problem was found: `file:line: field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u64,
    pub field: Option<String>,
}

impl Location {
    pub fn new(file: &Path, line: u64) -> Self {
        Location { file: file.to_path_buf(), line, field: None }
    }

    pub fn field(&self, field: &str) -> Self {
        Location { field: Some(field.to_string()), ..self.clone() }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input data; the message names the file, line and field.
    #[error("{location}: {message}")]
    Input { location: Location, message: String },

    /// A bad argument from the caller (not from a file).
    #[error("{0}")]
    InvalidArgument(String),

    #[error("{0}")]
    NotFound(String),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("memory database is locked by another process: {0}")]
    Locked(String),

    #[error("memory database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A write to `path` failed because its disk is full (`full`) or its file system or folder
    /// cannot be written; what was being written was undone. See [`Error::on_disk`].
    #[error("{}: {}", path.display(), if *full { "no space left on device" } else { "read-only file system" })]
    Disk { path: PathBuf, full: bool },

    #[error("memory database {path}: {message}")]
    Schema { path: PathBuf, message: String },

    #[error("dense index: {0}")]
    DenseIndex(String),

    /// A callback into the host (embedder, progress) failed; carries its message.
    #[error("{0}")]
    Callback(String),

    /// The import was cancelled by the host.
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn input(location: Location, message: impl Into<String>) -> Self {
        Error::Input { location, message: message.into() }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// SQLITE_BUSY after the busy timeout means another process holds the write lock.
    pub fn from_sqlite(err: rusqlite::Error, context: &str) -> Self {
        match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                Error::Locked(context.to_string())
            }
            _ => Error::Sqlite(err),
        }
    }

    /// This error as [`Error::Disk`] at `file` when a full or unwritable disk caused it, else
    /// unchanged. Called where the core writes (a transaction, an index file), so the message
    /// names the file and never blames the input. Some writers do not say why a write failed
    /// (SQLite: "unable to open database file" or "disk I/O error" when it cannot create or grow
    /// its WAL or shared-memory file; usearch: "Failed to serialize into stream"): for those a
    /// one-byte write beside `file` decides, so call this before deleting a partial file.
    pub fn on_disk(self, file: &Path) -> Self {
        let unclear = match &self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::SystemIoFailure)
            }
            Error::DenseIndex(_) => true,
            _ => false,
        };
        let full = match self.disk_full() {
            None if unclear => file.parent().and_then(cannot_write_in),
            known => known,
        };
        match full {
            Some(full) => Error::Disk { path: file.to_path_buf(), full },
            None => self,
        }
    }

    /// `Some(true)`: the disk is full; `Some(false)`: it cannot be written; `None`: another error
    /// (or one that does not say: see [`Error::on_disk`]).
    pub fn disk_full(&self) -> Option<bool> {
        match self {
            Error::Disk { full, .. } => Some(*full),
            Error::Io { source, .. } => io_disk_full(source),
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
                rusqlite::ErrorCode::DiskFull => Some(true),
                rusqlite::ErrorCode::ReadOnly => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

/// [`Error::disk_full`] of an OS error.
pub fn io_disk_full(e: &std::io::Error) -> Option<bool> {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Some(true),
        std::io::ErrorKind::ReadOnlyFilesystem => Some(false),
        _ => None,
    }
}

/// Whether one byte can be written to a new file in `dir`: `None` when it can, else as
/// [`Error::disk_full`] (a folder without write permission counts as read-only).
fn cannot_write_in(dir: &Path) -> Option<bool> {
    use std::io::Write;
    let probe = dir.join(format!(".mrrec-write-probe-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut file| file.write_all(b"x").and_then(|()| file.sync_all()));
    let _ = std::fs::remove_file(&probe);
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(false),
        Err(e) => io_disk_full(&e),
        Ok(()) => None,
    }
}

impl From<rusqlite::types::FromSqlError> for Error {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Error::Sqlite(rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Null, Box::new(e)))
    }
}

/// usearch reports failures as C++ exceptions; keep their text.
pub fn dense_err(e: impl fmt::Display) -> Error {
    Error::DenseIndex(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_read_only_disk_is_told_apart_from_other_errors() {
        let io = |kind: std::io::ErrorKind| Error::io(Path::new("f"), std::io::Error::from(kind));
        assert_eq!(io(std::io::ErrorKind::StorageFull).disk_full(), Some(true));
        assert_eq!(io(std::io::ErrorKind::QuotaExceeded).disk_full(), Some(true));
        assert_eq!(io(std::io::ErrorKind::ReadOnlyFilesystem).disk_full(), Some(false));
        assert_eq!(io(std::io::ErrorKind::NotFound).disk_full(), None);
        let sqlite = |code: i32| Error::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_FULL).disk_full(), Some(true));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_READONLY).disk_full(), Some(false));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_CORRUPT).disk_full(), None);
        // An error that does not say why is tried against the disk: this one is writable.
        let dir = tempfile::tempdir().expect("temp dir");
        let unclear = Error::DenseIndex("Failed to serialize into stream".into());
        assert!(matches!(unclear.on_disk(&dir.path().join("memory.usearch")), Error::DenseIndex(_)));
        let disk = io(std::io::ErrorKind::StorageFull).on_disk(Path::new("/h/memory.sqlite3"));
        assert!(matches!(&disk, Error::Disk { full: true, path } if path == Path::new("/h/memory.sqlite3")));
        assert!(matches!(io(std::io::ErrorKind::NotFound).on_disk(Path::new("x")), Error::Io { .. }));
    }
}
