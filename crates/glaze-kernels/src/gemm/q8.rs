//! The 8-bit right operand of [`super`]'s products: [`Q8Matrix`] (row-major 8-bit values,
//! one `f32` scale per 32 — a GGUF Q8_0 table), dequantized while packing its panels, and the
//! column-panel copy made for products with its transpose.
#![allow(unsafe_code)]

use super::{NR, Rhs, View, available, product, product_each};

/// A row-major `rows × cols` matrix of 8-bit values with one `f32` scale per 32 consecutive
/// values of a row: element `(i, j)` is `q[i·cols + j] as f32 · scales[(i·cols + j) / 32]`
/// (a GGUF Q8_0 table with its scales widened to `f32`).
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
    /// The same values as `NR`-row panels read down the columns, made by the first
    /// transposed product (see [`ColumnPanels`]).
    by_column: std::sync::OnceLock<ColumnPanels>,
    /// `Mᵀ·M`, made on first use ([`Q8Matrix::column_gram`]).
    gram: std::sync::OnceLock<Vec<f32>>,
}

/// A [`Q8Matrix`] regrouped for products with its transpose: panel `p` holds rows
/// `32p..32p + 32` (zero rows beyond the matrix), column by column — `q[(p·cols + j)·32 + n]`
/// is element `(32p + n, j)` and `scales[(p·cols/32 + b)·32 + n]` the scale of row `32p + n`,
/// block `b`. A transposed B panel is then read front to back instead of gathered.
#[derive(Debug, Clone)]
struct ColumnPanels {
    q: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Matrix {
    /// The matrix, or `None` when `cols` is not a multiple of 32 or the lengths disagree.
    pub fn new(rows: usize, cols: usize, q: Vec<i8>, scales: Vec<f32>) -> Option<Self> {
        let ok = cols.is_multiple_of(32)
            && rows.checked_mul(cols) == Some(q.len())
            && scales.len() == q.len() / 32;
        ok.then_some(Q8Matrix {
            rows,
            cols,
            q,
            scales,
            by_column: std::sync::OnceLock::new(),
            gram: std::sync::OnceLock::new(),
        })
    }

    /// The Gram matrix of the columns, `Mᵀ·M` (`cols × cols`, row-major), made on first use:
    /// for any `X [r, cols]`, `‖X·Mᵀ‖² = Σ (X·G) ∘ X` — the squared norm of a product with
    /// `Mᵀ` without the product (an optimizer clipping a gradient it has not formed yet).
    /// Summed in `f64` over blocks of rows, each block's products in `f32` by the GEMM.
    /// `None` when the kernel is unavailable.
    pub fn column_gram(&self) -> Option<&[f32]> {
        if !available() {
            return None;
        }
        let gram = self.gram.get_or_init(|| {
            const BLOCK: usize = 2048;
            let c = self.cols;
            let mut acc = vec![0f64; c * c];
            let mut rows = Vec::with_capacity(BLOCK * c);
            for i0 in (0..self.rows).step_by(BLOCK) {
                let i1 = (i0 + BLOCK).min(self.rows);
                rows.clear();
                rows.extend((i0 * c..i1 * c).map(|x| self.q[x] as f32 * self.scales[x / 32]));
                let v = View::row_major(&rows, i1 - i0, c);
                for (s, x) in acc.iter_mut().zip(product(v.t(), v, false)) {
                    *s += x as f64;
                }
            }
            acc.into_iter().map(|x| x as f32).collect()
        });
        Some(gram)
    }

    fn column_panels(&self) -> &ColumnPanels {
        self.by_column.get_or_init(|| {
            let (cols, bpr) = (self.cols, self.cols / 32);
            let panels = self.rows.div_ceil(NR);
            let mut q = vec![0i8; panels * cols * NR];
            let mut scales = vec![0f32; panels * bpr * NR];
            for i in 0..self.rows {
                let (p, n) = (i / NR, i % NR);
                for (j, &v) in self.q[i * cols..(i + 1) * cols].iter().enumerate() {
                    q[(p * cols + j) * NR + n] = v;
                }
                for (b, &s) in self.scales[i * bpr..(i + 1) * bpr].iter().enumerate() {
                    scales[(p * bpr + b) * NR + n] = s;
                }
            }
            ColumnPanels { q, scales }
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        let at = i * self.cols + j;
        self.q[at] as f32 * self.scales[at / 32]
    }

    /// All elements, row-major `f32`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.q
            .chunks_exact(32)
            .zip(&self.scales)
            .flat_map(|(q, &s)| q.iter().map(move |&v| v as f32 * s))
            .collect()
    }

    /// Rows `i..i + rows`, columns `j0..j0 + 32·blocks` (`j0` a multiple of 32) as `blocks`
    /// B panels of `rows` rows each, read row by row.
    fn dequantize_slab(&self, i: usize, j0: usize, rows: usize, blocks: usize, out: &mut [f32]) {
        if rows == 0 || blocks == 0 {
            return;
        }
        let first = i * self.cols + j0;
        assert!(
            j0.is_multiple_of(32)
                && j0 + 32 * blocks <= self.cols
                && first + (rows - 1) * self.cols + 32 * blocks <= self.q.len()
                && out.len() >= rows * 32 * blocks
        );
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX-512F is available; the assertion above bounds every block read and
            // written.
            unsafe {
                dequantize_rows(
                    self.q[first..].as_ptr(),
                    self.scales[first / 32..].as_ptr(),
                    rows,
                    blocks,
                    self.cols,
                    out.as_mut_ptr(),
                )
            };
            return;
        }
        for r in 0..rows {
            for b in 0..blocks {
                let at = first + r * self.cols + 32 * b;
                let s = self.scales[at / 32];
                let o = &mut out[(b * rows + r) * 32..][..32];
                for (o, &q) in o.iter_mut().zip(&self.q[at..at + 32]) {
                    *o = q as f32 * s;
                }
            }
        }
    }
}

/// `out[(b·count + t)·32 + j] = q[t·step + 32b + j] · scales[(t·step + 32b) / 32]` for
/// `t < count`, `b < blocks`, `j < 32`: row `t`'s `blocks` consecutive blocks into as many
/// panels of `count` rows.
///
/// # Safety
/// AVX-512F must be available; `step` must be a multiple of 32, `q` must hold
/// `(count − 1)·step + 32·blocks` values, `scales` the matching blocks and `out`
/// `32·count·blocks`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dequantize_rows(
    q: *const i8,
    scales: *const f32,
    count: usize,
    blocks: usize,
    step: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    for t in 0..count {
        for b in 0..blocks {
            // SAFETY: (caller) block `b` of row `t` has 32 quants, a scale and 32 output slots.
            unsafe {
                let at = t * step + 32 * b;
                let scale = _mm512_set1_ps(*scales.add(at / 32));
                let o = out.add((b * count + t) * 32);
                for h in 0..2 {
                    let bytes = _mm_loadu_si128(q.add(at + 16 * h).cast());
                    let v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
                    _mm512_storeu_ps(o.add(16 * h), _mm512_mul_ps(v, scale));
                }
            }
        }
    }
}

