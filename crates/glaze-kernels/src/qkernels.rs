//! AVX2/FMA and AVX-512 kernels for [`crate::qmatmul`] with f32 activations (one weight row
//! against `N ≤ 4` inputs); the attention and MLP vector helpers are in [`crate::vecops`].
//!
//! Chosen at run time (`is_x86_feature_detected!`); every other CPU takes the portable path in
//! `qmatmul.rs`. This module, `qint8.rs` and `vecops.rs` are the only ones in the crate that
//! use `unsafe`: the
//! `#[target_feature]` functions may only run on CPUs that have the feature (checked by the
//! caller), and every raw load reads inside a slice whose length is asserted first.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::f16;

/// Whether the AVX-512 (F + BW) kernels can run here.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX2/FMA kernels can run here.
pub fn available() -> bool {
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

/// An f16 block scale as f32 with the F16C instruction (`half`'s conversion checks the CPU
/// on every call when not compiled for F16C: measured 0.144 → 0.206 ms for a Q4_1 matvec).
/// Safe to call from the kernels: AVX-512 F implies F16C, and the AVX2 kernels enable it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
#[inline]
pub(crate) fn h2f(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// How far ahead (bytes) the decode kernels prefetch quantized weights.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 1024;

/// Block format of a row.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// Scales, minimums, 16 packed bytes per block.
    Q4_1(&'a [f16], &'a [f16], &'a [u8]),
    /// Scales, 16 packed bytes per block (offset 8).
    Q4_0(&'a [f16], &'a [u8]),
    /// Scales, 32 signed bytes per block.
    Q8_0(&'a [f16], &'a [i8]),
}

impl Kind<'_> {
    /// The per-block term the kernels add through the block sums of x: the Q4_1 minimum
    /// `m[b]`, the Q4_0 offset `-8·d[b]`, nothing for Q8_0.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "f16c")]
    #[inline]
    fn offset(&self, b: usize) -> f32 {
        match self {
            Kind::Q4_1(_, m, _) => h2f(m[b]),
            Kind::Q4_0(d, _) => -8.0 * h2f(d[b]),
            Kind::Q8_0(..) => 0.0,
        }
    }
}

/// `out[r] = W[r] · x` for the `out.len()` consecutive rows whose blocks `kind` holds, one
/// input `x` of `32 · xsum.len()` values. `false` when no AVX-512 (the caller falls back).
#[cfg(target_arch = "x86_64")]
pub fn dot_rows1(kind: Kind<'_>, x: &[f32], xsum: &[f32], out: &mut [f32]) -> bool {
    if !avx512() {
        return false;
    }
    let blocks = out.len() * xsum.len();
    assert!(x.len() == 32 * xsum.len());
    match kind {
        Kind::Q4_1(d, m, q) => {
            assert!(d.len() == blocks && m.len() == blocks && q.len() == blocks * 16)
        }
        Kind::Q4_0(d, q) => assert!(d.len() == blocks && q.len() == blocks * 16),
        Kind::Q8_0(d, q) => assert!(d.len() == blocks && q.len() == blocks * 32),
    }
    // SAFETY: the CPU has AVX-512 F and BW (checked); all lengths were asserted above.
    unsafe { dot_rows1_avx512(kind, x, xsum, out) };
    true
}

/// `out[k] = Σ_c W[c] · x[k·cols + c]` for one row `W` of `bpr` blocks, `k < N`.
///
/// `xsum[k·bpr + b]` is the sum of input `k` over block `b`.
#[cfg(target_arch = "x86_64")]
pub fn dot_row<const N: usize>(
    kind: Kind<'_>,
    x: &[f32],
    xsum: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    let bpr = cols / 32;
    assert!(x.len() >= N * cols && xsum.len() >= N * bpr && out.len() >= N);
    match kind {
        Kind::Q4_1(d, m, q) => assert!(d.len() == bpr && m.len() == bpr && q.len() == bpr * 16),
        Kind::Q4_0(d, q) => assert!(d.len() == bpr && q.len() == bpr * 16),
        Kind::Q8_0(d, q) => assert!(d.len() == bpr && q.len() == bpr * 32),
    }
    if avx512() {
        // SAFETY: the CPU has AVX-512 F and BW (checked); all lengths were asserted above.
        return unsafe { dot_row_avx512::<N>(kind, x, xsum, cols, out) };
    }
    assert!(available(), "invariant: caller checked available()");
    // SAFETY: the CPU has AVX2 and FMA (asserted above); all lengths were asserted above.
    unsafe { dot_row_avx2::<N>(kind, x, xsum, cols, out) }
}

/// Sum of the eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Adds the 32 weights `w` (four vectors of 8) times input `k`'s block `b` to `acc[k]`.
macro_rules! fma_inputs {
    ($acc:ident, $w:expr, $x:ident, $cols:ident, $b:ident) => {
        let [w0, w1, w2, w3] = $w;
        for k in 0..N {
            let xb: &[f32; 32] = $x[k * $cols + $b * 32..k * $cols + $b * 32 + 32]
                .try_into()
                .expect("32 values");
            let p = xb.as_ptr();
            // SAFETY: four 8-float reads inside the 32 floats of `xb`.
            let (x0, x1, x2, x3) = unsafe {
                (
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                    _mm256_loadu_ps(p.add(24)),
                )
            };
            let mut a = $acc[k];
            a = _mm256_fmadd_ps(w0, x0, a);
            a = _mm256_fmadd_ps(w1, x1, a);
            a = _mm256_fmadd_ps(w2, x2, a);
            a = _mm256_fmadd_ps(w3, x3, a);
            $acc[k] = a;
        }
    };
}

/// 16 packed 4-bit quants of block `b` as four vectors of 8 floats times `d[b]`.
macro_rules! q4_weights {
    ($q:ident, $d:ident, $b:ident, $low:ident) => {{
        let block: &[u8; 16] = $q[$b * 16..$b * 16 + 16].try_into().expect("16 bytes");
        _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(PREFETCH) as *const i8);
        // SAFETY: reads exactly the 16 bytes of `block`.
        let bytes = unsafe { _mm_loadu_si128(block.as_ptr() as *const __m128i) };
        let lo = _mm_and_si128(bytes, $low);
        let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), $low);
        let scale = _mm256_set1_ps(h2f($d[$b]));
        let f = |v: __m128i| _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)));
        [
            f(lo),
            f(_mm_srli_si128(lo, 8)),
            f(hi),
            f(_mm_srli_si128(hi, 8)),
        ]
    }};
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_row_avx2<const N: usize>(
    kind: Kind<'_>,
    x: &[f32],
    xsum: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    let bpr = cols / 32;
    let mut acc = [_mm256_setzero_ps(); N];
    let mut extra = [0f32; N];
    let low = _mm_set1_epi8(0x0F);
    match kind {
        Kind::Q4_1(d, _, q) | Kind::Q4_0(d, q) => {
            for b in 0..bpr {
                fma_inputs!(acc, q4_weights!(q, d, b, low), x, cols, b);
                let c = kind.offset(b);
                for k in 0..N {
                    extra[k] += c * xsum[k * bpr + b];
                }
            }
        }
        Kind::Q8_0(d, q) => {
            for b in 0..bpr {
                let block: &[i8; 32] = q[b * 32..b * 32 + 32].try_into().expect("32 bytes");
                _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(PREFETCH));
                let p = block.as_ptr() as *const __m128i;
                // SAFETY: two 16-byte reads inside the 32 bytes of `block`.
                let (a, c) = unsafe { (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) };
                let scale = _mm256_set1_ps(h2f(d[b]));
                let f =
                    |v: __m128i| _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)));
                let w = [f(a), f(_mm_srli_si128(a, 8)), f(c), f(_mm_srli_si128(c, 8))];
                fma_inputs!(acc, w, x, cols, b);
            }
        }
    }
    for k in 0..N {
        out[k] = hsum(acc[k]) + extra[k];
    }
}

