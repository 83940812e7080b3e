//! The error type of `glaze-llm`.

use std::path::PathBuf;

/// Result alias used across `glaze-llm`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while loading or running a backbone. Every variant that concerns a file
/// names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file is malformed, truncated or unsupported.
    #[error("{path}: {problem}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: GgufProblem,
    },
    /// A tensor type the loader cannot dequantize.
    #[error(
        "{path}: tensor `{name}` has ggml type {ggml_type} ({type_name}), which is not supported"
    )]
    UnsupportedTensorType {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Numeric ggml type.
        ggml_type: u32,
        /// Its name, when known.
        type_name: &'static str,
    },
    /// A required tensor is absent.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The file or directory.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape {
        /// The file or directory.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Shape found.
        got: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// A model configuration field is missing or invalid.
    #[error("{path}: config field `{field}`: {problem}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The file asks for a structural feature this crate does not implement.
    #[error("{path}: `{feature}` is not supported")]
    UnsupportedFeature {
        /// The file.
        path: PathBuf,
        /// The feature, as the file names it.
        feature: String,
    },
    /// The architecture is not a Llama-family decoder.
    #[error("{path}: unsupported architecture `{architecture}` (supported: llama, mistral, qwen2)")]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// Architecture name found.
        architecture: String,
    },
    /// A safetensors file could not be read.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The tokenizer could not be built.
    #[error("{path}: cannot build the tokenizer: {message}")]
    TokenizerBuild {
        /// The file it came from.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The path is neither a GGUF file nor an HF model directory.
    #[error(
        "{path}: not a GGUF file or a Hugging Face model directory (config.json + *.safetensors)"
    )]
    UnknownModelFormat {
        /// The path.
        path: PathBuf,
    },
    /// The default model has not been fetched.
    #[error("default model not found at {path}; run `cargo xtask fetch` (or set GLAZE_CACHE)")]
    ModelNotFetched {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An error at the seam.
    #[error(transparent)]
    Core(#[from] glaze_core::Error),
}

/// What is wrong with a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GgufProblem {
    /// The first four bytes are not `GGUF`.
    #[error("wrong magic {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// Only versions 2 and 3 are read.
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion {
        /// Version found.
        version: u32,
    },
    /// The file ends before a header field.
    #[error(
        "truncated: needed {needed} bytes at offset {offset} while reading {what}, file has {len}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: usize,
        /// How many bytes.
        needed: usize,
        /// File length.
        len: usize,
    },
    /// A metadata value type outside the specification.
    #[error("metadata key `{key}` has unknown value type {value_type}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type code.
        value_type: u32,
    },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    BadUtf8 {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// A count or size that cannot fit in the file.
    #[error("implausible {what} {value} at offset {offset}")]
    Implausible {
        /// What.
        what: &'static str,
        /// The value.
        value: u64,
        /// Where.
        offset: usize,
    },
    /// A tensor's data lies (partly) past the end of the file.
    #[error("tensor `{name}` data [{start}, {end}) lies past the end of the file ({len} bytes)")]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// Absolute start offset.
        start: u64,
        /// Absolute end offset.
        end: u64,
        /// File length.
        len: usize,
    },
    /// A tensor's element count is not a multiple of its type's block size.
    #[error("tensor `{name}` has {elements} elements, not a multiple of the block size {block}")]
    RaggedBlocks {
        /// Tensor name.
        name: String,
        /// Element count.
        elements: u64,
        /// Block size of its type.
        block: u64,
    },
    /// A required metadata key is absent or has the wrong type.
    #[error("metadata key `{key}` is missing or is not {expected}")]
    Metadata {
        /// The key.
        key: String,
        /// The expected type.
        expected: &'static str,
    },
    /// Two tensors share a name.
    #[error("duplicate tensor name `{name}`")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
}
