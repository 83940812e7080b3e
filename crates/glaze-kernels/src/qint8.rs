//! Decode matvecs with activations quantized to 8 bits (AVX-512 VNNI).
//!
//! [`crate::qkernels`] multiplies quantized weights with f32 activations: every 4-bit weight
//! is widened to a float before its FMA, ≈ 12 instructions per 32-weight block. Here the
//! activations of each 32-value block are rounded to `i8` with one f32 scale (`d = max|x|/127`,
//! as llama.cpp's Q8 activations), and `vpdpbusd` multiplies 64 weight bytes by 64 activation
//! bytes and sums them in groups of four in one instruction: four Q4 blocks cost ≈ 14
//! instructions instead of ≈ 48. The result is exactly `W · x̂`, where `x̂` is the dequantized
//! activation (up to f32 summation order), so the only new error is the rounding of `x`
//! (relative ≤ 1/254 per value): what it does to SmolLM2's logits is tested in
//! `tests/it/quantized.rs` and stated in `docs/benchmarks.md`.
//!
//! CPUs with AVX-512 F/BW/VL/VNNI run the `vpdpbusd` kernels, CPUs with AVX2 the
//! `vpmaddubsw` ones (checked at run time, [`available`]); elsewhere
//! [`crate::qmatmul::QMatrix::matmul_act`] keeps the f32-activation kernels. The
//! `unsafe` here is confined like in `qkernels.rs`: `#[target_feature]` functions run only
//! after the feature check, and every load reads inside a slice whose length was asserted
//! (tails use masked loads, which never touch masked-out bytes).
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::f16;

use crate::qkernels::Kind;
#[cfg(target_arch = "x86_64")]
use crate::qkernels::h2f;

/// Whether the int8-activation kernels can run here (AVX-512 VNNI, or AVX2).
pub fn available() -> bool {
    vnni() || avx2()
}

