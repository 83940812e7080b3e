//! Rotary position embeddings (Su et al. 2021, RoFormer), with cos/sin tables computed once.
//!
//! Two pairings: rotate-half (HF Llama) and interleaved (GPT-J, raw GGUF q/k rows). A GGUF
//! loader may un-permute q/k rows and use rotate-half; both give the same attention scores.

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, unary},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;
use glaze_core::alloc::par_chunks_zeroed;

use crate::config::RopeLayout;
use crate::fused_attention::values;

/// The backend extension behind the fused rotate-half [`Rope::apply`]: one pass each way
/// (composed of burn ops: two slices, four products, a sum, a difference and a concatenation
/// forward, about twice that backward). The backward is the rotation by the opposite angle.
#[backend_extension(Flex, Autodiff)]
pub trait GlazeRope: Backend {
    /// `x [B, H, T, hd]` rotated by `cos`/`sin [B|1, 1, T, hd/2]` (by the opposite angle when
    /// `inverse`), rotate-half pairing; the tables are constants.
    fn glaze_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> FloatTensor<Self>;
}

impl GlazeRope for Flex {
    fn glaze_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, inverse: bool) -> FlexTensor {
        let ((cos, cs), (sin, _)) = (values(&cos), values(&sin));
        let xs = x.layout().shape().to_vec();
        let (b, h, t, d) = (xs[0], xs[1], xs[2], xs[3]);
        // Rows are read in place when each is contiguous (q and k arrive as strided views of
        // the fused q/k/v projection); otherwise from a contiguous copy.
        let strides = x.layout().strides().to_vec();
        let (src, offset, st) = if strides[3] == 1 && strides.iter().all(|&s| s >= 0) {
            let st: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
            (
                std::borrow::Cow::Borrowed(x.storage::<f32>()),
                x.layout().start_offset(),
                st,
            )
        } else {
            (values(&x).0, 0, vec![h * t * d, t * d, d, 1])
        };
        let half = d / 2;
        let per_row = cs[0] == b && b > 1;
        let sign = if inverse { -1.0f32 } else { 1.0 };
        let out = par_chunks_zeroed(b * h * t * d, t * d, |bh, o| {
            let table = if per_row { bh / h * t * half } else { 0 };
            let row0 = offset + bh / h * st[0] + bh % h * st[1];
            for (tt, o) in o.chunks_exact_mut(d).enumerate() {
                let x = &src[row0 + tt * st[2]..][..d];
                let c = &cos[table + tt * half..][..half];
                let sn = &sin[table + tt * half..][..half];
                rotate_half(x, o, c, sn, sign);
            }
        });
        FlexTensor::from_data(TensorData::new(out, [b, h, t, d]))
    }
}

impl<B: Backend + GlazeRope, C: CheckpointStrategy> GlazeRope for Autodiff<B, C> {
    fn glaze_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Rotate;

        impl<B: Backend + GlazeRope> Backward<B, 1> for Rotate {
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, bool);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (cos, sin, inverse) = ops.state;
                // A rotation's transpose is the rotation by the opposite angle.
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::glaze_rope(dy, cos, sin, !inverse)
                });
            }
        }

        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        match Rotate.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(
                (cos.clone(), sin.clone(), inverse),
                B::glaze_rope(x.into_primitive(), cos, sin, inverse),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::glaze_rope(x.into_primitive(), cos, sin, inverse))
            }
        }
    }
}

/// One row rotated, rotate-half pairing: `o = [x₁·c − x₂·s, x₂·c + x₁·s]` for the halves
/// `x = [x₁ | x₂]` and `s = sign · sin` (`sign = −1`: the opposite angle, the transpose).
pub(crate) fn rotate_half(x: &[f32], o: &mut [f32], cos: &[f32], sin: &[f32], sign: f32) {
    let half = cos.len();
    let (x1, x2) = x[..2 * half].split_at(half);
    let (o1, o2) = o[..2 * half].split_at_mut(half);
    for i in 0..half {
        let s = sign * sin[i];
        o1[i] = x1[i] * cos[i] - x2[i] * s;
        o2[i] = x2[i] * cos[i] + x1[i] * s;
    }
}

