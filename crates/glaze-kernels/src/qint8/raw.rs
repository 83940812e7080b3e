//! 8-bit-activation kernels (AVX2) for rows kept in the file's own block layout: the 5-bit
//! types and the k-quants that make up the Q4_K_M files, and stacks that mix them with
//! Q4_0/Q4_1/Q8_0 rows.
//!
//! Every type is read 32 weights at a time as 32 integer bytes with one multiplier per
//! 16 weights, a scale and an offset: `w = d · mul · q + m`. Unsigned bytes (4- and 5-bit
//! types, whose offsets `-8·d`, `-16·d` or minimums go into `m`) multiply the signed
//! activation bytes directly; signed ones (Q8_0, Q6_K's `q - 32`) move their signs to the
//! activations first. `vpmaddubsw` forms pairwise i16 sums (at most 2·32·127, or 2·31·127:
//! no saturation), `vpmaddwd` multiplies them by the per-16 multipliers (Q6_K's scales,
//! otherwise ones) into i32 lanes, and one f32 FMA applies `d` and the activation's scale;
//! `m` meets the activation block's sum (`QInput::s`). The result is exactly `W · x̂` up to
//! f32 summation order, as for the native kernels of the parent module.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::f16;

use super::QInput;
use crate::quant::GgmlType;

/// Whether [`rows`] reads rows of type `ty`.
pub fn supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q8_0
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
    )
}

/// `out[i · N + k] = W[i] · x̂[k]` for the `out.len() / N` consecutive rows of type `ty` whose
/// bytes (the file's layout) `rows` holds. `false` (nothing written) when the CPU lacks AVX2,
/// the type is not [`supported`], or `N` is not 1..=8.
pub fn rows(ty: GgmlType, rows: &[u8], x: &QInput, out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let n = x.n;
        if !super::avx2() || !supported(ty) || n == 0 || n > 8 || !out.len().is_multiple_of(n) {
            return false;
        }
        let (block, block_bytes) = ty.block();
        let cols = x.bpr * 32;
        assert!(
            cols.is_multiple_of(block) && rows.len() == out.len() / n * cols / block * block_bytes,
            "invariant: whole rows of whole blocks"
        );
        // SAFETY: the CPU has AVX2, FMA and F16C (checked); every load reads inside a slice
        // whose length is checked where it is taken.
        unsafe {
            match n {
                1 => rows_avx2::<1>(ty, rows, x, out),
                2 => rows_avx2::<2>(ty, rows, x, out),
                3 => rows_avx2::<3>(ty, rows, x, out),
                4 => rows_avx2::<4>(ty, rows, x, out),
                5 => rows_avx2::<5>(ty, rows, x, out),
                6 => rows_avx2::<6>(ty, rows, x, out),
                7 => rows_avx2::<7>(ty, rows, x, out),
                _ => rows_avx2::<8>(ty, rows, x, out),
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ty, rows, x, out);
        false
    }
}

/// One block of 32 weights, `w = d · mul · q + m`.
#[cfg(target_arch = "x86_64")]
struct Block32 {
    /// The 32 integers `q` as bytes, in the weights' order.
    q: __m256i,
    /// Whether `q` is signed (else unsigned).
    signed: bool,
    /// Per i16 lane (two weights) the multiplier of its 16 weights.
    mul: __m256i,
    d: f32,
    m: f32,
}

#[cfg(target_arch = "x86_64")]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// 32 bytes of `b` from `at`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn load32(b: &[u8], at: usize) -> __m256i {
    let s: &[u8; 32] = b[at..at + 32].try_into().expect("32 bytes");
    // SAFETY: reads exactly the 32 bytes of `s`.
    unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
}

/// 16 bytes of `b` from `at`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn load16(b: &[u8], at: usize) -> __m128i {
    let s: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: reads exactly the 16 bytes of `s`.
    unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) }
}

