//! The error type of the time-series plugin.

use std::path::PathBuf;

/// Result alias of `glaze-timeseries`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading series or running the forecasting pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cell of a CSV file that cannot be used. `line` is the 1-based line of the file.
    #[error("{path}: line {line}, column `{column}`: {problem}")]
    Cell {
        /// The file.
        path: PathBuf,
        /// 1-based line number in the file (the header is line 1).
        line: usize,
        /// Column name.
        column: String,
        /// What is wrong.
        problem: String,
    },
    /// The CSV header or layout is unusable.
    #[error("{path}: {problem}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A requested column does not exist.
    #[error("{path}: no column `{column}` (columns: {available})")]
    UnknownColumn {
        /// The file.
        path: PathBuf,
        /// The requested column.
        column: String,
        /// The columns the file has.
        available: String,
    },
    /// The series is too short for the requested windows or splits.
    #[error("{path}: {rows} rows is too short: {needed}")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Rows in the file.
        rows: usize,
        /// What would be needed.
        needed: String,
    },
    /// A configuration value that cannot work.
    #[error("invalid configuration: {field}: {problem}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An error from the seam (backbone, checkpoints, training engine).
    #[error(transparent)]
    Core(#[from] glaze_core::Error),
}

impl Error {
    pub(crate) fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            field,
            problem: problem.into(),
        }
    }
}
