//! Loading weights into a [`Llama`] from any [`WeightSource`], through one key-remap table.
//!
//! Building the model and loading weights are separate steps: the shape comes from a
//! [`LlamaConfig`], the values from a source that names tensors its own way ([`Naming`]).

use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;

use crate::config::{LlamaConfig, RopeLayout};
use crate::error::{Error, Result};
use crate::linear::{Dense, FrozenLinear};
use crate::llama::Llama;
use crate::rope::unpermute_rows;
use glaze_kernels::qmatmul::QMatrix;

/// A source of named f32 tensors in row-major (PyTorch) layout.
pub trait WeightSource {
    /// The file or directory, for error messages.
    fn path(&self) -> &Path;
    /// Whether a tensor exists.
    fn has(&self, name: &str) -> bool;
    /// A tensor's shape (outermost first) and values.
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)>;
    /// The tensor as quantized `[rows, cols]` blocks, when the source stores it in a block
    /// type with a kernel ([`QMatrix`]). Default: none.
    fn quantized(&self, _name: &str, _rows: usize, _cols: usize) -> Option<QMatrix> {
        None
    }
}

/// How a source names Llama tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// llama.cpp names (`blk.N.attn_q.weight`).
    Gguf,
    /// Hugging Face names (`model.layers.N.self_attn.q_proj.weight`).
    Hf,
}

/// Logical tensors of a Llama model.
#[derive(Debug, Clone, Copy)]
enum Key {
    Embed,
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    O,
    FfnNorm,
    PreFfnNorm,
    QNorm,
    KNorm,
    PostAttnNorm,
    PostFfnNorm,
    Gate,
    Up,
    Down,
    Norm,
    Head,
}

/// The key-remap table: logical tensor → name in the source.
fn name(naming: Naming, key: Key, layer: usize) -> String {
    let (gguf, hf) = match key {
        Key::Embed => return pick(naming, "token_embd.weight", "model.embed_tokens.weight"),
        Key::Norm => return pick(naming, "output_norm.weight", "model.norm.weight"),
        Key::Head => return pick(naming, "output.weight", "lm_head.weight"),
        Key::AttnNorm => ("attn_norm", "input_layernorm"),
        Key::Q | Key::QBias => ("attn_q", "self_attn.q_proj"),
        Key::K | Key::KBias => ("attn_k", "self_attn.k_proj"),
        Key::V | Key::VBias => ("attn_v", "self_attn.v_proj"),
        Key::O => ("attn_output", "self_attn.o_proj"),
        Key::FfnNorm => ("ffn_norm", "post_attention_layernorm"),
        // Gemma 3: the norm before the feed-forward, in blocks that also norm after it (HF's
        // `post_attention_layernorm` is then the norm after attention).
        Key::PreFfnNorm => ("ffn_norm", "pre_feedforward_layernorm"),
        Key::QNorm => ("attn_q_norm", "self_attn.q_norm"),
        Key::KNorm => ("attn_k_norm", "self_attn.k_norm"),
        Key::PostAttnNorm => ("post_attention_norm", "post_attention_layernorm"),
        Key::PostFfnNorm => ("post_ffw_norm", "post_feedforward_layernorm"),
        Key::Gate => ("ffn_gate", "mlp.gate_proj"),
        Key::Up => ("ffn_up", "mlp.up_proj"),
        Key::Down => ("ffn_down", "mlp.down_proj"),
    };
    let suffix = match key {
        Key::QBias | Key::KBias | Key::VBias => "bias",
        _ => "weight",
    };
    match naming {
        Naming::Gguf => format!("blk.{layer}.{gguf}.{suffix}"),
        Naming::Hf => format!("model.layers.{layer}.{hf}.{suffix}"),
    }
}

fn pick(naming: Naming, gguf: &str, hf: &str) -> String {
    match naming {
        Naming::Gguf => gguf.to_string(),
        Naming::Hf => hf.to_string(),
    }
}

struct Loader<'a> {
    source: &'a dyn WeightSource,
    naming: Naming,
    /// Whether norm gains are stored as `g - 1` (Gemma in HF layout: its norms multiply by
    /// `1 + w`; llama.cpp's converter stores `1 + w`).
    gain_minus_one: bool,
}