/// One transposed B panel from a [`ColumnPanels`] panel: row `kk` of `out` is matrix column
/// `d0 + kk` across the panel's `NR` rows, `q[kk·NR + n] · scales[((d0 + kk) / 32)·NR + n]`.
fn dequantize_columns(q: &[i8], scales: &[f32], d0: usize, out: &mut [f32]) {
    let kc = q.len() / NR;
    assert!(out.len() >= kc * NR && scales.len() >= (d0 + kc).div_ceil(32) * NR);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F is available; the assertion bounds every read and write.
        unsafe { dequantize_columns512(q, scales, d0, out) };
        return;
    }
    for (kk, (o, q)) in out.chunks_exact_mut(NR).zip(q.chunks_exact(NR)).enumerate() {
        let s = &scales[(d0 + kk) / 32 * NR..][..NR];
        for n in 0..NR {
            o[n] = q[n] as f32 * s[n];
        }
    }
}

/// [`dequantize_columns`] with AVX-512.
///
/// # Safety
/// AVX-512F must be available; bounds as asserted by [`dequantize_columns`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dequantize_columns512(q: &[i8], scales: &[f32], d0: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let kc = q.len() / NR;
    let (q, s, o) = (q.as_ptr(), scales.as_ptr(), out.as_mut_ptr());
    for kk in 0..kc {
        // SAFETY: (caller) row `kk` has `NR` quants and outputs; its block's `NR` scales exist.
        unsafe {
            let sb = s.add((d0 + kk) / 32 * NR);
            for h in 0..2 {
                let bytes = _mm_loadu_si128(q.add(kk * NR + 16 * h).cast());
                let v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
                let scale = _mm512_loadu_ps(sb.add(16 * h));
                _mm512_storeu_ps(o.add(kk * NR + 16 * h), _mm512_mul_ps(v, scale));
            }
        }
    }
}