/// The AVX-512 variant: a block is two vectors of 16; the block dot is scaled once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn dot_row_avx512<const N: usize>(
    kind: Kind<'_>,
    x: &[f32],
    xsum: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    let bpr = cols / 32;
    let mut acc = [_mm512_setzero_ps(); N];
    let mut extra = [0f32; N];
    let low = _mm_set1_epi8(0x0F);
    let (mut dbuf, mut mbuf) = ([0f32; SCALE_CHUNK], [0f32; SCALE_CHUNK]);
    for c0 in (0..bpr).step_by(SCALE_CHUNK) {
        let c1 = (c0 + SCALE_CHUNK).min(bpr);
        widen_chunk(kind, c0, c1, &mut dbuf, &mut mbuf);
        for (k, e) in extra.iter_mut().enumerate() {
            let s = &xsum[k * bpr + c0..k * bpr + c1];
            *e += offset_sum(kind, &dbuf[..c1 - c0], &mbuf[..c1 - c0], s);
        }
        for b in c0..c1 {
            // Quants of block b as floats: weights 0..16 and 16..32.
            let (w0, w1) = match kind {
                Kind::Q4_1(_, _, q) | Kind::Q4_0(_, q) => {
                    let block: &[u8; 16] = q[b * 16..b * 16 + 16].try_into().expect("16 bytes");
                    // SAFETY: reads exactly the 16 bytes of `block`.
                    let bytes = unsafe { _mm_loadu_si128(block.as_ptr() as *const __m128i) };
                    let lo = _mm_and_si128(bytes, low);
                    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
                    (
                        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)),
                        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)),
                    )
                }
                Kind::Q8_0(_, q) => {
                    let block: &[i8; 32] = q[b * 32..b * 32 + 32].try_into().expect("32 bytes");
                    let p = block.as_ptr() as *const __m128i;
                    // SAFETY: two 16-byte reads inside the 32 bytes of `block`.
                    let (a, c) = unsafe { (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) };
                    (
                        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a)),
                        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c)),
                    )
                }
            };
            let scale = _mm512_set1_ps(dbuf[b - c0]);
            for (k, a) in acc.iter_mut().enumerate() {
                let xb: &[f32; 32] = x[k * cols + b * 32..k * cols + b * 32 + 32]
                    .try_into()
                    .expect("32 values");
                // SAFETY: two 16-float reads inside the 32 floats of `xb`.
                let (x0, x1) = unsafe {
                    (
                        _mm512_loadu_ps(xb.as_ptr()),
                        _mm512_loadu_ps(xb.as_ptr().add(16)),
                    )
                };
                let dot = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
                *a = _mm512_fmadd_ps(scale, dot, *a);
            }
        }
    }
    for k in 0..N {
        out[k] = _mm512_reduce_add_ps(acc[k]) + extra[k];
    }
}

