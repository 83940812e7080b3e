//! Products and transposes of the small matrices of one attention group (a few dozen query
//! rows, a hundred-odd keys, 64-wide heads): register tiles of up to 6 rows × 64 columns with
//! AVX-512 where the CPU has it, plain loops elsewhere. The fused attention used one dot
//! product per score and one scaled row sum per output row, each ending in a horizontal
//! reduction or a read-modify-write of the output row; as tiles, the scores of a row block
//! stay in registers for the whole inner dimension.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::gemm::View;

use crate::qkernels::avx512;
#[cfg(target_arch = "x86_64")]
use crate::vmath::lanes;

/// Rows of the register tile.
const TR: usize = 6;
/// Columns of the register tile (four 16-lane vectors).
const TC: usize = 64;

/// `c[i·ldc + j] = Σₖ a(i, k) · b[k·ldb + j]` (or `+=` when `accumulate`) for `i < m`,
/// `j < n`, `k < depth` (`a` is `m × depth`, any strides; `b` and `c` row-major).
///
/// # Panics
/// When an operand is too short for its shape.
pub(crate) fn product(
    a: View<'_>,
    n: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (m, depth) = (a.rows, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if depth == 0 {
        // An empty sum (attention over a cache with no prefix yet): `b` may be empty, and
        // the tile kernels take their column offsets into it.
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        a.in_bounds()
            && (depth == 0 || (depth - 1) * ldb + n <= b.len())
            && (m - 1) * ldc + n <= c.len(),
        "tiles::product: operands shorter than {m} × {depth} · {depth} × {n}"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512 F is available (checked); the assertion bounds every tile's reads
        // (`a` rows `< m`, columns `< depth`; `b` rows `< depth`, columns `< n`) and writes.
        unsafe { product512(a, n, b, ldb, c, ldc, accumulate) };
        return;
    }
    product_portable(a, n, b, ldb, c, ldc, accumulate);
}

/// [`product`] as plain loops (bounds checked by the caller).
fn product_portable(
    a: View<'_>,
    n: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (m, depth) = (a.rows, a.cols);
    for i in 0..m {
        let row = &mut c[i * ldc..][..n];
        if !accumulate {
            row.fill(0.0);
        }
        for k in 0..depth {
            let s = a.data[a.offset + i * a.rs + k * a.cs];
            for (o, &x) in row.iter_mut().zip(&b[k * ldb..][..n]) {
                *o += s * x;
            }
        }
    }
}

/// [`product`] in register tiles, column blocks outermost (a `depth × 64` block of `b` stays
/// in L1 while the row tiles pass over it).
///
/// # Safety
/// AVX-512 F must be available; shapes as asserted by [`product`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product512(
    a: View<'_>,
    n: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (m, depth) = (a.rows, a.cols);
    for j0 in (0..n).step_by(TC) {
        let width = TC.min(n - j0);
        let vectors = width.div_ceil(16);
        let mask = lanes(width - 16 * (vectors - 1));
        for i0 in (0..m).step_by(TR) {
            let rows = TR.min(m - i0);
            let t = Tile {
                depth,
                a: a.data[a.offset + i0 * a.rs..].as_ptr(),
                ars: a.rs,
                acs: a.cs,
                b: b[j0..].as_ptr(),
                ldb,
                c: c[i0 * ldc + j0..].as_mut_ptr(),
                ldc,
                mask,
                accumulate,
            };
            // SAFETY: (caller) the tile's `rows × width` block and its operands lie inside
            // the bounds asserted by `product`.
            unsafe {
                macro_rules! dispatch {
                    ($($r:literal),*) => {
                        match (rows, vectors) {
                            $(
                                ($r, 1) => t.run::<$r, 1>(),
                                ($r, 2) => t.run::<$r, 2>(),
                                ($r, 3) => t.run::<$r, 3>(),
                                ($r, _) => t.run::<$r, 4>(),
                            )*
                            _ => unreachable!("at most {TR} rows"),
                        }
                    };
                }
                dispatch!(1, 2, 3, 4, 5, 6);
            }
        }
    }
}

