//! [`attention`]: grouped-query softmax attention `softmax(q·kᵀ·scale + bias)·v` as one
//! operation with a hand-written backward, on the flex device — training and the exact
//! multi-row forwards (elsewhere: burn's matmul/softmax ops; decode steps use `decode.rs`).
//!
//! Composed of burn ops, a training step's attention made a dozen passes over `[B, H, T, S]`
//! scores and as many tracked intermediates; here each `(batch, key/value head)` pair is one
//! task that takes its query rows 48 at a time: keys and values transposed once, scores,
//! outputs and gradients as register-tiled products of the group's small matrices
//! (`tiles.rs`; one dot product per score before, 2× slower). The backward recomputes the
//! probabilities (cheaper than keeping them) and returns `dq`, `dk`, `dv`; the bias (padding
//! and causal mask) is a constant.

use burn::backend::autodiff::{
    NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::softmax;
use rayon::prelude::*;

use crate::alloc::par_chunks_zeroed;

use crate::gemm::View;

use crate::tiles;
use crate::vmath::softmax_row;

use crate::vecops::dot;

/// The backend extension behind [`attention`].
#[backend_extension(Flex, Autodiff)]
pub trait GlazeAttention: Backend {
    /// `q [B, H, T, hd]` attending to the keys/values `[pk | k]`, `[pv | v]` (`pk`/`pv
    /// [B, KV, P, hd]` constants — a cached prompt, `P` may be 0 — then `k`/`v [B, KV, N,
    /// hd]`), `bias [B|1, 1, T, P + N]` → `[B, H, T, hd]`.
    #[allow(clippy::too_many_arguments)]
    fn glaze_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `(dq, dk, dv)` for the output gradient `dout [B, H, T, hd]` (`dk`, `dv` of the `N`
    /// new positions only: the prefix is constant).
    #[allow(clippy::too_many_arguments)]
    fn glaze_attention_grad(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

pub(crate) use crate::matmul::flex_values as values;

/// `n` zeros written explicitly. `vec![0.0; n]` asks `calloc` for memory the kernel maps to
/// the shared zero page; the first read-modify-write of each page then takes a second
/// (copy-on-write) fault and a TLB shootdown interrupt to the other threads — measured as
/// 20 % of the backward pass on the 2-vCPU VM.
fn zeroed(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0.0);
    v
}

pub(crate) fn flex<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

/// Shapes of one call.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub h: usize,
    pub kv: usize,
    pub t: usize,
    /// All key positions (`sp + sn`), the constant prefix's, the new ones'.
    pub s: usize,
    pub sp: usize,
    pub sn: usize,
    pub hd: usize,
    /// Whether the bias has a batch dimension (else it is shared).
    pub bias_batched: bool,
}

impl Dims {
    fn of(q: &[usize], k: &[usize], pk: &[usize], bias: &[usize]) -> Self {
        Dims {
            b: q[0],
            h: q[1],
            kv: k[1],
            t: q[2],
            s: pk[2] + k[2],
            sp: pk[2],
            sn: k[2],
            hd: q[3],
            bias_batched: bias[0] > 1,
        }
    }

    /// Group `bg`'s keys (or values): the constant prefix's rows and the new ones', read in
    /// place (gathering them into one buffer per task was 1 % of a training step's samples).
    fn group<'a>(&self, pre: &'a [f32], new: &'a [f32], bg: usize) -> Rows<'a> {
        let (p, n) = (self.sp * self.hd, self.sn * self.hd);
        Rows {
            pre: &pre[bg * p..][..p],
            new: &new[bg * n..][..n],
        }
    }

    fn bias_row<'a>(&self, bias: &'a [f32], b: usize, t: usize) -> &'a [f32] {
        let bb = if self.bias_batched { b } else { 0 };
        &bias[(bb * self.t + t) * self.s..][..self.s]
    }
}

/// One group's keys or values: the prefix's rows, then the new positions' rows.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub pre: &'a [f32],
    pub new: &'a [f32],
}