/// Many rows against one input (a decode step): `out[r] = W[r] · x`, where `kind` holds the
/// blocks of `out.len()` consecutive rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn dot_rows1_avx512(kind: Kind<'_>, x: &[f32], xsum: &[f32], out: &mut [f32]) {
    let bpr = xsum.len();
    for (r, o) in out.iter_mut().enumerate() {
        let (s, e) = (r * bpr, (r + 1) * bpr);
        let row = match kind {
            Kind::Q4_1(d, m, q) => Kind::Q4_1(&d[s..e], &m[s..e], &q[s * 16..e * 16]),
            Kind::Q4_0(d, q) => Kind::Q4_0(&d[s..e], &q[s * 16..e * 16]),
            Kind::Q8_0(d, q) => Kind::Q8_0(&d[s..e], &q[s * 32..e * 32]),
        };
        *o = dot1_avx512(row, x, xsum);
    }
}

/// Blocks whose f16 scales [`widen_scales`] converts at a time (stack buffers).
#[cfg(target_arch = "x86_64")]
const SCALE_CHUNK: usize = 64;

/// `dst[i] = src[i]` as f32, 16 scales per instruction (a per-block conversion in the FMA
/// loop cost a third of the f32 matvec's speed); `dst` is at least as long as `src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn widen_scales(src: &[f16], dst: &mut [f32]) {
    let dst = &mut dst[..src.len()];
    let mut s16 = src.chunks_exact(16);
    let mut d16 = dst.chunks_exact_mut(16);
    for (s, d) in (&mut s16).zip(&mut d16) {
        // SAFETY: reads the 16 halves of `s`, writes the 16 floats of `d`.
        unsafe {
            let v = _mm512_cvtph_ps(_mm256_loadu_si256(s.as_ptr() as *const __m256i));
            _mm512_storeu_ps(d.as_mut_ptr(), v);
        }
    }
    for (s, d) in s16.remainder().iter().zip(d16.into_remainder()) {
        *d = h2f(*s);
    }
}

