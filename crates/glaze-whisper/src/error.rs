//! The error type of the audio crate.

use std::path::PathBuf;

/// Result alias of `glaze-audio`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading audio.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not an audio format Glaze decodes.
    #[error("{path}: unsupported audio: {detail}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// Truncated or corrupt data.
    #[error("{path}: corrupt or truncated audio: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// The file holds no samples.
    #[error("{path}: the audio is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Longer than the limit.
    #[error("{path}: {seconds:.1} s of audio exceeds the limit of {limit:.1} s")]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Duration found (or announced) in seconds.
        seconds: f64,
        /// The limit.
        limit: f64,
    },
    /// A weights file or directory that cannot be used (bad header, missing or misshapen tensors).
    #[error("{path}: unusable weights: {problem}")]
    Weights {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A data folder or file that is not what a loader expects (naming scheme, manifest).
    #[error("{path}: {problem}")]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An adapter checkpoint or training run failed in the core engine.
    #[error(transparent)]
    Core(#[from] glaze_core::Error),
    /// A configuration value that cannot work.
    #[error("invalid configuration: {field}: {problem}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl Error {
    /// An unusable weights file or directory.
    pub fn weights(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Weights {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// A configuration value that cannot work.
    pub fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            field,
            problem: problem.into(),
        }
    }
}
