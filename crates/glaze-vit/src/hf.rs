//! HF `Dinov2Model` / `ViTModel` safetensors directories (`config.json` + `model.safetensors`),
//! so users can bring their own encoder.

use std::path::Path;

use glaze_core::tensor_store::safetensors_files;

use crate::error::{Error, Result};
use crate::vit::ViTConfig;
use crate::weights::{Flavour, TensorStore};

/// The fields of HF's `config.json` Glaze reads, with HF's names.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HfVisionConfig {
    /// `dinov2` or `vit`.
    pub model_type: String,
    /// Token width.
    pub hidden_size: usize,
    /// Blocks.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// MLP width (ViT).
    pub intermediate_size: Option<usize>,
    /// MLP width as a ratio (DINOv2).
    pub mlp_ratio: Option<f64>,
    /// Training resolution; with `patch_size` it gives the position grid.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// DINOv2-g's SwiGLU MLP (not supported).
    #[serde(default)]
    pub use_swiglu_ffn: bool,
}

impl HfVisionConfig {
    /// Converts HF's names into the burn configuration, once.
    pub fn into_config(self, path: &Path) -> Result<(ViTConfig, Flavour)> {
        let flavour = match self.model_type.as_str() {
            "dinov2" => Flavour::Dinov2,
            "vit" => Flavour::Vit,
            other => {
                return Err(Error::weights(
                    path,
                    format!("model_type `{other}` is not `dinov2` or `vit`"),
                ));
            }
        };
        if self.use_swiglu_ffn {
            return Err(Error::weights(
                path,
                "SwiGLU MLPs (DINOv2-g) are not supported",
            ));
        }
        let mlp_dim = match (self.intermediate_size, self.mlp_ratio) {
            (Some(m), _) => m,
            (None, Some(r)) => (self.hidden_size as f64 * r).round() as usize,
            (None, None) => 4 * self.hidden_size,
        };
        if self.patch_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(Error::weights(
                path,
                "heads must divide hidden_size and patch_size must be positive",
            ));
        }
        let config = ViTConfig::new(
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            mlp_dim,
        )
        .with_patch_size(self.patch_size)
        .with_pos_grid(self.image_size / self.patch_size)
        .with_eps(self.layer_norm_eps)
        .with_layer_scale(flavour == Flavour::Dinov2);
        Ok((config, flavour))
    }
}

/// Reads `dir/config.json` and every `*.safetensors` file in `dir` (cast to f32).
pub fn read_hf_dir(dir: &Path) -> Result<(ViTConfig, Flavour, TensorStore)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| Error::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let hf: HfVisionConfig = serde_json::from_str(&text)
        .map_err(|e| Error::weights(&cfg_path, format!("not a ViT/DINOv2 config: {e}")))?;
    let (config, flavour) = hf.into_config(&cfg_path)?;
    let mut store = TensorStore::new(dir);
    store.read_safetensors(&safetensors_files(dir)?)?;
    Ok((config, flavour, store))
}
