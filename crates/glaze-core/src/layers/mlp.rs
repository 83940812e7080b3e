//! Two linear layers with an exact GELU between them: the feed-forward block of the Q-Former and
//! the Perceiver resampler, and LLaVA-1.5's `mlp2x_gelu` projector (in the vision plugin).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use burn::tensor::activation::gelu;
use glaze_kernels::matmul::linear;

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input width.
    pub d_in: usize,
    /// Hidden width.
    pub d_hidden: usize,
    /// Output width.
    pub d_out: usize,
}

impl MlpConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Mlp {
        Mlp {
            fc1: LinearConfig::new(self.d_in, self.d_hidden).init(device),
            fc2: LinearConfig::new(self.d_hidden, self.d_out).init(device),
        }
    }
}

/// `fc2(GELU(fc1 x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// First layer.
    pub fc1: Linear,
    /// Second layer.
    pub fc2: Linear,
}

impl Mlp {
    /// # Shapes
    /// `[B, N, d_in]` → `[B, N, d_out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(&self.fc2, gelu(linear(&self.fc1, x)))
    }
}
