//! Llama-family configuration, and its conversion from GGUF metadata and HF `config.json`.
//!
//! Two layers, as candle does: the file's own names (GGUF keys, HF JSON fields) are read in one
//! function each and converted once into [`LlamaConfig`].

use std::path::Path;

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

pub use glaze_kernels::rope::RopeLayout;

/// Configuration of a Llama-family decoder.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Embedding width `D`.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Hidden width of the SwiGLU feed-forward block.
    pub ffn_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of one head. Default: 0, meaning `d_model / n_heads`.
    #[config(default = 0)]
    pub head_dim: usize,
    /// RoPE base frequency. Default: 10000.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// RMSNorm epsilon. Default: 1e-5.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Context length. Default: 2048.
    #[config(default = 2048)]
    pub context_length: usize,
    /// LM head tied to the token embedding. Default: true.
    #[config(default = true)]
    pub tie_embeddings: bool,
    /// RoPE pairing of the q/k weights as loaded. Default: rotate-half.
    #[config(default = "RopeLayout::Half")]
    pub rope_layout: RopeLayout,
    /// Biases on the q, k and v projections (Qwen2). Default: none.
    #[config(default = false)]
    pub qkv_bias: bool,
    /// The architecture's name as its files give it (`llama`, `mistral`, `qwen2`). Default:
    /// `llama`.
    #[config(default = "String::from(\"llama\")")]
    pub architecture: String,
}

impl LlamaConfig {
    /// A tiny configuration for fast tests (2 blocks, width 32, GQA 4/2, vocabulary 256).
    pub fn tiny(vocab_size: usize) -> Self {
        LlamaConfig::new(32, 2, 4, 2, 64, vocab_size).with_context_length(128)
    }

    /// SmolLM2-135M's shape.
    pub fn smollm2_135m() -> Self {
        LlamaConfig::new(576, 30, 9, 3, 1536, 49152)
            .with_rope_theta(100000.0)
            .with_context_length(8192)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        if self.head_dim == 0 {
            self.d_model / self.n_heads
        } else {
            self.head_dim
        }
    }

