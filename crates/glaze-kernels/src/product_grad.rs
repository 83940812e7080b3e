//! Parameter gradients kept as products, for the optimizer to consume block by block.
//!
//! A trainable `W [K, M]` multiplied with a constant 8-bit matrix `E [K, N]` — Time-LLM's text
//! prototypes `P = Wᵀ·E` over the whole vocabulary — has the gradient `dW = E·dPᵀ`: as large
//! as `W` (4.9 M values for 100 prototypes), made by a GEMM whose every value the optimizer
//! then reads once. Given a [`ProductSink`] (the trainer passes one to a task that asks for
//! it), [`matmul_q8_t_param`] leaves `W` out of the autodiff graph: the product's output becomes a leaf whose gradient `dP` the trainer
//! collects ([`Deferred::take`]). AdamW then runs the GEMM `(dP·Eᵀ)ᵀ` with its update as the
//! epilogue (each block of rows updated while it is in L1; the gradient is never stored
//! whole), and the global norm for clipping comes from `E`'s Gram matrix beforehand:
//! `‖E·dPᵀ‖² = Σ (dP·EᵀE) ∘ dP`.
//!
//! Without a sink (inference, validation, a plain `backward`, or a trainer run with deferral
//! off) the product is the ordinary differentiable [`crate::matmul::matmul_q8_t`].

use std::cell::RefCell;
use std::sync::Arc;

use burn::module::{Param, ParamId};
use burn::prelude::*;
use burn::tensor::Gradients;

use crate::gemm::{self, Q8Matrix, View};

/// The gradient `(A·Eᵀ)ᵀ` of a parameter `[E.rows(), rows]`, kept as its factor `A [rows,
/// E.cols()]` (row-major).
#[derive(Debug, Clone)]
pub struct ProductGrad {
    /// `A`, row-major.
    pub a: Vec<f32>,
    /// Rows of `A` (the parameter's columns).
    pub rows: usize,
    /// `E`.
    pub rhs: Arc<Q8Matrix>,
}

impl ProductGrad {
    /// Number of gradient values (`E.rows() · rows`).
    pub fn len(&self) -> usize {
        self.rhs.rows() * self.rows
    }

    /// True when the gradient has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self) -> View<'_> {
        View::row_major(&self.a, self.rows, self.rhs.cols())
    }

    /// `‖(A·Eᵀ)ᵀ‖²` from `E`'s Gram matrix (`Σ (A·EᵀE) ∘ A`, summed in `f64`): the product
    /// is not formed. Equal to the formed gradient's squared norm up to `f32` rounding.
    pub fn sq_norm(&self) -> f64 {
        let Some(gram) = self.rhs.column_gram() else {
            return self.dense().iter().map(|&v| (v as f64) * (v as f64)).sum();
        };
        let c = self.rhs.cols();
        let h = gemm::matmul(self.view(), View::row_major(gram, c, c))
            .expect("invariant: the kernel runs when the Gram matrix exists");
        h.iter()
            .zip(&self.a)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum()
    }

    /// The gradient, formed (`[E.rows(), rows]`, row-major).
    pub fn dense(&self) -> Vec<f32> {
        if let Some(g) = gemm::matmul_q8_out_t(self.view(), &self.rhs, true) {
            return g;
        }
        // Without the kernel: row by row from the dequantized matrix.
        let (c, e) = (self.rhs.cols(), self.rhs.dequantize());
        let mut g = vec![0f32; self.len()];
        for (v, out) in g.chunks_exact_mut(self.rows).enumerate() {
            for (p, o) in out.iter_mut().enumerate() {
                let (x, y) = (&e[v * c..(v + 1) * c], &self.a[p * c..(p + 1) * c]);
                *o = x.iter().zip(y).map(|(a, b)| a * b).sum();
            }
        }
        g
    }

    /// The gradient handed to `consume` in disjoint blocks of whole rows (`consume(v0,
    /// rows)`: rows `v0..` of the `[E.rows(), rows]` gradient), possibly from several threads
    /// at once; the values are [`ProductGrad::dense`]'s.
    pub fn each_block(&self, consume: &(dyn Fn(usize, &[f32]) + Sync)) {
        if !gemm::matmul_q8_out_t_each(self.view(), &self.rhs, true, consume) {
            consume(0, &self.dense());
        }
    }

    /// Multiplies the gradient by `s`.
    pub fn scale(&mut self, s: f32) {
        self.a.iter_mut().for_each(|v| *v *= s);
    }

    /// Whether `other` is a product with the same matrix and shape (its factor can be added).
    pub fn same_matrix(&self, other: &ProductGrad) -> bool {
        Arc::ptr_eq(&self.rhs, &other.rhs) && self.rows == other.rows
    }

    /// Adds `other`'s gradient (the same parameter's, from another micro-batch or another use
    /// of it with the same matrix).
    ///
    /// # Panics
    /// When `other` is not a product with the same matrix ([`ProductGrad::same_matrix`]).
    pub fn add(&mut self, other: &ProductGrad) {
        assert!(
            self.same_matrix(other),
            "products with different matrices do not add"
        );
        self.a.iter_mut().zip(&other.a).for_each(|(x, y)| *x += y);
    }
}

