//! The patch embedding of the series adapter: a linear map from each patch to a vector
//! (Time-LLM uses a width-3 convolution across patches here; a per-patch linear map is the
//! PatchTST/GPT4TS choice and what this crate does). Patching itself is the series encoder's
//! (`glaze_patch`).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

pub use glaze_patch::{num_patches, patchify};

/// Configuration of a [`PatchEmbedding`].
#[derive(Config, Debug)]
pub struct PatchEmbeddingConfig {
    /// Values per patch. Default 16.
    #[config(default = 16)]
    pub patch_len: usize,
    /// Output width.
    pub d_out: usize,
}

impl PatchEmbeddingConfig {
    /// Random initialisation (burn's default Kaiming-uniform).
    pub fn init(&self, device: &Device) -> PatchEmbedding {
        PatchEmbedding {
            linear: LinearConfig::new(self.patch_len, self.d_out).init(device),
        }
    }
}

/// A linear map from each patch to a vector.
#[derive(Module, Debug)]
pub struct PatchEmbedding {
    /// `[patch_len] → [d_out]`.
    pub linear: Linear,
}

impl PatchEmbedding {
    /// # Shapes
    /// `patches [B, N, patch_len]` → `[B, N, d_out]`.
    pub fn forward(&self, patches: Tensor<3>) -> Tensor<3> {
        glaze_kernels::matmul::linear(&self.linear, patches)
    }
}
