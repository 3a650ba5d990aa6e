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
