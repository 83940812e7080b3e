//! A block's attention on the flex device in the layouts its projections use: [`qkv_heads`]
//! turns the fused q/k/v projection's rows `[B·T, (H + 2·KV)·hd]` into one head-major tensor
//! `[B, H + 2·KV, T, hd]`, rotate-half RoPE applied to the query and key heads, and
//! [`attend`] runs the fused attention on it (after an optional constant prefix) and writes
//! the rows `[B·T, H·hd]` the output projection reads. Each is one operation with its own
//! backward. Built from slices, reshapes and swaps, the q/k/v split gave every slice a
//! zero-filled gradient of the whole projection, then their sums, and the output's swap back
//! was a copy — serial work of ≈ 4 ms per Time-LLM training step.

use crate::alloc::par_chunks_zeroed;
use burn::backend::autodiff::{
    NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, unary},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::prelude::*;

use crate::fused_attention::{Dims, Group, Rows, flex, values};
use crate::rope::rotate_half;

/// The backend extension behind [`qkv_heads`] and [`attend`].
#[backend_extension(Flex, Autodiff)]
pub trait GlazeHeads: Backend {
    /// `qkv [B·T, (H + 2·KV)·hd]` → `[B, H + 2·KV, T, hd]`, the first `H + KV` heads rotated
    /// by `cos`/`sin [B|1, 1, T, hd/2]` (constants).
    fn glaze_qkv_heads(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        b: usize,
        h: usize,
        kv: usize,
    ) -> FloatTensor<Self>;

    /// The gradient of [`GlazeHeads::glaze_qkv_heads`] (a rotation and a permutation: its
    /// transpose).
    fn glaze_qkv_heads_grad(
        dheads: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        h: usize,
        kv: usize,
    ) -> FloatTensor<Self>;

    /// `heads [B, H + 2·KV, T, hd]` (queries, keys, values) attending to `[pk | keys]`,
    /// `[pv | values]` (`pk`/`pv [B, KV, P, hd]` constants, `P` may be 0) with `bias [B|1, 1,
    /// T, P + T]` → `[B·T, H·hd]`.
    #[allow(clippy::too_many_arguments)]
    fn glaze_attend(
        heads: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h: usize,
        kv: usize,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// The gradient of [`GlazeHeads::glaze_attend`] with respect to `heads` for the output
    /// gradient `dout [B·T, H·hd]`.
    #[allow(clippy::too_many_arguments)]
    fn glaze_attend_grad(
        heads: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        h: usize,
        kv: usize,
        scale: f32,
    ) -> FloatTensor<Self>;
}

/// Shapes of an attention call on `heads` and the group `(bb, g)`'s operands.
struct Layout {
    d: Dims,
    /// Query, key and value heads (`H + 2·KV`).
    n: usize,
    rep: usize,
}

impl Layout {
    fn of(heads: &[usize], pk: &[usize], bias: &[usize], h: usize, kv: usize) -> Self {
        let (b, n, t, hd) = (heads[0], heads[1], heads[2], heads[3]);
        let sp = pk[2];
        Layout {
            d: Dims {
                b,
                h,
                kv,
                t,
                s: sp + t,
                sp,
                sn: t,
                hd,
                bias_batched: bias[0] > 1,
            },
            n,
            rep: h / kv,
        }
    }

    /// Group `g` of batch element `bb`, from that element's heads (`n · T · hd` values).
    #[allow(clippy::too_many_arguments)]
    fn group<'a>(
        &self,
        own: &'a [f32],
        pk: &'a [f32],
        pv: &'a [f32],
        bias: &'a [f32],
        bb: usize,
        g: usize,
        scale: f32,
    ) -> Group<'a> {
        let Dims {
            t, sp, hd, h, kv, ..
        } = self.d;
        let (rows, pre) = (t * hd, sp * hd);
        let at = (bb * kv + g) * pre;
        Group {
            d: self.d,
            b: bb,
            q: &own[g * self.rep * rows..][..self.rep * rows],
            k: Rows {
                pre: &pk[at..][..pre],
                new: &own[(h + g) * rows..][..rows],
            },
            v: Rows {
                pre: &pv[at..][..pre],
                new: &own[(h + kv + g) * rows..][..rows],
            },
            bias,
            scale,
        }
    }
}