/// A product left out of the graph into a [`ProductSink`]: the parameter and the leaf whose
/// gradient is the factor of the parameter's.
pub struct Deferred {
    param: ParamId,
    leaf: Tensor<2>,
    rhs: Arc<Q8Matrix>,
}

impl ProductGrad {
    /// A gradient of no rows (what a test gets where nothing was deferred).
    pub fn empty(rhs: Arc<Q8Matrix>) -> Self {
        ProductGrad {
            a: Vec::new(),
            rows: 0,
            rhs,
        }
    }
}

impl Deferred {
    /// The parameter's gradient as a product, taken out of `grads` (`None` when the leaf got
    /// no gradient).
    pub fn take(self, grads: &mut Gradients) -> Option<(ParamId, ProductGrad)> {
        let g = self.leaf.grad_remove(grads)?;
        let rows = g.dims()[0];
        let a = g
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("invariant: float data converts to f32");
        Some((
            self.param,
            ProductGrad {
                a,
                rows,
                rhs: self.rhs,
            },
        ))
    }
}

/// Where a training step's deferred products are collected: the trainer makes one per
/// step and takes the products after the backward pass ([`Deferred::take`]).
#[derive(Default)]
pub struct ProductSink(RefCell<Vec<Deferred>>);

impl ProductSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The products deferred so far, leaving the sink empty.
    pub fn take(&self) -> Vec<Deferred> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

impl std::fmt::Debug for ProductSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProductSink({} deferred)", self.0.borrow().len())
    }
}

/// `Wᵀ · E` for the parameter `W [K, M]` and the constant 8-bit matrix `E [K, N]` (or `Eᵀ`
/// when `transposed`), differentiable in `W` — [`crate::matmul::matmul_q8_t`] — except with
/// a `sink` on the flex CPU with the AVX-512 kernel (and `E` not transposed), where `W`'s
/// gradient is deferred: the result is a leaf of the autodiff graph (on `W`'s device, its
/// checkpointing strategy included) registered in the sink for [`Deferred::take`].
pub fn matmul_q8_t_param(
    w: &Param<Tensor<2>>,
    rhs: &Arc<Q8Matrix>,
    transposed: bool,
    sink: Option<&ProductSink>,
) -> Tensor<2> {
    let value = w.val();
    let device = value.device();
    let defer = !transposed
        && value.is_require_grad()
        && device.is_autodiff()
        && device.clone().inner() == Device::flex()
        && gemm::available();
    let Some(sink) = sink.filter(|_| defer) else {
        return crate::matmul::matmul_q8_t(value, rhs, transposed);
    };
    let out = crate::matmul::matmul_q8_t(value.inner(), rhs, false);
    let leaf = Tensor::<2>::from_data(out.into_data(), &device).require_grad();
    sink.0.borrow_mut().push(Deferred {
        param: w.id,
        leaf: leaf.clone(),
        rhs: rhs.clone(),
    });
    leaf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deferred_and_plain, q8_matrix};

    /// Deferred, `W`'s gradient is the ordinary one bit for bit once formed (whole or in
    /// blocks), and its squared norm from the Gram matrix agrees with the formed one's.
    #[test]
    fn the_deferred_gradient_is_the_ordinary_one() {
        if !gemm::available() {
            return;
        }
        let (plain, product) = deferred_and_plain(3000, 5, 64);
        assert!(product.dense() == plain, "formed whole");
        let blocks = std::sync::Mutex::new(vec![f32::NAN; plain.len()]);
        let consume = |r0: usize, b: &[f32]| {
            blocks.lock().expect("not poisoned")[r0 * 5..r0 * 5 + b.len()].copy_from_slice(b);
        };
        product.each_block(&consume);
        assert!(
            blocks.into_inner().expect("not poisoned") == plain,
            "formed in blocks"
        );
        let want: f64 = plain.iter().map(|&x| x as f64 * x as f64).sum();
        let got = product.sq_norm();
        assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    }

    /// Without a sink (and for a transposed matrix) nothing is deferred.
    #[test]
    fn nothing_is_deferred_without_a_sink() {
        let device = Device::flex().autodiff();
        let e = q8_matrix(64, 32);
        let w = Param::from_tensor(Tensor::<2>::zeros([64, 3], &device).require_grad());
        let out = matmul_q8_t_param(&w, &e, false, None);
        let mut g = out.sum().backward();
        assert!(w.val().grad_remove(&mut g).is_some());
        let wt = Param::from_tensor(Tensor::<2>::zeros([32, 3], &device).require_grad());
        let sink = ProductSink::new();
        let _ = matmul_q8_t_param(&wt, &e, true, Some(&sink));
        assert!(
            sink.take().is_empty(),
            "a transposed matrix is not deferred"
        );
    }
}
