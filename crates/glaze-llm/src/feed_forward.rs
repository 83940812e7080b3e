//! SwiGLU feed-forward block (Shazeer 2020): `down(silu(gate(x)) ⊙ up(x))`.

use burn::prelude::*;

use crate::linear::FrozenLinear;
use glaze_kernels::qmatmul::Activations;

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
            w_gate_up: FrozenLinear::new(Tensor::random(
                [self.d_model, 2 * self.ffn_dim],
                dist,
                device,
            )),
            w_down: FrozenLinear::new(Tensor::random([self.ffn_dim, self.d_model], dist, device)),
        }
    }
}

/// Fused gate/up projection `[D, 2F]` (gate first) and down projection `[F, D]`.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    pub(crate) w_gate_up: FrozenLinear,
    pub(crate) w_down: FrozenLinear,
}

impl SwiGlu {
    /// The same block on another device.
    pub fn to_device(self, device: &Device) -> Self {
        SwiGlu {
            w_gate_up: self.w_gate_up.to_device(device),
            w_down: self.w_down.to_device(device),
        }
    }

    /// # Shapes
    /// `[B, T, D]` → `[B, T, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_act(x, Activations::F32)
    }

    /// [`SwiGlu::forward`] with the activation treatment of the quantized kernels.
    pub fn forward_act(&self, x: Tensor<3>, act: Activations) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let f = self.w_down.d_in();
        let gu = self.w_gate_up.forward_act(x.reshape([b * t, d]), act);
        debug_assert_eq!(gu.dims()[1], 2 * f);
        self.w_down
            .forward_act(glaze_kernels::swiglu::swiglu(gu), act)
            .reshape([b, t, d])
    }
}