impl Rows<'_> {
    /// All positions transposed into `dst` (`hd` rows of `s` values).
    fn transpose_into(&self, hd: usize, dst: &mut [f32]) {
        let (sp, sn) = (self.pre.len() / hd.max(1), self.new.len() / hd.max(1));
        tiles::transpose_into(self.pre, sp, hd, dst, sp + sn, 0);
        tiles::transpose_into(self.new, sn, hd, dst, sp + sn, sp);
    }

    /// `out (m × hd) = c (m × s, row step s) · rows` (or `+=` when `accumulate`).
    fn combine(&self, m: usize, hd: usize, c: &[f32], out: &mut [f32], accumulate: bool) {
        let (sp, sn) = (self.pre.len() / hd.max(1), self.new.len() / hd.max(1));
        let s = sp + sn;
        let pre = View::strided(c, m, sp, s, 1);
        tiles::product(pre, hd, self.pre, hd, out, hd, accumulate);
        let rest = View::strided(&c[sp..], m, sn, s, 1);
        tiles::product(rest, hd, self.new, hd, out, hd, accumulate || sp > 0);
    }
}

/// Query rows of a group taken at once: their scores (`ROWS × S`) stay in L2 however long
/// the prompt.
const ROWS: usize = 48;

thread_local! {
    /// Each thread's scratch for one group: transposed keys and values, scores and their
    /// gradients.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with `n` values of this thread's scratch (contents unspecified).
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with_borrow_mut(|v| {
        if v.len() < n {
            v.resize(n, 0.0);
        }
        f(&mut v[..n])
    })
}

/// One `(batch, key/value head)` group: its `rep · T` query rows (`q`, row-major, `hd`
/// wide), keys and values, and the bias rows of its batch element.
pub(crate) struct Group<'a> {
    pub d: Dims,
    pub b: usize,
    pub q: &'a [f32],
    pub k: Rows<'a>,
    pub v: Rows<'a>,
    pub bias: &'a [f32],
    pub scale: f32,
}

impl Group<'_> {
    /// Probabilities of query rows `i0..i0 + m` into `p` (`m × S`), from the transposed keys.
    fn probs(&self, i0: usize, m: usize, kt: &[f32], p: &mut [f32]) {
        let (s, hd) = (self.d.s, self.d.hd);
        let q = View::strided(&self.q[i0 * hd..], m, hd, hd, 1);
        tiles::product(q, s, kt, s, p, s, false);
        for (i, row) in p.chunks_exact_mut(s).take(m).enumerate() {
            let t = (i0 + i) % self.d.t;
            softmax_row(row, self.d.bias_row(self.bias, self.b, t), self.scale);
        }
    }

    /// The group's attention output (`rep · T × hd`).
    pub fn forward(&self, out: &mut [f32]) {
        let (s, hd, rows) = (self.d.s, self.d.hd, self.q.len() / self.d.hd);
        with_scratch(hd * s + ROWS * s, |scratch| {
            let (kt, p) = scratch.split_at_mut(hd * s);
            self.k.transpose_into(hd, kt);
            for i0 in (0..rows).step_by(ROWS) {
                let m = ROWS.min(rows - i0);
                self.probs(i0, m, kt, p);
                self.v.combine(m, hd, p, &mut out[i0 * hd..], false);
            }
        });
    }

    /// `dq` of the group's rows (`rep · T × hd`) and its share of `dk`, `dv` (the new
    /// positions', `N × hd`, accumulated) for the output gradient `dout` (as `q`).
    pub fn backward(&self, dout: &[f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
        let (s, sp, sn, hd) = (self.d.s, self.d.sp, self.d.sn, self.d.hd);
        let rows = self.q.len() / hd;
        with_scratch(2 * hd * s + 2 * ROWS * s, |scratch| {
            let (kt, rest) = scratch.split_at_mut(hd * s);
            let (vt, rest) = rest.split_at_mut(hd * s);
            let (p, ds) = rest.split_at_mut(ROWS * s);
            self.k.transpose_into(hd, kt);
            self.v.transpose_into(hd, vt);
            for i0 in (0..rows).step_by(ROWS) {
                let m = ROWS.min(rows - i0);
                self.probs(i0, m, kt, p);
                // dP = dO·vⱼ, then dS = P ⊙ (dP − Σ P ⊙ dP) · scale row by row.
                let dor = View::strided(&dout[i0 * hd..], m, hd, hd, 1);
                tiles::product(dor, s, vt, s, ds, s, false);
                for (pr, dr) in p.chunks_exact(s).zip(ds.chunks_exact_mut(s)).take(m) {
                    let sum = dot(pr, dr);
                    for (x, &pj) in dr.iter_mut().zip(pr) {
                        *x = pj * (*x - sum) * self.scale;
                    }
                }
                self.k.combine(m, hd, ds, &mut dq[i0 * hd..], false);
                // Key/value gradients of the new positions only (the prefix is constant:
                // 100 of 112 keys in a Time-LLM step): dK += dSᵀ·Q, dV += Pᵀ·dO.
                let dst = View::strided(&ds[sp..], sn, m, 1, s);
                tiles::product(dst, hd, &self.q[i0 * hd..], hd, dk, hd, true);
                let pt = View::strided(&p[sp..], sn, m, 1, s);
                tiles::product(pt, hd, &dout[i0 * hd..], hd, dv, hd, true);
            }
        });
    }
}

