//! Llama-family configuration, and its conversion from GGUF metadata and HF `config.json`.
//!
//! Two layers, as candle does: the file's own names (GGUF keys, HF JSON fields) are read in one
//! function each and converted once into [`LlamaConfig`].

use std::path::Path;

use burn::prelude::*;

use crate::error::{Error, Result};
pub use crate::feed_forward::FfnActivation;
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
    /// The architecture's name as its files give it (`llama`, `mistral`, `qwen2`, `gemma3`).
    /// Default: `llama`.
    #[config(default = "String::from(\"llama\")")]
    pub architecture: String,
    /// RMSNorm over each query and key head before RoPE (Gemma 3). Default: none.
    #[config(default = false)]
    pub qk_norm: bool,
    /// RMSNorm on the attention and feed-forward outputs before each residual add (Gemma 3).
    /// Default: none.
    #[config(default = false)]
    pub post_norms: bool,
    /// The feed-forward gate's activation. Default: SiLU.
    #[config(default = "FfnActivation::Silu")]
    pub ffn_activation: FfnActivation,
    /// Factor on the token embeddings (Gemma: `√D`; the tied head reads the unscaled table).
    /// Default: 1.
    #[config(default = 1.0)]
    pub embed_scale: f64,
    /// Keys a local (sliding-window) layer sees: those fewer than this many positions back.
    /// Default: 0, no local layers.
    #[config(default = 0)]
    pub sliding_window: usize,
    /// With a sliding window, every this-many-th layer (`i + 1` a multiple) is global, the
    /// others local. Default: 0, every layer local when there is a window.
    #[config(default = 0)]
    pub global_every: usize,
    /// RoPE base frequency of the local layers. Default: 10000.
    #[config(default = 10000.0)]
    pub rope_theta_local: f64,
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

    /// A tiny Gemma-3-shaped configuration for fast tests: q/k and post norms, GeGLU, scaled
    /// embeddings, a window of 4 positions on two of every three layers, head width ≠ D/H.
    pub fn tiny_gemma3(vocab_size: usize) -> Self {
        let mut cfg = Self::tiny(vocab_size);
        cfg.n_layers = 3;
        cfg.with_head_dim(16).gemma3_blocks(4, 3, 10000.0)
    }

    /// Gemma 3's blocks on this width and depth: q/k norms, norms after attention and
    /// feed-forward, GeGLU, embeddings times √D, and `every - 1` local layers (a `window` of
    /// positions, RoPE base `theta_local`) to one global.
    fn gemma3_blocks(self, window: usize, every: usize, theta_local: f64) -> Self {
        let d = self.d_model as f64;
        self.with_qk_norm(true)
            .with_post_norms(true)
            .with_ffn_activation(FfnActivation::GeluTanh)
            .with_embed_scale(d.sqrt())
            .with_sliding_window(window)
            .with_global_every(every)
            .with_rope_theta_local(theta_local)
            .with_architecture("gemma3".into())
    }

    /// Whether layer `i` attends through the sliding window with the local RoPE base.
    pub fn is_local(&self, i: usize) -> bool {
        self.sliding_window > 0
            && (self.global_every == 0 || !(i + 1).is_multiple_of(self.global_every))
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
    /// (rotate-half rows as trained, biases on q/k/v), Gemma 3 (see below). A feature this
    /// crate does not implement (RoPE scaling, mixture of experts, logit soft-capping, a
    /// sliding window outside Gemma 3) is refused by name.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.str("general.architecture")?.to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2" | "gemma3") {
            return Err(Error::UnsupportedArchitecture {
                path: file.path().to_path_buf(),
                architecture: arch,
            });
        }
        let gemma = arch == "gemma3";
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
        // Gemma 3's window is implemented (below); no other architecture's is.
        let windowed = if gemma {
            None
        } else {
            Some("attention.sliding_window")
        };
        for k in std::iter::once("expert_count").chain(windowed) {
            if file
                .get(&key(k))
                .and_then(|v| v.as_u64())
                .is_some_and(|v| v > 0)
            {
                return Err(unsupported(key(k)));
            }
        }
        for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if file
                .get(&key(k))
                .and_then(|v| v.as_f64())
                .is_some_and(|v| v > 0.0)
            {
                return Err(unsupported(key(k)));
            }
        }
        let key_length = file
            .get(&key("attention.key_length"))
            .and_then(|v| v.as_u64());
        if key_length
            != file
                .get(&key("attention.value_length"))
                .and_then(|v| v.as_u64())
        {
            return Err(unsupported(format!(
                "{} different from {}",
                key("attention.value_length"),
                key("attention.key_length")
            )));
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
            key_length
                .or_else(|| {
                    file.get(&key("rope.dimension_count"))
                        .and_then(|v| v.as_u64())
                })
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
        .with_rope_layout(if matches!(arch.as_str(), "qwen2" | "gemma3") {
            RopeLayout::Half
        } else {
            RopeLayout::Interleaved
        })
        .with_qkv_bias(file.tensor("blk.0.attn_q.bias").is_some())
        .with_architecture(arch.clone());
        // Gemma 3 (llama.cpp's `llm_build_gemma3`, HF `Gemma3TextModel`): q/k norms, norms
        // after attention and feed-forward, GeGLU, embeddings times √D, and five local layers
        // (window from the file, RoPE base 10000, which the file does not carry) to one global.
        // llama.cpp's converter stores the norms' gains with the `1 +` already added.
        let cfg = if gemma {
            let window = file
                .get(&key("attention.sliding_window"))
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as usize;
            let every = file
                .get(&key("attention.sliding_window_pattern"))
                .and_then(|v| v.as_u64())
                .map_or(6, |v| v as usize);
            cfg.gemma3_blocks(window, every, 10000.0)
        } else {
            cfg
        };
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
        if !matches!(model_type, "llama" | "mistral" | "qwen2" | "gemma3_text") {
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
        .with_qkv_bias(model_type == "qwen2" || flag("attention_bias"));
        let cfg = if model_type == "gemma3_text" {
            gemma3_from_hf(cfg, &json, path)?
        } else {
            cfg.with_architecture(model_type.to_string())
        };
        cfg.validate(path)?;
        Ok(cfg)
    }
}

