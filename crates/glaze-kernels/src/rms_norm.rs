//! RMSNorm (Zhang & Sennrich 2019), as in HF `LlamaRMSNorm`: `x / sqrt(mean(x²) + eps) * w`.
//!
//! On the flex device the norm is one fused pass each way ([`GlazeRmsNorm`], a burn backend
//! extension with a hand-written autodiff rule for the input; the gain is a frozen constant):
//! composed of burn ops it made 7 passes forward and about 14 backward over the `[B·T, D]`
//! activations, on one thread. With `g = dy ⊙ w` and `r = (mean(x²) + eps)^(−1/2)`:
//! `dx = r·g − x · r³ · mean(g ⊙ x)`.

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
use burn::tensor::DType;

use crate::fused_attention::values;

/// The backend extension behind the fused [`rms_norm`].
#[backend_extension(Flex, Autodiff)]
pub trait GlazeRmsNorm: Backend {
    /// `x [N, D]`, gain `w [D]` (a constant) → `[N, D]`.
    fn glaze_rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;
    /// The gradient with respect to `x` given the output gradient `dy [N, D]`.
    fn glaze_rms_norm_grad(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
}

/// Rows per task.
const ROWS: usize = 16;

/// `1 / sqrt(mean(x²) + eps)` of one row.
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut blocks = x.chunks_exact(16);
    for b in &mut blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            *a += v * v;
        }
    }
    let tail: f32 = blocks.remainder().iter().map(|v| v * v).sum();
    let ms = (acc.iter().sum::<f32>() + tail) / x.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl GlazeRmsNorm for Flex {
    fn glaze_rms_norm(x: FlexTensor, w: FlexTensor, eps: f32) -> FlexTensor {
        let ((x, shape), (w, _)) = (values(&x), values(&w));
        let (n, d) = (shape[0], shape[1]);
        let out = par_chunks_zeroed(n * d, ROWS * d, |i, o| {
            let x = &x[i * ROWS * d..][..o.len()];
            for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                let r = inv_rms(x, eps);
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w.iter()) {
                    *o = x * r * w;
                }
            }
        });
        FlexTensor::from_data(TensorData::new(out, [n, d]))
    }

    fn glaze_rms_norm_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, eps: f32) -> FlexTensor {
        let ((x, shape), (w, _), (dy, _)) = (values(&x), values(&w), values(&dy));
        let (n, d) = (shape[0], shape[1]);
        let dx = par_chunks_zeroed(n * d, ROWS * d, |i, dx| {
            let (x, dy) = (
                &x[i * ROWS * d..][..dx.len()],
                &dy[i * ROWS * d..][..dx.len()],
            );
            for ((dx, x), dy) in dx
                .chunks_exact_mut(d)
                .zip(x.chunks_exact(d))
                .zip(dy.chunks_exact(d))
            {
                let r = inv_rms(x, eps);
                let gx: f32 = x
                    .iter()
                    .zip(dy)
                    .zip(w.iter())
                    .map(|((x, dy), w)| dy * w * x)
                    .sum();
                let c = r * r * r * gx / d as f32;
                for (((dx, &x), &dy), &w) in dx.iter_mut().zip(x).zip(dy).zip(w.iter()) {
                    *dx = r * dy * w - x * c;
                }
            }
        });
        FlexTensor::from_data(TensorData::new(dx, [n, d]))
    }
}

impl<B: Backend + GlazeRmsNorm, C: CheckpointStrategy> GlazeRmsNorm for Autodiff<B, C> {
    fn glaze_rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Norm;

        impl<B: Backend + GlazeRmsNorm> Backward<B, 1> for Norm {
            type State = (NodeId, B::FloatTensorPrimitive, f32);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let (x, w, eps) = ops.state;
                let x = checkpointer.retrieve_node_output(x);
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::glaze_rms_norm_grad(x, w, dy, eps)
                });
            }
        }

        // The gain is a constant of the graph (the backbone is frozen).
        let w = w.into_primitive();
        match Norm.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), w.clone(), eps);
                prep.finish(state, B::glaze_rms_norm(x.into_primitive(), w, eps))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::glaze_rms_norm(x.into_primitive(), w, eps)),
        }
    }

    fn glaze_rms_norm_grad(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        // Second derivatives are not needed: the result is a constant of the graph.
        FloatTensor::<Self>::new(B::glaze_rms_norm_grad(
            x.into_primitive(),
            w.into_primitive(),
            dy.into_primitive(),
            eps,
        ))
    }
}

/// RMSNorm of the rows of `x` with the constant gain `w`: one fused pass each way on the flex
/// device with f32 tensors, burn's element-wise ops elsewhere.
///
/// # Shapes
/// `x [N, D]`, `w [D]` → `[N, D]`.
pub fn rms_norm(x: Tensor<2>, w: Tensor<1>, eps: f64) -> Tensor<2> {
    if x.device().inner() == Device::flex() && x.dtype() == DType::F32 {
        return Tensor::<2>::from_dispatch(
            <burn::backend::Dispatch as GlazeRmsNorm>::glaze_rms_norm(
                x.into_dispatch(),
                w.into_dispatch(),
                eps as f32,
            ),
        );
    }
    composed(x, w, eps)
}

/// The norm from burn's element-wise ops (devices other than flex; the fused op's test).
fn composed(x: Tensor<2>, w: Tensor<1>, eps: f64) -> Tensor<2> {
    let ms = x.clone().powi_scalar(2).mean_dim(1);
    let d = w.dims()[0];
    x * (ms + eps).sqrt().recip() * w.reshape([1, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused op's output and input gradient equal the composed burn ops' (autodiff flex
    /// device, a width that is not a multiple of 16).
    #[test]
    fn fused_matches_the_composed_ops() {
        use burn::tensor::Distribution;
        let device = Device::flex().autodiff();
        device.seed(3);
        let gain: Vec<f32> = (0..37).map(|i| 0.5 + i as f32 * 0.05).collect();
        let w = Tensor::<1>::from_data(TensorData::new(gain, [37]), &device);
        let x =
            Tensor::<2>::random([10, 37], Distribution::Normal(0.0, 2.0), &device).require_grad();
        let probe = Tensor::<2>::random([10, 37], Distribution::Default, &device);
        crate::testing::assert_same_op(
            &x,
            &probe,
            || rms_norm(x.clone(), w.clone(), 1e-5),
            || composed(x.clone(), w.clone(), 1e-5),
            1e-5,
        );
    }
}
