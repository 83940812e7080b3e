//! One pre-norm decoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`; with Gemma's
//! post-norms `x + post(attn(norm(x)))`, then `x + post(mlp(norm(x)))`.
//!
//! Blocks are usable one by one ([`crate::Llama::block`]), so trainable layers can later be
//! inserted between frozen blocks (Flamingo's gated cross-attention, inner adaptors).

use burn::prelude::*;

use crate::attention::{Attention, AttentionConfig, AttnContext};
use crate::config::LlamaConfig;
use crate::feed_forward::{SwiGlu, SwiGluConfig};
use crate::rms_norm::{RmsNorm, RmsNormConfig};
use crate::rope::Rope;

/// A decoder block.
#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) attn_norm: RmsNorm,
    pub(crate) attn: Attention,
    pub(crate) ffn_norm: RmsNorm,
    pub(crate) mlp: SwiGlu,
    /// Norms on the attention and feed-forward outputs (Gemma 3).
    pub(crate) post_norms: Option<(RmsNorm, RmsNorm)>,
}

impl Block {
    /// A randomly initialised block of the given configuration.
    pub fn init(config: &LlamaConfig, device: &Device) -> Self {
        let norm = RmsNormConfig::new(config.d_model).with_eps(config.norm_eps);
        let mut attn = AttentionConfig::new(
            config.d_model,
            config.n_heads,
            config.n_kv_heads,
            config.head_dim(),
        )
        .with_qk_norm(config.qk_norm)
        .with_norm_eps(config.norm_eps)
        .init(device);
        if config.qkv_bias {
            let n = (config.n_heads + 2 * config.n_kv_heads) * config.head_dim();
            let dist = burn::tensor::Distribution::Normal(0.0, 0.1);
            let bias = Tensor::<1>::random([n], dist, device)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("invariant: float data converts to f32");
            attn.wqkv = attn.wqkv.with_bias(bias, device);
        }
        Block {
            attn_norm: norm.init(device),
            attn,
            ffn_norm: norm.init(device),
            mlp: SwiGluConfig::new(config.d_model, config.ffn_dim)
                .with_activation(config.ffn_activation)
                .init(device),
            post_norms: config
                .post_norms
                .then(|| (norm.init(device), norm.init(device))),
        }
    }

    /// The same block on another device.
    pub fn to_device(self, device: &Device) -> Self {
        Block {
            attn_norm: self.attn_norm.to_device(device),
            attn: self.attn.to_device(device),
            ffn_norm: self.ffn_norm.to_device(device),
            mlp: self.mlp.to_device(device),
            post_norms: self
                .post_norms
                .map(|(a, f)| (a.to_device(device), f.to_device(device))),
        }
    }

    /// Whether [`Block::decode_cpu`] can run: every projection has quantized blocks, and the
    /// block is a plain pre-norm SwiGLU block (the step has no q/k or post norms, no GeGLU).
    pub(crate) fn decode_ready(&self) -> bool {
        self.post_norms.is_none()
            && !self.attn.has_qk_norm()
            && self.mlp.activation == crate::feed_forward::FfnActivation::Silu
            && self.attn.wqkv.quant.is_some()
            && self.attn.wo.quant.is_some()
            && self.mlp.w_gate_up.quant.is_some()
            && self.mlp.w_down.quant.is_some()
    }

    /// One decode step of this block on plain vectors: `x` is `[B, D]` (one new position per
    /// row), updated in place; the KV cache in `slot` gains the position. Same computation as
    /// [`Block::forward`], without burn operations between the quantized kernels.
    pub(crate) fn decode_cpu(
        &self,
        x: &mut [f32],
        b: usize,
        rope: &Rope,
        ctx: &AttnContext,
        slot: &mut Option<(Tensor<4>, Tensor<4>)>,
        act: glaze_kernels::qmatmul::Activations,
    ) {
        let (Some(wqkv), Some(wo), Some(gate_up), Some(down)) = (
            &self.attn.wqkv.quant,
            &self.attn.wo.quant,
            &self.mlp.w_gate_up.quant,
            &self.mlp.w_down.quant,
        ) else {
            unreachable!("invariant: decode_ready() was checked");
        };
        let device = self.attn.wo.device().clone();
        let xn =
            crate::generation_step::rms_norm(x, self.attn_norm.host_weight(), self.attn_norm.eps());
        let mut qkv = wqkv.matmul_act(&xn, b, act);
        self.attn.wqkv.add_bias(&mut qkv);
        let heads = self.attn.heads();
        let att =
            crate::generation_step::attend_vec(qkv, b, heads, rope.layout(), ctx, slot, &device);
        let o = wo.matmul_act(&att, b, act);
        x.iter_mut().zip(&o).for_each(|(a, v)| *a += v);
        let xn =
            crate::generation_step::rms_norm(x, self.ffn_norm.host_weight(), self.ffn_norm.eps());
        let gu = gate_up.matmul_act(&xn, b, act);
        let f = down.cols();
        let mut silu = vec![0f32; b * f];
        for (row, a) in gu.chunks_exact(2 * f).zip(silu.chunks_exact_mut(f)) {
            let (gate, up) = row.split_at(f);
            for ((a, g), u) in a.iter_mut().zip(gate).zip(up) {
                *a = g / (1.0 + (-g).exp()) * u;
            }
        }
        let dn = down.matmul_act(&silu, b, act);
        x.iter_mut().zip(&dn).for_each(|(a, v)| *a += v);
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
        let a = self
            .attn
            .forward(self.attn_norm.forward(x.clone()), rope, ctx, cache);
        let a = match &self.post_norms {
            Some((post, _)) => post.forward(a),
            None => a,
        };
        let h = x + a;
        let m = self
            .mlp
            .forward_act(self.ffn_norm.forward(h.clone()), ctx.act);
        let m = match &self.post_norms {
            Some((_, post)) => post.forward(m),
            None => m,
        };
        h + m
    }
}
