//! Tests of the quantized matrices: every block type against dequantize-then-multiply.
use super::*;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn f(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 - 0.5
    }
}

fn random_blocks(ty: GgmlType, rows: usize, cols: usize, rng: &mut Lcg) -> Vec<u8> {
    let (block, bytes) = ty.block();
    // Where the type keeps its f16 scales (random bits there could be NaN/Inf).
    let scales: &[usize] = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[0],
    };
    let mut out = Vec::new();
    for _ in 0..rows * cols / block {
        let mut b: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
        for &at in scales {
            b[at..at + 2].copy_from_slice(&f16::from_f32(rng.f() * 0.1).to_le_bytes());
        }
        out.extend(b);
    }
    out
}

/// Every block type with the `[rows, cols]` shapes to test it on: `small` for the 32-weight
/// types; rows of whole 256-weight super-blocks for the k-quants.
fn every_type(small: &[(usize, usize)]) -> [(GgmlType, &[(usize, usize)]); 8] {
    const K_SHAPES: &[(usize, usize)] = &[(1, 256), (37, 512), (150, 768)];
    [
        (GgmlType::Q4_1, small),
        (GgmlType::Q4_0, small),
        (GgmlType::Q8_0, small),
        (GgmlType::Q5_0, small),
        (GgmlType::Q5_1, small),
        (GgmlType::Q4K, K_SHAPES),
        (GgmlType::Q5K, K_SHAPES),
        (GgmlType::Q6K, K_SHAPES),
    ]
}

