//! Tests of the GEMM: products against a naive f64 reference, transposed outputs,
//! concurrent callers, rejected views.

use super::*;
use crate::testing::values;

fn naive(a: &View, b: &View) -> Vec<f32> {
    let mut c = vec![0f32; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut s = 0f64;
            for k in 0..a.cols {
                s += a.at(i, k) as f64 * b.at(k, j) as f64;
            }
            c[i * b.cols + j] = s as f32;
        }
    }
    c
}

/// Ragged shapes (tile and slab edges), both operand layouts, both orientations: equal
/// to an f64 reference within f32 rounding.
#[test]
fn matches_the_naive_product() {
    if !available() {
        return;
    }
    for &(m, k, n) in &[
        (1, 1, 1),
        (5, 7, 3),
        (12, 256, 32),
        (13, 257, 33),
        (100, 300, 576),
        (37, 600, 100),
        (781, 70, 45),
        (30, 40, 3100),
        (70, 1000, 800),
    ] {
        let ad = values(m * k, 1);
        let bd = values(k * n, 2);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta {
                View::row_major(&ad, k, m).t()
            } else {
                View::row_major(&ad, m, k)
            };
            let b = if tb {
                View::row_major(&bd, n, k).t()
            } else {
                View::row_major(&bd, k, n)
            };
            let got = matmul(a, b).expect("available");
            let want = naive(&a, &b);
            let tol = 1e-5 * (k as f32).sqrt() * 4.0;
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() <= tol, "{m}×{k}×{n} ({ta},{tb}): {x} vs {y}");
            }
        }
    }
}

/// A column split's tasks reading A packed once for all of them (`pack_all_a`: ragged rows,
/// several slabs, both layouts of A) give the product one task packing its own A gives, bit
/// for bit.
#[test]
fn shared_a_panels_give_the_same_product() {
    if !available() {
        return;
    }
    for &(m, k, n) in &[(70, 1000, 800), (384, 576, 960), (13, 1500, 800)] {
        let (ad, bd) = (values(m * k, 3), values(k * n, 4));
        let b = View::row_major(&bd, k, n);
        for a in [View::row_major(&ad, m, k), View::row_major(&ad, k, m).t()] {
            assert_eq!(choose_split(m, k, n, 2), Split::Cols);
            let shared = pack_all_a(a);
            for a_packed in [None, Some(&shared[..])] {
                // SAFETY: one task writes the whole `m × n` output.
                let c = unsafe {
                    written(m * n, |out| {
                        serial(a, b, out.at(0), n, false, false, None, a_packed)
                    })
                };
                assert!(
                    c == product(a, b, false),
                    "{m}×{k}×{n} ({})",
                    a_packed.is_some()
                );
            }
        }
    }
}

/// Tiles stored transposed (`out_t`: ragged edges, every split, accumulated slabs and
/// parts) give the transpose of the row-major product, bit for bit.
#[test]
fn transposed_output_is_the_transposed_product() {
    if !available() {
        return;
    }
    for &(m, k, n) in &[
        (1, 1, 1),
        (5, 7, 3),
        (13, 257, 33),
        (100, 576, 200),
        (37, 1000, 100),
        (781, 70, 45),
        (30, 40, 3100),
    ] {
        let (ad, bd) = (values(m * k, 7), values(k * n, 8));
        let (a, b) = (View::row_major(&ad, m, k), View::row_major(&bd, k, n));
        let c = product(a, b, false);
        let ct = product(a, b, true);
        assert_eq!(ct.len(), m * n);
        for i in 0..m {
            for j in 0..n {
                assert!(
                    ct[j * m + i] == c[i * n + j],
                    "{m}×{k}×{n} at ({i}, {j}): {} vs {}",
                    ct[j * m + i],
                    c[i * n + j]
                );
            }
        }
    }
}

/// The same product from several threads at once (each split, thread-local buffers
/// shared with other callers) is bit-for-bit the same every time.
#[test]
fn concurrent_callers_get_identical_results() {
    if !available() {
        return;
    }
    let (ad, bd) = (values(300 * 500, 3), values(500 * 70, 4));
    let run = || {
        matmul(
            View::row_major(&ad, 300, 500),
            View::row_major(&bd, 500, 70),
        )
        .expect("available")
    };
    let first = run();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..20).map(|_| run()).collect::<Vec<_>>()))
            .collect();
        for h in handles {
            for out in h.join().expect("thread") {
                assert!(out == first, "a concurrent product differed");
            }
        }
    });
}

#[test]
fn rejects_mismatched_or_out_of_bounds_views() {
    let d = vec![0f32; 12];
    let a = View::row_major(&d, 3, 4);
    assert!(matmul(a, View::row_major(&d, 3, 4)).is_none());
    let long = View {
        rows: 4,
        ..View::row_major(&d, 3, 4)
    };
    assert!(matmul(long, View::row_major(&d, 4, 3)).is_none());
}
