#![doc = include_str!("../README.md")]

pub mod attention;
pub mod block;
pub mod config;
pub mod decode;
pub mod error;
pub mod fused_attention;
pub mod gguf;
pub mod hf;
pub mod linear;
pub mod llama;
pub mod mlp;
pub mod model;
pub mod qint8;
pub mod qkernels;
pub mod qmatmul;
pub mod quant;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;
pub mod tokenizer;
pub mod weights;

pub use config::{LlamaConfig, RopeLayout};
pub use error::{Error, GgufProblem, Result};
pub use gguf::GgufFile;
pub use glaze_core::generate::{
    self, FinishReason, Generation, GenerationConfig, generate, generate_batch,
};
pub use llama::Llama;
pub use model::{LanguageModel, cache_dir, default_model_path};
pub use qmatmul::Activations;
pub use tokenizer::Tokenizer;
pub use weights::{Naming, WeightSource, load_llama};