/// The values of one call: queries, new keys and values, the constant prefix, the bias.
struct Operands<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    pk: &'a [f32],
    pv: &'a [f32],
    bias: &'a [f32],
}

impl Operands<'_> {
    /// Group `bg` (`batch · KV + key/value head`).
    fn group(&self, d: Dims, bg: usize, scale: f32) -> Group<'_> {
        let per_group = d.h / d.kv * d.t * d.hd;
        Group {
            d,
            b: bg / d.kv,
            q: &self.q[bg * per_group..][..per_group],
            k: d.group(self.pk, self.k, bg),
            v: d.group(self.pv, self.v, bg),
            bias: self.bias,
            scale,
        }
    }
}

impl GlazeAttention for Flex {
    fn glaze_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        pk: FlexTensor,
        pv: FlexTensor,
        bias: FlexTensor,
        scale: f32,
    ) -> FlexTensor {
        let ((q, qs), (k, ks), (v, _), (pk, pks), (pv, _), (bias, bs)) = (
            values(&q),
            values(&k),
            values(&v),
            values(&pk),
            values(&pv),
            values(&bias),
        );
        let d = Dims::of(&qs, &ks, &pks, &bs);
        let per_group = d.h / d.kv * d.t * d.hd;
        let out = par_chunks_zeroed(d.b * d.h * d.t * d.hd, per_group, |bg, out| {
            let operands = Operands {
                q: &q,
                k: &k,
                v: &v,
                pk: &pk,
                pv: &pv,
                bias: &bias,
            };
            operands.group(d, bg, scale).forward(out);
        });
        flex(out, [d.b, d.h, d.t, d.hd])
    }

    fn glaze_attention_grad(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        pk: FlexTensor,
        pv: FlexTensor,
        bias: FlexTensor,
        dout: FlexTensor,
        scale: f32,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let ((q, qs), (k, ks), (v, _), (pk, pks), (pv, _), (bias, bs), (dout, _)) = (
            values(&q),
            values(&k),
            values(&v),
            values(&pk),
            values(&pv),
            values(&bias),
            values(&dout),
        );
        let d = Dims::of(&qs, &ks, &pks, &bs);
        let per_group = d.h / d.kv * d.t * d.hd;
        let new = d.sn * d.hd;
        let mut dq = zeroed(q.len());
        let mut dk = zeroed(k.len());
        let mut dv = zeroed(v.len());
        dq.par_chunks_mut(per_group)
            .zip(dk.par_chunks_mut(new.max(1)))
            .zip(dv.par_chunks_mut(new.max(1)))
            .enumerate()
            .for_each(|(bg, ((dq, dk), dv))| {
                let operands = Operands {
                    q: &q,
                    k: &k,
                    v: &v,
                    pk: &pk,
                    pv: &pv,
                    bias: &bias,
                };
                let dout = &dout[bg * per_group..][..per_group];
                operands.group(d, bg, scale).backward(dout, dq, dk, dv);
            });
        // `dq` was filled group-major ([B, KV, rep, T, hd]) = [B, H, T, hd] (head = g·rep + r).
        (
            flex(dq, [d.b, d.h, d.t, d.hd]),
            flex(dk, [d.b, d.kv, d.sn, d.hd]),
            flex(dv, [d.b, d.kv, d.sn, d.hd]),
        )
    }
}

