//! One pre-norm ViT block with optional layer scale (DINOv2's `Dinov2Layer`; HF `ViTLayer` has no
//! layer scale): `x + γ₁·attn(LN₁ x)`, then `x + γ₂·MLP(LN₂ x)` with an exact-erf GELU MLP.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use glaze_kernels::matmul::linear;

use glaze_core::layers::attention::{Attention, AttentionConfig};

/// Configuration of a [`ViTLayer`].
#[derive(Config, Debug)]
pub struct ViTLayerConfig {
    /// Token width.
    pub dim: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Hidden width of the MLP.
    pub mlp_dim: usize,
    /// LayerNorm epsilon. Default 1e-6 (DINOv2).
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Learned per-channel residual scales (DINOv2). Default true.
    #[config(default = true)]
    pub layer_scale: bool,
}

impl ViTLayerConfig {
    /// Random initialisation; layer scales start at 1.
    pub fn init(&self, device: &Device) -> ViTLayer {
        let scale = || {
            self.layer_scale
                .then(|| Param::from_tensor(Tensor::ones([self.dim], device)))
        };
        ViTLayer {
            norm1: LayerNormConfig::new(self.dim)
                .with_epsilon(self.eps)
                .init(device),
            attn: AttentionConfig::new(self.dim, self.dim, self.dim, self.n_heads).init(device),
            scale1: scale(),
            norm2: LayerNormConfig::new(self.dim)
                .with_epsilon(self.eps)
                .init(device),
            fc1: LinearConfig::new(self.dim, self.mlp_dim).init(device),
            fc2: LinearConfig::new(self.mlp_dim, self.dim).init(device),
            scale2: scale(),
        }
    }
}

/// A transformer encoder block.
#[derive(Module, Debug)]
pub struct ViTLayer {
    /// Norm before attention.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Layer scale after attention.
    pub scale1: Option<Param<Tensor<1>>>,
    /// Norm before the MLP.
    pub norm2: LayerNorm,
    /// MLP up-projection.
    pub fc1: Linear,
    /// MLP down-projection.
    pub fc2: Linear,
    /// Layer scale after the MLP.
    pub scale2: Option<Param<Tensor<1>>>,
}

impl ViTLayer {
    /// # Shapes
    /// `[B, N, D]` → `[B, N, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let dim = x.dims()[2];
        let scaled = |t: Tensor<3>, s: &Option<Param<Tensor<1>>>| match s {
            Some(s) => t * s.val().reshape([1, 1, dim]),
            None => t,
        };
        let h = self.norm1.forward(x.clone());
        let x = x + scaled(self.attn.forward(h.clone(), h, None), &self.scale1);
        let h = linear(
            &self.fc2,
            gelu(linear(&self.fc1, self.norm2.forward(x.clone()))),
        );
        x + scaled(h, &self.scale2)
    }
}
