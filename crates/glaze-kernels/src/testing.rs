//! What the kernels' tests and the optimizer's tests in `glaze-train` share: seeded values,
//! an 8-bit matrix, rotary tables, and a fused-op-versus-composed-op check. Not part of the
//! supported API.

use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;

use crate::gemm::Q8Matrix;
use crate::product_grad::{ProductGrad, ProductSink, matmul_q8_t_param};

/// `n` pseudo-random values in `[-1, 1]` (xorshift), the same for the same seed.
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// A `[rows, cols]` 8-bit matrix of seeded values (`cols` a multiple of 32).
pub fn q8_matrix(rows: usize, cols: usize) -> Arc<Q8Matrix> {
    let q = values(rows * cols, 3)
        .iter()
        .map(|v| (v * 127.0) as i8)
        .collect();
    let scales = values(rows * cols / 32, 4)
        .iter()
        .map(|v| v * 0.01 + 0.02)
        .collect();
    Arc::new(Q8Matrix::new(rows, cols, q, scales).expect("invariant: valid shapes"))
}

/// `loss = Σ (Wᵀ·E) ∘ R` for a `W [v, p]` and `E [v, d]`, so the product's gradient is `R`:
/// `W`'s gradient the ordinary way, and the same gradient deferred into a sink (checking that
/// `W` itself then got none). Without the AVX-512 kernel nothing is deferred and the product
/// returned is empty.
pub fn deferred_and_plain(v: usize, p: usize, d: usize) -> (Vec<f32>, ProductGrad) {
    let device = Device::flex().autodiff();
    let e = q8_matrix(v, d);
    let w = Param::from_tensor(
        Tensor::<2>::from_data(TensorData::new(values(v * p, 5), [v, p]), &device).require_grad(),
    );
    let r = Tensor::<2>::from_data(TensorData::new(values(p * d, 6), [p, d]), &device);
    let loss = |out: Tensor<2>| (out * r.clone()).sum();
    let mut g = loss(matmul_q8_t_param(&w, &e, false, None)).backward();
    let plain = w.val().grad_remove(&mut g).expect("W's gradient");
    let plain = plain
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32");
    let sink = ProductSink::new();
    let out = matmul_q8_t_param(&w, &e, false, Some(&sink));
    let deferred = sink.take();
    assert_eq!(deferred.len(), usize::from(crate::gemm::available()));
    let mut g = loss(out).backward();
    let mut taken: Vec<_> = deferred
        .into_iter()
        .filter_map(|d| d.take(&mut g))
        .collect();
    let Some((id, product)) = taken.pop() else {
        return (plain, ProductGrad::empty(e));
    };
    assert_eq!(id, w.id);
    assert!(
        w.val().grad_remove(&mut g).is_none(),
        "W is out of the deferred graph"
    );
    (plain, product)
}

/// Rotary tables `[b, 1, t, hd/2]` for per-row `positions` (`b·t` of them), θ = 10 000.
pub fn rope_tables(
    positions: &[usize],
    b: usize,
    t: usize,
    hd: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let half = hd / 2;
    let angle = |i: usize| {
        let (row, k) = (i / half, i % half);
        positions[row] as f64 / 10000f64.powf(2.0 * k as f64 / hd as f64)
    };
    let table = |f: fn(f64) -> f64| {
        let v: Vec<f32> = (0..b * t * half).map(|i| f(angle(i)) as f32).collect();
        Tensor::<4>::from_data(TensorData::new(v, [b, 1, t, half]), device)
    };
    (table(f64::cos), table(f64::sin))
}

/// Asserts that `fused` and `composed` (each computing, from `x`, an output shaped like
/// `w`) give equal outputs and equal gradients of `Σ y·w` with respect to `x`, within `tol`
/// relative.
pub fn assert_same_op<const D: usize, const E: usize>(
    x: &Tensor<D>,
    w: &Tensor<E>,
    fused: impl Fn() -> Tensor<E>,
    composed: impl Fn() -> Tensor<E>,
    tol: f32,
) {
    let run = |f: &dyn Fn() -> Tensor<E>| {
        let y = f();
        let g = (y.clone() * w.clone()).sum().backward();
        let grad: Vec<f32> = x.grad(&g).expect("grad").into_data().iter().collect();
        let y: Vec<f32> = y.into_data().iter().collect();
        (y, grad)
    };
    let ((y1, g1), (y2, g2)) = (run(&fused), run(&composed));
    assert_eq!((y1.len(), g1.len()), (y2.len(), g2.len()));
    for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
    }
}
