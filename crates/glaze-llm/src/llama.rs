//! The Llama-family decoder as a frozen backbone.
//!
//! Weights are plain tensors, not `Param`s, on a non-autodiff device: the model cannot be
//! trained by construction, while gradients flow through it to the input embeddings it is
//! given (which may live on an autodiff device).

use burn::prelude::*;
use glaze_core::{BackboneSpec, ForwardOptions, FrozenBackbone, KvCache, fnv1a64};

use crate::attention::AttnContext;
use crate::block::Block;
use crate::config::LlamaConfig;
use crate::rms_norm::{RmsNorm, RmsNormConfig};
use crate::rope::{Positions, Rope};
use glaze_kernels::qmatmul::Activations;

/// A Llama-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied or untied head).
#[derive(Debug, Clone)]
pub struct Llama {
    pub(crate) config: LlamaConfig,
    pub(crate) spec: BackboneSpec,
    /// Token embeddings `[V, D]` (built from `embed_q` on first dense use when loaded
    /// quantized).
    pub(crate) embed: crate::linear::Dense,
    /// The token embeddings as quantized rows, for lookups without the dense table.
    pub(crate) embed_q: Option<std::sync::Arc<glaze_kernels::qmatmul::QMatrix>>,
    /// `embed_q` as a GEMM operand, made on first request (Q8_0 tables only).
    embed_q8: std::sync::OnceLock<Option<std::sync::Arc<glaze_kernels::gemm::Q8Matrix>>>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: RmsNorm,
    /// Untied LM head `[D, V]`; `None` when tied to `embed`.
    pub(crate) lm_head: Option<crate::linear::Dense>,
    /// The head (tied or not) as quantized `[V, D]` rows, for decode steps.
    pub(crate) lm_head_q: Option<std::sync::Arc<glaze_kernels::qmatmul::QMatrix>>,
    /// How generation (approximate forwards, the generation head) treats activations.
    pub(crate) gen_act: Activations,
    pub(crate) rope: Rope,
    /// The rotary tables of the local (sliding-window) layers, with their own base.
    pub(crate) rope_local: Option<Rope>,
    pub(crate) device: Device,
}

impl Llama {
    /// A randomly initialised model (for tests and benchmarks of the architecture).
    /// `device` should be a plain (non-autodiff) device; an autodiff device is stripped.
    pub fn init(config: &LlamaConfig, device: &Device) -> Self {
        let device = device.clone().without_autodiff();
        let dist = burn::tensor::Distribution::Normal(0.0, 0.02);
        Llama {
            spec: BackboneSpec {
                architecture: config.architecture.clone(),
                name: "random".into(),
                d_model: config.d_model,
                n_layers: config.n_layers,
                vocab_size: config.vocab_size,
                context_length: config.context_length,
                weights_hash: "random".into(),
                vocab_digest: String::new(),
                embedding_sketch: Vec::new(),
            },
            embed: crate::linear::Dense::eager(Tensor::random(
                [config.vocab_size, config.d_model],
                dist,
                &device,
            )),
            embed_q: None,
            embed_q8: std::sync::OnceLock::new(),
            blocks: (0..config.n_layers)
                .map(|_| Block::init(config, &device))
                .collect(),
            norm: RmsNormConfig::new(config.d_model)
                .with_eps(config.norm_eps)
                .init(&device),
            lm_head: (!config.tie_embeddings).then(|| {
                crate::linear::Dense::eager(Tensor::random(
                    [config.d_model, config.vocab_size],
                    dist,
                    &device,
                ))
            }),
            lm_head_q: None,
            gen_act: Activations::default(),
            rope: Rope::new(
                config.head_dim(),
                config.context_length,
                config.rope_theta,
                config.rope_layout,
                &device,
            ),
            rope_local: local_rope(config, &device),
            config: config.clone(),
            device,
        }
    }

