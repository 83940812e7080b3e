//! One generation step's attention on the CPU without burn operations: one new position per row
//! attends to the whole KV cache.
//!
//! burn's attention and matmul treat a decode step like any other: they pack the cached keys
//! and values every step, so the step cost grows with the context (measured: +26 µs per cached
//! position per token on SmolLM2). Here the cache buffers are taken out of their tensors
//! without a copy (`into_data` of a uniquely owned flex tensor hands over its bytes), the new
//! key/value is written in place, and attention runs over the slices directly.

use burn::prelude::*;
use burn::tensor::FloatDType;
use rayon::prelude::*;

use crate::attention::AttnContext;
use crate::config::RopeLayout;
use glaze_kernels::vecops::{GroupAttention, KvElem};

/// Shapes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub h: usize,
    /// Key/value heads.
    pub kv: usize,
    /// Head width.
    pub hd: usize,
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("invariant: float data converts to f32")
}

/// Rotates one head vector in place; `cos`/`sin` hold `hd/2` values.
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = match layout {
            RopeLayout::Half => (i, i + half),
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x1 * cos[i] + x0 * sin[i];
    }
}

/// Grows cache buffers to hold `need` positions: by a quarter, in steps of 64 (doubling
/// held 512 positions for a 256-token prompt and 64 new tokens: +9 MB of peak RSS for
/// SmolLM2; each growth copies the cache once, a few milliseconds against the decode steps
/// it serves).
pub(crate) fn reserve(
    buffers: Option<(Tensor<4>, Tensor<4>)>,
    shape: [usize; 4],
    past: usize,
    need: usize,
    dtype: FloatDType,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let [b, kv, _, hd] = shape;
    let grow = |buf: Option<Tensor<4>>| -> Tensor<4> {
        // A cache filled with the other element type (another activation mode) is converted.
        let buf = buf.map(|x| {
            if x.dtype() == dtype.into() {
                x
            } else {
                x.cast(dtype)
            }
        });
        let cap = buf.as_ref().map_or(0, |x| x.dims()[2]);
        if need <= cap {
            return buf.expect("invariant: capacity > 0 implies a buffer");
        }
        let new_cap = need.max(cap + cap / 4).next_multiple_of(64);
        let options = burn::tensor::TensorCreationOptions::new(device.clone());
        let fresh = Tensor::zeros(
            [b, kv, new_cap - past, hd],
            options.with_dtype(dtype.into()),
        );
        match buf {
            Some(old) if past > 0 => {
                Tensor::cat(vec![old.slice(s![.., .., 0..past, ..]), fresh], 2)
            }
            _ => fresh,
        }
    };
    match buffers {
        Some((k, v)) => (grow(Some(k)), grow(Some(v))),
        None => (grow(None), grow(None)),
    }
}

/// One decode step: `qkv [B, (H + 2KV)·hd]` (projected, not yet rotated) → attention output
/// `[B, H·hd]`, with the new key/value appended to the cache in `slot`.
pub(crate) fn attend(
    qkv: Tensor<2>,
    heads: Heads,
    layout: RopeLayout,
    ctx: &AttnContext,
    slot: &mut Option<(Tensor<4>, Tensor<4>)>,
) -> Tensor<2> {
    let device = qkv.device();
    let [b, _] = qkv.dims();
    let out = attend_vec(to_vec(qkv), b, heads, layout, ctx, slot, &device);
    Tensor::from_data(TensorData::new(out, [b, heads.h * heads.hd]), &device)
}

/// [`attend`] on plain vectors: `qkv` is `[B, (H + 2KV)·hd]`, the result `[B, H·hd]`.
pub(crate) fn attend_vec(
    mut qkv: Vec<f32>,
    b: usize,
    heads: Heads,
    layout: RopeLayout,
    ctx: &AttnContext,
    slot: &mut Option<(Tensor<4>, Tensor<4>)>,
    device: &Device,
) -> Vec<f32> {
    let Heads { h, kv, hd } = heads;
    let half = hd / 2;
    let past = ctx.past;
    let s_len = past + 1;
    let cos = to_vec(ctx.cos.clone());
    let sin = to_vec(ctx.sin.clone());
    let bias = ctx.bias.clone().map(to_vec);
    let stride = (h + 2 * kv) * hd;
    // Rotate q and k of every row.
    for r in 0..b {
        let t = if cos.len() == half { 0 } else { r * half };
        let row = &mut qkv[r * stride..r * stride + (h + kv) * hd];
        for head in row.chunks_exact_mut(hd) {
            rotate(head, &cos[t..t + half], &sin[t..t + half], layout);
        }
    }
    let need = s_len.max(ctx.reserve);
    let (kb, vb) = reserve(
        slot.take(),
        [b, kv, 0, hd],
        past,
        need,
        ctx.kv_dtype(),
        device,
    );
    let step = Step {
        b,
        heads,
        cap: kb.dims()[2],
        past,
        bias: bias.as_deref(),
    };
    let (mut kd, mut vd) = (kb.into_data(), vb.into_data());
    // `reserve` returned buffers of the context's element type.
    const TYPED: &str = "invariant: the cache holds the context's element type";
    let out = if ctx.kv_f16 {
        let ks = kd.as_mut_slice::<half::f16>().expect(TYPED);
        step.run(&qkv, ks, vd.as_mut_slice::<half::f16>().expect(TYPED))
    } else {
        let ks = kd.as_mut_slice::<f32>().expect(TYPED);
        step.run(&qkv, ks, vd.as_mut_slice::<f32>().expect(TYPED))
    };
    // In the buffers' own type: `from_data` would convert them to the device's default.
    let options = burn::tensor::TensorCreationOptions::new(device.clone());
    let options = options.with_dtype(ctx.kv_dtype().into());
    *slot = Some((
        Tensor::from_data(kd, options.clone()),
        Tensor::from_data(vd, options),
    ));
    out
}