/// One register tile's operands (see [`Tile::run`]).
#[cfg(target_arch = "x86_64")]
struct Tile {
    depth: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    /// Lanes of the last vector inside the matrix.
    mask: __mmask16,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
impl Tile {
    /// `R` rows × `V` vectors of `c` (the last vector masked): `R · V` accumulators over the
    /// whole depth, one broadcast of `a` per row and one load of `b` per vector each step.
    ///
    /// # Safety
    /// AVX-512 F must be available; `a(i, k)` readable at `a + i·ars + k·acs` for `i < R`,
    /// `k < depth`; `b` and `c` hold the tile's `depth` and `R` rows of the masked columns.
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const R: usize, const V: usize>(&self) {
        let mut x = [[_mm512_setzero_ps(); V]; R];
        let (mut ap, mut bp) = (self.a, self.b);
        for _ in 0..self.depth {
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                let m = if v + 1 == V { self.mask } else { 0xFFFF };
                // SAFETY: (caller) the masked lanes of row `k` of the block.
                *bv = unsafe { _mm512_maskz_loadu_ps(m, bp.add(16 * v)) };
            }
            for (r, xr) in x.iter_mut().enumerate() {
                // SAFETY: (caller) `a(r, k)` for `r < R`.
                let s = _mm512_set1_ps(unsafe { *ap.add(r * self.ars) });
                for (acc, &bv) in xr.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(s, bv, *acc);
                }
            }
            // Past the last step the pointers may leave the operands: they are not read then.
            ap = ap.wrapping_add(self.acs);
            bp = bp.wrapping_add(self.ldb);
        }
        for (r, xr) in x.iter().enumerate() {
            for (v, &acc) in xr.iter().enumerate() {
                let m = if v + 1 == V { self.mask } else { 0xFFFF };
                // SAFETY: (caller) row `r < R`, the masked lanes of vector `v`.
                unsafe {
                    let p = self.c.add(r * self.ldc + 16 * v);
                    let val = if self.accumulate {
                        _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, p))
                    } else {
                        acc
                    };
                    _mm512_mask_storeu_ps(p, m, val);
                }
            }
        }
    }
}

/// `dst[j·ld + col0 + i] = src[i·width + j]` for `i < rows`, `j < width`: the `rows × width`
/// row-major `src` written transposed into columns `col0..col0 + rows` of `dst` (row step
/// `ld`) — keys and values turned so that the products above read them along rows.
///
/// # Panics
/// When `src` or `dst` is too short.
pub(crate) fn transpose_into(
    src: &[f32],
    rows: usize,
    width: usize,
    dst: &mut [f32],
    ld: usize,
    col0: usize,
) {
    if rows == 0 || width == 0 {
        return;
    }
    assert!(
        src.len() >= rows * width && (width - 1) * ld + col0 + rows <= dst.len(),
        "tiles::transpose_into: {rows} × {width} does not fit"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512 F is available (checked); bounds asserted.
        unsafe { transpose512(src, rows, width, dst, ld, col0) };
        return;
    }
    transpose_portable(src, rows, width, dst, ld, col0);
}

/// [`transpose_into`] element by element (bounds checked by the caller).
fn transpose_portable(
    src: &[f32],
    rows: usize,
    width: usize,
    dst: &mut [f32],
    ld: usize,
    col0: usize,
) {
    for i in 0..rows {
        for j in 0..width {
            dst[j * ld + col0 + i] = src[i * width + j];
        }
    }
}