    /// A copy of the model on another device (an autodiff device is stripped).
    pub fn to_device(&self, device: &Device) -> Self {
        let device = device.clone().without_autodiff();
        let mut m = self.clone();
        m.embed = m.embed.to_device(&device);
        m.norm = m.norm.to_device(&device);
        m.lm_head = m.lm_head.map(|w| w.to_device(&device));
        m.rope = m.rope.to_device(&device);
        m.rope_local = m.rope_local.map(|r| r.to_device(&device));
        m.blocks = m.blocks.into_iter().map(|b| b.to_device(&device)).collect();
        m.device = device;
        m
    }

    /// Sets how generation — forwards with [`ForwardOptions::approximate`] (prompt prefill,
    /// decode steps) and [`FrozenBackbone::generation_head`] — treats activations in the
    /// quantized-weight kernels: [`Activations::Int8`] (the default) rounds them to 8 bits per
    /// block like llama.cpp; [`Activations::F32`] keeps them exact (logits then equal the
    /// dense path's up to summation order). Other forwards are always exact. Only models
    /// loaded from quantized GGUF blocks are affected.
    pub fn set_generation_activations(&mut self, act: Activations) {
        self.gen_act = act;
    }

    /// Whether any f32 weight copy exists — given at load (no quantized blocks), or built
    /// since by an exact product (forwards of more than 8 rows, autodiff inputs, other
    /// devices; dense, or packed for the CPU's GEMM). Generation alone never builds one.
    pub fn dense_weights_built(&self) -> bool {
        self.embed.is_built()
            || self.lm_head.as_ref().is_some_and(|h| h.is_built())
            || self.blocks.iter().any(|b| {
                [&b.attn.wqkv, &b.attn.wo, &b.mlp.w_gate_up, &b.mlp.w_down]
                    .iter()
                    .any(|l| l.f32_built())
            })
    }

    /// How generation treats activations.
    pub fn generation_activations(&self) -> Activations {
        self.gen_act
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Block `i`, for running blocks one by one.
    pub fn block(&self, i: usize) -> Option<&Block> {
        self.blocks.get(i)
    }

    /// The rotary tables.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Every weight with a name, as read-only tensor handles (tensors are immutable values).
    pub fn named_weights(&self) -> Vec<(String, Tensor<2>)> {
        let mut out = vec![("embed".to_string(), self.embed.get())];
        for (i, b) in self.blocks.iter().enumerate() {
            let n = |s: &str| format!("blocks.{i}.{s}");
            out.push((n("attn_norm"), b.attn_norm.weight.clone().unsqueeze()));
            out.push((n("wqkv"), b.attn.wqkv.dense()));
            if let Some(bias) = b.attn.wqkv.bias() {
                out.push((n("wqkv_bias"), bias.unsqueeze()));
            }
            out.push((n("wo"), b.attn.wo.dense()));
            out.push((n("ffn_norm"), b.ffn_norm.weight.clone().unsqueeze()));
            out.push((n("w_gate_up"), b.mlp.w_gate_up.dense()));
            out.push((n("w_down"), b.mlp.w_down.dense()));
        }
        out.push(("norm".into(), self.norm.weight.clone().unsqueeze()));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head".into(), h.get()));
        }
        out
    }