/// Block `b` (of 32 weights) of `row`, a row of `ty` blocks in the file's layout.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn unpack(ty: GgmlType, row: &[u8], b: usize) -> Block32 {
    let ones = _mm256_set1_epi16(1);
    let low = _mm_set1_epi8(0x0F);
    let low32 = _mm256_set1_epi8(0x0F);
    let (block, block_bytes) = ty.block();
    let first = b * 32 / block * block_bytes;
    let blk = &row[first..first + block_bytes];
    // Low nibbles are weights 0..16, high nibbles 16..32 (the 32-weight types).
    let nibbles = |v: __m128i| {
        (
            _mm_and_si128(v, low),
            _mm_and_si128(_mm_srli_epi16(v, 4), low),
        )
    };
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let d = f16_at(blk, 0);
            let (m, at) = if ty == GgmlType::Q4_1 {
                (f16_at(blk, 2), 4)
            } else {
                (-8.0 * d, 2)
            };
            let (lo, hi) = nibbles(load16(blk, at));
            Block32 {
                q: _mm256_set_m128i(hi, lo),
                signed: false,
                mul: ones,
                d,
                m,
            }
        }
        GgmlType::Q8_0 => Block32 {
            q: load32(blk, 2),
            signed: true,
            mul: ones,
            d: f16_at(blk, 0),
            m: 0.0,
        },
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let d = f16_at(blk, 0);
            let (m, at) = if ty == GgmlType::Q5_1 {
                (f16_at(blk, 2), 4)
            } else {
                (-16.0 * d, 2)
            };
            let qh = u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
            let (lo, hi) = nibbles(load16(blk, at + 4));
            use crate::qkernels::fifth_bits;
            Block32 {
                q: _mm256_set_m128i(
                    _mm_or_si128(hi, fifth_bits(qh >> 16)),
                    _mm_or_si128(lo, fifth_bits(qh & 0xFFFF)),
                ),
                signed: false,
                mul: ones,
                d,
                m,
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            // Sub-block `sub`: chunk `sub / 2` of the quant bytes, low nibbles for even
            // sub-blocks, high for odd; Q5_K's fifth bits are bit `sub` of `qh[l]`.
            let sub = b % 8;
            let (sc, mn) = crate::quant::scale_min_k4(sub, &blk[4..16]);
            let qs = if ty == GgmlType::Q5K { 48 } else { 16 };
            let v = load32(blk, qs + 32 * (sub / 2));
            let v = if sub % 2 == 1 {
                _mm256_srli_epi16(v, 4)
            } else {
                v
            };
            let mut q = _mm256_and_si256(v, low32);
            if ty == GgmlType::Q5K {
                let h = _mm256_srl_epi16(load32(blk, 16), _mm_cvtsi32_si128(sub as i32));
                let h = _mm256_and_si256(h, _mm256_set1_epi8(1));
                q = _mm256_or_si256(q, _mm256_slli_epi16(h, 4));
            }
            Block32 {
                q,
                signed: false,
                mul: ones,
                d: f16_at(blk, 0) * sc as f32,
                m: -f16_at(blk, 2) * mn as f32,
            }
        }
        GgmlType::Q6K => {
            // Half `sub / 4` of 128 weights; quarter `sub % 4` takes the low (0, 1) or high
            // (2, 3) nibbles of `ql[l]` (0, 2) or `ql[l + 32]` (1, 3) and bits `2·quarter`
            // of `qh[l]`; one signed scale per 16 weights.
            let sub = b % 8;
            let (half, quarter) = (sub / 4, sub % 4);
            let lo = load32(blk, 64 * half + 32 * (quarter % 2));
            let lo = if quarter >= 2 {
                _mm256_srli_epi16(lo, 4)
            } else {
                lo
            };
            let lo = _mm256_and_si256(lo, low32);
            let h = _mm256_srl_epi16(
                load32(blk, 128 + 32 * half),
                _mm_cvtsi32_si128(2 * quarter as i32),
            );
            let h = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(3)), 4);
            let q = _mm256_sub_epi8(_mm256_or_si256(lo, h), _mm256_set1_epi8(32));
            let sc = 192 + 8 * half + 2 * quarter;
            let (s0, s1) = (blk[sc] as i8, blk[sc + 1] as i8);
            Block32 {
                q,
                signed: true,
                mul: _mm256_set_m128i(_mm_set1_epi16(i16::from(s1)), _mm_set1_epi16(i16::from(s0))),
                d: f16_at(blk, 208),
                m: 0.0,
            }
        }
        _ => unreachable!("invariant: rows() admits supported types only"),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<const N: usize>(ty: GgmlType, bytes: &[u8], x: &QInput, out: &mut [f32]) {
    let bpr = x.bpr;
    let (bpr2, bpr4) = (bpr.next_multiple_of(2), bpr.next_multiple_of(4));
    let (block, block_bytes) = ty.block();
    let row_bytes = bpr * 32 / block * block_bytes;
    for (row, o) in bytes.chunks_exact(row_bytes).zip(out.chunks_exact_mut(N)) {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut off = [0f32; N];
        for b in 0..bpr {
            let w = unpack(ty, row, b);
            let wu = if w.signed {
                _mm256_sign_epi8(w.q, w.q)
            } else {
                w.q
            };
            unroll8!(k < N => {
                let at = k * bpr2 * 32 + b * 32;
                let xb: &[i8; 32] = x.q8[at..at + 32].try_into().expect("32 bytes");
                // SAFETY: 32 bytes inside `xb`.
                let xv = unsafe { _mm256_loadu_si256(xb.as_ptr() as *const __m256i) };
                let xs = if w.signed { _mm256_sign_epi8(xv, w.q) } else { xv };
                let isum = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xs), w.mul);
                let scale = _mm256_set1_ps(w.d * x.d[k * bpr4 + b]);
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[k]);
                off[k] += w.m * x.s[k * bpr4 + b];
            });
        }
        for k in 0..N {
            o[k] = crate::qkernels::hsum(acc[k]) + off[k];
        }
    }
}