/// A [`Q8Matrix`] window as a right operand: `B[k, j]` is element `(r0 + k, c0 + j)` of the
/// matrix, or `(c0 + j, r0 + k)` when `transposed`.
#[derive(Clone, Copy)]
struct Q8View<'a> {
    m: &'a Q8Matrix,
    transposed: bool,
    r0: usize,
    c0: usize,
    width: usize,
}

impl Q8View<'_> {
    fn at(&self, k: usize, j: usize) -> f32 {
        if self.transposed {
            self.m.at(self.c0 + j, self.r0 + k)
        } else {
            self.m.at(self.r0 + k, self.c0 + j)
        }
    }
}

impl Rhs for Q8View<'_> {
    fn width(&self) -> usize {
        self.width
    }
    fn sub_rows(self, lo: usize, _hi: usize) -> Self {
        Q8View {
            r0: self.r0 + lo,
            ..self
        }
    }
    fn sub_cols(self, lo: usize, hi: usize) -> Self {
        Q8View {
            c0: self.c0 + lo,
            width: hi - lo,
            ..self
        }
    }
    fn pack_slab(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let np = nc.div_ceil(NR);
        if !self.transposed && nc.is_multiple_of(NR) && (self.c0 + j0).is_multiple_of(32) {
            // Whole blocks: the slab's rows are read front to back, each row's blocks written
            // to their panels (read panel by panel, the rows' bytes came 576 apart and the
            // loads waited on memory: 18 % of a single-thread profile).
            self.m
                .dequantize_slab(self.r0 + k0, self.c0 + j0, kc, np, &mut dst[..np * kc * NR]);
            return;
        }
        for (p, panel) in dst.chunks_exact_mut(kc * NR).take(np).enumerate() {
            let j = j0 + p * NR;
            let cols = NR.min(j0 + nc - j);
            if !self.transposed && cols == NR && (self.c0 + j).is_multiple_of(32) {
                // Each panel row is one block of a matrix row.
                self.m
                    .dequantize_slab(self.r0 + k0, self.c0 + j, kc, 1, panel);
            } else if self.transposed && (self.c0 + j).is_multiple_of(NR) {
                // Matrix rows `c0 + j..` are one column panel, read front to back.
                let cp = self.m.column_panels();
                let (cols, bpr) = (self.m.cols, self.m.cols / 32);
                let p = (self.c0 + j) / NR;
                let d0 = self.r0 + k0;
                let q = &cp.q[(p * cols + d0) * NR..(p * cols + d0 + kc) * NR];
                let scales = &cp.scales[p * bpr * NR..(p + 1) * bpr * NR];
                dequantize_columns(q, scales, d0, panel);
            } else {
                panel.fill(0.0);
                for kk in 0..kc {
                    for jj in 0..cols {
                        panel[kk * NR + jj] = self.at(k0 + kk, j + jj);
                    }
                }
            }
        }
    }
}