impl GlazeHeads for Flex {
    fn glaze_qkv_heads(
        qkv: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        b: usize,
        h: usize,
        kv: usize,
    ) -> FlexTensor {
        let ((x, xs), (cos, cs), (sin, _)) = (values(&qkv), values(&cos), values(&sin));
        let (w, n) = (xs[1], h + 2 * kv);
        let (t, hd) = (xs[0] / b, w / n);
        let half = hd / 2;
        let per_row = cs[0] == b && b > 1;
        // One piece per (batch element, head): T rows of hd.
        let out = par_chunks_zeroed(b * n * t * hd, t * hd, |bj, o| {
            let (bb, j) = (bj / n, bj % n);
            let table = if per_row { bb * t * half } else { 0 };
            for (tt, o) in o.chunks_exact_mut(hd).enumerate() {
                let x = &x[(bb * t + tt) * w + j * hd..][..hd];
                if j < h + kv {
                    let at = table + tt * half;
                    rotate_half(x, o, &cos[at..][..half], &sin[at..][..half], 1.0);
                } else {
                    o.copy_from_slice(x);
                }
            }
        });
        flex(out, [b, n, t, hd])
    }

    fn glaze_qkv_heads_grad(
        dheads: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        h: usize,
        kv: usize,
    ) -> FlexTensor {
        let ((dh, ds), (cos, cs), (sin, _)) = (values(&dheads), values(&cos), values(&sin));
        let (b, n, t, hd) = (ds[0], ds[1], ds[2], ds[3]);
        let (w, half) = (n * hd, hd / 2);
        let per_row = cs[0] == b && b > 1;
        // One piece per batch element: its T rows of the projection.
        let out = par_chunks_zeroed(b * t * w, t * w, |bb, o| {
            let table = if per_row { bb * t * half } else { 0 };
            for (tt, o) in o.chunks_exact_mut(w).enumerate() {
                for (j, o) in o.chunks_exact_mut(hd).enumerate() {
                    let g = &dh[((bb * n + j) * t + tt) * hd..][..hd];
                    if j < h + kv {
                        let at = table + tt * half;
                        rotate_half(g, o, &cos[at..][..half], &sin[at..][..half], -1.0);
                    } else {
                        o.copy_from_slice(g);
                    }
                }
            }
        });
        flex(out, [b * t, w])
    }

    fn glaze_attend(
        heads: FlexTensor,
        pk: FlexTensor,
        pv: FlexTensor,
        bias: FlexTensor,
        h: usize,
        kv: usize,
        scale: f32,
    ) -> FlexTensor {
        let ((heads, hs), (pk, pks), (pv, _), (bias, bs)) =
            (values(&heads), values(&pk), values(&pv), values(&bias));
        let l = Layout::of(&hs, &pks, &bs, h, kv);
        let Dims { b, t, hd, .. } = l.d;
        let own = l.n * t * hd;
        // One piece per batch element: its T output rows of H·hd.
        let out = par_chunks_zeroed(b * t * h * hd, t * h * hd, |bb, o| {
            let mut rows = vec![0f32; l.rep * t * hd];
            for g in 0..kv {
                let group = l.group(&heads[bb * own..][..own], &pk, &pv, &bias, bb, g, scale);
                group.forward(&mut rows);
                // Group row (r, tt) is head g·rep + r of output row tt.
                for (i, row) in rows.chunks_exact(hd).enumerate() {
                    let (r, tt) = (i / t, i % t);
                    o[(tt * h + g * l.rep + r) * hd..][..hd].copy_from_slice(row);
                }
            }
        });
        flex(out, [b * t, h * hd])
    }