    /// Checks that the shape is consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, problem: String| Error::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        for (field, v) in [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("ffn_dim", self.ffn_dim),
            ("vocab_size", self.vocab_size),
            ("context_length", self.context_length),
        ] {
            if v == 0 {
                return Err(bad(field, "must be positive".into()));
            }
            if v > 1 << 24 {
                return Err(bad(field, format!("{v} is implausibly large")));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad(
                "n_kv_heads",
                format!(
                    "{} does not divide n_heads {}",
                    self.n_kv_heads, self.n_heads
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return Err(bad("head_dim", format!("{} must be even", self.head_dim())));
        }
        Ok(())
    }

    /// A tiny Qwen2-shaped configuration for fast tests (biases on q/k/v).
    pub fn tiny_qwen2(vocab_size: usize) -> Self {
        Self::tiny(vocab_size)
            .with_qkv_bias(true)
            .with_tie_embeddings(false)
            .with_architecture("qwen2".into())
    }

    /// Reads the configuration from GGUF metadata (`<architecture>.*` keys): Llama and
    /// Mistral (q/k rows permuted for interleaved RoPE by llama.cpp's converter), Qwen2
    /// (rotate-half rows as trained, biases on q/k/v). A feature this crate does not implement
    /// (RoPE scaling, mixture of experts, a sliding window) is refused by name.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.str("general.architecture")?.to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(Error::UnsupportedArchitecture {
                path: file.path().to_path_buf(),
                architecture: arch,
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let unsupported = |feature: String| Error::UnsupportedFeature {
            path: file.path().to_path_buf(),
            feature,
        };
        if let Some(t) = file.get(&key("rope.scaling.type")).and_then(|v| v.as_str())
            && !matches!(t, "none" | "")
        {
            return Err(unsupported(format!(
                "RoPE scaling `{t}` ({})",
                key("rope.scaling.type")
            )));
        }
        for k in ["expert_count", "attention.sliding_window"] {
            if file
                .get(&key(k))
                .and_then(|v| v.as_u64())
                .is_some_and(|v| v > 0)
            {
                return Err(unsupported(key(k)));
            }
        }
        let d_model = file.u64(&key("embedding_length"))? as usize;
        let n_heads = file.u64(&key("attention.head_count"))? as usize;
        let vocab_size = match file.get(&key("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => file.strings("tokenizer.ggml.tokens")?.len(),
        };
        let cfg = LlamaConfig::new(
            d_model,
            file.u64(&key("block_count"))? as usize,
            n_heads,
            file.get(&key("attention.head_count_kv"))
                .and_then(|v| v.as_u64())
                .map_or(n_heads, |v| v as usize),
            file.u64(&key("feed_forward_length"))? as usize,
            vocab_size,
        )
        .with_head_dim(
            file.get(&key("rope.dimension_count"))
                .and_then(|v| v.as_u64())
                .map_or(0, |v| v as usize),
        )
        .with_rope_theta(
            file.get(&key("rope.freq_base"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10000.0),
        )
        .with_norm_eps(file.f64(&key("attention.layer_norm_rms_epsilon"))?)
        .with_context_length(
            file.get(&key("context_length"))
                .and_then(|v| v.as_u64())
                .map_or(2048, |v| v as usize),
        )
        .with_tie_embeddings(file.tensor("output.weight").is_none())
        .with_rope_layout(if arch == "qwen2" {
            RopeLayout::Half
        } else {
            RopeLayout::Interleaved
        })
        .with_qkv_bias(file.tensor("blk.0.attn_q.bias").is_some())
        .with_architecture(arch.clone());
        cfg.validate(file.path())?;
        Ok(cfg)
    }

    /// Reads the configuration from a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let missing = |field: &str| Error::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem: "missing or not a positive integer".into(),
        };
        let int = |field: &str| {
            json.get(field)
                .and_then(serde_json::Value::as_u64)
                .filter(|&v| v > 0)
                .map(|v| v as usize)
                .ok_or_else(|| missing(field))
        };
        let opt_int = |field: &str| json.get(field).and_then(serde_json::Value::as_u64);
        let opt_f = |field: &str| json.get(field).and_then(serde_json::Value::as_f64);
        let model_type = json
            .get("model_type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("llama");
        if !matches!(model_type, "llama" | "mistral" | "qwen2") {
            return Err(Error::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture: model_type.to_string(),
            });
        }
        let flag = |field: &str| {
            json.get(field)
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        if flag("use_sliding_window") {
            return Err(Error::UnsupportedFeature {
                path: path.to_path_buf(),
                feature: "use_sliding_window".into(),
            });
        }
        if json.get("rope_scaling").is_some_and(|v| !v.is_null()) {
            return Err(Error::UnsupportedFeature {
                path: path.to_path_buf(),
                feature: "rope_scaling".into(),
            });
        }
        let n_heads = int("num_attention_heads")?;
        let cfg = LlamaConfig::new(
            int("hidden_size")?,
            int("num_hidden_layers")?,
            n_heads,
            opt_int("num_key_value_heads").map_or(n_heads, |v| v as usize),
            int("intermediate_size")?,
            int("vocab_size")?,
        )
        .with_head_dim(opt_int("head_dim").unwrap_or(0) as usize)
        .with_rope_theta(opt_f("rope_theta").unwrap_or(10000.0))
        .with_norm_eps(opt_f("rms_norm_eps").unwrap_or(1e-6))
        .with_context_length(opt_int("max_position_embeddings").unwrap_or(2048) as usize)
        .with_tie_embeddings(
            json.get("tie_word_embeddings")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        )
        .with_rope_layout(RopeLayout::Half)
        .with_qkv_bias(model_type == "qwen2" || flag("attention_bias"))
        .with_architecture(model_type.to_string());
        cfg.validate(path)?;
        Ok(cfg)
    }
}