/// `A · B` with `B` the [`Q8Matrix`] `m` (or `mᵀ` when `transposed`), row-major; `None`
/// when the kernel is unavailable or the shapes disagree. Equal to [`super::matmul`] on the
/// dequantized matrix: the packed panels hold the same values.
pub fn matmul_q8(a: View, m: &Q8Matrix, transposed: bool) -> Option<Vec<f32>> {
    q8_product(a, m, transposed, false)
}

/// [`matmul_q8`]'s product transposed (`(A · B)ᵀ`, row-major), each register tile stored
/// transposed — no separate transpose pass.
pub fn matmul_q8_out_t(a: View, m: &Q8Matrix, transposed: bool) -> Option<Vec<f32>> {
    q8_product(a, m, transposed, true)
}

/// [`matmul_q8_out_t`] handed to `consume` in blocks of whole rows as soon as they are final
/// (`consume(j0, rows)`: rows `j0..` of `(A · B)ᵀ`, `a.rows` values each, on the thread that
/// computed them; disjoint blocks covering every row once, the same values bit for bit)
/// instead of returned — an optimizer can update a parameter from its gradient while the
/// gradient is in L1, and the gradient is never stored whole. `false` when the kernel is
/// unavailable or the shapes disagree (then `consume` is not called).
pub fn matmul_q8_out_t_each(
    a: View,
    m: &Q8Matrix,
    transposed: bool,
    consume: &(dyn Fn(usize, &[f32]) + Sync),
) -> bool {
    match q8_view(a, m, transposed) {
        Some(b) => {
            product_each(a, b, consume);
            true
        }
        None => false,
    }
}

fn q8_product(a: View, m: &Q8Matrix, transposed: bool, out_t: bool) -> Option<Vec<f32>> {
    q8_view(a, m, transposed).map(|b| product(a, b, out_t))
}