    fn glaze_attend_grad(
        heads: FlexTensor,
        pk: FlexTensor,
        pv: FlexTensor,
        bias: FlexTensor,
        dout: FlexTensor,
        h: usize,
        kv: usize,
        scale: f32,
    ) -> FlexTensor {
        let ((heads, hs), (pk, pks), (pv, _), (bias, bs), (dout, _)) = (
            values(&heads),
            values(&pk),
            values(&pv),
            values(&bias),
            values(&dout),
        );
        let l = Layout::of(&hs, &pks, &bs, h, kv);
        let Dims { b, t, hd, .. } = l.d;
        let own = l.n * t * hd;
        // One piece per batch element: the gradients of its query, key and value heads (the
        // key/value ones accumulated by the groups, on the zeroed piece).
        let out = par_chunks_zeroed(b * own, own, |bb, dh| {
            let (dq, rest) = dh.split_at_mut(h * t * hd);
            let (dk, dv) = rest.split_at_mut(kv * t * hd);
            let mut rows = vec![0f32; l.rep * t * hd];
            for g in 0..kv {
                for (i, row) in rows.chunks_exact_mut(hd).enumerate() {
                    let (r, tt) = (i / t, i % t);
                    row.copy_from_slice(&dout[((bb * t + tt) * h + g * l.rep + r) * hd..][..hd]);
                }
                let group = l.group(&heads[bb * own..][..own], &pk, &pv, &bias, bb, g, scale);
                let n = l.rep * t * hd;
                group.backward(
                    &rows,
                    &mut dq[g * n..][..n],
                    &mut dk[g * t * hd..][..t * hd],
                    &mut dv[g * t * hd..][..t * hd],
                );
            }
        });
        flex(out, [b, l.n, t, hd])
    }
}

impl<B: Backend + GlazeHeads, C: CheckpointStrategy> GlazeHeads for Autodiff<B, C> {
    fn glaze_qkv_heads(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        b: usize,
        h: usize,
        kv: usize,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Split;

        impl<B: Backend + GlazeHeads> Backward<B, 1> for Split {
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                usize,
                usize,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (cos, sin, h, kv) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::glaze_qkv_heads_grad(dy, cos, sin, h, kv)
                });
            }
        }

        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        match Split.prepare::<C>([qkv.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(
                (cos.clone(), sin.clone(), h, kv),
                B::glaze_qkv_heads(qkv.into_primitive(), cos, sin, b, h, kv),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::glaze_qkv_heads(qkv.into_primitive(), cos, sin, b, h, kv))
            }
        }
    }

    fn glaze_qkv_heads_grad(
        dheads: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        h: usize,
        kv: usize,
    ) -> FloatTensor<Self> {
        // Second derivatives are not needed: the result is a constant of the graph.
        FloatTensor::<Self>::new(B::glaze_qkv_heads_grad(
            dheads.into_primitive(),
            cos.into_primitive(),
            sin.into_primitive(),
            h,
            kv,
        ))
    }

    fn glaze_attend(
        heads: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h: usize,
        kv: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Attend;

        /// The checkpointed heads; the constants `pk`, `pv`, `bias`; `h`, `kv`, the scale.
        type Saved<P> = (NodeId, P, P, P, usize, usize, f32);

        impl<B: Backend + GlazeHeads> Backward<B, 1> for Attend {
            type State = Saved<B::FloatTensorPrimitive>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let (heads, pk, pv, bias, h, kv, scale) = ops.state;
                let heads = checkpointer.retrieve_node_output(heads);
                unary::<B, _>(ops.parents, ops.node, grads, |dout| {
                    B::glaze_attend_grad(heads, pk, pv, bias, dout, h, kv, scale)
                });
            }
        }

        let (pk, pv, bias) = (
            pk.into_primitive(),
            pv.into_primitive(),
            bias.into_primitive(),
        );
        match Attend
            .prepare::<C>([heads.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&heads),
                    pk.clone(),
                    pv.clone(),
                    bias.clone(),
                    h,
                    kv,
                    scale,
                );
                prep.finish(
                    state,
                    B::glaze_attend(heads.into_primitive(), pk, pv, bias, h, kv, scale),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::glaze_attend(
                heads.into_primitive(),
                pk,
                pv,
                bias,
                h,
                kv,
                scale,
            )),
        }
    }

    fn glaze_attend_grad(
        heads: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        h: usize,
        kv: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        // Second derivatives are not needed: the result is a constant of the graph.
        FloatTensor::<Self>::new(B::glaze_attend_grad(
            heads.into_primitive(),
            pk.into_primitive(),
            pv.into_primitive(),
            bias.into_primitive(),
            dout.into_primitive(),
            h,
            kv,
            scale,
        ))
    }
}

/// The fused q/k/v projection's rows `[B·T, (H + 2·KV)·hd]` as head-major `[B, H + 2·KV, T,
/// hd]`, the query and key heads rotated by `cos`/`sin [B|1, 1, T, hd/2]` (rotate-half).
/// Flex device, f32 (the caller checks).
pub fn qkv_heads(
    qkv: Tensor<2>,
    cos: &Tensor<4>,
    sin: &Tensor<4>,
    b: usize,
    h: usize,
    kv: usize,
) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as GlazeHeads>::glaze_qkv_heads(
        qkv.into_dispatch(),
        cos.clone().into_dispatch(),
        sin.clone().into_dispatch(),
        b,
        h,
        kv,
    ))
}