/// The Gemma 3 part of an HF `config.json` (`model_type` `gemma3_text`): what `from_gguf`
/// reads from the file's metadata, checked against what the model implements.
fn gemma3_from_hf(cfg: LlamaConfig, json: &serde_json::Value, path: &Path) -> Result<LlamaConfig> {
    let unsupported = |feature: String| Error::UnsupportedFeature {
        path: path.to_path_buf(),
        feature,
    };
    let num = |field: &str| json.get(field).and_then(serde_json::Value::as_f64);
    for field in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if num(field).is_some_and(|v| v > 0.0) {
            return Err(unsupported(field.into()));
        }
    }
    let activation = json
        .get("hidden_activation")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("gelu_pytorch_tanh");
    if activation != "gelu_pytorch_tanh" {
        return Err(unsupported(format!("hidden_activation `{activation}`")));
    }
    // Scores are scaled by 1/√head_dim; Gemma scales them by 1/√query_pre_attn_scalar.
    let head_dim = cfg.head_dim();
    if num("query_pre_attn_scalar").is_some_and(|v| v != head_dim as f64) {
        return Err(unsupported(format!(
            "query_pre_attn_scalar other than head_dim ({head_dim})"
        )));
    }
    let window = json
        .get("sliding_window")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as usize;
    let every = json
        .get("sliding_window_pattern")
        .and_then(serde_json::Value::as_u64)
        .map_or(6, |v| v as usize);
    let cfg = cfg
        .gemma3_blocks(
            window,
            every,
            num("rope_local_base_freq").unwrap_or(10000.0),
        )
        .with_tie_embeddings(
            json.get("tie_word_embeddings")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
        );
    // Newer configs list each layer's kind: it must be the pattern above.
    if let Some(kinds) = json
        .get("layer_types")
        .and_then(serde_json::Value::as_array)
    {
        let regular = kinds.len() == cfg.n_layers
            && kinds.iter().enumerate().all(|(i, k)| {
                let local = k.as_str() == Some("sliding_attention");
                local == cfg.is_local(i)
            });
        if !regular {
            return Err(unsupported(format!(
                "layer_types other than {} local layers to one global",
                every.saturating_sub(1)
            )));
        }
    }
    Ok(cfg)
}
