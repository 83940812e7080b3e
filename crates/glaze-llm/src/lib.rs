#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod attention;
pub mod block;
pub mod bpe;
pub mod config;
pub mod error;
pub mod feed_forward;
pub mod generation_step;
pub mod gguf;
pub mod hf;
pub mod linear;
pub mod llama;
pub mod model;
pub mod rms_norm;
pub mod rope;
mod spm;
pub mod tokenizer;
pub mod weights;

pub use config::{LlamaConfig, RopeLayout};
pub use error::{Error, GgufProblem, Result};
pub use gguf::GgufFile;
pub use glaze_core::generate::{
    self, FinishReason, Generation, GenerationConfig, generate, generate_batch,
};
pub use glaze_kernels::qmatmul::Activations;
pub use llama::Llama;
pub use model::{LanguageModel, cache_dir, default_model_path};
pub use tokenizer::Tokenizer;
pub use weights::{Naming, WeightSource, load_llama};