    /// Builds the rotary tables and attention bias of one forward pass of `t` new positions
    /// for `b` rows, and updates the cache's positions and key mask: what
    /// [`Block::forward`] needs to run the frozen blocks one by one (e.g. with trainable
    /// layers between them).
    pub fn attention_context(
        &self,
        b: usize,
        t: usize,
        mask: Option<Tensor<2, Bool>>,
        cache: Option<&mut KvCache>,
    ) -> AttnContext {
        let device = &self.device;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let constant = cache.as_ref().is_some_and(|c| c.is_constant());
        let reserve = cache.as_ref().map_or(0, |c| c.reserved());
        let past_mask: Option<Vec<bool>> = cache
            .as_ref()
            .and_then(|c| c.key_mask())
            .map(|m| bool_vec(m.clone()));
        let new_mask: Option<Vec<bool>> = mask.map(bool_vec).filter(|m| m.iter().any(|v| !v));
        let next: Vec<i64> = match cache.as_ref().map(|c| c.next_positions()) {
            Some(p) if p.len() == b => p.to_vec(),
            _ => vec![past as i64; b],
        };
        let s_len = past + t;
        if past_mask.is_none() && new_mask.is_none() {
            let positions = Positions::Range(past);
            let (cos, sin) = self.rope.tables(&positions, t);
            let bias = (t > 1).then(|| {
                let mut bias = vec![0f32; t * s_len];
                for i in 0..t {
                    for j in past + i + 1..s_len {
                        bias[i * s_len + j] = f32::NEG_INFINITY;
                    }
                }
                Tensor::<4>::from_data(TensorData::new(bias, [1, 1, t, s_len]), device)
            });
            if let Some(c) = cache {
                c.set_next_positions(next.iter().map(|p| p + t as i64).collect());
            }
            AttnContext {
                cos,
                sin,
                act: Activations::F32,
                bias,
                past,
                constant,
                reserve,
                kv_f16: false,
                positions,
            }
        } else {
            let mut key_valid = Vec::with_capacity(b * s_len);
            for r in 0..b {
                for j in 0..past {
                    key_valid.push(past_mask.as_ref().is_none_or(|m| m[r * past + j]));
                }
                for i in 0..t {
                    key_valid.push(new_mask.as_ref().is_none_or(|m| m[r * t + i]));
                }
            }
            let mut positions = vec![0i64; b * t];
            let mut next_out = next.clone();
            for r in 0..b {
                let mut p = next[r];
                for i in 0..t {
                    positions[r * t + i] = p;
                    if key_valid[r * s_len + past + i] {
                        p += 1;
                    }
                }
                next_out[r] = p;
            }
            let mut bias = vec![0f32; b * t * s_len];
            for r in 0..b {
                for i in 0..t {
                    for j in 0..s_len {
                        let visible = (j <= past + i && key_valid[r * s_len + j]) || j == past + i;
                        if !visible {
                            bias[(r * t + i) * s_len + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            let pos = Tensor::<2, Int>::from_data(TensorData::new(positions, [b, t]), device);
            let positions = Positions::PerRow(pos);
            let (cos, sin) = self.rope.tables(&positions, t);
            if let Some(c) = cache {
                c.set_next_positions(next_out);
                c.set_key_mask(Some(Tensor::from_data(
                    TensorData::new(key_valid, [b, s_len]),
                    device,
                )));
            }
            AttnContext {
                cos,
                sin,
                act: Activations::F32,
                past,
                constant,
                reserve,
                kv_f16: false,
                bias: Some(Tensor::from_data(
                    TensorData::new(bias, [b, 1, t, s_len]),
                    device,
                )),
                positions,
            }
        }
    }

    /// The context of the local (sliding-window) layers for the same pass as `ctx`: their own
    /// rotary tables, and keys `window` or more positions back hidden. `None` for a model
    /// without local layers.
    pub fn local_context(&self, ctx: &AttnContext, t: usize) -> Option<AttnContext> {
        let rope = self.rope_local.as_ref()?;
        let window = self.config.sliding_window;
        let (cos, sin) = rope.tables(&ctx.positions, t);
        let s_len = ctx.past + t;
        let bias = if s_len > window {
            // Index distance equals position distance for real tokens: padding is on the left.
            let mut w = vec![0f32; t * s_len];
            for i in 0..t {
                for j in 0..(ctx.past + i + 1).saturating_sub(window) {
                    w[i * s_len + j] = f32::NEG_INFINITY;
                }
            }
            let w = Tensor::<4>::from_data(TensorData::new(w, [1, 1, t, s_len]), &self.device);
            Some(match &ctx.bias {
                Some(b) => b.clone() + w,
                None => w,
            })
        } else {
            ctx.bias.clone()
        };
        Some(AttnContext {
            cos,
            sin,
            bias,
            ..ctx.clone()
        })
    }
}

/// The rotary tables of the local layers, when the configuration has a sliding window.
pub(crate) fn local_rope(config: &LlamaConfig, device: &Device) -> Option<Rope> {
    (config.sliding_window > 0).then(|| {
        Rope::new(
            config.head_dim(),
            config.context_length,
            config.rope_theta_local,
            config.rope_layout,
            device,
        )
    })
}

fn bool_vec(mask: Tensor<2, Bool>) -> Vec<bool> {
    mask.into_data()
        .convert::<bool>()
        .try_into_vec()
        .expect("invariant: bool tensor data converts to bool")
}

impl FrozenBackbone for Llama {
    fn spec(&self) -> &BackboneSpec {
        &self.spec
    }

    fn device(&self) -> &Device {
        &self.device
    }

    /// The 8-bit table when the embeddings are a Q8_0 table and the weights live on the CPU
    /// (flex, where the GEMM reads it; elsewhere every product would dequantize it again),
    /// else every row through `embed`.
    fn word_embeddings(&self) -> glaze_core::WordEmbeddings {
        let q8 = self.embed_q8.get_or_init(|| {
            let q = self.embed_q.as_ref()?;
            q.to_q8().map(std::sync::Arc::new)
        });
        match q8 {
            // Scaled embeddings (Gemma) are not the table's rows.
            Some(q)
                if self.device.clone().inner() == Device::flex()
                    && self.config.embed_scale == 1.0 =>
            {
                glaze_core::WordEmbeddings::quantized(q.clone())
            }
            _ => glaze_core::WordEmbeddings::through_embed(self),
        }
    }

    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let d = self.config.d_model;
        let device = ids.device();
        if let Some(q) = &self.embed_q
            && crate::linear::on_cpu_plain(&device)
        {
            // Rows straight from the quantized table: the same values as the dense table's.
            let rows: Vec<usize> = ids
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("invariant: int ids convert to i64")
                .into_iter()
                .map(|i| {
                    let r = usize::try_from(i).unwrap_or(usize::MAX);
                    assert!(
                        r < q.rows(),
                        "token id {i} outside the vocabulary (check_ids)"
                    );
                    r
                })
                .collect();
            let mut data = q.dequantize_rows(&rows);
            if self.config.embed_scale != 1.0 {
                let s = self.config.embed_scale as f32;
                data.iter_mut().for_each(|v| *v *= s);
            }
            return Tensor::from_data(TensorData::new(data, [b, t, d]), &device);
        }
        let rows = self
            .embed
            .get()
            .select(0, ids.reshape([b * t]))
            .reshape([b, t, d]);
        if self.config.embed_scale != 1.0 {
            rows * self.config.embed_scale
        } else {
            rows
        }
    }

    fn forward(&self, embeds: Tensor<3>, options: ForwardOptions<'_>) -> Tensor<3> {
        let [b, t, _] = embeds.dims();
        let n = options
            .layers
            .unwrap_or(self.blocks.len())
            .min(self.blocks.len());
        let mut cache = options.cache;
        // A constant cache is left as it was by a training pass (see `KvCache::set_constant`):
        // its positions and key mask too, so the next pass attends to it the same way.
        let training = embeds.device().is_autodiff();
        let kept = cache
            .as_deref()
            .filter(|c| c.is_constant() && training)
            .map(|c| (c.next_positions().to_vec(), c.key_mask().cloned()));
        let mut ctx = self.attention_context(b, t, options.mask, cache.as_deref_mut());
        if let (Some(c), Some((positions, mask))) = (cache.as_deref_mut(), kept) {
            c.set_next_positions(positions);
            c.set_key_mask(mask);
        }
        let act = if options.approximate {
            self.gen_act
        } else {
            Activations::F32
        };
        ctx.act = act;
        let device = embeds.device();
        ctx.kv_f16 = int8_kernels(act, &device);
        let local = self.local_context(&ctx, t);
        let ctx_of = |i: usize| match &local {
            Some(l) if self.config.is_local(i) => l,
            _ => &ctx,
        };
        if let Some(c) = cache.as_deref_mut()
            && t == 1
            && crate::linear::on_cpu_plain(&device)
            && self.blocks.iter().take(n).all(Block::decode_ready)
        {
            // A decode step: hidden states stay a plain vector between the blocks.
            let d = self.config.d_model;
            let mut x = embeds
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("invariant: float embeddings convert to f32");
            // On a rayon worker: the kernels' parallel loops then hand work to the other
            // workers directly instead of injecting it from outside the pool and sleeping
            // until it is done, which cost ≈ 80 µs per matvec (measured, one thread).
            rayon::scope(|_| {
                for (i, block) in self.blocks.iter().take(n).enumerate() {
                    let mut slot = c.take_layer(i);
                    block.decode_cpu(&mut x, b, &self.rope, ctx_of(i), &mut slot, act);
                    if let Some((k, v)) = slot {
                        c.set_layer(i, k, v);
                    }
                }
            });
            c.set_len(ctx.past + 1);
            let x = Tensor::<3>::from_data(TensorData::new(x, [b, 1, d]), &device);
            return if options.skip_final_norm {
                x
            } else {
                self.norm.forward(x)
            };
        }
        let mut x = embeds;
        for (i, block) in self.blocks.iter().take(n).enumerate() {
            match cache.as_deref_mut() {
                Some(c) => {
                    let mut slot = c.take_layer(i);
                    x = block.forward(x, &self.rope, ctx_of(i), Some(&mut slot));
                    if let Some((k, v)) = slot {
                        c.set_layer(i, k, v);
                    }
                }
                None => x = block.forward(x, &self.rope, ctx_of(i), None),
            }
        }
        if let Some(c) = cache
            && !(c.is_constant() && training)
        {
            c.set_len(ctx.past + t);
        }
        if options.skip_final_norm {
            x
        } else {
            self.norm.forward(x)
        }
    }

    fn lm_head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.head(hidden, Activations::F32)
    }

    fn generation_head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.head(hidden, self.gen_act)
    }

    /// 64 positions with 8-bit activations on the CPU (measured on SmolLM2, 256-token
    /// prompt: peak RSS 143 → 136 MiB, prefill speed unchanged within the noise); whole
    /// prompts on the exact path, whose prefill multiplies the dense copies with the packed
    /// GEMM (in pieces of 64: 450 → 350 tok/s).
    fn prefill_chunk(&self) -> Option<usize> {
        let streams =
            int8_kernels(self.gen_act, &self.device) && self.blocks.iter().all(Block::decode_ready);
        streams.then_some(64)
    }

    fn weights_digest(&self) -> u64 {
        self.named_weights().into_iter().fold(0, |h, (name, w)| {
            let h = fnv1a64(name.as_bytes(), h);
            fnv1a64(w.into_data().as_bytes(), h)
        })
    }
}

/// Whether a pass with `act` on `device` runs the 8-bit kernels: plain (non-autodiff) flex
/// tensors on a CPU that has them. Such a pass keeps an f16 cache and prefills in pieces.
fn int8_kernels(act: Activations, device: &Device) -> bool {
    act == Activations::Int8
        && glaze_kernels::qint8::available()
        && crate::linear::on_cpu_plain(device)
}

impl Llama {
    /// The LM head: the quantized table for a few rows on the CPU, else the dense matmul.
    fn head(&self, hidden: Tensor<3>, act: Activations) -> Tensor<3> {
        let [b, t, d] = hidden.dims();
        let v = self.config.vocab_size;
        let flat = hidden.reshape([b * t, d]);
        if let Some(q) = &self.lm_head_q
            && b * t <= crate::linear::QUANT_MAX_ROWS
            && crate::linear::on_cpu_plain(&flat.device())
        {
            return crate::linear::quantized(q, flat, act).reshape([b, t, v]);
        }
        let logits = match &self.lm_head {
            Some(w) => glaze_kernels::matmul::matmul(flat, w.get()),
            None => glaze_kernels::matmul::matmul(flat, self.embed.get().transpose()),
        };
        logits.reshape([b, t, v])
    }
}
