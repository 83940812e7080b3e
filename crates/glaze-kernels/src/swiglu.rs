//! [`swiglu`]: the SwiGLU gate `silu(g) · u` fused into one pass over the `[gate | up]` matmul
//! output, with a one-pass backward, on the flex device (elsewhere: burn's element-wise ops).
//!
//! Composed of burn ops, the gate made 5 passes forward and about 12 backward over `[N, 2F]`
//! activations (measured on `[384, 3072]` with autodiff: 3 ms forward, 8 ms backward; fused:
//! one pass each way). A burn backend extension ([`GlazeSwiglu`]) with a hand-written
//! autodiff rule: `du = dy · silu(g)`, `dg = dy · u · σ(g) · (1 + g · (1 − σ(g)))`.

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
use burn::tensor::activation::silu;

use crate::fused_attention::values;
use crate::vecops::sigmoid;

/// The backend extension behind [`swiglu`].
#[backend_extension(Flex, Autodiff)]
pub trait GlazeSwiglu: Backend {
    /// `[g | u] [N, 2F]` → `silu(g) · u [N, F]`.
    fn glaze_swiglu(gate_up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient with respect to `[g | u]` given the output gradient `dy [N, F]`.
    fn glaze_swiglu_grad(gate_up: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Rows processed per task.
const ROWS: usize = 8;

impl GlazeSwiglu for Flex {
    fn glaze_swiglu(gate_up: FlexTensor) -> FlexTensor {
        let (x, shape) = values(&gate_up);
        let (n, f2) = (shape[0], shape[1]);
        let f = f2 / 2;
        let out = par_chunks_zeroed(n * f, ROWS * f, |i, o| {
            let x = &x[i * ROWS * f2..][..o.len() / f * f2];
            let mut s = vec![0f32; f];
            for (o, x) in o.chunks_exact_mut(f).zip(x.chunks_exact(f2)) {
                let (g, u) = x.split_at(f);
                sigmoid(g, &mut s);
                for j in 0..f {
                    o[j] = g[j] * s[j] * u[j];
                }
            }
        });
        FlexTensor::from_data(TensorData::new(out, [n, f]))
    }

    fn glaze_swiglu_grad(gate_up: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let ((x, xs), (dy, _)) = (values(&gate_up), values(&dy));
        let (n, f2) = (xs[0], xs[1]);
        let f = f2 / 2;
        let dx = par_chunks_zeroed(n * f2, ROWS * f2, |i, dx| {
            let rows = dx.len() / f2;
            let (x, dy) = (
                &x[i * ROWS * f2..][..rows * f2],
                &dy[i * ROWS * f..][..rows * f],
            );
            let mut s = vec![0f32; f];
            for ((dx, x), dy) in dx
                .chunks_exact_mut(f2)
                .zip(x.chunks_exact(f2))
                .zip(dy.chunks_exact(f))
            {
                let (g, u) = x.split_at(f);
                let (dg, du) = dx.split_at_mut(f);
                sigmoid(g, &mut s);
                for j in 0..f {
                    let silu = g[j] * s[j];
                    du[j] = dy[j] * silu;
                    dg[j] = dy[j] * u[j] * s[j] * (1.0 + g[j] * (1.0 - s[j]));
                }
            }
        });
        FlexTensor::from_data(TensorData::new(dx, [n, f2]))
    }
}

impl<B: Backend + GlazeSwiglu, C: CheckpointStrategy> GlazeSwiglu for Autodiff<B, C> {
    fn glaze_swiglu(gate_up: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gate;

        impl<B: Backend + GlazeSwiglu> Backward<B, 1> for Gate {
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let input = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::glaze_swiglu_grad(input, dy)
                });
            }
        }

        match Gate
            .prepare::<C>([gate_up.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&gate_up);
                prep.finish(state, B::glaze_swiglu(gate_up.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::glaze_swiglu(gate_up.into_primitive())),
        }
    }

    fn glaze_swiglu_grad(gate_up: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        // Second derivatives are not needed: the result is a constant of the graph.
        FloatTensor::<Self>::new(B::glaze_swiglu_grad(
            gate_up.into_primitive(),
            dy.into_primitive(),
        ))
    }
}

/// `silu(g) · u` for `gate_up = [g | u]` (`[N, 2F]` → `[N, F]`), differentiable; fused on the
/// flex device (plain or autodiff) for f32, burn's element-wise ops elsewhere.
pub fn swiglu(gate_up: Tensor<2>) -> Tensor<2> {
    let [_, f2] = gate_up.dims();
    let f = f2 / 2;
    if gate_up.device().inner() != Device::flex() || gate_up.dtype() != DType::F32 {
        let g = gate_up.clone().slice(s![.., 0..f]);
        let u = gate_up.slice(s![.., f..f2]);
        return silu(g) * u;
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as GlazeSwiglu>::glaze_swiglu(
        gate_up.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Forward and gradient equal the composed burn ops (autodiff flex device).
    #[test]
    fn matches_the_composed_ops() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let x = Tensor::<2>::random([13, 2 * 37], Distribution::Normal(0.0, 3.0), &device)
            .require_grad();
        let w = Tensor::<2>::random([13, 37], Distribution::Default, &device);
        crate::testing::assert_same_op(
            &x,
            &w,
            || swiglu(x.clone()),
            || silu(x.clone().slice(s![.., 0..37])) * x.clone().slice(s![.., 37..74]),
            1e-5,
        );
    }
}