/// The per-block offsets of blocks `c0..c1` ([`Kind::offset`]) times the block sums `xsum`,
/// summed in block order; `dbuf`/`mbuf` hold the chunk's widened scales and minimums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn offset_sum(kind: Kind<'_>, dbuf: &[f32], mbuf: &[f32], xsum: &[f32]) -> f32 {
    match kind {
        Kind::Q4_1(..) => mbuf.iter().zip(xsum).map(|(m, s)| m * s).sum(),
        Kind::Q4_0(..) => dbuf.iter().zip(xsum).map(|(d, s)| -8.0 * d * s).sum(),
        Kind::Q8_0(..) => 0.0,
    }
}

/// Widens the scales (and Q4_1 minimums) of blocks `c0..c1` into `dbuf`/`mbuf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn widen_chunk(kind: Kind<'_>, c0: usize, c1: usize, dbuf: &mut [f32], mbuf: &mut [f32]) {
    match kind {
        Kind::Q4_1(d, m, _) => {
            widen_scales(&d[c0..c1], dbuf);
            widen_scales(&m[c0..c1], mbuf);
        }
        Kind::Q4_0(d, _) | Kind::Q8_0(d, _) => widen_scales(&d[c0..c1], dbuf),
    }
}

/// One row against one input, with iterators instead of indexing; the row's scales are
/// widened [`SCALE_CHUNK`] blocks at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn dot1_avx512(kind: Kind<'_>, x: &[f32], xsum: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    let low = _mm_set1_epi8(0x0F);
    // Two accumulators (even and odd blocks) break the FMA dependency chain.
    let mut acc2 = _mm512_setzero_ps();
    let (mut dbuf, mut mbuf) = ([0f32; SCALE_CHUNK], [0f32; SCALE_CHUNK]);
    let mut extra = 0f32;
    macro_rules! q4_block {
        ($qb:expr, $xb:expr, $db:expr, $acc:ident) => {{
            let qb: &[u8; 16] = $qb.try_into().expect("16 bytes");
            let xb: &[f32; 32] = $xb.try_into().expect("32 values");
            // SAFETY: reads the 16 bytes of `qb` and the 32 floats of `xb`.
            let (bytes, x0, x1) = unsafe {
                (
                    _mm_loadu_si128(qb.as_ptr() as *const __m128i),
                    _mm512_loadu_ps(xb.as_ptr()),
                    _mm512_loadu_ps(xb.as_ptr().add(16)),
                )
            };
            let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(bytes, low)));
            let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
            let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi));
            let dot = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
            $acc = _mm512_fmadd_ps(_mm512_set1_ps($db), dot, $acc);
        }};
    }
    for c0 in (0..xsum.len()).step_by(SCALE_CHUNK) {
        let c1 = (c0 + SCALE_CHUNK).min(xsum.len());
        widen_chunk(kind, c0, c1, &mut dbuf, &mut mbuf);
        let (d, xc) = (&dbuf[..c1 - c0], &x[c0 * 32..c1 * 32]);
        extra += offset_sum(kind, d, &mbuf[..c1 - c0], &xsum[c0..c1]);
        match kind {
            Kind::Q4_1(_, _, q) | Kind::Q4_0(_, q) => {
                let q = &q[c0 * 16..c1 * 16];
                let mut qs = q.chunks_exact(32);
                let mut xs = xc.chunks_exact(64);
                let mut ds = d.chunks_exact(2);
                for ((q2, x2), d2) in (&mut qs).zip(&mut xs).zip(&mut ds) {
                    // A prefetch is only a hint: it never faults, whatever the address.
                    _mm_prefetch::<_MM_HINT_T0>(q2.as_ptr().wrapping_add(PREFETCH) as *const i8);
                    q4_block!(&q2[..16], &x2[..32], d2[0], acc);
                    q4_block!(&q2[16..], &x2[32..], d2[1], acc2);
                }
                if let (Some(&db), true) = (ds.remainder().first(), qs.remainder().len() == 16) {
                    q4_block!(qs.remainder(), xs.remainder(), db, acc);
                }
            }
            Kind::Q8_0(_, q) => {
                let q = &q[c0 * 32..c1 * 32];
                for ((qb, xb), &db) in q.chunks_exact(32).zip(xc.chunks_exact(32)).zip(d) {
                    let qb: &[i8; 32] = qb.try_into().expect("32 bytes");
                    let xb: &[f32; 32] = xb.try_into().expect("32 values");
                    _mm_prefetch::<_MM_HINT_T0>(qb.as_ptr().wrapping_add(PREFETCH));
                    let p = qb.as_ptr() as *const __m128i;
                    // SAFETY: two 16-byte reads inside `qb`, two 16-float reads inside `xb`.
                    let (a, c, x0, x1) = unsafe {
                        (
                            _mm_loadu_si128(p),
                            _mm_loadu_si128(p.add(1)),
                            _mm512_loadu_ps(xb.as_ptr()),
                            _mm512_loadu_ps(xb.as_ptr().add(16)),
                        )
                    };
                    let w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a));
                    let w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c));
                    let dot = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(db), dot, acc);
                }
            }
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc, acc2)) + extra
}

