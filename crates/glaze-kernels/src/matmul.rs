//! [`matmul`]: a differentiable 2-D matrix product that runs [`crate::gemm`] on the flex
//! device (forward and both backward products), and burn's own matmul elsewhere.
//!
//! It is a burn backend extension ([`GlazeMatmul`]) with a hand-written autodiff rule, so a
//! training step through the frozen backbone multiplies with the AVX-512 kernel in the
//! forward pass (`X · W`) and in the backward pass (`dY · Wᵀ`, and `Xᵀ · dY` for a trainable
//! right operand) — burn-flex's matmul reaches about half the speed on these shapes.
//!
//! Numerics: same products as `Tensor::matmul` up to f32 summation order.

use burn::backend::autodiff::{
    NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, binary, unary},
};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;

use std::sync::Arc;

use crate::gemm;

/// The backend extension behind [`matmul`]: flex runs [`crate::gemm`], autodiff wraps it with
/// a backward pass made of the same operation.
#[backend_extension(Flex, Autodiff)]
pub trait GlazeMatmul: Backend {
    /// `lhs [M, K] · rhs [K, N]`.
    fn glaze_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `L · R` for the constant 8-bit `rhs`: `R` is `rhs`, or `rhsᵀ` when `transposed`; `L`
    /// is `lhs [M, K]`, or `lhsᵀ` of `lhs [K, M]` when `lhs_t`. The result is `[M, N]`, or
    /// its transpose `[N, M]` (contiguous) when `out_t`.
    fn glaze_matmul_q8(
        lhs: FloatTensor<Self>,
        rhs: Arc<gemm::Q8Matrix>,
        transposed: bool,
        lhs_t: bool,
        out_t: bool,
    ) -> FloatTensor<Self>;

    /// `lhs [M, K] · R` for the constant pre-packed `rhs`: `R` is `rhs`, or `rhsᵀ` when
    /// `transposed`.
    fn glaze_matmul_packed(
        lhs: FloatTensor<Self>,
        rhs: Arc<gemm::PackedMatrix>,
        transposed: bool,
    ) -> FloatTensor<Self>;
}

impl GlazeMatmul for Flex {
    fn glaze_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        match flex_product(&lhs, &rhs) {
            Some(out) => out,
            None => <Flex as burn::backend::ops::FloatTensorOps<Flex>>::float_matmul(lhs, rhs),
        }
    }

    fn glaze_matmul_q8(
        lhs: FlexTensor,
        rhs: Arc<gemm::Q8Matrix>,
        transposed: bool,
        lhs_t: bool,
        out_t: bool,
    ) -> FlexTensor {
        use burn::backend::ops::FloatTensorOps;
        let dims = lhs.layout().shape().to_vec();
        let m = if lhs_t { dims[1] } else { dims[0] };
        let width = if transposed { rhs.rows() } else { rhs.cols() };
        let a = view(&lhs).map(|a| if lhs_t { a.t() } else { a });
        if let Some(a) = a {
            let shape = if out_t { [width, m] } else { [m, width] };
            let c = if out_t {
                gemm::matmul_q8_out_t(a, &rhs, transposed)
            } else {
                gemm::matmul_q8(a, &rhs, transposed)
            };
            if let Some(c) = c {
                return FlexTensor::from_data(TensorData::new(c, shape));
            }
        }
        let dense =
            FlexTensor::from_data(TensorData::new(rhs.dequantize(), [rhs.rows(), rhs.cols()]));
        let dense = if transposed {
            Flex::float_transpose(dense)
        } else {
            dense
        };
        let lhs = if lhs_t {
            Flex::float_transpose(lhs)
        } else {
            lhs
        };
        let c = Flex::float_matmul(lhs, dense);
        if out_t { Flex::float_transpose(c) } else { c }
    }

    fn glaze_matmul_packed(
        lhs: FlexTensor,
        rhs: Arc<gemm::PackedMatrix>,
        transposed: bool,
    ) -> FlexTensor {
        packed_product(lhs, &rhs, transposed)
    }
}

/// [`GlazeMatmul::glaze_matmul_packed`] on the flex device.
fn packed_product(lhs: FlexTensor, rhs: &gemm::PackedMatrix, transposed: bool) -> FlexTensor {
    use burn::backend::ops::FloatTensorOps;
    let width = if transposed { rhs.depth() } else { rhs.width() };
    if let Some(a) = view(&lhs)
        && let Some(c) = gemm::matmul_packed(a, rhs, transposed)
    {
        return FlexTensor::from_data(TensorData::new(c, [a.rows, width]));
    }
    let dense = FlexTensor::from_data(TensorData::new(rhs.to_dense(), [rhs.depth(), rhs.width()]));
    let dense = if transposed {
        Flex::float_transpose(dense)
    } else {
        dense
    };
    Flex::float_matmul(lhs, dense)
}