/// [`transpose_into`] through 16 × 16 register blocks, partial blocks masked.
///
/// # Safety
/// AVX-512 F must be available; bounds as asserted by [`transpose_into`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose512(
    src: &[f32],
    rows: usize,
    width: usize,
    dst: &mut [f32],
    ld: usize,
    col0: usize,
) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for i0 in (0..rows).step_by(16) {
        let height = (rows - i0).min(16);
        for j0 in (0..width).step_by(16) {
            let w = (width - j0).min(16);
            let mut x = [_mm512_setzero_ps(); 16];
            for (i, xi) in x.iter_mut().enumerate().take(height) {
                // SAFETY: (caller) row `i0 + i < rows`, columns `j0..j0 + w`.
                *xi = unsafe { _mm512_maskz_loadu_ps(lanes(w), s.add((i0 + i) * width + j0)) };
            }
            let t = crate::gemm::transpose16(x);
            for (j, tj) in t.iter().enumerate().take(w) {
                // SAFETY: (caller) output row `j0 + j < width`, columns `col0 + i0..` + height.
                unsafe {
                    _mm512_mask_storeu_ps(d.add((j0 + j) * ld + col0 + i0), lanes(height), *tj)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1009) as f32 / 1009.0 - 0.5)
            .collect()
    }

    /// Ragged shapes (partial row tiles, partial and several column blocks, depth 0 and 1),
    /// `a` row-major and transposed, assigned and accumulated, both implementations: within
    /// f32 rounding of f64 sums, and columns past `n` untouched.
    #[test]
    fn products_match_f64_sums() {
        for &(m, n, depth) in &[
            (1, 1, 1),
            (36, 112, 64),
            (7, 17, 3),
            (13, 130, 36),
            (12, 64, 36),
            (5, 48, 0),
            // Depth 0 over several column blocks: `b` is empty (Gemma's 256-wide heads
            // attending to an empty cache prefix).
            (5, 130, 0),
        ] {
            for a_transposed in [false, true] {
                for accumulate in [false, true] {
                    let ad = values(m * depth, 1);
                    let a = if a_transposed {
                        View::strided(&ad, m, depth, 1, m)
                    } else {
                        View::strided(&ad, m, depth, depth, 1)
                    };
                    let ldb = n + 3;
                    let b = values(depth * ldb, 2);
                    let ldc = n + 5;
                    let start = values(m * ldc, 3);
                    let mut c = start.clone();
                    product(a, n, &b, ldb, &mut c, ldc, accumulate);
                    let mut portable = start.clone();
                    product_portable(a, n, &b, ldb, &mut portable, ldc, accumulate);
                    for (c, portable) in [(&c, false), (&portable, true)] {
                        for i in 0..m {
                            for j in 0..ldc {
                                let got = c[i * ldc + j];
                                if j >= n {
                                    assert_eq!(got, start[i * ldc + j], "column {j} past {n}");
                                    continue;
                                }
                                let mut want: f64 = (0..depth)
                                    .map(|k| ad[i * a.rs + k * a.cs] as f64 * b[k * ldb + j] as f64)
                                    .sum();
                                if accumulate {
                                    want += start[i * ldc + j] as f64;
                                }
                                assert!(
                                    (got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                                    "{m}×{n}×{depth} ({i}, {j}), portable {portable}: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Partial 16 × 16 blocks both ways, written at a column offset: every element lands at
    /// its transposed place and nothing else changes.
    #[test]
    fn transpose_into_places_every_element() {
        for &(rows, width) in &[(1, 1), (100, 64), (12, 64), (17, 33), (3, 40)] {
            let src = values(rows * width, 4);
            let (ld, col0) = (rows + 9, 4);
            let mut dst = vec![f32::NAN; width * ld];
            transpose_into(&src, rows, width, &mut dst, ld, col0);
            let mut portable = vec![f32::NAN; width * ld];
            transpose_portable(&src, rows, width, &mut portable, ld, col0);
            assert_eq!(
                dst.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                portable.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{rows}×{width}: the two implementations differ"
            );
            for j in 0..width {
                for x in 0..ld {
                    let got = dst[j * ld + x];
                    if (col0..col0 + rows).contains(&x) {
                        assert_eq!(got, src[(x - col0) * width + j], "{rows}×{width}");
                    } else {
                        assert!(got.is_nan(), "{rows}×{width}: wrote outside at {j}, {x}");
                    }
                }
            }
        }
    }
}