/// Bytes of one Q5_0 block in the file's layout: f16 scale, 32 fifth bits, 16 packed nibbles.
pub const Q5_0_BLOCK_BYTES: usize = 22;

/// `out[k] = Σ_c W[c] · x[k·cols + c]` for one row `W` of Q5_0 blocks as the file stores them
/// (`cols / 32` blocks of [`Q5_0_BLOCK_BYTES`]), `k < N`. `false` when the CPU lacks AVX2, FMA
/// or F16C (the caller falls back to the portable path).
#[cfg(target_arch = "x86_64")]
pub fn dot_row_q5_0<const N: usize>(row: &[u8], x: &[f32], cols: usize, out: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let bpr = cols / 32;
    assert!(
        cols.is_multiple_of(32)
            && row.len() == bpr * Q5_0_BLOCK_BYTES
            && x.len() >= N * cols
            && out.len() >= N
    );
    // SAFETY: the CPU has AVX2, FMA and F16C (checked); all lengths were asserted above.
    unsafe { dot_row_q5_0_avx2::<N>(row, x, cols, out) };
    true
}

/// 0x10 in byte `j` where bit `j` of `bits` is set (`j < 16`): a 16-bit half of a Q5_0
/// block's fifth bits, ready to OR into its nibbles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn fifth_bits(bits: u32) -> __m128i {
    // Byte j takes the byte of `bits` that holds bit j, then tests its own bit.
    let spread = _mm_shuffle_epi8(
        _mm_cvtsi32_si128(bits as i32),
        _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
    );
    let mask = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    let set = _mm_cmpeq_epi8(_mm_and_si128(spread, mask), mask);
    _mm_and_si128(set, _mm_set1_epi8(0x10))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_row_q5_0_avx2<const N: usize>(row: &[u8], x: &[f32], cols: usize, out: &mut [f32]) {
    let bpr = cols / 32;
    let mut acc = [_mm256_setzero_ps(); N];
    let low = _mm_set1_epi8(0x0F);
    let sixteen = _mm_set1_epi8(16);
    for b in 0..bpr {
        let block: &[u8; Q5_0_BLOCK_BYTES] = row[b * Q5_0_BLOCK_BYTES..(b + 1) * Q5_0_BLOCK_BYTES]
            .try_into()
            .expect("one block");
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let qs: &[u8; 16] = block[6..].try_into().expect("16 bytes");
        // SAFETY: reads exactly the 16 bytes of `qs`.
        let bytes = unsafe { _mm_loadu_si128(qs.as_ptr() as *const __m128i) };
        // Weights 0..16: low nibbles and bits 0..16 of qh; 16..32: high nibbles and bits 16..32.
        let q_lo = _mm_or_si128(_mm_and_si128(bytes, low), fifth_bits(qh & 0xFFFF));
        let q_hi = _mm_or_si128(
            _mm_and_si128(_mm_srli_epi16(bytes, 4), low),
            fifth_bits(qh >> 16),
        );
        let (s_lo, s_hi) = (_mm_sub_epi8(q_lo, sixteen), _mm_sub_epi8(q_hi, sixteen));
        let scale = _mm256_set1_ps(d);
        let f = |v: __m128i| _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)));
        let w = [
            f(s_lo),
            f(_mm_srli_si128(s_lo, 8)),
            f(s_hi),
            f(_mm_srli_si128(s_hi, 8)),
        ];
        fma_inputs!(acc, w, x, cols, b);
    }
    for k in 0..N {
        out[k] = hsum(acc[k]);
    }
}

