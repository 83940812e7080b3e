//! The GEMM's register tiles: `MR × NR` products of packed panels, stored row-major or
//! transposed, and narrower tiles for a ragged bottom edge.
#![allow(unsafe_code)]

use super::{MR, NR};
#[cfg(target_arch = "x86_64")]
use crate::vmath::lanes;

/// One `MR × NR` tile: `C = Apanel · Bpanel` (or `C +=` when `accumulate`), writing only the
/// first `rows × cols` values — row-major, or transposed (`cols` rows of `rows` values, see
/// [`store_transposed`]) when `TRANSPOSED`. The layout is a compile-time parameter: a
/// run-time branch in the kernel cost the blocks' products 5 %.
///
/// # Safety
/// AVX-512F must be available; `a` must hold `kc · MR` values, `b` `kc · NR`; `c` must be
/// valid for `rows` rows of `cols` values with row step `ldc` (`cols` rows of `rows` values
/// when `TRANSPOSED`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel<const TRANSPOSED: bool>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    if TRANSPOSED {
        let mut tile = std::mem::MaybeUninit::<[f32; MR * NR]>::uninit();
        let acc = tile.as_mut_ptr().cast::<f32>();
        // SAFETY: (caller) panels of `kc · MR` and `kc · NR` values; `tile` holds `MR` rows,
        // of which `dot_rows` writes the first `rows`; `c` is valid for `cols` rows of `rows`
        // values.
        unsafe {
            dot_rows(kc, a, b, acc, rows);
            store_transposed(acc, c, ldc, rows, cols, accumulate);
        }
        return;
    }
    let out = Out {
        c,
        ldc,
        rows,
        masks: (lanes(cols), lanes(cols.saturating_sub(16))),
        accumulate,
    };
    // SAFETY: (caller) as documented; `out` covers the tile's `rows × cols` outputs.
    unsafe {
        match rows {
            0..=4 => into_tile4(kc, a, b, out),
            5..=8 => into_tile8(kc, a, b, out),
            _ => into_tile(kc, a, b, out),
        }
    }
}

/// Where a row-major tile goes: `rows` rows of `c` (row step `ldc`), each masked to the
/// tile's columns (two 16-lane masks), added to what is there when `accumulate`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Out {
    c: *mut f32,
    ldc: usize,
    rows: usize,
    masks: (u16, u16),
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
impl Out {
    /// Row `i`'s two vectors `x`, `y` stored (or added), when `i < rows`.
    ///
    /// # Safety
    /// AVX-512F must be available; row `i < rows` of `c` holds the masked columns.
    #[inline(always)]
    unsafe fn row(&self, i: usize, x: std::arch::x86_64::__m512, y: std::arch::x86_64::__m512) {
        use std::arch::x86_64::*;
        if i >= self.rows {
            return;
        }
        let (m0, m1) = self.masks;
        // SAFETY: (caller) row `i` of the output, masked to its columns.
        unsafe {
            let p = self.c.add(i * self.ldc);
            let (mut x, mut y) = (x, y);
            if self.accumulate {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m0, p));
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m1, p.add(16)));
            }
            _mm512_mask_storeu_ps(p, m0, x);
            _mm512_mask_storeu_ps(p.add(16), m1, y);
        }
    }
}

/// `out` rows `0..rows` of the tile `Apanel · Bpanel` (at least those rows are written: 4, 8
/// or all `MR`), leaving the buffer uninitialised beyond — zeroing the whole tile first was
/// a 1.5 KB `memset` per call, 1.2 % of a training step's samples.
///
/// # Safety
/// AVX-512F must be available; `a` must hold `kc · MR` values, `b` `kc · NR`, `out` `MR · NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_rows(kc: usize, a: *const f32, b: *const f32, out: *mut f32, rows: usize) {
    // SAFETY: (caller) as documented.
    unsafe {
        match rows {
            0..=4 => dot_tile4(kc, a, b, Buf(out)),
            5..=8 => dot_tile8(kc, a, b, Buf(out)),
            _ => dot_tile(kc, a, b, Buf(out)),
        }
    }
}

/// Stores rows `0..rows` of the tile `acc` (`MR × NR`, row-major) transposed:
/// `c[j·ldc + i] = acc[i·NR + j]` (or `+=` when `accumulate`) for `i < rows`, `j < cols`,
/// through 16 × 16 register transposes (a scalar transposed store made the prototype map's
/// weight gradient slower than a separate transpose pass).
///
/// # Safety
/// AVX-512F must be available; `acc` must hold `rows` initialised rows of `NR` values; `c`
/// must be valid for `cols` rows of `rows` values with row step `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store_transposed(
    acc: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const _: () = assert!(MR <= 16 && NR.is_multiple_of(16));
    let rmask = lanes(rows);
    for half in 0..NR / 16 {
        if 16 * half >= cols {
            break;
        }
        let mut x = [_mm512_setzero_ps(); 16];
        for (i, xi) in x.iter_mut().enumerate().take(rows) {
            // SAFETY: (caller) row `i < rows` holds `NR` initialised values.
            *xi = unsafe { _mm512_loadu_ps(acc.add(i * NR + 16 * half)) };
        }
        let t = super::transpose::transpose16(x);
        for (j, tj) in t.iter().enumerate().take(cols - 16 * half) {
            // SAFETY: (caller) output row `16·half + j < cols` holds `rows` values.
            unsafe {
                let p = c.add((16 * half + j) * ldc);
                let v = if accumulate {
                    _mm512_add_ps(*tj, _mm512_maskz_loadu_ps(rmask, p))
                } else {
                    *tj
                };
                _mm512_mask_storeu_ps(p, rmask, v);
            }
        }
    }
}

