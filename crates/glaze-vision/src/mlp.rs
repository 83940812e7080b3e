//! LLaVA-1.5's `mlp2x_gelu` projector: optional grid pooling, then the core [`Mlp`].

use burn::prelude::*;
use glaze_core::layers::mlp::{Mlp, MlpConfig};

use crate::pool::pool_grid;

/// LLaVA-1.5's projector: optional grid pooling, then an [`Mlp`] from feature width to LLM width.
#[derive(Module, Debug)]
pub struct MlpProjector {
    /// The MLP `F → D → D`.
    pub mlp: Mlp,
    /// Pooling factor on the patch grid (1 = every patch is a token).
    pub pool: usize,
}

impl MlpProjector {
    /// Random initialisation.
    pub fn init(d_feature: usize, d_model: usize, pool: usize, device: &Device) -> Self {
        MlpProjector {
            mlp: MlpConfig::new(d_feature, d_model, d_model).init(device),
            pool,
        }
    }

    /// # Shapes
    /// `[B, N, F]` → `[B, pooled(N), D]`.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        self.mlp.forward(pool_grid(features, self.pool))
    }
}
