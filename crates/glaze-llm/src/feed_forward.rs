//! Gated feed-forward block (Shazeer 2020): `down(act(gate(x)) ⊙ up(x))` with SiLU (SwiGLU:
//! Llama, Qwen2) or the tanh-approximated GELU (GeGLU: Gemma).

use burn::prelude::*;

use crate::linear::FrozenLinear;
use glaze_kernels::qmatmul::Activations;

/// The gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FfnActivation {
    /// `x · sigmoid(x)` (SwiGLU).
    Silu,
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))` (GeGLU, PyTorch's `gelu(approximate="tanh")`).
    GeluTanh,
}

/// Configuration of a [`SwiGlu`] block.
#[derive(Config, Debug)]
pub struct SwiGluConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// Hidden width `F`.
    pub ffn_dim: usize,
    /// The gate's activation. Default: SiLU.
    #[config(default = "FfnActivation::Silu")]
    pub activation: FfnActivation,
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
            activation: self.activation,
        }
    }
}

/// Fused gate/up projection `[D, 2F]` (gate first) and down projection `[F, D]`.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    pub(crate) w_gate_up: FrozenLinear,
    pub(crate) w_down: FrozenLinear,
    pub(crate) activation: FfnActivation,
}

impl SwiGlu {
    /// The same block on another device.
    pub fn to_device(self, device: &Device) -> Self {
        SwiGlu {
            w_gate_up: self.w_gate_up.to_device(device),
            w_down: self.w_down.to_device(device),
            activation: self.activation,
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
        let gated = match self.activation {
            FfnActivation::Silu => glaze_kernels::swiglu::swiglu(gu),
            FfnActivation::GeluTanh => {
                let n = b * t;
                let gate = gu.clone().slice(s![.., 0..f]);
                let up = gu.slice(s![.., f..2 * f]);
                gelu_tanh(gate) * up.reshape([n, f])
            }
        };
        self.w_down.forward_act(gated, act).reshape([b, t, d])
    }
}

/// The tanh approximation of GELU, in burn operations (differentiable).
pub(crate) fn gelu_tanh(x: Tensor<2>) -> Tensor<2> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * c;
    x.clone() * (inner.tanh() + 1.0) * 0.5
}