/// One decode step's shapes and key bias, for [`Step::run`].
struct Step<'a> {
    b: usize,
    heads: Heads,
    /// Positions the cache buffers hold.
    cap: usize,
    /// Positions filled before this step.
    past: usize,
    /// Additive bias per key (`[S]` or `[B, S]`), if any.
    bias: Option<&'a [f32]>,
}

impl Step<'_> {
    /// Appends the new key and value of every row (rotated `qkv`, `[B, (H + 2KV)·hd]`) to the
    /// cache buffers `ks`/`vs` (`[B, KV, cap, hd]`) and returns the attention output
    /// `[B, H·hd]`.
    fn run<T: KvElem>(&self, qkv: &[f32], ks: &mut [T], vs: &mut [T]) -> Vec<f32> {
        let Heads { h, kv, hd } = self.heads;
        let (b, cap, past) = (self.b, self.cap, self.past);
        let (rep, s_len, stride) = (h / kv, past + 1, (h + 2 * kv) * hd);
        for r in 0..b {
            let row = &qkv[r * stride..(r + 1) * stride];
            for g in 0..kv {
                let at = ((r * kv + g) * cap + past) * hd;
                let (k, v) = (
                    &row[(h + g) * hd..(h + g + 1) * hd],
                    &row[(h + kv + g) * hd..(h + kv + g + 1) * hd],
                );
                ks[at..at + hd]
                    .iter_mut()
                    .zip(k)
                    .for_each(|(o, x)| *o = T::narrow(*x));
                vs[at..at + hd]
                    .iter_mut()
                    .zip(v)
                    .for_each(|(o, x)| *o = T::narrow(*x));
            }
        }
        let (ks, vs) = (&*ks, &*vs);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0f32; b * h * hd];
        // One task per (row, group) and `heads` of its query heads (the group's keys and values
        // are read once per task).
        let work = |heads: usize, (task, o): (usize, &mut [f32])| {
            let per_group = rep / heads;
            let (r, g, part) = (
                task / (kv * per_group),
                task / per_group % kv,
                task % per_group,
            );
            let base = (r * kv + g) * cap * hd;
            let q0 = r * stride + (g * rep + part * heads) * hd;
            let bias_row = self.bias.map(|bv| {
                let rows = bv.len() / s_len;
                let at = if rows == 1 { 0 } else { r * s_len };
                &bv[at..at + s_len]
            });
            let group = GroupAttention {
                q: &qkv[q0..q0 + heads * hd],
                keys: &ks[base..base + s_len * hd],
                values: &vs[base..base + s_len * hd],
                bias: bias_row,
                hd,
                scale,
            };
            glaze_kernels::vecops::group_attention(&group, o);
        };
        // A long context is split over threads by query head (more tasks than groups, so
        // two threads share the work evenly); a short one runs on this thread whole groups
        // at a time (measured: SmolLM2 decode at 256 cached positions 12.3 → 10.0 ms per
        // token with the split, no loss at 8–64).
        if s_len >= 32 && b * h > 1 {
            out.par_chunks_mut(hd).enumerate().for_each(|t| work(1, t));
        } else {
            out.chunks_mut(rep * hd)
                .enumerate()
                .for_each(|t| work(rep, t));
        }
        out
    }
}

/// RMSNorm of every `d`-wide row of `x` with gain `w` (as `crate::rms_norm`, in f32).
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f64) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0f32; x.len()];
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = ((ms as f64 + eps).sqrt() as f32).recip();
        for ((o, v), g) in o.iter_mut().zip(row).zip(w) {
            *o = v * inv * g;
        }
    }
    out
}
