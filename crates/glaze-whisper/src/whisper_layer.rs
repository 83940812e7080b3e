//! One Whisper encoder block (pre-norm): `x + attn(LN x)`, then `x + MLP(LN x)` with an
//! exact-erf GELU MLP of width 4·d. Query, key and value are one fused `[d, 3d]` projection
//! (CTranslate2 stores them fused; the HF loader concatenates them, with the key's missing bias
//! as zeros).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use glaze_kernels::matmul::linear;

/// Configuration of a [`WhisperLayer`].
#[derive(Config, Debug)]
pub struct WhisperLayerConfig {
    /// Width.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
}

impl WhisperLayerConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> WhisperLayer {
        let d = self.d_model;
        let norm = || LayerNormConfig::new(d).with_epsilon(1e-5).init(device);
        WhisperLayer {
            attn_norm: norm(),
            qkv: LinearConfig::new(d, 3 * d).init(device),
            out: LinearConfig::new(d, d).init(device),
            mlp_norm: norm(),
            fc1: LinearConfig::new(d, 4 * d).init(device),
            fc2: LinearConfig::new(4 * d, d).init(device),
            n_heads: self.n_heads,
        }
    }
}

/// A transformer encoder block of Whisper.
#[derive(Module, Debug)]
pub struct WhisperLayer {
    /// Norm before attention.
    pub attn_norm: LayerNorm,
    /// Fused query/key/value projection.
    pub qkv: Linear,
    /// Attention output projection.
    pub out: Linear,
    /// Norm before the MLP.
    pub mlp_norm: LayerNorm,
    /// MLP up-projection.
    pub fc1: Linear,
    /// MLP down-projection.
    pub fc2: Linear,
    /// Heads.
    pub n_heads: usize,
}

impl WhisperLayer {
    /// # Shapes
    /// `[B, T, d]` → `[B, T, d]`; bidirectional attention over all `T` frames.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.n_heads;
        let dh = d / h;
        let qkv = linear(&self.qkv, self.attn_norm.forward(x.clone()));
        let heads = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..t, i * d..(i + 1) * d])
                .reshape([b, t, h, dh])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (heads(0), heads(1), heads(2));
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
        let att = glaze_kernels::softmax::softmax(scores)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        let x = x + linear(&self.out, att);
        let m = linear(
            &self.fc2,
            gelu(linear(&self.fc1, self.mlp_norm.forward(x.clone()))),
        );
        x + m
    }
}
