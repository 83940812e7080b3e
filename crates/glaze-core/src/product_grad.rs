//! Parameter gradients kept as products, for the optimizer to consume block by block.
//!
//! A trainable `W [K, M]` multiplied with a constant 8-bit matrix `E [K, N]` — Time-LLM's text
//! prototypes `P = Wᵀ·E` over the whole vocabulary — has the gradient `dW = E·dPᵀ`: as large
//! as `W` (4.9 M values for 100 prototypes), made by a GEMM whose every value the optimizer
//! then reads once. Inside the trainer ([`deferring`]), [`matmul_q8_t_param`] leaves `W` out
//! of the autodiff graph: the product's output becomes a leaf whose gradient `dP` the trainer
//! collects ([`Deferred::take`]). AdamW then runs the GEMM `(dP·Eᵀ)ᵀ` with its update as the
//! epilogue (each block of rows updated while it is in L1; the gradient is never stored
//! whole), and the global norm for clipping comes from `E`'s Gram matrix beforehand:
//! `‖E·dPᵀ‖² = Σ (dP·EᵀE) ∘ dP`.
//!
//! Outside [`deferring`] (inference, validation, a plain `backward`, or a trainer run with
//! [`crate::TrainConfig::defer_products`] off) the product is the ordinary differentiable
//! [`crate::matmul::matmul_q8_t`].

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

/// A product left out of the graph inside [`deferring`]: the parameter and the leaf whose
/// gradient is the factor of the parameter's.
pub struct Deferred {
    param: ParamId,
    leaf: Tensor<2>,
    rhs: Arc<Q8Matrix>,
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

thread_local! {
    /// The products deferred on this thread, while [`deferring`] runs.
    static DEFERRED: RefCell<Option<Vec<Deferred>>> = const { RefCell::new(None) };
}

/// Runs `f` with products of parameters deferred ([`matmul_q8_t_param`]), and returns them
/// with `f`'s result: the caller takes their gradients after the backward pass
/// ([`Deferred::take`]) and updates the parameters from those.
pub fn deferring<R>(f: impl FnOnce() -> R) -> (R, Vec<Deferred>) {
    /// Puts the outer state back however `f` ends (a panic included: products made after it
    /// must not be deferred into a list nobody takes).
    struct Restore(Option<Option<Vec<Deferred>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                DEFERRED.with_borrow_mut(|d| *d = outer);
            }
        }
    }
    let mut restore = Restore(Some(DEFERRED.with_borrow_mut(|d| d.replace(Vec::new()))));
    let r = f();
    let outer = restore.0.take().expect("set above");
    let taken = DEFERRED.with_borrow_mut(|d| std::mem::replace(d, outer));
    (r, taken.unwrap_or_default())
}

