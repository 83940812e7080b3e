//! The error type of the Glaze seam.

use std::path::PathBuf;

/// Result alias used across `glaze-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong at the seam between plugins, prompts and a frozen backbone.
///
/// Inputs are validated once, here; tensor math behind the seam is infallible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A prompt template names a placeholder a different number of times than soft-token
    /// inputs were bound to it.
    #[error(
        "placeholder `{placeholder}` appears {placeholders} time(s) in the prompt but {provided} soft-token input(s) were bound to it"
    )]
    PlaceholderMismatch {
        /// The placeholder text, e.g. `<image>`.
        placeholder: String,
        /// How often it appears in the template.
        placeholders: usize,
        /// How many soft-token inputs were bound to it.
        provided: usize,
    },
    /// A user's text holds a soft-token placeholder that the pipeline places itself.
    #[error(
        "the {field} contains the placeholder `{placeholder}`; the pipeline places the soft tokens itself — remove it from the {field}"
    )]
    PlaceholderInText {
        /// The placeholder text, e.g. `<image>`.
        placeholder: String,
        /// Which text: `question`, `instruction`, ….
        field: &'static str,
    },
    /// Soft tokens were bound to a placeholder the template does not know.
    #[error("soft tokens were bound to `{placeholder}`, which is not a registered placeholder")]
    UnknownPlaceholder {
        /// The unknown placeholder.
        placeholder: String,
    },
    /// Soft tokens whose width is not the backbone's embedding width.
    #[error("soft tokens have width {got}, but the backbone's embedding width is {expected}")]
    WidthMismatch {
        /// The backbone's width.
        expected: usize,
        /// The soft tokens' width.
        got: usize,
    },
    /// A soft-token input with zero tokens.
    #[error("soft-token input for `{placeholder}` is empty (0 tokens)")]
    EmptySoftTokens {
        /// Which placeholder it was bound to.
        placeholder: String,
    },
    /// The prompt produced no positions at all.
    #[error("the prompt is empty: it has no text and no soft tokens")]
    EmptyPrompt,
    /// The sequence would exceed the backbone's context window.
    #[error("sequence of {len} positions exceeds the backbone's context length {max}")]
    ContextOverflow {
        /// Requested length.
        len: usize,
        /// Context length of the backbone.
        max: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The tokenizer failed on a text.
    #[error("tokenizer failed: {message}")]
    Tokenizer {
        /// The tokenizer's message.
        message: String,
    },
    /// The chat template failed to render.
    #[error("chat template failed to render: {message}")]
    Template {
        /// The template engine's message.
        message: String,
    },
    /// A configuration value that cannot work.
    #[error("invalid configuration: {field}: {problem}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Training has no trainable parameter that receives a gradient.
    #[error("nothing to train: no trainable tensor takes part in the loss")]
    NothingToTrain,
    /// Training needs an autodiff device.
    #[error("training needs an autodiff device (e.g. `Device::flex().autodiff()`), got {device}")]
    NotAutodiff {
        /// The device that was given.
        device: String,
    },
    /// The loss became NaN or infinite.
    #[error("loss became non-finite ({value}) at step {step}")]
    NonFiniteLoss {
        /// Step index.
        step: usize,
        /// The loss value.
        value: f32,
    },
    /// A checkpoint file that cannot be used.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A checkpoint trained for another backbone, encoder or adapter kind.
    #[error("checkpoint {path} was trained for {what} {found}, but this pipeline uses {expected}")]
    IdentityMismatch {
        /// The file.
        path: PathBuf,
        /// Which part differs: `backbone`, `encoder` or `adapter kind`.
        what: &'static str,
        /// What the checkpoint records.
        found: String,
        /// What the pipeline has.
        expected: String,
    },
    /// A weights file or directory of a frozen encoder that cannot be used (bad header, missing or
    /// misshapen tensors, unsupported dtype).
    #[error("{path}: unusable weights: {problem}")]
    Weights {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A feature-cache entry that cannot be used.
    #[error("feature cache entry {path}: {problem}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A training run was stopped by its caller before it finished (its last checkpoint
    /// resumes it).
    #[error("training interrupted at step {step}")]
    Interrupted {
        /// Optimizer steps done.
        step: usize,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