/// The strided 2-D f32 view of a flex tensor, when it has one.
fn view(t: &FlexTensor) -> Option<gemm::View<'_>> {
    let layout: &Layout = t.layout();
    let dims = layout.shape().to_vec();
    let strides = layout.strides();
    if t.dtype() != DType::F32 || dims.len() != 2 || strides.iter().any(|&s| s < 0) {
        return None;
    }
    Some(gemm::View {
        data: t.storage::<f32>(),
        offset: layout.start_offset(),
        rows: dims[0],
        cols: dims[1],
        rs: strides[0] as usize,
        cs: strides[1] as usize,
    })
}

/// The AVX-512 product when the operands are 2-D f32, the product is large enough to gain
/// from it and the CPU has the kernel.
fn flex_product(lhs: &FlexTensor, rhs: &FlexTensor) -> Option<FlexTensor> {
    let (a, b) = (view(lhs)?, view(rhs)?);
    // Small products: packing costs more than it saves.
    if a.rows * a.cols * b.cols < 32 * 32 * 32 {
        return None;
    }
    let c = gemm::matmul(a, b)?;
    Some(FlexTensor::from_data(TensorData::new(c, [a.rows, b.cols])))
}

impl<B: Backend + GlazeMatmul, C: CheckpointStrategy> GlazeMatmul for Autodiff<B, C> {
    fn glaze_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Product;

        impl<B: Backend + GlazeMatmul> Backward<B, 2> for Product {
            type State = (Option<NodeId>, Option<NodeId>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let (lhs, rhs) = ops.state;
                let lhs = lhs.map(|id| checkpointer.retrieve_node_output(id));
                let rhs = rhs.map(|id| checkpointer.retrieve_node_output(id));
                binary::<B, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    |grad| {
                        let rhs = rhs.expect("invariant: rhs kept when lhs is tracked");
                        B::glaze_matmul(grad, B::float_transpose(rhs))
                    },
                    |grad| {
                        let lhs = lhs.expect("invariant: lhs kept when rhs is tracked");
                        B::glaze_matmul(B::float_transpose(lhs), grad)
                    },
                );
            }
        }

        let (lhs_tracked, rhs_tracked) = (lhs.is_tracked(), rhs.is_tracked());
        match Product
            .prepare::<C>([lhs.node(), rhs.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                // Each gradient needs the other operand only.
                let lhs_state = rhs_tracked.then(|| prep.checkpoint(&lhs));
                let rhs_state = lhs_tracked.then(|| prep.checkpoint(&rhs));
                prep.finish(
                    (lhs_state, rhs_state),
                    B::glaze_matmul(lhs.into_primitive(), rhs.into_primitive()),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::glaze_matmul(lhs.into_primitive(), rhs.into_primitive()))
            }
        }
    }

    fn glaze_matmul_q8(
        lhs: FloatTensor<Self>,
        rhs: Arc<gemm::Q8Matrix>,
        transposed: bool,
        lhs_t: bool,
        out_t: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConstProduct;

        impl<B: Backend + GlazeMatmul> Backward<B, 1> for ConstProduct {
            type State = (Arc<gemm::Q8Matrix>, bool, bool, bool);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (rhs, transposed, lhs_t, out_t) = ops.state;
                // Y = op(L)·R (or its transpose): d op(L) = dZ·Rᵀ with dZ = dY (or dYᵀ), and
                // d L = d op(L) (or its transpose) — the same product with the flags swapped.
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::glaze_matmul_q8(grad, rhs, !transposed, out_t, lhs_t)
                });
            }
        }

        match ConstProduct
            .prepare::<C>([lhs.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (rhs.clone(), transposed, lhs_t, out_t),
                B::glaze_matmul_q8(lhs.into_primitive(), rhs, transposed, lhs_t, out_t),
            ),
            OpsKind::UnTracked(prep) => prep.finish(B::glaze_matmul_q8(
                lhs.into_primitive(),
                rhs,
                transposed,
                lhs_t,
                out_t,
            )),
        }
    }

    fn glaze_matmul_packed(
        lhs: FloatTensor<Self>,
        rhs: Arc<gemm::PackedMatrix>,
        transposed: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PackedProduct;

        impl<B: Backend + GlazeMatmul> Backward<B, 1> for PackedProduct {
            type State = (Arc<gemm::PackedMatrix>, bool);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (rhs, transposed) = ops.state;
                // Y = L·R: dL = dY·Rᵀ, the other orientation of the same panels.
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::glaze_matmul_packed(grad, rhs, !transposed)
                });
            }
        }

        match PackedProduct
            .prepare::<C>([lhs.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (rhs.clone(), transposed),
                B::glaze_matmul_packed(lhs.into_primitive(), rhs, transposed),
            ),
            OpsKind::UnTracked(prep) => prep.finish(B::glaze_matmul_packed(
                lhs.into_primitive(),
                rhs,
                transposed,
            )),
        }
    }
}

