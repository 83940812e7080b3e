//! Grouped-query self-attention (Ainslie et al. 2023) with RoPE and a key/value cache.
//!
//! Query heads are grouped by the key/value head they share, so keys and values are never
//! repeated in memory (see [`glaze_kernels::fused_attention`]).

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use crate::linear::FrozenLinear;
use crate::rope::Rope;

/// Configuration of an [`Attention`] layer.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// Query heads `H`.
    pub n_heads: usize,
    /// Key/value heads `KV` (divides `H`).
    pub n_kv_heads: usize,
    /// Head width `hd`.
    pub head_dim: usize,
    /// RMSNorm over each query and key head before RoPE (Gemma 3). Default: none.
    #[config(default = false)]
    pub qk_norm: bool,
    /// Epsilon of the q/k norms. Default: 1e-6.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
}

impl AttentionConfig {
    /// Random weights `N(0, 0.02²)`.
    pub fn init(&self, device: &Device) -> Attention {
        let qkv = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim;
        let dist = burn::tensor::Distribution::Normal(0.0, 0.02);
        Attention {
            wqkv: FrozenLinear::new(Tensor::random([self.d_model, qkv], dist, device)),
            wo: FrozenLinear::new(Tensor::random(
                [self.n_heads * self.head_dim, self.d_model],
                dist,
                device,
            )),
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            qk_norm: self.qk_norm.then(|| {
                let norm =
                    crate::rms_norm::RmsNormConfig::new(self.head_dim).with_eps(self.norm_eps);
                (norm.init(device), norm.init(device))
            }),
        }
    }
}

/// Self-attention with fused q/k/v projection `[D, (H + 2KV)·hd]` and output `[H·hd, D]`.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) wqkv: FrozenLinear,
    pub(crate) wo: FrozenLinear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    /// Norms of the query and the key heads (Gemma 3).
    pub(crate) qk_norm: Option<(crate::rms_norm::RmsNorm, crate::rms_norm::RmsNorm)>,
}

/// Per-forward context shared by all blocks: rotary tables and the additive attention bias.
#[derive(Debug, Clone)]
pub struct AttnContext {
    /// cos table `[B|1, 1, T, hd/2]`.
    pub cos: Tensor<4>,
    /// sin table `[B|1, 1, T, hd/2]`.
    pub sin: Tensor<4>,
    /// How the quantized-weight kernels treat activations in this pass
    /// ([`crate::Activations::F32`] unless the forward is `approximate`).
    pub act: glaze_kernels::qmatmul::Activations,
    /// Additive bias `[B|1, 1, T, S]` (0 or -inf), or `None` when every key is visible.
    pub bias: Option<Tensor<4>>,
    /// Positions already in the cache before this pass.
    pub past: usize,
    /// Whether the cache is constant ([`glaze_core::KvCache::set_constant`]): a training
    /// pass then attends to it without extending it.
    pub constant: bool,
    /// Positions the cache buffers are allocated for when they are (re)allocated
    /// ([`glaze_core::KvCache::reserve`]; at least the positions needed).
    pub reserve: usize,
    /// Whether the cache keeps keys and values in f16 (generation with 8-bit activations on
    /// the CPU, as llama.cpp does; the exact path and training keep f32).
    pub kv_f16: bool,
    /// The positions of this pass's new tokens (for a second set of rotary tables).
    pub positions: crate::rope::Positions,
}

impl AttnContext {
    /// The element type of the cache buffers this pass writes.
    pub(crate) fn kv_dtype(&self) -> FloatDType {
        if self.kv_f16 {
            FloatDType::F16
        } else {
            FloatDType::F32
        }
    }
}

impl Attention {
    /// The same layer on another device.
    pub fn to_device(self, device: &Device) -> Self {
        Attention {
            wqkv: self.wqkv.to_device(device),
            wo: self.wo.to_device(device),
            qk_norm: self
                .qk_norm
                .map(|(q, k)| (q.to_device(device), k.to_device(device))),
            ..self
        }
    }

    /// Whether the query and key heads are normalised.
    pub(crate) fn has_qk_norm(&self) -> bool {
        self.qk_norm.is_some()
    }

    /// The fused projection `[N, (H + 2KV)·hd]` with every query and key head normalised.
    fn norm_heads(&self, qkv: Tensor<2>) -> Tensor<2> {
        let Some((qn, kn)) = &self.qk_norm else {
            return qkv;
        };
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let n = qkv.dims()[0];
        let heads = qkv.reshape([n, h + 2 * kv, hd]);
        let q = qn.forward(heads.clone().slice(s![.., 0..h, ..]));
        let k = kn.forward(heads.clone().slice(s![.., h..h + kv, ..]));
        let v = heads.slice(s![.., h + kv..h + 2 * kv, ..]);
        Tensor::cat(vec![q, k, v], 1).reshape([n, (h + 2 * kv) * hd])
    }

    /// Head counts and width.
    pub(crate) fn heads(&self) -> crate::generation_step::Heads {
        crate::generation_step::Heads {
            h: self.n_heads,
            kv: self.n_kv_heads,
            hd: self.head_dim,
        }
    }