/// Attention of the query heads of `heads [B, H + 2·KV, T, hd]` (from [`qkv_heads`]) over an
/// optional constant prefix `(pk, pv)` (`[B, KV, P, hd]`, no gradient) and the tensor's own
/// keys and values, with `bias [B|1, 1, T, P + T]` → the rows `[B·T, H·hd]`. Flex device, f32
/// (the caller checks).
pub fn attend(
    heads: Tensor<4>,
    prefix: Option<(Tensor<4>, Tensor<4>)>,
    bias: Option<Tensor<4>>,
    h: usize,
    kv: usize,
    scale: f32,
) -> Tensor<2> {
    let [b, _, t, hd] = heads.dims();
    let device = heads.device();
    // The prefix is read as a constant by the operation (no gradient reaches it).
    let (pk, pv) = match prefix {
        Some(prefix) => prefix,
        None => {
            let none = Tensor::<4>::zeros([b, kv, 0, hd], &device);
            (none.clone(), none)
        }
    };
    let s = pk.dims()[2] + t;
    let bias = bias.unwrap_or_else(|| Tensor::zeros([1, 1, t, s], &device));
    Tensor::from_dispatch(<burn::backend::Dispatch as GlazeHeads>::glaze_attend(
        heads.into_dispatch(),
        pk.into_dispatch(),
        pv.into_dispatch(),
        bias.into_dispatch(),
        h,
        kv,
        scale,
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::rope::rotate_half_heads;
    use crate::testing::rope_tables;

    /// The split-and-attend path equals the composed one (slices of the projection, RoPE,
    /// the fused attention over q/k/v, swap back) forward and in the projection's gradient:
    /// grouped heads, a constant prefix or none, a causal bias with a padded row, per-row
    /// rotary positions.
    #[test]
    fn matches_the_composed_ops() {
        for prefix in [0, 5] {
            check(prefix);
        }
    }

    fn check(p: usize) {
        let device = Device::flex().autodiff();
        device.seed(21);
        let (b, h, kv, t, hd) = (2, 6, 2, 4, 16);
        let w = (h + 2 * kv) * hd;
        let qkv =
            Tensor::<2>::random([b * t, w], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<2>::random([b * t, h * hd], Distribution::Default, &device);
        let positions: Vec<usize> = (0..b * t).map(|i| i % t + 3 * (i / t)).collect();
        let (cos, sin) = rope_tables(&positions, b, t, hd, &device);
        let s = p + t;
        let mut bias = vec![0f32; b * t * s];
        for bb in 0..b {
            for tt in 0..t {
                for j in 0..s {
                    if j > p + tt || (bb == 1 && j == 0) {
                        bias[(bb * t + tt) * s + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [b, 1, t, s]), &device);
        let prefix = (p > 0).then(|| {
            let r = |shape| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            (r([b, kv, p, hd]), r([b, kv, p, hd]))
        });
        let scale = 1.0 / (hd as f32).sqrt();
        let fused = || {
            let heads = qkv_heads(qkv.clone(), &cos, &sin, b, h, kv);
            attend(heads, prefix.clone(), Some(bias.clone()), h, kv, scale)
        };
        let composed = || {
            let split = |lo: usize, n: usize| {
                qkv.clone()
                    .slice(s![.., lo * hd..(lo + n) * hd])
                    .reshape([b, t, n, hd])
                    .swap_dims(1, 2)
            };
            let q = rotate_half_heads(split(0, h), &cos, &sin);
            let k = rotate_half_heads(split(h, kv), &cos, &sin);
            let v = split(h + kv, kv);
            let out = match prefix.clone() {
                Some(pre) => {
                    crate::fused_attention::attention_after(pre, q, k, v, Some(bias.clone()), scale)
                }
                None => crate::fused_attention::attention(q, k, v, Some(bias.clone()), scale),
            };
            out.swap_dims(1, 2).reshape([b * t, h * hd])
        };
        crate::testing::assert_same_op(&qkv, &weights, fused, composed, 1e-5);
    }
}