/// `m` (or `mᵀ`) as the right operand of `a`, when the kernel runs and the shapes agree.
fn q8_view<'m>(a: View, m: &'m Q8Matrix, transposed: bool) -> Option<Q8View<'m>> {
    let (depth, width) = if transposed {
        (m.cols, m.rows)
    } else {
        (m.rows, m.cols)
    };
    if !available() || a.cols != depth || !a.in_bounds() {
        return None;
    }
    Some(Q8View {
        m,
        transposed,
        r0: 0,
        c0: 0,
        width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    fn q8(rows: usize, cols: usize, seed: u32) -> Q8Matrix {
        let q: Vec<i8> = values(rows * cols, seed)
            .iter()
            .map(|v| (v * 127.0) as i8)
            .collect();
        let scales = values(rows * cols / 32, seed + 1)
            .iter()
            .map(|v| v * 0.01 + 0.002)
            .collect();
        Q8Matrix::new(rows, cols, q, scales).expect("valid")
    }

    /// The transposed product handed over in blocks: every row exactly once, bit for bit the
    /// returned product's — with one slab (the blocks come from the panel loop, on both
    /// threads), a ragged last panel, and the shapes that fall back to the whole product
    /// (depth beyond one slab, more rows than one block of A).
    #[test]
    fn blocks_of_the_transposed_product_cover_it() {
        if !available() {
            return;
        }
        // (a rows, matrix rows, matrix cols): the product is `A · Mᵀ`, depth = cols.
        for &(m, rows, cols) in &[(100, 1000, 576), (7, 45, 64), (13, 300, 800), (800, 70, 32)] {
            let mat = q8(rows, cols, 7);
            let ad = values(m * cols, 9);
            let a = View::row_major(&ad, m, cols);
            let want = matmul_q8_out_t(a, &mat, true).expect("available");
            let got = std::sync::Mutex::new(vec![f32::NAN; rows * m]);
            let seen = std::sync::Mutex::new(vec![0u8; rows]);
            let consume = |r0: usize, block: &[f32]| {
                assert_eq!(block.len() % m, 0, "whole rows");
                let n = block.len() / m;
                got.lock().expect("not poisoned")[r0 * m..(r0 + n) * m].copy_from_slice(block);
                seen.lock().expect("not poisoned")[r0..r0 + n]
                    .iter_mut()
                    .for_each(|s| *s += 1);
            };
            assert!(matmul_q8_out_t_each(a, &mat, true, &consume));
            assert!(
                seen.into_inner()
                    .expect("not poisoned")
                    .iter()
                    .all(|&s| s == 1),
                "{m}×{rows}×{cols}: each row once"
            );
            assert!(
                got.into_inner().expect("not poisoned") == want,
                "{m}×{rows}×{cols}: the same values"
            );
        }
    }

    /// The Gram matrix of the columns against a sum in `f64` over the dequantized rows.
    #[test]
    fn column_gram_is_the_gram_matrix() {
        if !available() {
            return;
        }
        let (rows, cols) = (4500, 64);
        let mat = q8(rows, cols, 11);
        let e = mat.dequantize();
        let g = mat.column_gram().expect("available");
        for i in 0..cols {
            for j in 0..cols {
                let want: f64 = (0..rows)
                    .map(|r| e[r * cols + i] as f64 * e[r * cols + j] as f64)
                    .sum();
                let got = g[i * cols + j] as f64;
                // Rounding relative to the entry's Cauchy–Schwarz bound `√(G_ii·G_jj)`.
                let scale = (g[i * cols + i] as f64 * g[j * cols + j] as f64).sqrt();
                assert!(
                    (got - want).abs() <= 1e-6 * scale,
                    "({i}, {j}): {got} vs {want}"
                );
            }
        }
    }

    /// The 8-bit operand, as is and transposed (ragged widths, several slabs, every split),
    /// gives bit for bit the product of its dequantized `f32` matrix.
    #[test]
    fn q8_operand_equals_its_dequantized_matrix() {
        if !available() {
            return;
        }
        // (a rows, matrix rows, matrix cols)
        for &(m, rows, cols) in &[
            (1, 32, 32),
            (7, 45, 64),
            (100, 1000, 96),
            (13, 300, 800),
            (100, 2000, 576),
        ] {
            let mat = q8(rows, cols, 3);
            let deq = mat.dequantize();
            for transposed in [false, true] {
                let (depth, width) = if transposed {
                    (cols, rows)
                } else {
                    (rows, cols)
                };
                let ad = values(m * depth, 5);
                let a = View::row_major(&ad, m, depth);
                let dense = View::row_major(&deq, rows, cols);
                let dense = if transposed { dense.t() } else { dense };
                let want = product(a, dense, false);
                let got = matmul_q8(a, &mat, transposed).expect("available");
                assert_eq!(got.len(), m * width);
                let got_t = matmul_q8_out_t(a, &mat, transposed).expect("available");
                for i in 0..m {
                    for j in 0..width {
                        assert!(got_t[j * m + i] == got[i * width + j], "transposed output");
                    }
                }
                assert!(
                    got == want,
                    "m={m} {rows}x{cols} transposed={transposed}: differs from the f32 matrix"
                );
            }
        }
        assert!(matmul_q8(View::row_major(&[0.0; 6], 2, 3), &q8(32, 32, 1), false).is_none());
        assert!(!matmul_q8_out_t_each(
            View::row_major(&[0.0; 6], 2, 3),
            &q8(32, 32, 1),
            true,
            &|_, _| panic!("no block for disagreeing shapes"),
        ));
        assert!(Q8Matrix::new(2, 30, vec![0; 60], vec![0.0; 1]).is_none());
        assert!(Q8Matrix::new(2, 32, vec![0; 64], vec![0.0; 1]).is_none());
    }
}
