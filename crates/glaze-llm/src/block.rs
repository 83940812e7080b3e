//! One pre-norm Llama decoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
//!
//! Blocks are usable one by one ([`crate::Llama::block`]), so trainable layers can later be
//! inserted between frozen blocks (Flamingo's gated cross-attention, inner adaptors).

use burn::prelude::*;

use crate::attention::{Attention, AttentionConfig, AttnContext};
use crate::config::LlamaConfig;
use crate::mlp::{SwiGlu, SwiGluConfig};
use crate::rms_norm::{RmsNorm, RmsNormConfig};
use crate::rope::Rope;

/// A decoder block.
#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) attn_norm: RmsNorm,
    pub(crate) attn: Attention,
    pub(crate) ffn_norm: RmsNorm,
    pub(crate) mlp: SwiGlu,
}

impl Block {
    /// A randomly initialised block of the given configuration.
    pub fn init(config: &LlamaConfig, device: &Device) -> Self {
        let norm = RmsNormConfig::new(config.d_model).with_eps(config.norm_eps);
        Block {
            attn_norm: norm.init(device),
            attn: AttentionConfig::new(
                config.d_model,
                config.n_heads,
                config.n_kv_heads,
                config.head_dim(),
            )
            .init(device),
            ffn_norm: norm.init(device),
            mlp: SwiGluConfig::new(config.d_model, config.ffn_dim).init(device),
        }
    }

    /// # Shapes
    /// `[B, T, D]` → `[B, T, D]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        ctx: &AttnContext,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .attn
                .forward(self.attn_norm.forward(x), rope, ctx, cache);
        h.clone() + self.mlp.forward(self.ffn_norm.forward(h))
    }
}