/// Whether the AVX-512 VNNI kernels can run here.
pub fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX2 kernels (`vpmaddubsw` + `vpmaddwd`, llama.cpp's AVX2 scheme) can run here.
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernels [`rows_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The best the CPU has.
    Best,
    /// The AVX2 kernels even where AVX-512 VNNI exists (tests).
    Avx2,
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to an integer.
const ROUND: f32 = 12_582_912.0;

/// `n` inputs of `bpr` 32-value blocks, each block rounded to `i8` with one scale.
#[derive(Debug, Clone)]
pub struct QInput {
    n: usize,
    bpr: usize,
    /// Per input, groups of four blocks: the first 16 values of each of the four blocks, then
    /// their last 16 (the order of a Q4 block's low and high nibbles); zero-padded to whole
    /// groups. `bpr4 · 32` bytes per input.
    q4: Vec<i8>,
    /// Per input, the blocks in order, zero-padded to an even count (`bpr2 · 32` bytes).
    q8: Vec<i8>,
    /// Per input, the block scales, zero-padded to `bpr4`.
    d: Vec<f32>,
    /// Per input, `d · Σ q` of each block (the block sum of the rounded values), zero-padded
    /// to `bpr4`.
    s: Vec<f32>,
}

impl QInput {
    /// Rounds `n` row-major inputs of `cols = 32 · bpr` values.
    pub fn new(x: &[f32], n: usize, cols: usize) -> Self {
        assert!(
            cols.is_multiple_of(32) && x.len() == n * cols,
            "invariant: x is [n, cols]"
        );
        let bpr = cols / 32;
        let (bpr4, bpr2) = (bpr.next_multiple_of(4), bpr.next_multiple_of(2));
        let mut out = QInput {
            n,
            bpr,
            q4: vec![0; n * bpr4 * 32],
            q8: vec![0; n * bpr2 * 32],
            d: vec![0.0; n * bpr4],
            s: vec![0.0; n * bpr4],
        };
        for k in 0..n {
            for b in 0..bpr {
                let xb = &x[k * cols + b * 32..k * cols + b * 32 + 32];
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d > 0.0 { d.recip() } else { 0.0 };
                let (g, j) = (b / 4, b % 4);
                let base4 = k * bpr4 * 32 + g * 128;
                let base8 = k * bpr2 * 32 + b * 32;
                let mut sum = 0i32;
                for (i, v) in xb.iter().enumerate() {
                    // Round to nearest (ties to even) by adding and removing 1.5·2²³: exact for
                    // |v·inv| ≤ 127, and inlined (`f32::round` is a libm call without SSE4.1).
                    let q = ((v * inv + ROUND) - ROUND).clamp(-127.0, 127.0) as i8;
                    sum += i32::from(q);
                    out.q8[base8 + i] = q;
                    let at = if i < 16 {
                        j * 16 + i
                    } else {
                        64 + j * 16 + i - 16
                    };
                    out.q4[base4 + at] = q;
                }
                out.d[k * bpr4 + b] = d;
                out.s[k * bpr4 + b] = d * sum as f32;
            }
        }
        out
    }

    /// Inputs.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The dequantized inputs `x̂` (row-major `[n, cols]`), the reference for tests.
    pub fn dequantize(&self) -> Vec<f32> {
        let bpr2 = self.bpr.next_multiple_of(2);
        let bpr4 = self.bpr.next_multiple_of(4);
        let mut out = Vec::with_capacity(self.n * self.bpr * 32);
        for k in 0..self.n {
            for b in 0..self.bpr {
                let d = self.d[k * bpr4 + b];
                let q = &self.q8[(k * bpr2 + b) * 32..(k * bpr2 + b) * 32 + 32];
                out.extend(q.iter().map(|&v| d * f32::from(v)));
            }
        }
        out
    }
}

/// `out[i · N + k] = W[i] · x̂[k]` for the `out.len() / N` consecutive rows whose blocks `kind`
/// holds. `false` (nothing written) when the CPU lacks the kernels or `N` is not 1..=8.
pub fn rows(kind: Kind<'_>, x: &QInput, out: &mut [f32]) -> bool {
    rows_with(kind, x, out, Level::Best)
}

/// [`rows`] with a choice of kernels.
pub fn rows_with(kind: Kind<'_>, x: &QInput, out: &mut [f32], level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let n = x.n;
        if !available() || n == 0 || n > 8 || !out.len().is_multiple_of(n) {
            return false;
        }
        let bpr = x.bpr;
        let blocks = out.len() / n * bpr;
        match kind {
            Kind::Q4_1(d, m, q) => {
                assert!(d.len() == blocks && m.len() == blocks && q.len() == blocks * 16)
            }
            Kind::Q4_0(d, q) => assert!(d.len() == blocks && q.len() == blocks * 16),
            Kind::Q8_0(d, q) => assert!(d.len() == blocks && q.len() == blocks * 32),
        }
        if level == Level::Avx2 || !vnni() {
            if !avx2() {
                return false;
            }
            // SAFETY: the CPU has AVX2 and FMA (checked); lengths asserted above.
            unsafe {
                match n {
                    1 => rows_avx2::<1>(kind, x, out),
                    2 => rows_avx2::<2>(kind, x, out),
                    3 => rows_avx2::<3>(kind, x, out),
                    4 => rows_avx2::<4>(kind, x, out),
                    5 => rows_avx2::<5>(kind, x, out),
                    6 => rows_avx2::<6>(kind, x, out),
                    7 => rows_avx2::<7>(kind, x, out),
                    _ => rows_avx2::<8>(kind, x, out),
                }
            }
            return true;
        }
        // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI (checked); lengths asserted above and by
        // `QInput::new`'s construction (padded layouts).
        unsafe {
            match n {
                1 => rows_n::<1>(kind, x, out),
                2 => rows_n::<2>(kind, x, out),
                3 => rows_n::<3>(kind, x, out),
                4 => rows_n::<4>(kind, x, out),
                5 => rows_n::<5>(kind, x, out),
                6 => rows_n::<6>(kind, x, out),
                7 => rows_n::<7>(kind, x, out),
                _ => rows_n::<8>(kind, x, out),
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kind, x, out, level);
        false
    }
}

/// How far ahead (bytes) the kernels prefetch quantized weights.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 1024;

/// Runs `$body` with `$k` = 0, 1, … below `$n` (≤ 8), each with a constant `$k`: indexing
/// the accumulator arrays with constants keeps them in registers (a `for` loop over `0..N`
/// was not unrolled for `N = 8` and spilled them to the stack).
#[cfg(target_arch = "x86_64")]
macro_rules! unroll8 {
    ($k:ident < $n:expr => $body:block) => {{
        if 0 < $n {
            let $k = 0usize;
            $body
        }
        if 1 < $n {
            let $k = 1usize;
            $body
        }
        if 2 < $n {
            let $k = 2usize;
            $body
        }
        if 3 < $n {
            let $k = 3usize;
            $body
        }
        if 4 < $n {
            let $k = 4usize;
            $body
        }
        if 5 < $n {
            let $k = 5usize;
            $body
        }
        if 6 < $n {
            let $k = 6usize;
            $body
        }
        if 7 < $n {
            let $k = 7usize;
            $body
        }
    }};
}

pub mod raw;

/// Lane `l` of a 16-lane vector of block sums belongs to block `l / 4` (Q4 groups of four
/// blocks) or `l / 8` (Q8 pairs of blocks): per-block scales are spread with `vpermps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows_n<const N: usize>(kind: Kind<'_>, x: &QInput, out: &mut [f32]) {
    match kind {
        Kind::Q4_1(d, m, q) => q4_rows::<N, true>(d, m, q, x, out),
        Kind::Q4_0(d, q) => q4_rows::<N, false>(d, d, q, x, out),
        Kind::Q8_0(d, q) => q8_rows::<N>(d, q, x, out),
    }
}

/// Horizontal sum of four lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
fn hsum4(v: __m128) -> f32 {
    let v2 = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)))
}

