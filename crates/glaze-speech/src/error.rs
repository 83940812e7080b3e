//! The error type of the speech crate.

use std::path::PathBuf;

/// Result alias of `glaze-speech`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the speech plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or decoding audio, or the encoder.
    #[error(transparent)]
    Audio(#[from] glaze_whisper::Error),
    /// The core engine (prompting, training, checkpoints).
    #[error(transparent)]
    Core(#[from] glaze_core::Error),
    /// A data file (manifest, folder) that cannot be used.
    #[error("{path}: {problem}")]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
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
    pub(crate) fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            field,
            problem: problem.into(),
        }
    }

    pub(crate) fn data(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