#[test]
fn kernels_match_dequantize_then_multiply() {
    let mut rng = Lcg(42);
    // Ragged shapes: row counts that do not split evenly over tasks, 1..11 inputs; 70
    // blocks per row: the kernels widen the f16 scales 64 blocks at a time, 16 per
    // instruction (a second, partial chunk and a 6-scale tail).
    let small: &[(usize, usize)] = &[(1, 32), (37, 64), (300, 96), (1000, 576), (5, 70 * 32)];
    for (ty, shapes) in every_type(small) {
        for &(rows, cols) in shapes {
            let data = random_blocks(ty, rows, cols, &mut rng);
            let q = QMatrix::from_ggml(ty, &data, rows, cols).expect("supported");
            let reference = crate::quant::dequantize(ty, &data, rows * cols);
            assert_eq!(q.dequantize(), reference, "{ty:?} repacked blocks");
            for (n, simd) in [1, 2, 5, 8, 11]
                .into_iter()
                .flat_map(|n| [(n, true), (n, false)])
            {
                if simd && !crate::qkernels::available() {
                    continue;
                }
                let x: Vec<f32> = (0..n * cols).map(|_| rng.f()).collect();
                let y = q.matmul_with(&x, n, simd);
                for k in 0..n {
                    for r in 0..rows {
                        let terms = (0..cols)
                            .map(|c| reference[r * cols + c] as f64 * x[k * cols + c] as f64);
                        let want: f64 = terms.clone().sum();
                        // f32 sums of terms that cancel: the error scales with the terms'
                        // magnitudes (Q6_K's random scales reach 400), not with the result.
                        let size: f64 = terms.map(f64::abs).sum();
                        let got = y[k * rows + r] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()) + 1e-6 * size,
                            "{ty:?} {rows}x{cols} n={n} simd={simd} row {r}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn int8_kernels_match_rounded_input_times_dequantized_weights() {
    if !crate::qint8::available() {
        // No 8-bit kernels (neither AVX-512 VNNI nor AVX2): `matmul_act` is the f32 path.
        let data = random_blocks(GgmlType::Q4_1, 40, 64, &mut Lcg(3));
        let q = QMatrix::from_ggml(GgmlType::Q4_1, &data, 40, 64).expect("q4_1");
        let x: Vec<f32> = (0..64).map(|i| i as f32 * 0.01).collect();
        assert_eq!(q.matmul_act(&x, 1, Activations::Int8), q.matmul(&x, 1));
        return;
    }
    let mut rng = Lcg(11);
    // Ragged block counts (1, 2, 3, 5, 18 blocks per row: partial groups of four and pairs)
    // and row counts that do not split evenly over tasks.
    let small: &[(usize, usize)] = &[
        (1, 32),
        (37, 64),
        (300, 96),
        (33, 160),
        (1000, 576),
        (5, 70 * 32),
    ];
    for (ty, shapes) in every_type(small) {
        for &(rows, cols) in shapes {
            let data = random_blocks(ty, rows, cols, &mut rng);
            let q = QMatrix::from_ggml(ty, &data, rows, cols).expect("supported");
            let w = q.dequantize();
            for n in [1, 2, 3, 5, 8] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.f()).collect();
                let xq = crate::qint8::QInput::new(&x, n, cols);
                let xhat = xq.dequantize();
                let y = q.matmul_act(&x, n, Activations::Int8);
                // One input on the types with f32-activation AVX2 kernels takes those: the
                // input as it is (`matmul_act`'s rule for decode steps).
                let f32_step = n == 1
                    && crate::qkernels::available()
                    && matches!(ty, GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::Q6K);
                let input = if f32_step { &x } else { &xhat };
                // The AVX2 kernels too, on the whole matrix (`[rows, n]` out): the native
                // blocks' and, for every type, those that read the file's layout.
                let mut y2 = vec![0f32; rows * n];
                let avx2 = match q.rows_kind(0, rows) {
                    Some(kind) => {
                        crate::qint8::rows_with(kind, &xq, &mut y2, crate::qint8::Level::Avx2)
                    }
                    None => crate::qint8::raw::rows(ty, &data, &xq, &mut y2),
                };
                let mut y3 = vec![0f32; rows * n];
                let raw = crate::qint8::raw::rows(ty, &data, &xq, &mut y3);
                assert_eq!(raw, crate::qint8::avx2(), "{ty:?}: the raw kernels run");
                for k in 0..n {
                    for r in 0..rows {
                        let terms =
                            (0..cols).map(|c| w[r * cols + c] as f64 * xhat[k * cols + c] as f64);
                        let want: f64 = terms.clone().sum();
                        // Sums that cancel: the error scales with the terms (see above).
                        let size: f64 = terms.map(f64::abs).sum();
                        let tol = 1e-4 * (1.0 + want.abs()) + 1e-6 * size;
                        let exact: f64 = (0..cols)
                            .map(|c| w[r * cols + c] as f64 * input[k * cols + c] as f64)
                            .sum();
                        let got = y[k * rows + r] as f64;
                        assert!(
                            (got - exact).abs() <= tol,
                            "{ty:?} {rows}x{cols} n={n} row {r}: {got} vs {exact}"
                        );
                        let got2 = y2[r * n + k] as f64;
                        assert!(
                            !avx2 || (got2 - want).abs() <= tol,
                            "AVX2 {ty:?} {rows}x{cols} n={n} row {r}: {got2} vs {want}"
                        );
                        let got3 = y3[r * n + k] as f64;
                        assert!(
                            !raw || (got3 - want).abs() <= tol,
                            "raw {ty:?} {rows}x{cols} n={n} row {r}: {got3} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn blocks_given_in_pieces_repack_like_the_whole_tensor() {
    let mut rng = Lcg(11);
    for ty in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
        let (rows, cols) = (7, 96);
        let data = random_blocks(ty, rows, cols, &mut rng);
        let whole = QMatrix::from_ggml(ty, &data, rows, cols).expect("supported");
        let mut b = QBuilder::new(ty, rows, cols, data.len()).expect("supported");
        let bb = b.block_bytes();
        // Pieces of 1, 2, 3, … blocks.
        let (mut at, mut k) = (0, 1);
        while at < data.len() {
            let n = (k * bb).min(data.len() - at);
            b.push(&data[at..at + n]);
            (at, k) = (at + n, k + 1);
        }
        let pieces = b.finish().expect("every byte pushed");
        assert_eq!(pieces.dequantize(), whole.dequantize(), "{ty:?}");
        assert_eq!(pieces.digest(1), whole.digest(1), "{ty:?}");
    }
    // A builder given too few bytes yields nothing.
    let data = random_blocks(GgmlType::Q8_0, 2, 64, &mut rng);
    let mut b = QBuilder::new(GgmlType::Q8_0, 2, 64, data.len()).expect("supported");
    b.push(&data[..34]);
    assert!(b.finish().is_none());
}

#[test]
fn unsupported_shapes_fall_back() {
    assert!(QMatrix::from_ggml(GgmlType::Q4_1, &[0u8; 20], 1, 16).is_none());
    assert!(QMatrix::from_ggml(GgmlType::Q4_1, &[0u8; 19], 1, 32).is_none());
    // A k-quant row must hold whole super-blocks; Q2_K has no kernel.
    assert!(QMatrix::from_ggml(GgmlType::Q6K, &[0u8; 105], 1, 128).is_none());
    assert!(QMatrix::from_ggml(GgmlType::Other(10), &[0u8; 84], 1, 256).is_none());
}

/// Rows of different types stacked (a q/k/v of Q5_0, Q8_0 and Q4_0 parts) keep each part's
/// bytes: the stack dequantizes to the parts' rows in order and multiplies like them,
/// through every path (one input, groups, the 8-bit kernels with tasks that span parts).
#[test]
fn mixed_types_stack_into_one_matrix() {
    let mut rng = Lcg(11);
    let parts = [
        (GgmlType::Q5_0, 40),
        (GgmlType::Q8_0, 24),
        (GgmlType::Q4_0, 8),
    ];
    let cols = 96;
    let mut reference = Vec::new();
    let mut stack = Vec::new();
    for (ty, rows) in parts {
        let data = random_blocks(ty, rows, cols, &mut rng);
        reference.extend(crate::quant::dequantize(ty, &data, rows * cols));
        stack.push(QMatrix::from_ggml(ty, &data, rows, cols).expect("supported"));
    }
    let q = QMatrix::vstack(stack).expect("same columns");
    let rows = 72;
    assert_eq!((q.rows(), q.cols()), (rows, cols));
    assert_eq!(q.dequantize(), reference);
    assert_eq!(q.int8_ready(Activations::Int8), crate::qint8::avx2());
    assert_eq!(
        q.dequantize_rows(&[70, 3]),
        [
            &reference[70 * cols..71 * cols],
            &reference[3 * cols..4 * cols]
        ]
        .concat()
    );
    for n in [1, 3, 9] {
        let x: Vec<f32> = (0..n * cols).map(|_| rng.f()).collect();
        // The 8-bit kernels multiply the rounded input.
        let xhat = crate::qint8::QInput::new(&x, n, cols).dequantize();
        let int8 = q.int8_ready(Activations::Int8);
        for (y, x) in [
            (q.matmul(&x, n), &x),
            (
                q.matmul_act(&x, n, Activations::Int8),
                if int8 { &xhat } else { &x },
            ),
        ] {
            for k in 0..n {
                for r in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|c| reference[r * cols + c] as f64 * x[k * cols + c] as f64)
                        .sum();
                    let got = y[k * rows + r] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "n={n} row {r}"
                    );
                }
            }
        }
    }
}

#[test]
fn stacking_and_permuting_rows() {
    let mut rng = Lcg(7);
    let a = random_blocks(GgmlType::Q8_0, 3, 64, &mut rng);
    let b = random_blocks(GgmlType::Q8_0, 2, 64, &mut rng);
    let qa = QMatrix::from_ggml(GgmlType::Q8_0, &a, 3, 64).expect("a");
    let qb = QMatrix::from_ggml(GgmlType::Q8_0, &b, 2, 64).expect("b");
    let mut s = QMatrix::vstack(vec![qa.clone(), qb.clone()]).expect("stack");
    assert_eq!(s.rows(), 5);
    let all = [qa.dequantize(), qb.dequantize()].concat();
    assert_eq!(s.dequantize(), all);
    s.permute_rows(&[4, 0, 1, 2, 3]);
    let d = s.dequantize();
    assert_eq!(&d[..64], &all[4 * 64..5 * 64]);
    assert_eq!(&d[64..], &all[..4 * 64]);
}