    /// # Shapes
    /// `x [B, T, D]` → `[B, T, D]`; `cache` holds `[B, KV, P, hd]` keys/values before the call
    /// and `[B, KV, P + T, hd]` after it.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        ctx: &AttnContext,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let qkv = self.norm_heads(self.wqkv.forward_act(x.reshape([b * t, d]), ctx.act));
        let cache = match cache {
            Some(slot) if t == 1 && crate::linear::on_cpu_plain(&qkv.device()) => {
                let heads = crate::generation_step::Heads { h, kv, hd };
                let out = crate::generation_step::attend(qkv, heads, rope.layout(), ctx, slot);
                return self.wo.forward_act(out, ctx.act).reshape([b, t, d]);
            }
            other => other,
        };
        let training = qkv.device().is_autodiff();
        let scale = 1.0 / (hd as f32).sqrt();
        // The first `end` cached positions, as f32 (the 8-bit path keeps its cache in f16).
        let cached = |x: &Tensor<4>, end: usize| {
            let x = x.clone().slice(s![.., .., 0..end, ..]);
            if x.dtype() == DType::F32 {
                x
            } else {
                x.cast(FloatDType::F32)
            }
        };
        // No cache, or a constant one read by training passes: the projection split into
        // heads and attended as two fused operations (flex, f32, rotate-half).
        let split = match &cache {
            None => true,
            Some(_) => training && ctx.constant && ctx.past > 0,
        };
        if split
            && qkv.device().inner() == Device::flex()
            && qkv.dtype() == DType::F32
            && rope.layout() == crate::config::RopeLayout::Half
        {
            let heads = glaze_kernels::head_split::qkv_heads(qkv, &ctx.cos, &ctx.sin, b, h, kv);
            let prefix = cache.and_then(|slot| {
                let (ok, ov) = slot.as_ref()?;
                Some((cached(ok, ctx.past), cached(ov, ctx.past)))
            });
            let out =
                glaze_kernels::head_split::attend(heads, prefix, ctx.bias.clone(), h, kv, scale);
            return self.wo.forward_act(out, ctx.act).reshape([b, t, d]);
        }
        let q = qkv
            .clone()
            .slice(s![.., 0..h * hd])
            .reshape([b, t, h, hd])
            .swap_dims(1, 2);
        let k = qkv
            .clone()
            .slice(s![.., h * hd..(h + kv) * hd])
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        let v = qkv
            .slice(s![.., (h + kv) * hd..(h + 2 * kv) * hd])
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        let q = rope.apply(q, &ctx.cos, &ctx.sin);
        let k = rope.apply(k, &ctx.cos, &ctx.sin);
        // The first `end` cached positions, in f32 (a generation's cache may hold f16: it is
        // attended in f32, all keys and values as stored, so a prompt in pieces sees the same
        // values as one at once).
        // `prefix`: constant cached keys/values attended in place (not concatenated).
        let (prefix, k, v) = match cache {
            // Training on a constant cache (a cached prompt the caller drops after the pass):
            // attend to it in place, leave it as it is.
            Some(slot) if training && ctx.constant && ctx.past > 0 => {
                let prefix = slot
                    .as_ref()
                    .map(|(ok, ov)| (cached(ok, ctx.past), cached(ov, ctx.past)));
                (prefix, k, v)
            }
            // Training (autodiff): the cache is rebuilt every step, so the new keys are
            // concatenated to the cached ones without the spare capacity generation keeps
            // (growing it meant a zero-filled buffer, a copy and a tracked `slice_assign`).
            Some(slot) if training => {
                let (kb, vb) = match slot.take() {
                    Some((ok, ov)) if ctx.past > 0 => (
                        Tensor::cat(vec![cached(&ok, ctx.past), k], 2),
                        Tensor::cat(vec![cached(&ov, ctx.past), v], 2),
                    ),
                    _ => (k, v),
                };
                *slot = Some((kb.clone(), vb.clone()));
                (None, kb, vb)
            }
            Some(slot) => {
                let (kb, vb) = append(slot.take(), k, v, ctx);
                let end = ctx.past + t;
                let views = (cached(&kb, end), cached(&vb, end));
                *slot = Some((kb, vb));
                (None, views.0, views.1)
            }
            None => (None, k, v),
        };
        debug_assert!(k.dims()[2] >= t);
        let bias = ctx.bias.clone();
        let out = match prefix {
            Some(p) => glaze_kernels::fused_attention::attention_after(p, q, k, v, bias, scale),
            None => glaze_kernels::fused_attention::attention(q, k, v, bias, scale),
        }
        .swap_dims(1, 2)
        .reshape([b * t, h * hd]);
        self.wo.forward_act(out, ctx.act).reshape([b, t, d])
    }
}

/// Writes `k`, `v` (`[B, KV, T, hd]`) at positions `past..past + T` of the cache buffers
/// (grown when full, to at least the reserved positions; in the context's element type). A
/// uniquely owned buffer is written in place.
fn append(
    buffers: Option<(Tensor<4>, Tensor<4>)>,
    k: Tensor<4>,
    v: Tensor<4>,
    ctx: &AttnContext,
) -> (Tensor<4>, Tensor<4>) {
    let (t, past, dtype) = (k.dims()[2], ctx.past, ctx.kv_dtype());
    let need = (past + t).max(ctx.reserve);
    let (kb, vb) =
        crate::generation_step::reserve(buffers, k.dims(), past, need, dtype, &k.device());
    let (k, v) = if ctx.kv_f16 {
        (k.cast(dtype), v.cast(dtype))
    } else {
        (k, v)
    };
    (
        kb.slice_assign(s![.., .., past..past + t, ..], k),
        vb.slice_assign(s![.., .., past..past + t, ..], v),
    )
}