impl Loader<'_> {
    /// A norm's gain (`1 + w` where the source stores `w`).
    fn gain(&self, key: Key, layer: usize, width: usize) -> Result<Vec<f32>> {
        let mut g = self.get(key, layer, &[width])?;
        if self.gain_minus_one {
            g.iter_mut().for_each(|v| *v += 1.0);
        }
        Ok(g)
    }

    fn quant(&self, key: Key, layer: usize, rows: usize, cols: usize) -> Option<QMatrix> {
        self.source
            .quantized(&name(self.naming, key, layer), rows, cols)
    }

    fn get(&self, key: Key, layer: usize, expected: &[usize]) -> Result<Vec<f32>> {
        let name = name(self.naming, key, layer);
        let (shape, data) = self.source.tensor(&name)?;
        // A 1-D tensor may be stored as [1, n] by some exporters.
        let squeezed: Vec<usize> = if expected.len() == 1 {
            shape.iter().copied().filter(|&d| d != 1).collect()
        } else {
            shape.clone()
        };
        if squeezed != expected && !(expected == [1] && shape.iter().product::<usize>() == 1) {
            return Err(Error::TensorShape {
                path: self.source.path().to_path_buf(),
                name,
                got: shape,
                expected: expected.to_vec(),
            });
        }
        Ok(data)
    }
}

/// Transposes a row-major `[rows, cols]` matrix.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// A frozen map from quantized blocks when the source has them (its dense copy is built only
/// if a dense matmul needs it), else from the dense `[in, out]` weights `dense()` reads.
fn linear(
    quant: Option<QMatrix>,
    device: &Device,
    dense: impl FnOnce() -> Result<Tensor<2>>,
) -> Result<FrozenLinear> {
    Ok(match quant {
        Some(q) => FrozenLinear::quantized(q, device),
        None => FrozenLinear::new(dense()?),
    })
}

/// Row order that turns interleaved-RoPE q/k rows into rotate-half rows (see `unpermute_rows`).
fn unpermute_order(n_heads: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let mut order = vec![0; n_heads * head_dim];
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                order[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
            }
        }
    }
    order
}

