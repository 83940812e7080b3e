//! [`softmax`]: softmax over the last dimension as one differentiable operation on the flex
//! autodiff device — rows in parallel, 16-lane exponentials ([`crate::vmath::softmax_row`]) —
//! and burn's `softmax` elsewhere. burn-flex runs its softmax as separate single-threaded passes
//! (`exp` through libm among them); a Time-LLM reprogramming layer's `[8, 384, 100]` scores
//! took ≈ 2.4 ms of serial work per training step, forward and backward.
//!
//! Backward: `dx = y ⊙ (dy − Σ y ⊙ dy)` row by row, from the saved output.

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, unary},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;

use crate::alloc::par_chunks_zeroed;
use crate::matmul::flex_values as values;
use crate::vmath::softmax_row;

/// The backend extension behind [`softmax`].
#[backend_extension(Flex, Autodiff)]
pub trait GlazeSoftmax: Backend {
    /// Softmax over the last dimension.
    fn glaze_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dx` for the output `y` and its gradient `dy`.
    fn glaze_softmax_grad(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Rows per parallel piece.
const ROWS: usize = 64;

impl GlazeSoftmax for Flex {
    fn glaze_softmax(x: FlexTensor) -> FlexTensor {
        let (x, shape) = values(&x);
        let l = shape.last().copied().unwrap_or(1).max(1);
        let zeros = vec![0f32; l];
        let y = par_chunks_zeroed(x.len(), ROWS * l, |i, out| {
            out.copy_from_slice(&x[i * ROWS * l..][..out.len()]);
            for row in out.chunks_exact_mut(l) {
                softmax_row(row, &zeros, 1.0);
            }
        });
        FlexTensor::from_data(TensorData::new(y, shape))
    }

    fn glaze_softmax_grad(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let ((y, shape), (dy, _)) = (values(&y), values(&dy));
        let l = shape.last().copied().unwrap_or(1).max(1);
        let dx = par_chunks_zeroed(y.len(), ROWS * l, |i, out| {
            let at = i * ROWS * l;
            let (y, dy) = (&y[at..][..out.len()], &dy[at..][..out.len()]);
            for ((o, y), dy) in out
                .chunks_exact_mut(l)
                .zip(y.chunks_exact(l))
                .zip(dy.chunks_exact(l))
            {
                let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
                for ((o, &y), &dy) in o.iter_mut().zip(y).zip(dy) {
                    *o = y * (dy - dot);
                }
            }
        });
        FlexTensor::from_data(TensorData::new(dx, shape))
    }
}

impl<B: Backend + GlazeSoftmax, C: CheckpointStrategy> GlazeSoftmax for Autodiff<B, C> {
    fn glaze_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Softmax;

        impl<B: Backend + GlazeSoftmax> Backward<B, 1> for Softmax {
            /// The output.
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let y = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::glaze_softmax_grad(y, dy)
                });
            }
        }

        match Softmax.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::glaze_softmax(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::glaze_softmax(x.into_primitive())),
        }
    }

    fn glaze_softmax_grad(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        // Second derivatives are not needed: the result is a constant of the graph.
        FloatTensor::<Self>::new(B::glaze_softmax_grad(
            y.into_primitive(),
            dy.into_primitive(),
        ))
    }
}

/// Softmax over the last dimension of `x`, differentiable: fused on the flex autodiff device
/// for f32, burn's `softmax` elsewhere — inference included, where burn-flex's own softmax was
/// as fast or faster (Whisper tiny.en's encoder 0.24 s against 0.28 s with the fused one).
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !device.is_autodiff() || device.inner() != Device::flex() || x.dtype() != DType::F32 {
        return burn::tensor::activation::softmax(x, D - 1);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as GlazeSoftmax>::glaze_softmax(
        x.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// Output and gradient equal burn's softmax (rows longer than a vector with a tail, more
    /// rows than one parallel piece, a non-contiguous input).
    #[test]
    fn matches_burn_softmax() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let x = Tensor::<3>::random([5, 37, 21], Distribution::Normal(0.0, 3.0), &device)
            .require_grad();
        let w = Tensor::<3>::random([5, 21, 37], Distribution::Default, &device);
        let run = |fused: bool| {
            let xt = x.clone().swap_dims(1, 2);
            let y = if fused {
                softmax(xt)
            } else {
                burn::tensor::activation::softmax(xt, 2)
            };
            let g = (y.clone() * w.clone()).sum().backward();
            let grad: Vec<f32> = x.grad(&g).expect("grad").into_data().iter().collect();
            let y: Vec<f32> = y.into_data().iter().collect();
            (y, grad)
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        assert_eq!((y1.len(), g1.len()), (y2.len(), g2.len()));
        for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