/// Bytes of one Q4_K super-block in the file's layout: f16 scale and minimum scale, twelve
/// bytes of 6-bit sub-block scales and minimums, 128 bytes of nibbles.
pub const Q4_K_BLOCK_BYTES: usize = 144;

/// [`dot_row_q5_0`] for a row of Q4_K super-blocks (`cols / 256` of [`Q4_K_BLOCK_BYTES`]).
#[cfg(target_arch = "x86_64")]
pub fn dot_row_q4_k<const N: usize>(row: &[u8], x: &[f32], cols: usize, out: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let blocks = cols / 256;
    assert!(
        cols.is_multiple_of(256)
            && row.len() == blocks * Q4_K_BLOCK_BYTES
            && x.len() >= N * cols
            && out.len() >= N
    );
    // SAFETY: the CPU has AVX2, FMA and F16C (checked); all lengths were asserted above.
    unsafe { dot_row_q4_k_avx2::<N>(row, x, cols, out) };
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_row_q4_k_avx2<const N: usize>(row: &[u8], x: &[f32], cols: usize, out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); N];
    let low = _mm_set1_epi8(0x0F);
    for (sb, block) in row.chunks_exact(Q4_K_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
        let scales = &block[4..16];
        for chunk in 0..4 {
            let qs: &[u8; 32] = block[16 + 32 * chunk..16 + 32 * chunk + 32]
                .try_into()
                .expect("32 bytes");
            let p = qs.as_ptr() as *const __m128i;
            // SAFETY: two 16-byte reads inside the 32 bytes of `qs`.
            let (a, b) = unsafe { (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) };
            // Sub-block 2·chunk in the low nibbles, 2·chunk + 1 in the high ones.
            for (half, (qa, qb)) in [
                (_mm_and_si128(a, low), _mm_and_si128(b, low)),
                (
                    _mm_and_si128(_mm_srli_epi16(a, 4), low),
                    _mm_and_si128(_mm_srli_epi16(b, 4), low),
                ),
            ]
            .into_iter()
            .enumerate()
            {
                let sub = 2 * chunk + half;
                let (sc, m) = crate::quant::scale_min_k4(sub, scales);
                let scale = _mm256_set1_ps(d * sc as f32);
                let min = _mm256_set1_ps(dmin * m as f32);
                let f = |v: __m128i| {
                    _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), scale, min)
                };
                let w = [
                    f(qa),
                    f(_mm_srli_si128(qa, 8)),
                    f(qb),
                    f(_mm_srli_si128(qb, 8)),
                ];
                let b = sb * 8 + sub;
                fma_inputs!(acc, w, x, cols, b);
            }
        }
    }
    for k in 0..N {
        out[k] = hsum(acc[k]);
    }
}

