//! Rotary position embeddings' rotate-half pairing as one fused operation each way on the flex
//! device ([`GlazeRope`]), and the pairing enum the backbones share.

use crate::alloc::par_chunks_zeroed;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, unary},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;

use crate::matmul::flex_values as values;

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RopeLayout {
    /// Pairs `(x[2i], x[2i+1])` (GPT-J style; raw GGUF q/k weights, `burn::nn::RotaryEncoding`).
    Interleaved,
    /// Pairs `(x[i], x[i + d/2])` ("rotate-half"; HF Llama weights).
    Half,
}

/// The backend extension behind the fused rotate-half [`rotate_half_heads`]: one pass each way
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

/// `x` rotated by the tables, rotate-half pairing: the fused operation on the flex device with
/// f32 tensors, burn's element-wise ops elsewhere.
///
/// # Shapes
/// `x [B, H, T, hd]`, `cos`/`sin [B|1, 1, T, hd/2]` → `[B, H, T, hd]`.
pub fn rotate_half_heads(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    if x.device().inner() == Device::flex() && x.dtype() == DType::F32 {
        return Tensor::from_dispatch(<burn::backend::Dispatch as GlazeRope>::glaze_rope(
            x.into_dispatch(),
            cos.clone().into_dispatch(),
            sin.clone().into_dispatch(),
            false,
        ));
    }
    half_composed(x, cos, sin)
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The fused rotation (autodiff flex device, per-row tables of a left-padded batch, a
    /// strided input as attention passes it) equals the composed ops, output and gradient.
    #[test]
    fn fused_matches_the_composed_ops() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let (b, h, t, hd) = (3, 2, 5, 8);
        let positions: Vec<usize> = (0..b * t).map(|i| i % t + i / t * 3).collect();
        let (c, s) = crate::testing::rope_tables(&positions, b, t, hd, &device);
        let x = Tensor::<4>::random([b, t, h, hd], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let w = Tensor::<4>::random([b, h, t, hd], Distribution::Default, &device);
        crate::testing::assert_same_op(
            &x,
            &w,
            || rotate_half_heads(x.clone().swap_dims(1, 2), &c, &s),
            || half_composed(x.clone().swap_dims(1, 2), &c, &s),
            1e-6,
        );
    }
}