/// The f32 values of a flex tensor in row-major order — borrowed when its storage is already
/// contiguous (the usual case), copied otherwise — and its shape (for the fused operations
/// here and in the plugins; the tensor must hold f32).
pub fn flex_values(t: &FlexTensor) -> (std::borrow::Cow<'_, [f32]>, Vec<usize>) {
    let shape = t.layout().shape().to_vec();
    let v = match t.layout().contiguous_offsets() {
        Some((lo, hi)) => std::borrow::Cow::Borrowed(&t.storage::<f32>()[lo..hi]),
        None => std::borrow::Cow::Owned(
            t.clone()
                .into_data()
                .try_into_vec::<f32>()
                .expect("invariant: f32 (checked by the caller)"),
        ),
    };
    (v, shape)
}

/// `lhs [M, K] · rhs [K, N]`, differentiable; on the flex device (plain or autodiff) through
/// the AVX-512 kernel when the CPU has it, elsewhere `Tensor::matmul`.
pub fn matmul(lhs: Tensor<2>, rhs: Tensor<2>) -> Tensor<2> {
    if lhs.device().inner() != Device::flex() || !gemm::available() {
        return lhs.matmul(rhs);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as GlazeMatmul>::glaze_matmul(
        lhs.into_dispatch(),
        rhs.into_dispatch(),
    ))
}

/// `lhs [M, K] · R` for the constant 8-bit matrix `rhs` (`R = rhs`, or `rhsᵀ` when
/// `transposed`), differentiable in `lhs`; on the flex device the packed panels are
/// dequantized from the 8-bit rows (a quarter of the f32 matrix's memory traffic, the same
/// products), elsewhere the dequantized matrix goes through `Tensor::matmul`.
pub fn matmul_q8(lhs: Tensor<2>, rhs: &Arc<gemm::Q8Matrix>, transposed: bool) -> Tensor<2> {
    q8_product(lhs, rhs, transposed, false)
}

/// [`matmul_q8`] for a left operand stored transposed: `lhs_tᵀ · R` with `lhs_t [K, M]`. Its
/// gradient comes back in `lhs_t`'s own layout, contiguous (the transposed view
/// `matmul_q8(lhs_t.transpose(), ..)` leaves a gradient that costs a strided copy when read).
pub fn matmul_q8_t(lhs_t: Tensor<2>, rhs: &Arc<gemm::Q8Matrix>, transposed: bool) -> Tensor<2> {
    q8_product(lhs_t, rhs, transposed, true)
}

fn q8_product(
    lhs: Tensor<2>,
    rhs: &Arc<gemm::Q8Matrix>,
    transposed: bool,
    lhs_t: bool,
) -> Tensor<2> {
    if lhs.device().inner() != Device::flex() {
        let device = lhs.device();
        let dense = Tensor::<2>::from_data(
            TensorData::new(rhs.dequantize(), [rhs.rows(), rhs.cols()]),
            &device,
        );
        let dense = if transposed { dense.transpose() } else { dense };
        let lhs = if lhs_t { lhs.transpose() } else { lhs };
        return lhs.matmul(dense);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as GlazeMatmul>::glaze_matmul_q8(
        lhs.into_dispatch(),
        rhs.clone(),
        transposed,
        lhs_t,
        false,
    ))
}