/// The body of a register tile over the first rows of an A panel: row `i` (of `NR` values)
/// is `Σ_kk a[kk·MR + i] · b[kk·NR..]`, two accumulators per row, then each row handed to
/// `$dst.row(i, x, y)` — into a buffer ([`Buf`]), or straight into the output ([`Out`]) (a tile written to a
/// buffer and read back was 12 % of the kernel's samples).
#[cfg(target_arch = "x86_64")]
macro_rules! tile {
    ($kc:expr, $a:expr, $b:expr, $dst:expr; $(($i:literal, $x:ident, $y:ident)),*) => {{
        use std::arch::x86_64::*;
        $(let mut $x = _mm512_setzero_ps(); let mut $y = _mm512_setzero_ps();)*
        let (mut ap, mut bp) = ($a, $b);
        for _ in 0..$kc {
            // SAFETY: (caller) `kc` steps stay inside both panels.
            unsafe {
                let b0 = _mm512_loadu_ps(bp);
                let b1 = _mm512_loadu_ps(bp.add(16));
                $(
                    let s = _mm512_set1_ps(*ap.add($i));
                    $x = _mm512_fmadd_ps(s, b0, $x);
                    $y = _mm512_fmadd_ps(s, b1, $y);
                )*
                ap = ap.add(MR);
                bp = bp.add(NR);
            }
        }
        // SAFETY: (caller) the destination holds the tile's rows.
        unsafe { $($dst.row($i, $x, $y);)* }
    }};
}

/// A tile's rows written to a buffer of `MR` rows of `NR` values (row `i` at `i · NR`).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Buf(*mut f32);

#[cfg(target_arch = "x86_64")]
impl Buf {
    /// Row `i`'s two vectors.
    ///
    /// # Safety
    /// AVX-512F must be available; the buffer holds row `i`.
    #[inline(always)]
    unsafe fn row(&self, i: usize, x: std::arch::x86_64::__m512, y: std::arch::x86_64::__m512) {
        use std::arch::x86_64::_mm512_storeu_ps;
        // SAFETY: (caller) row `i` of the buffer.
        unsafe {
            _mm512_storeu_ps(self.0.add(i * NR), x);
            _mm512_storeu_ps(self.0.add(i * NR + 16), y);
        }
    }
}

/// The tiles of 12, 8 and 4 rows (the narrower ones for a panel at the bottom edge: M = 100
/// leaves 4 rows in its ninth tile, and the full tile spent three times the work on them),
/// into a buffer and into the output.
///
/// # Safety (all six)
/// AVX-512F must be available; `a` must hold `kc · MR` values, `b` `kc · NR`; the
/// destination the tile's rows.
macro_rules! tiles {
    ($($name:ident, $dst:ty: $(($i:literal, $x:ident, $y:ident)),*;)*) => {$(
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $name(kc: usize, a: *const f32, b: *const f32, dst: $dst) {
            tile!(kc, a, b, dst; $(($i, $x, $y)),*);
        }
    )*};
}

tiles! {
    dot_tile, Buf: (0, c0, d0), (1, c1, d1), (2, c2, d2), (3, c3, d3), (4, c4, d4),
        (5, c5, d5), (6, c6, d6), (7, c7, d7), (8, c8, d8), (9, c9, d9), (10, c10, d10),
        (11, c11, d11);
    dot_tile8, Buf: (0, c0, d0), (1, c1, d1), (2, c2, d2), (3, c3, d3), (4, c4, d4),
        (5, c5, d5), (6, c6, d6), (7, c7, d7);
    dot_tile4, Buf: (0, c0, d0), (1, c1, d1), (2, c2, d2), (3, c3, d3);
    into_tile, Out: (0, c0, d0), (1, c1, d1), (2, c2, d2), (3, c3, d3), (4, c4, d4),
        (5, c5, d5), (6, c6, d6), (7, c7, d7), (8, c8, d8), (9, c9, d9), (10, c10, d10),
        (11, c11, d11);
    into_tile8, Out: (0, c0, d0), (1, c1, d1), (2, c2, d2), (3, c3, d3), (4, c4, d4),
        (5, c5, d5), (6, c6, d6), (7, c7, d7);
    into_tile4, Out: (0, c0, d0), (1, c1, d1), (2, c2, d2), (3, c3, d3);
}

/// Never called: [`super::available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn store_transposed(
    _: *const f32,
    _: *mut f32,
    _: usize,
    _: usize,
    _: usize,
    _: bool,
) {
    unreachable!("gemm::available() is false off x86-64")
}

/// Never called: [`super::available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel<const TRANSPOSED: bool>(
    _: usize,
    _: *const f32,
    _: *const f32,
    _: *mut f32,
    _: usize,
    _: usize,
    _: usize,
    _: bool,
) {
    unreachable!("gemm::available() is false off x86-64")
}