impl<B: Backend + GlazeAttention, C: CheckpointStrategy> GlazeAttention for Autodiff<B, C> {
    fn glaze_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Attend;

        /// Checkpointed `q`, `k`, `v`; the constants `pk`, `pv`, `bias`; the scale.
        type Saved<P> = (NodeId, NodeId, NodeId, P, P, P, f32);

        impl<B: Backend + GlazeAttention> Backward<B, 3> for Attend {
            type State = Saved<B::FloatTensorPrimitive>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let (q, k, v, pk, pv, bias, scale) = ops.state;
                let q = checkpointer.retrieve_node_output(q);
                let k = checkpointer.retrieve_node_output(k);
                let v = checkpointer.retrieve_node_output(v);
                let dout = grads.consume::<B>(&ops.node);
                let (dq, dk, dv) = B::glaze_attention_grad(q, k, v, pk, pv, bias, dout, scale);
                let [nq, nk, nv] = ops.parents;
                for (node, grad) in [(nq, dq), (nk, dk), (nv, dv)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let (pk, pv, bias) = (
            pk.primitive().clone(),
            pv.primitive().clone(),
            bias.primitive().clone(),
        );
        let constants = (pk.clone(), pv.clone(), bias.clone());
        let run = |q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>| {
            let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
            B::glaze_attention(q, k, v, pk, pv, bias, scale)
        };
        match Attend
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (cq, ck, cv) = (
                    prep.checkpoint(&q),
                    prep.checkpoint(&k),
                    prep.checkpoint(&v),
                );
                let state = (cq, ck, cv, constants.0, constants.1, constants.2, scale);
                prep.finish(state, run(q, k, v))
            }
            OpsKind::UnTracked(prep) => prep.finish(run(q, k, v)),
        }
    }

    fn glaze_attention_grad(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pk: FloatTensor<Self>,
        pv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Second derivatives are not needed: the results are constants of the graph.
        let (dq, dk, dv) = B::glaze_attention_grad(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            pk.into_primitive(),
            pv.into_primitive(),
            bias.into_primitive(),
            dout.into_primitive(),
            scale,
        );
        (
            FloatTensor::<Self>::new(dq),
            FloatTensor::<Self>::new(dk),
            FloatTensor::<Self>::new(dv),
        )
    }
}

/// `softmax(q·kᵀ·scale + bias)·v` with query heads grouped onto key/value heads
/// (head `h` reads key/value head `h / (H / KV)`).
///
/// # Shapes
/// `q [B, H, T, hd]`, `k`/`v [B, KV, S, hd]`, `bias [B|1, 1, T, S]` (0 or −∞) → `[B, H, T, hd]`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    scale: f32,
) -> Tensor<4> {
    let [b, _, _, hd] = q.dims();
    let kv = k.dims()[1];
    let device = q.device();
    let none = Tensor::<4>::zeros([b, kv, 0, hd], &device);
    attention_after((none.clone(), none), q, k, v, bias, scale)
}