/// `lhs [M, K] · R` for the constant pre-packed matrix `rhs` (`R = rhs`, or `rhsᵀ` when
/// `transposed`), differentiable in `lhs`: the products read the panels in place (no packing
/// of `R` per call). Off the flex device the panels are unpacked and go through
/// `Tensor::matmul`.
pub fn matmul_packed(lhs: Tensor<2>, rhs: &Arc<gemm::PackedMatrix>, transposed: bool) -> Tensor<2> {
    if lhs.device().inner() != Device::flex() {
        let dense = Tensor::<2>::from_data(
            TensorData::new(rhs.to_dense(), [rhs.depth(), rhs.width()]),
            &lhs.device(),
        );
        let dense = if transposed { dense.transpose() } else { dense };
        return lhs.matmul(dense);
    }
    Tensor::from_dispatch(
        <burn::backend::Dispatch as GlazeMatmul>::glaze_matmul_packed(
            lhs.into_dispatch(),
            rhs.clone(),
            transposed,
        ),
    )
}

/// [`matmul`] for a batch of rows: `x [.., K] · w [K, N]` → `[.., N]`.
pub fn matmul_rows<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let k = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let n = w.dims()[1];
    let mut out = dims;
    out[D - 1] = n;
    matmul(x.reshape([rows, k]), w).reshape(out)
}