/// Q4_1 (`MIN`: `m` holds the minimums) or Q4_0 (offset `-8·d`; `m` unused) rows against
/// `N` inputs.
///
/// Pointer arithmetic stays inside the slices: `d`, `m` hold `rows · bpr` values and `q`
/// `rows · bpr · 16` bytes (asserted by [`rows`]); full groups read 4 blocks below `bpr`,
/// the tail group uses masked loads of its `bpr % 4` blocks; the inputs are padded to `bpr4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_rows<const N: usize, const MIN: bool>(
    d: &[f16],
    m: &[f16],
    q: &[u8],
    x: &QInput,
    out: &mut [f32],
) {
    let bpr = x.bpr;
    let bpr4 = bpr.next_multiple_of(4);
    let (full, rem) = (bpr / 4, bpr % 4);
    let low = _mm512_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    let minus8 = _mm_set1_ps(-8.0);
    let idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let (xq, xd, xs) = (x.q4.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
    let (lanes, bytes): (u8, u64) = ((1u8 << rem) - 1, (1u64 << (16 * rem)) - 1);
    for (r, o) in out.chunks_exact_mut(N).enumerate() {
        // Row r's blocks are r·bpr..(r+1)·bpr, inside `d`, `m` and `q` (see above).
        let qr = q[r * bpr * 16..].as_ptr();
        let dr = d[r * bpr..].as_ptr() as *const i16;
        let mr = m[r * bpr..].as_ptr() as *const i16;
        let mut acc = [_mm512_setzero_ps(); N];
        let mut off = [_mm_setzero_ps(); N];
        // A macro, not a closure: closures do not inherit `target_feature` and were not
        // inlined here (measured: accumulators spilled to the stack, 3× slower).
        macro_rules! group {
            ($g:expr, $w:expr, $dw:expr, $mw:expr) => {{
                let (g, w, dw, mw): (usize, __m512i, __m128, __m128) = ($g, $w, $dw, $mw);
                let lo = _mm512_and_si512(w, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
                unroll8!(k < N => {
                    // SAFETY: group g of input k lies inside the padded input buffers.
                    let (xlo, xhi, dx, sx) = unsafe {
                        let xg = xq.add(k * bpr4 * 32 + g * 128);
                        (
                            _mm512_loadu_si512(xg as *const __m512i),
                            _mm512_loadu_si512(xg.add(64) as *const __m512i),
                            _mm_loadu_ps(xd.add(k * bpr4 + 4 * g)),
                            _mm_loadu_ps(xs.add(k * bpr4 + 4 * g)),
                        )
                    };
                    let isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xlo), hi, xhi);
                    let scale =
                        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_mul_ps(dw, dx)));
                    acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[k]);
                    off[k] = _mm_fmadd_ps(mw, sx, off[k]);
                });
            }};
        }
        for g in 0..full {
            // SAFETY: blocks 4g..4g+4 < bpr of row r (see above).
            let (w, dw, mw) = unsafe {
                let dw = _mm_cvtph_ps(_mm_loadl_epi64(dr.add(4 * g) as *const __m128i));
                let mw = if MIN {
                    _mm_cvtph_ps(_mm_loadl_epi64(mr.add(4 * g) as *const __m128i))
                } else {
                    _mm_mul_ps(dw, minus8)
                };
                _mm_prefetch::<_MM_HINT_T0>(qr.wrapping_add(64 * g + PREFETCH) as *const i8);
                (_mm512_loadu_si512(qr.add(64 * g) as *const __m512i), dw, mw)
            };
            group!(g, w, dw, mw);
        }
        if rem > 0 {
            // SAFETY: masked loads of the last `rem` blocks of row r only.
            let (w, dw, mw) = unsafe {
                let dw = _mm_cvtph_ps(_mm_maskz_loadu_epi16(lanes, dr.add(4 * full)));
                let mw = if MIN {
                    _mm_cvtph_ps(_mm_maskz_loadu_epi16(lanes, mr.add(4 * full)))
                } else {
                    _mm_mul_ps(dw, minus8)
                };
                let w = _mm512_maskz_loadu_epi8(bytes, qr.add(64 * full) as *const i8);
                (w, dw, mw)
            };
            group!(full, w, dw, mw);
        }
        for k in 0..N {
            o[k] = _mm512_reduce_add_ps(acc[k]) + hsum4(off[k]);
        }
    }
}