/// [`attention`] over the keys and values `[pk | k]`, `[pv | v]`, where the prefix `(pk, pv)`
/// (`[B, KV, P, hd]`) is a constant of the graph — a cached prompt. It is read in place (no
/// concatenated copy) and gets no gradient; `k` and `v` get theirs.
///
/// # Shapes
/// `q [B, H, T, hd]`, `k`/`v [B, KV, N, hd]`, `bias [B|1, 1, T, P + N]` → `[B, H, T, hd]`.
pub fn attention_after(
    prefix: (Tensor<4>, Tensor<4>),
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    scale: f32,
) -> Tensor<4> {
    let [b, h, t, hd] = q.dims();
    let [_, kv, n, _] = k.dims();
    let (pk, pv) = prefix;
    let s = pk.dims()[2] + n;
    let device = q.device();
    if device.clone().inner() != Device::flex() || q.dtype() != DType::F32 {
        let (k, v) = if pk.dims()[2] > 0 {
            (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2))
        } else {
            (k, v)
        };
        // q [B, H, T, hd] -> [B, KV, rep·T, hd]: head h = kv·rep + r.
        let rep = h / kv;
        let q = q.reshape([b, kv, rep * t, hd]);
        let scores = q.matmul(k.swap_dims(2, 3)) * scale as f64;
        let scores = match bias {
            Some(bias) => scores + bias.repeat_dim(2, rep),
            None => scores,
        };
        return softmax(scores, 3).matmul(v).reshape([b, h, t, hd]);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([1, 1, t, s], &device));
    Tensor::from_dispatch(
        <burn::backend::Dispatch as GlazeAttention>::glaze_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            pk.into_dispatch(),
            pv.into_dispatch(),
            bias.into_dispatch(),
            scale,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Forward and the three gradients equal the composed burn ops, with a padding/causal
    /// bias (one fully visible sequence, one left-padded) and grouped heads; head widths for
    /// the portable loops (8) and the AVX-512 ones (64).
    #[test]
    fn matches_the_composed_ops() {
        for hd in [8, 64] {
            for fixed in [0, 5] {
                check(hd, fixed);
            }
        }
    }

    /// With the first `fixed` keys/values given as a constant prefix, the fused op's key/value
    /// gradients are the composed ones past them and zero on them (no path reaches them);
    /// outputs and query gradients are unchanged.
    fn check(hd: usize, fixed: usize) {
        let device = Device::flex().autodiff();
        device.seed(9);
        let (b, h, kv, t, s) = (2, 6, 2, 3, 21);
        let r = |shape: [usize; 4]| {
            Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
        };
        let (q, k, v) = (r([b, h, t, hd]), r([b, kv, s, hd]), r([b, kv, s, hd]));
        let w = Tensor::<4>::random([b, h, t, hd], Distribution::Default, &device);
        let mut bias = vec![0f32; b * t * s];
        for bb in 0..b {
            for tt in 0..t {
                for j in 0..s {
                    let causal = j > s - t + tt;
                    let padded = bb == 1 && j < 2;
                    if causal || padded {
                        bias[(bb * t + tt) * s + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [b, 1, t, s]), &device);
        let scale = 1.0 / (hd as f32).sqrt();
        let run = |fused: bool| {
            let y = if fused {
                let constant = |x: &Tensor<4>| {
                    Tensor::from_inner(x.clone().inner().slice(s![.., .., 0..fixed, ..]))
                };
                attention_after(
                    (constant(&k), constant(&v)),
                    q.clone(),
                    k.clone().slice(s![.., .., fixed..s, ..]),
                    v.clone().slice(s![.., .., fixed..s, ..]),
                    Some(bias.clone()),
                    scale,
                )
            } else {
                let rep = h / kv;
                let qq = q.clone().reshape([b, kv, rep * t, hd]);
                let sc = qq.matmul(k.clone().swap_dims(2, 3)) * scale as f64
                    + bias.clone().repeat_dim(2, rep);
                softmax(sc, 3).matmul(v.clone()).reshape([b, h, t, hd])
            };
            let g = (y.clone() * w.clone()).sum().backward();
            let flat = |x: Tensor<4>| x.into_data().iter::<f32>().collect::<Vec<_>>();
            [
                flat(y.inner()),
                flat(q.grad(&g).expect("dq")),
                flat(k.grad(&g).expect("dk")),
                flat(v.grad(&g).expect("dv")),
            ]
        };
        let (fused, composed) = (run(true), run(false));
        for (which, (a, c)) in fused.iter().zip(&composed).enumerate() {
            assert_eq!(a.len(), c.len());
            for (i, (x, y)) in a.iter().zip(c).enumerate() {
                // Key/value gradients (outputs 2 and 3) at a fixed position: zero.
                let position = i / hd % s;
                if which >= 2 && position < fixed {
                    assert_eq!(*x, 0.0, "gradient at fixed position {position}");
                } else {
                    assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
                }
            }
        }
    }
}