fn t2(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Builds a [`Llama`] of `config` and fills it from `source`.
///
/// Raw GGUF q/k rows are interleaved-RoPE ordered; they are un-permuted here so the model runs
/// rotate-half RoPE whatever the source (one code path, same scores).
pub fn load_llama(
    config: &LlamaConfig,
    source: &dyn WeightSource,
    naming: Naming,
    device: &Device,
) -> Result<Llama> {
    let device = device.clone().without_autodiff();
    let l = Loader {
        source,
        naming,
        gain_minus_one: naming == Naming::Hf && config.architecture == "gemma3",
    };
    let (d, f, v) = (config.d_model, config.ffn_dim, config.vocab_size);
    let (h, kv, hd) = (config.n_heads, config.n_kv_heads, config.head_dim());
    let unpermute = config.rope_layout == RopeLayout::Interleaved;
    let mut config = config.clone();
    config.rope_layout = RopeLayout::Half;
    let mut model = Llama::init_empty(&config, &device);

    let embed_q = l.quant(Key::Embed, 0, v, d).map(Arc::new);
    model.embed = match &embed_q {
        Some(q) => Dense::lazy(q.clone(), false, &device),
        None => Dense::eager(t2(l.get(Key::Embed, 0, &[v, d])?, [v, d], &device)),
    };
    model.embed_q = embed_q.clone();
    for i in 0..config.n_layers {
        let qkv_q = (|| {
            let mut q = l.quant(Key::Q, i, h * hd, d)?;
            let mut k = l.quant(Key::K, i, kv * hd, d)?;
            if unpermute {
                q.permute_rows(&unpermute_order(h, hd));
                k.permute_rows(&unpermute_order(kv, hd));
            }
            QMatrix::vstack(vec![q, k, l.quant(Key::V, i, kv * hd, d)?])
        })();
        let gate_up_q = (|| {
            QMatrix::vstack(vec![
                l.quant(Key::Gate, i, f, d)?,
                l.quant(Key::Up, i, f, d)?,
            ])
        })();
        let wqkv = linear(qkv_q, &device, || {
            let mut q = l.get(Key::Q, i, &[h * hd, d])?;
            let mut k = l.get(Key::K, i, &[kv * hd, d])?;
            if unpermute {
                q = unpermute_rows(&q, h, hd, d);
                k = unpermute_rows(&k, kv, hd, d);
            }
            let vv = l.get(Key::V, i, &[kv * hd, d])?;
            let n_qkv = (h + 2 * kv) * hd;
            let rows = [q, k, vv].concat();
            Ok(t2(transpose(&rows, n_qkv, d), [d, n_qkv], &device))
        })?;
        let wqkv = if config.qkv_bias {
            if unpermute {
                return Err(Error::UnsupportedFeature {
                    path: source.path().to_path_buf(),
                    feature: "q/k/v biases with interleaved RoPE rows".into(),
                });
            }
            let bias = [
                l.get(Key::QBias, i, &[h * hd])?,
                l.get(Key::KBias, i, &[kv * hd])?,
                l.get(Key::VBias, i, &[kv * hd])?,
            ]
            .concat();
            wqkv.with_bias(bias, &device)
        } else {
            wqkv
        };
        let wo = linear(l.quant(Key::O, i, d, h * hd), &device, || {
            let o = l.get(Key::O, i, &[d, h * hd])?;
            Ok(t2(transpose(&o, d, h * hd), [h * hd, d], &device))
        })?;
        let w_gate_up = linear(gate_up_q, &device, || {
            let gu = [l.get(Key::Gate, i, &[f, d])?, l.get(Key::Up, i, &[f, d])?].concat();
            Ok(t2(transpose(&gu, 2 * f, d), [d, 2 * f], &device))
        })?;
        let w_down = linear(l.quant(Key::Down, i, d, f), &device, || {
            let dn = l.get(Key::Down, i, &[d, f])?;
            Ok(t2(transpose(&dn, d, f), [f, d], &device))
        })?;
        let block = &mut model.blocks[i];
        block.attn.wqkv = wqkv;
        block.attn.wo = wo;
        block.mlp.w_gate_up = w_gate_up;
        block.mlp.w_down = w_down;
        let ffn_norm = if block.post_norms.is_some() {
            Key::PreFfnNorm
        } else {
            Key::FfnNorm
        };
        block
            .attn_norm
            .set_weight(l.gain(Key::AttnNorm, i, d)?, &device);
        block.ffn_norm.set_weight(l.gain(ffn_norm, i, d)?, &device);
        if let Some((qn, kn)) = &mut block.attn.qk_norm {
            qn.set_weight(l.gain(Key::QNorm, i, hd)?, &device);
            kn.set_weight(l.gain(Key::KNorm, i, hd)?, &device);
        }
        if let Some((pa, pf)) = &mut block.post_norms {
            pa.set_weight(l.gain(Key::PostAttnNorm, i, d)?, &device);
            pf.set_weight(l.gain(Key::PostFfnNorm, i, d)?, &device);
        }
    }
    model.norm.set_weight(l.gain(Key::Norm, 0, d)?, &device);
    let head_name = name(naming, Key::Head, 0);
    let untied = !config.tie_embeddings && source.has(&head_name);
    (model.lm_head, model.lm_head_q) = if untied {
        match l.quant(Key::Head, 0, v, d).map(Arc::new) {
            Some(q) => (Some(Dense::lazy(q.clone(), true, &device)), Some(q)),
            None => {
                let w = transpose(&l.get(Key::Head, 0, &[v, d])?, v, d);
                (Some(Dense::eager(t2(w, [d, v], &device))), None)
            }
        }
    } else {
        (None, embed_q)
    };
    model.config.tie_embeddings = !untied;
    Ok(model)
}

impl Llama {
    /// A model whose weights are placeholders (zeros), to be filled by a loader.
    pub(crate) fn init_empty(config: &LlamaConfig, device: &Device) -> Self {
        // Small tensors only: the loader replaces every weight.
        let mut tiny = config.clone();
        tiny.n_layers = 0;
        tiny.vocab_size = 1;
        tiny.tie_embeddings = true;
        // Its RoPE tables too (2 MB for an 8k context; the real ones are built below).
        tiny.context_length = 1;
        let mut m = Llama::init(&tiny, device);
        // The placeholder block keeps the head layout (the loader replaces only the weights)
        // but has width 1: a full-width random block would be 14 MB of garbage held until the
        // last layer is loaded (heaptrack: at the load's heap peak).
        let placeholder = LlamaConfig {
            d_model: 1,
            ffn_dim: 1,
            head_dim: config.head_dim(),
            ..tiny.clone()
        };
        let one = crate::block::Block::init(&placeholder, device);
        m.blocks = vec![one; config.n_layers];
        m.config = config.clone();
        m.spec.n_layers = config.n_layers;
        m.spec.vocab_size = config.vocab_size;
        m.spec.context_length = config.context_length;
        m.rope = crate::rope::Rope::new(
            config.head_dim(),
            config.context_length,
            config.rope_theta,
            config.rope_layout,
            device,
        );
        m.rope_local = crate::llama::local_rope(config, device);
        m
    }
}