/// `Wᵀ · E` for the parameter `W [K, M]` and the constant 8-bit matrix `E [K, N]` (or `Eᵀ`
/// when `transposed`), differentiable in `W` — [`crate::matmul::matmul_q8_t`] — except inside
/// [`deferring`] on the flex CPU with the AVX-512 kernel (and `E` not transposed), where `W`'s
/// gradient is deferred: the result is a leaf of the autodiff graph (on `W`'s device, its
/// checkpointing strategy included) registered for [`Deferred::take`].
pub fn matmul_q8_t_param(w: &Param<Tensor<2>>, rhs: &Arc<Q8Matrix>, transposed: bool) -> Tensor<2> {
    let value = w.val();
    let device = value.device();
    let defer = !transposed
        && value.is_require_grad()
        && device.is_autodiff()
        && device.clone().inner() == Device::flex()
        && gemm::available()
        && DEFERRED.with_borrow(Option::is_some);
    if !defer {
        return crate::matmul::matmul_q8_t(value, rhs, transposed);
    }
    let out = crate::matmul::matmul_q8_t(value.inner(), rhs, false);
    let leaf = Tensor::<2>::from_data(out.into_data(), &device).require_grad();
    DEFERRED.with_borrow_mut(|d| {
        if let Some(d) = d {
            d.push(Deferred {
                param: w.id,
                leaf: leaf.clone(),
                rhs: rhs.clone(),
            });
        }
    });
    leaf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::tests::values;
    use crate::optim::{AdamW, AdamWSettings};
    use crate::params::{HostGrads, export_params};
    use burn::nn::LinearConfig;
    use burn::optim::GradientsParams;

    fn q8(rows: usize, cols: usize) -> Arc<Q8Matrix> {
        let q = values(rows * cols, 3)
            .iter()
            .map(|v| (v * 127.0) as i8)
            .collect();
        let scales = values(rows * cols / 32, 4)
            .iter()
            .map(|v| v * 0.01 + 0.02)
            .collect();
        Arc::new(Q8Matrix::new(rows, cols, q, scales).expect("valid"))
    }

    /// `loss = Σ (Wᵀ·E) ∘ R`, so the product's gradient is `R`; returns `W`'s gradient the
    /// ordinary way and the deferred product (with the check that `W` itself got none).
    fn both_ways(v: usize, p: usize, d: usize) -> (Vec<f32>, ProductGrad) {
        let device = Device::flex().autodiff();
        let e = q8(v, d);
        let w = Param::from_tensor(
            Tensor::<2>::from_data(TensorData::new(values(v * p, 5), [v, p]), &device)
                .require_grad(),
        );
        let r = Tensor::<2>::from_data(TensorData::new(values(p * d, 6), [p, d]), &device);
        let loss = |out: Tensor<2>| (out * r.clone()).sum();
        let mut g = loss(matmul_q8_t_param(&w, &e, false)).backward();
        let plain = w.val().grad_remove(&mut g).expect("W's gradient");
        let plain = plain
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32");
        let (out, deferred) = deferring(|| matmul_q8_t_param(&w, &e, false));
        assert_eq!(deferred.len(), usize::from(gemm::available()));
        let mut g = loss(out).backward();
        let mut taken: Vec<_> = deferred
            .into_iter()
            .filter_map(|d| d.take(&mut g))
            .collect();
        let Some((id, product)) = taken.pop() else {
            // Without the kernel nothing is deferred: the ordinary gradient, formed.
            return (
                plain.clone(),
                ProductGrad {
                    a: Vec::new(),
                    rows: 0,
                    rhs: e,
                },
            );
        };
        assert_eq!(id, w.id);
        assert!(
            w.val().grad_remove(&mut g).is_none(),
            "W is out of the deferred graph"
        );
        (plain, product)
    }

    /// Deferred, `W`'s gradient is the ordinary one bit for bit once formed (whole or in
    /// blocks), and its squared norm from the Gram matrix agrees with the formed one's.
    #[test]
    fn the_deferred_gradient_is_the_ordinary_one() {
        if !gemm::available() {
            return;
        }
        let (plain, product) = both_ways(3000, 5, 64);
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

    /// A parameter in two products with the same matrix, and then also used directly: its
    /// collected gradient is the ordinary one — still a product in the first case (the factors
    /// added), formed and summed with the direct part in the second.
    #[test]
    fn a_parameter_used_twice_or_directly_gets_its_whole_gradient() {
        if !gemm::available() {
            return;
        }
        let device = Device::flex().autodiff();
        let (v, p, d) = (300, 4, 64);
        let e = q8(v, d);
        let module = crate::rng::seeded_module(&device, 2, |dv| {
            LinearConfig::new(v, p).with_bias(false).init(dv)
        });
        let name = export_params(&module)[0].name.clone();
        let r = Tensor::<2>::from_data(TensorData::new(values(p * d, 6), [p, d]), &device);
        let loss = |direct: bool| {
            let a = matmul_q8_t_param(&module.weight, &e, false);
            let b = matmul_q8_t_param(&module.weight, &e, false);
            let l = (a * r.clone()).sum() + (b * r.clone() * 2.0).sum();
            let w = module.weight.val();
            if direct { l + (w.clone() * w).sum() } else { l }
        };
        let collect = |loss: Tensor<1>, products: Vec<Deferred>| {
            let mut g = loss.backward();
            let products = products
                .into_iter()
                .filter_map(|x| x.take(&mut g))
                .collect();
            HostGrads::collect(&module, GradientsParams::from_grads(g, &module), products)
        };
        for direct in [false, true] {
            let plain = collect(loss(direct), Vec::new());
            let (l, deferred) = deferring(|| loss(direct));
            assert_eq!(deferred.len(), 2);
            let got = collect(l, deferred);
            assert_eq!(
                got.products.is_empty(),
                direct,
                "a product unless used directly"
            );
            let have = match (got.grads.get(&name), got.products.get(&name)) {
                (Some(g), None) => g.clone(),
                (None, Some(p)) => p.dense(),
                other => panic!("one gradient for {name}, got {other:?}"),
            };
            for (x, y) in have.iter().zip(&plain.grads[&name]) {
                assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{x} vs {y}");
            }
        }
    }

    /// A panic inside [`deferring`] leaves nothing deferred afterwards.
    #[test]
    fn a_panic_inside_deferring_defers_nothing_after() {
        let r = std::panic::catch_unwind(|| deferring(|| panic!("the loss failed")));
        assert!(r.is_err());
        assert!(DEFERRED.with_borrow(Option::is_none));
    }

    /// Outside [`deferring`] (and for a transposed matrix) nothing is deferred.
    #[test]
    fn nothing_is_deferred_outside_the_trainer() {
        let device = Device::flex().autodiff();
        let e = q8(64, 32);
        let w = Param::from_tensor(Tensor::<2>::zeros([64, 3], &device).require_grad());
        let out = matmul_q8_t_param(&w, &e, false);
        let mut g = out.sum().backward();
        assert!(w.val().grad_remove(&mut g).is_some());
        let wt = Param::from_tensor(Tensor::<2>::zeros([32, 3], &device).require_grad());
        let (_, deferred) = deferring(|| matmul_q8_t_param(&wt, &e, true));
        assert!(deferred.is_empty(), "a transposed matrix is not deferred");
    }

    /// AdamW from the deferred product updates the parameter and its moments exactly as from
    /// the formed gradient; with clipping, its norm comes from the Gram matrix (equal up to
    /// rounding, so the updates agree to rounding).
    #[test]
    fn adamw_from_a_product_is_adamw_from_its_gradient() {
        if !gemm::available() {
            return;
        }
        let (v, p) = (3000, 5);
        let (_, product) = both_ways(v, p, 64);
        let device = Device::flex().autodiff();
        let module = crate::rng::seeded_module(&device, 1, |d| LinearConfig::new(v, p).init(d));
        let names: Vec<String> = export_params(&module).into_iter().map(|t| t.name).collect();
        let (weight, bias) = (names[0].clone(), names[1].clone());
        let bias_grad = values(p, 8);
        for clip in [None, Some(1e-3)] {
            let mut formed = HostGrads::default();
            formed.grads.insert(weight.clone(), product.dense());
            formed.grads.insert(bias.clone(), bias_grad.clone());
            let mut deferred = HostGrads::default();
            deferred.products.insert(weight.clone(), product.clone());
            deferred.grads.insert(bias.clone(), bias_grad.clone());
            let run = |g: HostGrads| {
                let mut opt = AdamW::new(AdamWSettings::default());
                let (m, stats) = opt.step(module.clone(), g.clone(), 1e-2, clip);
                let (m, _) = opt.step(m, g, 1e-2, clip);
                (export_params(&m), opt.export_state(), stats)
            };
            let (pa, sa, ta) = run(formed);
            let (pb, sb, tb) = run(deferred);
            assert_eq!(ta.clipped, tb.clipped);
            assert!((ta.grad_norm - tb.grad_norm).abs() <= 1e-5 * ta.grad_norm);
            let tol = if clip.is_some() { 1e-5 } else { 0.0 };
            for (x, y) in pa.iter().chain(&sa).zip(pb.iter().chain(&sb)) {
                assert_eq!(x.name, y.name);
                for (a, b) in x.data.iter().zip(&y.data) {
                    assert!(
                        (a - b).abs() <= tol * a.abs().max(1e-3),
                        "{}: {a} vs {b}",
                        x.name
                    );
                }
            }
        }
    }
}
