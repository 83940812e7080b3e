//! SwiGLU feed-forward block (Shazeer 2020): `down(silu(gate(x)) ⊙ up(x))`.

use burn::prelude::*;
use burn::tensor::activation::silu;

/// Configuration of a [`SwiGlu`] block.
#[derive(Config, Debug)]
pub struct SwiGluConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// Hidden width `F`.
    pub ffn_dim: usize,
}

impl SwiGluConfig {
    /// Random weights `N(0, 0.02²)`.
    pub fn init(&self, device: &Device) -> SwiGlu {
        let dist = burn::tensor::Distribution::Normal(0.0, 0.02);
        SwiGlu {
            w_gate_up: Tensor::random([self.d_model, 2 * self.ffn_dim], dist, device),
            w_down: Tensor::random([self.ffn_dim, self.d_model], dist, device),
        }
    }
}

/// Fused gate/up projection `[D, 2F]` (gate first) and down projection `[F, D]`.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    pub(crate) w_gate_up: Tensor<2>,
    pub(crate) w_down: Tensor<2>,
}

impl SwiGlu {
    /// # Shapes
    /// `[B, T, D]` → `[B, T, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let f = self.w_down.dims()[0];
        let gu = x.reshape([b * t, d]).matmul(self.w_gate_up.clone());
        let gate = gu.clone().slice(s![.., 0..f]);
        let up = gu.slice(s![.., f..2 * f]);
        (silu(gate) * up)
            .matmul(self.w_down.clone())
            .reshape([b, t, d])
    }
}
