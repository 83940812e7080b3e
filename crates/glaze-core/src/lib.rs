#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod adapter;
pub mod answer;
pub mod backbone;
pub mod decode_batch;
pub mod device;
pub mod error;
pub mod generate;
pub mod harness;
pub mod kv_cache;
pub mod layers;
pub mod loss;
pub mod params;
pub mod prompt;
pub mod rng;
pub mod soft;
pub mod soft_prompt;
pub mod tensor_store;
pub mod word_embeddings;

pub use adapter::{Adapter, Condition, Encoder, EncoderSpec, Features};
pub use backbone::{
    BackboneSpec, ChatMessage, ForwardOptions, FrozenBackbone, KvCache, TextCodec,
    embedding_sketch, sketch_distance,
};
pub use decode_batch::{Admitted, DecodeBatch, RowEvent, RowId};
pub use device::DeviceChoice;
pub use error::{Error, Result};
pub use generate::{
    FinishReason, Generation, GenerationConfig, generate, generate_batch, generate_cached,
    generate_until,
};
pub use loss::RegressionLoss;
pub use params::{NamedTensor, count_params, export_params, import_params};
pub use prompt::{
    DEFAULT_PLACEHOLDERS, Embedded, EmbeddedBatch, Prompt, PromptTemplate, Segment, embed_batch,
    embed_prompt, pad_left,
};
pub use rng::SplitMix64;
pub use soft::SoftTokens;
pub use soft_prompt::{SoftPrompt, SoftPromptConfig};
pub use tensor_store::{StoredTensor, TensorStore};
pub use word_embeddings::WordEmbeddings;

/// The asset cache shared by every crate (weights, datasets, feature caches):
/// `$GLAZE_CACHE`, else `$XDG_CACHE_HOME/glaze`, else `$HOME/.cache/glaze`.
pub fn cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(dir) = std::env::var_os("GLAZE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("glaze");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("glaze")
}

/// The FNV-1a hash of a file's bytes, as 16 hex digits: the weights hash encoders record in
/// checkpoints and feature-cache identities.
pub fn file_hash(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:016x}", fnv1a64(&bytes, 0)))
}

pub use glaze_kernels::fnv1a64;