/// Bytes of one Q6_K super-block in the file's layout: 128 bytes of low nibbles, 64 of high
/// bit pairs, 16 signed scales (one per 16 weights), an f16 scale.
pub const Q6_K_BLOCK_BYTES: usize = 210;

/// [`dot_row_q5_0`] for a row of Q6_K super-blocks (`cols / 256` of [`Q6_K_BLOCK_BYTES`]).
#[cfg(target_arch = "x86_64")]
pub fn dot_row_q6_k<const N: usize>(row: &[u8], x: &[f32], cols: usize, out: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let blocks = cols / 256;
    assert!(
        cols.is_multiple_of(256)
            && row.len() == blocks * Q6_K_BLOCK_BYTES
            && x.len() >= N * cols
            && out.len() >= N
    );
    // SAFETY: the CPU has AVX2, FMA and F16C (checked); all lengths were asserted above.
    unsafe { dot_row_q6_k_avx2::<N>(row, x, cols, out) };
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_row_q6_k_avx2<const N: usize>(row: &[u8], x: &[f32], cols: usize, out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); N];
    let (low, three, bias) = (_mm_set1_epi8(0x0F), _mm_set1_epi8(3), _mm_set1_epi8(32));
    for (sb, block) in row.chunks_exact(Q6_K_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[208], block[209]]).to_f32();
        for half in 0..2 {
            let ql: &[u8; 64] = block[64 * half..64 * half + 64].try_into().expect("64");
            let qh: &[u8; 32] = block[128 + 32 * half..160 + 32 * half]
                .try_into()
                .expect("32");
            let sc = &block[192 + 8 * half..200 + 8 * half];
            let hp = qh.as_ptr() as *const __m128i;
            // SAFETY: two 16-byte reads inside the 32 bytes of `qh`.
            let (ha, hb) = unsafe { (_mm_loadu_si128(hp), _mm_loadu_si128(hp.add(1))) };
            for quarter in 0..4 {
                // Quarter q: the low (q < 2) or high nibbles of ql[0..32] (q even) or
                // ql[32..64] (q odd), and bits 2q, 2q + 1 of qh; scales sc[2q], sc[2q + 1].
                let src = &ql[32 * (quarter % 2)..32 * (quarter % 2) + 32];
                let lp = src.as_ptr() as *const __m128i;
                // SAFETY: two 16-byte reads inside the 32 bytes of `src`.
                let (la, lb) = unsafe { (_mm_loadu_si128(lp), _mm_loadu_si128(lp.add(1))) };
                let nib = |v: __m128i| {
                    let v = if quarter >= 2 {
                        _mm_srli_epi16(v, 4)
                    } else {
                        v
                    };
                    _mm_and_si128(v, low)
                };
                let count = _mm_cvtsi32_si128(2 * quarter as i32);
                let high =
                    |h: __m128i| _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(h, count), three), 4);
                let qa = _mm_sub_epi8(_mm_or_si128(nib(la), high(ha)), bias);
                let qb = _mm_sub_epi8(_mm_or_si128(nib(lb), high(hb)), bias);
                let s0 = _mm256_set1_ps(d * (sc[2 * quarter] as i8) as f32);
                let s1 = _mm256_set1_ps(d * (sc[2 * quarter + 1] as i8) as f32);
                let f = |v: __m128i, s: __m256| {
                    _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)))
                };
                let w = [
                    f(qa, s0),
                    f(_mm_srli_si128(qa, 8), s0),
                    f(qb, s1),
                    f(_mm_srli_si128(qb, 8), s1),
                ];
                let b = sb * 8 + half * 4 + quarter;
                fma_inputs!(acc, w, x, cols, b);
            }
        }
    }
    for k in 0..N {
        out[k] = hsum(acc[k]);
    }
}