/// A `burn::nn::Linear` layer (`x · W + b`) through [`matmul`].
pub fn linear<const D: usize>(layer: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
    let y = matmul_rows(x, layer.weight.val());
    match &layer.bias {
        Some(b) => {
            let n = b.dims()[0];
            let mut shape = [1usize; D];
            shape[D - 1] = n;
            y + b.val().reshape(shape)
        }
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn close(a: Tensor<2>, b: Tensor<2>, tol: f32) {
        let (a, b) = (
            a.into_data().iter::<f32>().collect::<Vec<_>>(),
            b.into_data().iter::<f32>().collect::<Vec<_>>(),
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    /// Forward and both gradients equal burn's matmul (on the autodiff flex device, with a
    /// transposed operand as the backward pass produces).
    #[test]
    fn forward_and_gradients_match_burn() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let a = Tensor::<2>::random([70, 300], Distribution::Default, &device).require_grad();
        let bt = Tensor::<2>::random([45, 300], Distribution::Default, &device).require_grad();
        let target = Tensor::<2>::random([70, 45], Distribution::Default, &device);
        let run = |fast: bool| {
            let b = bt.clone().transpose();
            let y = if fast {
                matmul(a.clone(), b)
            } else {
                a.clone().matmul(b)
            };
            let loss = (y.clone() - target.clone()).powf_scalar(2.0).sum();
            let g = loss.backward();
            (
                y.inner(),
                a.grad(&g).expect("a grad"),
                bt.grad(&g).expect("b grad"),
            )
        };
        let (y1, ga1, gb1) = run(true);
        let (y2, ga2, gb2) = run(false);
        close(y1, y2, 1e-4);
        close(ga1, ga2, 1e-4);
        close(gb1, gb2, 1e-4);
    }

    /// [`linear`] equals burn's `Linear::forward` on a 3-D input.
    #[test]
    fn linear_matches_burn() {
        let device = Device::flex();
        device.seed(4);
        let layer = burn::nn::LinearConfig::new(40, 70).init(&device);
        let x = Tensor::<3>::random([3, 20, 40], Distribution::Default, &device);
        let (a, b) = (linear(&layer, x.clone()), layer.forward(x));
        close(a.reshape([60, 70]), b.reshape([60, 70]), 1e-5);
    }

    /// A frozen right operand gets no gradient; the left one still does.
    #[test]
    fn untracked_operand_stays_untracked() {
        let device = Device::flex().autodiff();
        let a = Tensor::<2>::ones([40, 64], &device).require_grad();
        let w = Tensor::<2>::ones([64, 48], &device);
        let loss = matmul(a.clone(), w.clone()).sum();
        let g = loss.backward();
        assert!(w.grad(&g).is_none());
        let ga = a
            .grad(&g)
            .expect("a grad")
            .into_data()
            .iter::<f32>()
            .collect::<Vec<_>>();
        assert!(ga.iter().all(|&v| (v - 48.0).abs() < 1e-4));
    }

    /// `y` and the gradient of `Σ y·w` with respect to `a`.
    fn value_and_grad(y: Tensor<2>, a: &Tensor<2>, w: &Tensor<2>) -> (TensorData, TensorData) {
        let g = (y.clone() * w.clone()).sum().backward();
        (
            y.inner().into_data(),
            a.grad(&g).expect("a grad").into_data(),
        )
    }

    /// `m`, or its transpose.
    fn oriented(m: &Tensor<2>, transposed: bool) -> Tensor<2> {
        if transposed {
            m.clone().transpose()
        } else {
            m.clone()
        }
    }

    /// The pre-packed operand, as is and transposed: forward and the left gradient equal
    /// [`matmul`] on the dense matrix (bit for bit with the AVX-512 kernel), on the plain and
    /// the autodiff flex device.
    #[test]
    fn packed_operand_matches_the_dense_matrix() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let (rows, cols) = (300, 70);
        let dense = Tensor::<2>::random([rows, cols], Distribution::Default, &device);
        let data: Vec<f32> = dense.clone().into_data().iter::<f32>().collect();
        let m = Arc::new(
            gemm::PackedMatrix::new(gemm::View::row_major(&data, rows, cols)).expect("in bounds"),
        );
        for transposed in [false, true] {
            let (k, n) = if transposed {
                (cols, rows)
            } else {
                (rows, cols)
            };
            let a = Tensor::<2>::random([40, k], Distribution::Default, &device).require_grad();
            let w = Tensor::<2>::random([40, n], Distribution::Default, &device);
            let run = |y| value_and_grad(y, &a, &w);
            let (y1, g1) = run(matmul_packed(a.clone(), &m, transposed));
            let (y2, g2) = run(matmul(a.clone(), oriented(&dense, transposed)));
            let plain = matmul_packed(a.clone().inner(), &m, transposed).into_data();
            if gemm::available() {
                assert_eq!(y1, y2, "forward, transposed={transposed}");
                assert_eq!(g1, g2, "gradient, transposed={transposed}");
                assert_eq!(plain, y2, "plain device, transposed={transposed}");
            } else {
                for (x, y) in [(y1, y2.clone()), (g1, g2), (plain, y2)] {
                    close(
                        Tensor::from_data(x, &Device::flex()),
                        Tensor::from_data(y, &Device::flex()),
                        1e-5,
                    );
                }
            }
        }
    }

    /// The 8-bit operand, as is and transposed: forward and the left gradient equal
    /// [`matmul`] on its dequantized matrix, bit for bit on the flex device.
    #[test]
    fn q8_operand_matches_its_dequantized_matrix() {
        let device = Device::flex().autodiff();
        let (rows, cols) = (90, 64);
        let q: Vec<i8> = (0..rows * cols).map(|i| ((i * 37) % 255) as i8).collect();
        let scales: Vec<f32> = (0..rows * cols / 32)
            .map(|i| 0.01 + 0.001 * i as f32)
            .collect();
        let m = Arc::new(gemm::Q8Matrix::new(rows, cols, q, scales).expect("valid"));
        let dense = Tensor::<2>::from_data(TensorData::new(m.dequantize(), [rows, cols]), &device);
        for transposed in [false, true] {
            let (k, n) = if transposed {
                (cols, rows)
            } else {
                (rows, cols)
            };
            let a = Tensor::<2>::from_data(
                TensorData::new(
                    (0..40 * k)
                        .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
                        .collect::<Vec<_>>(),
                    [40, k],
                ),
                &device,
            )
            .require_grad();
            let w = Tensor::<2>::from_data(
                TensorData::new(
                    (0..40 * n)
                        .map(|i| ((i % 7) as f32) * 0.3)
                        .collect::<Vec<_>>(),
                    [40, n],
                ),
                &device,
            );
            let run = |y| value_and_grad(y, &a, &w);
            let (y1, g1) = run(matmul_q8(a.clone(), &m, transposed));
            let (y2, g2) = run(matmul(a.clone(), oriented(&dense, transposed)));
            // The same left operand stored transposed: same product, and its gradient in the
            // stored layout.
            let at = Tensor::<2>::from_data(a.clone().inner().transpose().into_data(), &device)
                .require_grad();
            let y3 = matmul_q8_t(at.clone(), &m, transposed);
            let g = (y3.clone() * w.clone()).sum().backward();
            let g3 = at.grad(&g).expect("transposed lhs grad");
            assert_eq!(g3.dims(), [k, 40]);
            assert_eq!(y3.inner().into_data(), y1, "stored-transposed lhs, forward");
            assert_eq!(
                g3.transpose().into_data(),
                g1,
                "stored-transposed lhs, gradient"
            );
            if gemm::available() {
                assert_eq!(y1, y2, "forward, transposed={transposed}");
                assert_eq!(g1, g2, "gradient, transposed={transposed}");
            } else {
                close(
                    Tensor::from_data(y1, &Device::flex()),
                    Tensor::from_data(y2, &Device::flex()),
                    1e-5,
                );
            }
        }
    }
}
