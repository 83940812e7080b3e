#![doc = include_str!("../README.md")]

pub mod adapter;
pub mod alloc;
pub mod answer;
pub mod atomic;
pub mod backbone;
pub mod checkpoint;
pub mod device;
pub mod error;
pub mod feature_cache;
pub mod gemm;
pub mod generate;
pub mod harness;
pub mod layers;
pub mod loss;
pub mod matmul;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod plot;
pub mod product_grad;
pub mod prompt;
pub mod rng;
pub mod schedule;
pub mod soft;
pub mod soft_prompt;
pub mod softmax;
pub mod tensor_store;
pub mod trainer;
pub mod tuning;
pub mod vmath;

pub use adapter::{Adapter, Condition, Encoder, EncoderSpec, Features};
pub use backbone::{BackboneSpec, ChatMessage, ForwardOptions, FrozenBackbone, KvCache, TextCodec};
pub use checkpoint::{AdapterIdentity, BackboneIdentity, Checkpoint, TrainState};
pub use device::DeviceChoice;
pub use error::{Error, Result};
pub use feature_cache::{CachedArray, FeatureCache};
pub use generate::{
    FinishReason, Generation, GenerationConfig, generate, generate_batch, generate_cached,
};
pub use loss::RegressionLoss;
pub use optim::{AdamW, AdamWSettings};
pub use params::{NamedTensor, count_params, export_params, import_params};
pub use plot::LinePlot;
pub use prompt::{
    DEFAULT_PLACEHOLDERS, Embedded, EmbeddedBatch, Prompt, PromptTemplate, Segment, embed_batch,
    embed_prompt, pad_left,
};
pub use rng::SplitMix64;
pub use schedule::LrSchedule;
pub use soft::SoftTokens;
pub use soft_prompt::{SoftPrompt, SoftPromptConfig};
pub use tensor_store::{StoredTensor, TensorStore};
pub use trainer::{RunOptions, StepInfo, TrainConfig, TrainReport, TrainTask, train};
pub use tuning::{PromptTuningConfig, TuningExample, TuningReport, tune_soft_prompt};

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

/// FNV-1a, 64 bit: a stable, dependency-free hash for weight files and weight digests.
pub fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = if seed == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        seed
    };
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
