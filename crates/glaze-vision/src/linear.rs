//! MiniGPT-4's projector: one linear layer from feature width to the LLM width, per token
//! (optionally after grid pooling).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::pool::pool_grid;

/// A linear map `F → D` applied to every (pooled) feature vector.
#[derive(Module, Debug)]
pub struct LinearProjector {
    /// The projection.
    pub proj: Linear,
    /// Pooling factor on the patch grid (1 = every patch is a token).
    pub pool: usize,
}

impl LinearProjector {
    /// Random initialisation.
    pub fn init(d_feature: usize, d_model: usize, pool: usize, device: &Device) -> Self {
        LinearProjector {
            proj: LinearConfig::new(d_feature, d_model).init(device),
            pool,
        }
    }

    /// # Shapes
    /// `[B, N, F]` → `[B, pooled(N), D]`.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        self.proj.forward(pool_grid(features, self.pool))
    }
}