/// Q8_0 rows against `N` inputs, in pairs of blocks (a masked tail block when `bpr` is odd).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_rows<const N: usize>(d: &[f16], q: &[i8], x: &QInput, out: &mut [f32]) {
    let bpr = x.bpr;
    let (bpr2, bpr4) = (bpr.next_multiple_of(2), bpr.next_multiple_of(4));
    let zero = _mm512_setzero_si512();
    let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let (xq, xd) = (x.q8.as_ptr(), x.d.as_ptr());
    for (r, o) in out.chunks_exact_mut(N).enumerate() {
        // SAFETY: row r's blocks lie inside `d` and `q` (asserted by [`rows`]).
        let (qr, dr) = unsafe {
            (
                q.as_ptr().add(r * bpr * 32),
                d.as_ptr().add(r * bpr) as *const i16,
            )
        };
        let mut acc = [_mm512_setzero_ps(); N];
        for g in 0..bpr2 / 2 {
            let nb = (bpr - 2 * g).min(2);
            // SAFETY: blocks 2g..2g+nb of the row; the inputs are padded to whole pairs.
            unsafe {
                let bytes: u64 = if nb == 2 { !0 } else { (1u64 << 32) - 1 };
                let w = _mm512_maskz_loadu_epi8(bytes, qr.add(64 * g));
                let dw = _mm_cvtph_ps(_mm_maskz_loadu_epi16((1u8 << nb) - 1, dr.add(2 * g)));
                _mm_prefetch::<_MM_HINT_T0>(qr.wrapping_add(64 * g + PREFETCH));
                // vpdpbusd multiplies unsigned by signed bytes: |w| times x with w's sign.
                let wabs = _mm512_abs_epi8(w);
                let neg = _mm512_movepi8_mask(w);
                unroll8!(k < N => {
                    let xv = _mm512_loadu_si512(xq.add(k * bpr2 * 32 + 64 * g) as *const __m512i);
                    let dx = _mm_maskz_loadu_ps(0b11, xd.add(k * bpr4 + 2 * g));
                    let xs = _mm512_mask_sub_epi8(xv, neg, zero, xv);
                    let isum = _mm512_dpbusd_epi32(zero, wabs, xs);
                    let scale =
                        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_mul_ps(dw, dx)));
                    acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[k]);
                });
            }
        }
        for k in 0..N {
            o[k] = _mm512_reduce_add_ps(acc[k]);
        }
    }
}

