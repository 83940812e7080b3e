//! The error type of the vision plugin.

use std::path::PathBuf;

/// Result alias of `glaze-vision`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading images and weights or running the vision pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not an image in a format Glaze decodes.
    #[error("{path}: unsupported image format: {detail}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// The image header announces more pixels than the decoder limits allow; nothing was allocated.
    #[error("{path}: image of {width}×{height} exceeds the limit of {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit that was hit.
        limit: String,
    },
    /// Decoding would need more memory than the limit (a decompression bomb or a huge frame).
    #[error("{path}: decoding needs more memory than the limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The file.
        path: PathBuf,
        /// The allocation limit.
        limit_bytes: u64,
    },
    /// The file is truncated or corrupt.
    #[error("{path}: corrupt or truncated image: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// A weights file that cannot be used (bad protobuf, missing or misshapen tensors).
    #[error("{path}: {problem}")]
    Weights {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A dataset directory that cannot be used.
    #[error("{path}: {problem}")]
    Dataset {
        /// The directory.
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
    /// An error from the seam (backbone, checkpoints, training engine).
    #[error(transparent)]
    Core(#[from] glaze_core::Error),
}

impl Error {
    /// A configuration value that cannot work.
    pub fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            field,
            problem: problem.into(),
        }
    }

    /// An unusable weights file or directory.
    pub fn weights(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Weights {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
