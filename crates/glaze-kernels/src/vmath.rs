//! Vector math shared by the fused kernels: a 16-lane `eˣ` and the softmax of a score row,
//! AVX-512 where the CPU has it (checked at run time), portable loops elsewhere.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `eˣ` for `x ≤ 0` (softmax arguments after the max is subtracted): `x = n·ln2 + r` with
/// `n` an integer and `|r| ≤ ln2/2` (ln2 split in two parts, so `r` is exact to f32), a
/// degree-7 Taylor polynomial for `eʳ` (truncation 5e-9), then `2ⁿ` by `vscalefps`: a few
/// f32 ulps. `x < -87` (and `-∞`, masked keys) gives exactly 0.
///
/// # Safety
/// The CPU must have AVX-512 F (callers without the feature enabled need `unsafe`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub fn exp512(x: __m512) -> __m512 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-87.0));
    let t = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    // 1/k! for k = 7 down to 0.
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_maskz_mov_ps(!under, _mm512_scalef_ps(p, n))
}

/// `row ← softmax(row · scale + bias)` in place (all zero when every key is masked, its
/// bias `−∞`): one pass for the scaled scores and their maximum, one for the exponentials
/// and their sum, one to normalise — 16 lanes at a time where the CPU has AVX-512.
pub fn softmax_row(row: &mut [f32], bias: &[f32], scale: f32) {
    assert_eq!(row.len(), bias.len());
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::available() {
        // SAFETY: AVX-512 F is available (checked); equal lengths (asserted).
        unsafe { softmax_row512(row, bias, scale) };
        return;
    }
    softmax_row_portable(row, bias, scale);
}

/// [`softmax_row`] as plain loops.
fn softmax_row_portable(row: &mut [f32], bias: &[f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for (x, b) in row.iter_mut().zip(bias) {
        *x = *x * scale + b;
        max = max.max(*x);
    }
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn softmax_row512(row: &mut [f32], bias: &[f32], scale: f32) {
    let n = row.len();
    let (x, b) = (row.as_mut_ptr(), bias.as_ptr());
    let (s, mut mx) = (_mm512_set1_ps(scale), _mm512_set1_ps(f32::NEG_INFINITY));
    for i in (0..n).step_by(16) {
        let m = lanes(n - i);
        // SAFETY: lanes `i..min(i + 16, n)` of both rows (masked).
        unsafe {
            let v = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, x.add(i)),
                s,
                _mm512_maskz_loadu_ps(m, b.add(i)),
            );
            _mm512_mask_storeu_ps(x.add(i), m, v);
            mx = _mm512_mask_max_ps(mx, m, mx, v);
        }
    }
    let max = _mm512_reduce_max_ps(mx);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let (mv, mut acc) = (_mm512_set1_ps(max), _mm512_setzero_ps());
    for i in (0..n).step_by(16) {
        let m = lanes(n - i);
        // SAFETY: as above.
        unsafe {
            let e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x.add(i)), mv));
            _mm512_mask_storeu_ps(x.add(i), m, e);
            acc = _mm512_mask_add_ps(acc, m, acc, e);
        }
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(acc));
    for i in (0..n).step_by(16) {
        let m = lanes(n - i);
        // SAFETY: as above.
        unsafe {
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x.add(i)), inv);
            _mm512_mask_storeu_ps(x.add(i), m, v);
        }
    }
}

/// The mask of the first `min(n, 16)` lanes of a 16-lane vector (the kernels' ragged tails).
pub fn lanes(n: usize) -> u16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as u16
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn vector_exp_matches_libm() {
        if !crate::gemm::available() {
            return;
        }
        let xs: Vec<f32> = (0..=20_000)
            .map(|i| -90.0 * i as f32 / 20_000.0)
            .chain([f32::NEG_INFINITY, -1e-30, -0.5, -0.25])
            .collect();
        for chunk in xs.chunks(16) {
            let mut v = [0f32; 16];
            v[..chunk.len()].copy_from_slice(chunk);
            let mut got = [0f32; 16];
            // SAFETY: the CPU has AVX-512 F (checked); 16-float arrays.
            unsafe {
                let e = exp512(_mm512_loadu_ps(v.as_ptr()));
                _mm512_storeu_ps(got.as_mut_ptr(), e);
            }
            for (x, g) in chunk.iter().zip(got) {
                let want = if *x < -87.0 { 0.0 } else { (*x as f64).exp() };
                let err = (g as f64 - want).abs();
                assert!(err <= 4e-7 * want, "exp({x}) = {g}, want {want}");
            }
        }
    }
    /// Softmax rows (lengths 1..40 for the masked tails, masked keys, one row masked
    /// throughout), both implementations: within f32 rounding of the f64 softmax, masked keys
    /// exactly 0, a fully masked row all zero.
    #[test]
    fn softmax_rows_match_f64() {
        for n in 1..=40usize {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7)
                .collect();
            let bias: Vec<f32> = (0..n)
                .map(|i| if i % 5 == 3 { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            let z: Vec<f64> = x
                .iter()
                .zip(&bias)
                .map(|(&x, &b)| x as f64 * 0.125 + b as f64)
                .collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
            for portable in [false, true] {
                let mut row = x.clone();
                if portable {
                    softmax_row_portable(&mut row, &bias, 0.125);
                } else {
                    softmax_row(&mut row, &bias, 0.125);
                }
                for (i, (&got, &zi)) in row.iter().zip(&z).enumerate() {
                    let want = (zi - max).exp() / sum;
                    if bias[i] == f32::NEG_INFINITY {
                        assert_eq!(got, 0.0, "masked key {i} of {n}");
                    }
                    assert!(
                        (got as f64 - want).abs() <= 1e-6 * want + 1e-9,
                        "n {n} key {i} portable {portable}: {got} vs {want}"
                    );
                }
                let mut masked = x.clone();
                let all = vec![f32::NEG_INFINITY; n];
                if portable {
                    softmax_row_portable(&mut masked, &all, 0.125);
                } else {
                    softmax_row(&mut masked, &all, 0.125);
                }
                assert!(masked.iter().all(|&v| v == 0.0), "fully masked row of {n}");
            }
        }
    }
}