/// Rotary frequencies; the cos/sin tables of a forward pass are computed for its positions
/// (a table for the whole context was 2 MB for SmolLM2's 8k, held by every loaded model).
#[derive(Debug, Clone)]
pub struct Rope {
    /// `1 / θ^(2i / hd)` for `i < hd/2`.
    inv_freq: Vec<f64>,
    max_positions: usize,
    layout: RopeLayout,
    device: Device,
}

/// Positions of the rows of one forward pass.
#[allow(clippy::large_enum_variant)] // built once per forward pass
#[derive(Debug, Clone)]
pub enum Positions {
    /// Every row has positions `start..start + T`.
    Range(usize),
    /// Per-row positions `[B, T]` (left-padded batches).
    PerRow(Tensor<2, Int>),
}

impl Rope {
    /// Rotary embedding for up to `max_positions` positions of heads of width `head_dim`.
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        theta: f64,
        layout: RopeLayout,
        device: &Device,
    ) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        Rope {
            inv_freq,
            max_positions,
            layout,
            device: device.clone(),
        }
    }

    /// The same embedding on another device.
    pub fn to_device(self, device: &Device) -> Self {
        Rope {
            device: device.clone(),
            ..self
        }
    }

    /// How dimensions are paired.
    pub fn layout(&self) -> RopeLayout {
        self.layout
    }

    /// cos and sin for the positions, shaped `[B|1, 1, T, hd/2]`: `cos(p · f_i)`, `sin(p ·
    /// f_i)` computed in f64 and rounded to f32.
    ///
    /// # Panics
    /// If a position is negative or not below the `max_positions` given to [`Rope::new`]
    /// (callers check the context length first).
    pub fn tables(&self, positions: &Positions, t: usize) -> (Tensor<4>, Tensor<4>) {
        let (rows, pos): (usize, Vec<i64>) = match positions {
            Positions::Range(start) => (1, (*start..*start + t).map(|p| p as i64).collect()),
            Positions::PerRow(pos) => {
                let [b, _] = pos.dims();
                let data = pos.clone().into_data().convert::<i64>();
                let pos = data
                    .try_into_vec::<i64>()
                    .expect("invariant: int positions convert to i64");
                (b, pos)
            }
        };
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(pos.len() * half);
        let mut sin = Vec::with_capacity(pos.len() * half);
        for &p in &pos {
            assert!(
                (0..self.max_positions as i64).contains(&p),
                "position {p} outside the rotary range 0..{}",
                self.max_positions
            );
            for f in &self.inv_freq {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = [rows, 1, t, half];
        (
            Tensor::from_data(TensorData::new(cos, shape), &self.device),
            Tensor::from_data(TensorData::new(sin, shape), &self.device),
        )
    }

    /// Rotates `x` with the given tables.
    ///
    /// # Shapes
    /// `x [B, H, T, hd]`, tables `[B|1, 1, T, hd/2]` → `[B, H, T, hd]`.
    pub fn apply(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        match self.layout {
            RopeLayout::Half if x.device().inner() == Device::flex() && x.dtype() == DType::F32 => {
                Tensor::from_dispatch(<burn::backend::Dispatch as GlazeRope>::glaze_rope(
                    x.into_dispatch(),
                    cos.clone().into_dispatch(),
                    sin.clone().into_dispatch(),
                    false,
                ))
            }
            RopeLayout::Half => half_composed(x, cos, sin),
            RopeLayout::Interleaved => {
                let pairs = x.reshape([b, h, t, half, 2]);
                let x0 = pairs
                    .clone()
                    .slice(s![.., .., .., .., 0..1])
                    .reshape([b, h, t, half]);
                let x1 = pairs
                    .slice(s![.., .., .., .., 1..2])
                    .reshape([b, h, t, half]);
                let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
                let r1 = x0 * sin.clone() + x1 * cos.clone();
                Tensor::stack::<5>(vec![r0, r1], 4).reshape([b, h, t, d])
            }
        }
    }
}

/// Rotate-half from burn's element-wise ops (devices other than flex; the fused op's test).
fn half_composed(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().slice(s![.., .., .., 0..half]);
    let x2 = x.slice(s![.., .., .., half..d]);
    let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let r2 = x2 * cos.clone() + x1 * sin.clone();
    Tensor::cat(vec![r1, r2], 3)
}

/// Index map from interleaved (raw GGUF) q/k rows of one head to rotate-half rows:
/// rotate-half row `j * hd/2 + i` is interleaved row `2i + j`.
pub fn unpermute_rows(rows: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows.len()];
    let half = head_dim / 2;
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                let dst = (h * head_dim + j * half + i) * cols;
                let src = (h * head_dim + 2 * i + j) * cols;
                out[dst..dst + cols].copy_from_slice(&rows[src..src + cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn interleaved_equals_half_on_unpermuted_rows() {
        let device = Device::flex();
        let (hd, t) = (8, 5);
        let x = Tensor::<4>::random([1, 2, t, hd], Distribution::Normal(0.0, 1.0), &device);
        let inter = Rope::new(hd, 16, 10000.0, RopeLayout::Interleaved, &device);
        let half = Rope::new(hd, 16, 10000.0, RopeLayout::Half, &device);
        let (c, s) = inter.tables(&Positions::Range(3), t);
        let yi = inter.apply(x.clone(), &c, &s);
        // Un-permute the head dimension of x: treat [.., hd] as rows of width 1.
        let xv: Vec<f32> = x
            .clone()
            .swap_dims(2, 3)
            .into_data()
            .try_into_vec()
            .expect("f32");
        let xh = unpermute_rows(&xv, 2, hd, t);
        let xh =
            Tensor::<4>::from_data(TensorData::new(xh, [1, 2, hd, t]), &device).swap_dims(2, 3);
        let yh = half.apply(xh, &c, &s);
        let yiv: Vec<f32> = yi.swap_dims(2, 3).into_data().try_into_vec().expect("f32");
        let yi_perm = unpermute_rows(&yiv, 2, hd, t);
        let yhv: Vec<f32> = yh.swap_dims(2, 3).into_data().try_into_vec().expect("f32");
        for (a, b) in yi_perm.iter().zip(&yhv) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// The fused rotation (autodiff flex device, per-row positions of a left-padded batch,
    /// a strided input as attention passes it) equals the composed ops, output and gradient.
    #[test]
    fn fused_matches_the_composed_ops() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let (b, h, t, hd) = (3, 2, 5, 8);
        let rope = Rope::new(hd, 32, 10000.0, RopeLayout::Half, &device);
        let pos = Tensor::<2, Int>::from_data(
            TensorData::new(
                (0..b * t).map(|i| (i % t + i / t * 3) as i64).collect(),
                [b, t],
            ),
            &device,
        );
        let (c, s) = rope.tables(&Positions::PerRow(pos), t);
        let x = Tensor::<4>::random([b, t, h, hd], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let w = Tensor::<4>::random([b, h, t, hd], Distribution::Default, &device);
        crate::testing::assert_same_op(
            &x,
            &w,
            || rope.apply(x.clone().swap_dims(1, 2), &c, &s),
            || half_composed(x.clone().swap_dims(1, 2), &c, &s),
            1e-6,
        );
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let device = Device::flex();
        let rope = Rope::new(4, 8, 10000.0, RopeLayout::Half, &device);
        let x =
            Tensor::<4>::from_data([[[[1.0f32, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]]], &device);
        let (c, s) = rope.tables(&Positions::Range(0), 2);
        let y: Vec<f32> = rope
            .apply(x, &c, &s)
            .into_data()
            .try_into_vec()
            .expect("f32");
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        let norm: f32 = y[4..].iter().map(|v| v * v).sum();
        assert!((norm - 30.0).abs() < 1e-4);
        // Position 1, first pair (x[0], x[2]) rotated by angle 1 rad.
        assert!((y[4] - (1.0f32.cos() - 3.0 * 1.0f32.sin())).abs() < 1e-5);
    }
}
