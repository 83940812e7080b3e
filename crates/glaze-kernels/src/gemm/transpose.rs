//! [`transpose`]: a row-major matrix transposed into a new row-major vector, in parallel,
//! 16 × 16 blocks at a time through AVX-512 registers. The Time-LLM step transposes its
//! prototype-weight gradient (`[100, 49152]` → the parameter's `[49152, 100]`) every step;
//! burn-flex's strided copy took 5 ms for it on the 2-vCPU benchmark VM.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// `src` (`rows × cols`, row-major) transposed: a `cols × rows` row-major vector.
///
/// # Panics
/// When `src.len() != rows · cols`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        src.len(),
        rows * cols,
        "transpose: {rows} × {cols} values expected"
    );
    let n = rows * cols;
    let mut out: Vec<f32> = Vec::with_capacity(n);
    let base = super::Out(out.as_mut_ptr());
    // Each task writes whole 16-row bands of the output (16 source columns), no zeroing first.
    (0..cols.div_ceil(16)).into_par_iter().for_each(|band| {
        let c0 = band * 16;
        let width = (cols - c0).min(16);
        let dst = base.at(c0 * rows);
        #[cfg(target_arch = "x86_64")]
        if super::available() {
            // SAFETY: AVX-512F is available; the band's `width · rows` values lie inside the
            // allocation and no other task writes them.
            unsafe { band_avx512(src, rows, cols, c0, width, dst) };
            return;
        }
        // SAFETY: as above.
        unsafe { band_scalar(src, rows, cols, c0, width, dst) };
    });
    // SAFETY: the bands cover output rows `0..cols`, each written whole (all `rows` values).
    unsafe { out.set_len(n) };
    out
}

/// Output rows `c0..c0 + width` (source columns), element by element.
///
/// # Safety
/// `dst` must be valid for `width · rows` writes; `c0 + width ≤ cols`.
unsafe fn band_scalar(
    src: &[f32],
    rows: usize,
    cols: usize,
    c0: usize,
    width: usize,
    dst: *mut f32,
) {
    for r in 0..rows {
        for j in 0..width {
            // SAFETY: (caller) `j · rows + r < width · rows`.
            unsafe { dst.add(j * rows + r).write(src[r * cols + c0 + j]) };
        }
    }
}

/// [`band_scalar`] through 16 × 16 register blocks (rows past the matrix masked off).
///
/// # Safety
/// AVX-512F must be available; `width ≤ 16`, `c0 + width ≤ cols`, `src` holds
/// `rows · cols` values and `dst` is valid for `width · rows` writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn band_avx512(
    src: &[f32],
    rows: usize,
    cols: usize,
    c0: usize,
    width: usize,
    dst: *mut f32,
) {
    use std::arch::x86_64::*;
    check!(width <= 16 && c0 + width <= cols && src.len() >= rows * cols);
    let cmask = crate::vmath::lanes(width);
    for r0 in (0..rows).step_by(16) {
        let height = (rows - r0).min(16);
        let mut x = [_mm512_setzero_ps(); 16];
        for (i, xi) in x.iter_mut().enumerate().take(height) {
            // SAFETY: (caller) row `r0 + i` holds columns `c0..c0 + width`.
            *xi = unsafe { _mm512_maskz_loadu_ps(cmask, src.as_ptr().add((r0 + i) * cols + c0)) };
        }
        let t = transpose16(x);
        let rmask = crate::vmath::lanes(height);
        for (j, tj) in t.iter().enumerate().take(width) {
            // SAFETY: (caller) output row `j` holds `rows` values from `r0`.
            unsafe { _mm512_mask_storeu_ps(dst.add(j * rows + r0), rmask, *tj) };
        }
    }
}

/// The 16 × 16 transpose of `x` (row `i` of the result holds element `i` of every input).
///
/// # Safety
/// The CPU must have AVX-512 F (callers without the feature enabled need `unsafe`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub fn transpose16(x: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved per 128-bit lane: [a0 b0 a1 b1], [a2 b2 a3 b3].
    let mut t = [_mm512_setzero_ps(); 16];
    for p in 0..8 {
        t[2 * p] = _mm512_unpacklo_ps(x[2 * p], x[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(x[2 * p], x[2 * p + 1]);
    }
    // Groups of four rows: u[4g + e] holds, in lane L, column 4L + e of rows 4g..4g + 4.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        let (a, b, c, d) = (
            _mm512_castps_pd(a),
            _mm512_castps_pd(b),
            _mm512_castps_pd(c),
            _mm512_castps_pd(d),
        );
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    // Lane L of u[e], u[4 + e], u[8 + e], u[12 + e] is output row 4L + e.
    let mut out = [_mm512_setzero_ps(); 16];
    for e in 0..4 {
        let even = _mm512_shuffle_f32x4::<0b10_00_10_00>(u[e], u[4 + e]);
        let odd = _mm512_shuffle_f32x4::<0b11_01_11_01>(u[e], u[4 + e]);
        let even2 = _mm512_shuffle_f32x4::<0b10_00_10_00>(u[8 + e], u[12 + e]);
        let odd2 = _mm512_shuffle_f32x4::<0b11_01_11_01>(u[8 + e], u[12 + e]);
        out[e] = _mm512_shuffle_f32x4::<0b10_00_10_00>(even, even2);
        out[8 + e] = _mm512_shuffle_f32x4::<0b11_01_11_01>(even, even2);
        out[4 + e] = _mm512_shuffle_f32x4::<0b10_00_10_00>(odd, odd2);
        out[12 + e] = _mm512_shuffle_f32x4::<0b11_01_11_01>(odd, odd2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ragged shapes (partial blocks both ways, one row, one column): every element lands at
    /// its transposed place.
    #[test]
    fn matches_the_element_wise_transpose() {
        for &(rows, cols) in &[
            (1, 1),
            (1, 37),
            (37, 1),
            (16, 16),
            (17, 33),
            (100, 300),
            (5, 16),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let got = transpose(&src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        got[c * rows + r],
                        src[r * cols + c],
                        "{rows}×{cols} at {r},{c}"
                    );
                }
            }
        }
    }
}