/// The AVX2 kernels, one 32-weight block at a time: `vpmaddubsw` multiplies unsigned weight
/// bytes by signed activation bytes into pairwise i16 sums (≤ 2·15·127 for Q4, ≤ 2·127·127
/// for Q8: no saturation), `vpmaddwd` by ones sums them into eight i32 lanes, and one f32 FMA
/// applies the block's two scales. Q4 nibbles are unpacked into the block's natural order,
/// so the activations are read from the natural (`q8`) layout.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<const N: usize>(kind: Kind<'_>, x: &QInput, out: &mut [f32]) {
    let bpr = x.bpr;
    let (bpr2, bpr4) = (bpr.next_multiple_of(2), bpr.next_multiple_of(4));
    let low = _mm_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for (r, o) in out.chunks_exact_mut(N).enumerate() {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut off = [0f32; N];
        for b in 0..bpr {
            let blk = r * bpr + b;
            // The block's 32 weights as bytes in order: unsigned (Q4), or signed (Q8, whose
            // signs then move to the activations); its scale and per-block offset term.
            let (w, signed, dw, mw) = match kind {
                Kind::Q4_1(d, _, q) | Kind::Q4_0(d, q) => {
                    let qb: &[u8; 16] = q[blk * 16..blk * 16 + 16].try_into().expect("16 bytes");
                    // SAFETY: 16 bytes inside `qb`.
                    let bytes = unsafe { _mm_loadu_si128(qb.as_ptr() as *const __m128i) };
                    let lo = _mm_and_si128(bytes, low);
                    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
                    let mw = match kind {
                        Kind::Q4_1(_, m, _) => h2f(m[blk]),
                        _ => -8.0 * h2f(d[blk]),
                    };
                    (_mm256_set_m128i(hi, lo), false, h2f(d[blk]), mw)
                }
                Kind::Q8_0(d, q) => {
                    let qb: &[i8; 32] = q[blk * 32..blk * 32 + 32].try_into().expect("32 bytes");
                    // SAFETY: 32 bytes inside `qb`.
                    let w = unsafe { _mm256_loadu_si256(qb.as_ptr() as *const __m256i) };
                    (w, true, h2f(d[blk]), 0.0)
                }
            };
            let wu = if signed { _mm256_sign_epi8(w, w) } else { w };
            unroll8!(k < N => {
                let at = k * bpr2 * 32 + b * 32;
                let xb: &[i8; 32] = x.q8[at..at + 32].try_into().expect("32 bytes");
                // SAFETY: 32 bytes inside `xb`.
                let xv = unsafe { _mm256_loadu_si256(xb.as_ptr() as *const __m256i) };
                let xs = if signed { _mm256_sign_epi8(xv, w) } else { xv };
                let isum = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xs), ones);
                let scale = _mm256_set1_ps(dw * x.d[k * bpr4 + b]);
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[k]);
                off[k] += mw * x.s[k * bpr4 + b];
            });
        }
        for k in 0..N {
            o[k] = crate::qkernels::hsum(acc[k]) + off[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_per_block_and_bounded() {
        let x: Vec<f32> = (0..2 * 96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let q = QInput::new(&x, 2, 96);
        let back = q.dequantize();
        for (b, (xb, yb)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, c) in xb.iter().zip(yb) {
                assert!(
                    (a - c).abs() <= amax / 254.0 + 1e-7,
                    "block {b}: {a} vs {c}"
                );
            }
            // The block maximum is exact.
            let i = xb.iter().position(|v| v.abs() == amax).expect("max");
            assert!((xb[i] - yb[i]).abs() <= 1e-6 * amax);
        }
        // An all-zero block has scale 0 and zero values, not NaN.
        let z = QInput::new(&[0.0; 32], 1, 32);
        assert_eq!(z.dequantize(), vec![0.0; 32]);
    }
}
