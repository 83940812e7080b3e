//! AVX2/FMA and AVX-512 kernels for [`crate::qmatmul`] with f32 activations (one weight row
//! against `N ≤ 4` inputs), and the decode step's group attention.
//!
//! Chosen at run time (`is_x86_feature_detected!`); every other CPU takes the portable path in
//! `qmatmul.rs`. This module and `qint8.rs` are the only ones that use `unsafe`: the
//! `#[target_feature]` functions may only run on CPUs that have the feature (checked by the
//! caller), and every raw load reads inside a slice whose length is asserted first.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs a decode step's group attention with the best SIMD level the CPU has.
pub(crate) fn group_attention(group: &crate::decode::GroupAttention<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512() {
            // SAFETY: the CPU has AVX-512 F and BW (checked).
            return unsafe { group_attention_avx512(group, out) };
        }
        if available() {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            return unsafe { group_attention_avx2(group, out) };
        }
    }
    group.run(out)
}

/// The AVX-512 group attention for head widths that are multiples of 16 (≤ 256): each cached
/// key and value is loaded once for all query heads of the group, and a score's lanes are
/// summed by a reduction tree (the portable loop sums 16 lanes one after another).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn group_attention_avx512(group: &crate::decode::GroupAttention<'_>, out: &mut [f32]) {
    let hd = group.hd;
    if !hd.is_multiple_of(16) || hd > 256 || group.q.len() > 16 * hd {
        return group.run(out);
    }
    let (nv, rep) = (hd / 16, group.q.len() / hd);
    let s_len = group.keys.len() / hd;
    assert!(group.values.len() == s_len * hd && out.len() == rep * hd);
    assert!(group.bias.is_none_or(|b| b.len() >= s_len));
    let mut scores = vec![0f32; rep * s_len];
    for (j, key) in group.keys.chunks_exact(hd).enumerate() {
        let mut k = [_mm512_setzero_ps(); 16];
        for (c, kc) in k.iter_mut().take(nv).enumerate() {
            // SAFETY: 16 floats at 16·c < hd inside `key`.
            *kc = unsafe { _mm512_loadu_ps(key.as_ptr().add(16 * c)) };
        }
        let bias = group.bias.map_or(0.0, |b| b[j]);
        for (r, q) in group.q.chunks_exact(hd).enumerate() {
            let mut acc = _mm512_setzero_ps();
            for (c, kc) in k.iter().take(nv).enumerate() {
                // SAFETY: 16 floats at 16·c < hd inside `q`.
                let qc = unsafe { _mm512_loadu_ps(q.as_ptr().add(16 * c)) };
                acc = _mm512_fmadd_ps(qc, *kc, acc);
            }
            scores[r * s_len + j] = _mm512_reduce_add_ps(acc) * group.scale + bias;
        }
    }
    for (row, o) in scores.chunks_exact_mut(s_len).zip(out.chunks_exact_mut(hd)) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let (mut total, vmax) = (_mm512_setzero_ps(), _mm512_set1_ps(max));
        for chunk in row.chunks_mut(16) {
            let mask = ((1u32 << chunk.len()) - 1) as u16;
            // SAFETY: `mask` covers exactly the `chunk.len()` floats of `chunk`.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, chunk.as_ptr());
                let e = _mm512_maskz_mov_ps(mask, exp512(_mm512_sub_ps(v, vmax)));
                total = _mm512_add_ps(total, e);
                _mm512_mask_storeu_ps(chunk.as_mut_ptr(), mask, e);
            }
        }
        let inv = _mm512_reduce_add_ps(total).recip();
        let mut acc = [_mm512_setzero_ps(); 16];
        for (p, value) in row.iter().zip(group.values.chunks_exact(hd)) {
            let w = _mm512_set1_ps(p * inv);
            for (c, a) in acc.iter_mut().take(nv).enumerate() {
                // SAFETY: 16 floats at 16·c < hd inside `value`.
                let v = unsafe { _mm512_loadu_ps(value.as_ptr().add(16 * c)) };
                *a = _mm512_fmadd_ps(w, v, *a);
            }
        }
        for (c, a) in acc.iter().take(nv).enumerate() {
            // SAFETY: 16 floats at 16·c < hd inside `o`.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * c), *a) };
        }
    }
}

/// `eˣ` for `x ≤ 0` (softmax arguments after the max is subtracted): `x = n·ln2 + r` with
/// `n` an integer and `|r| ≤ ln2/2` (ln2 split in two parts, so `r` is exact to f32), a
/// degree-7 Taylor polynomial for `eʳ` (truncation 5e-9), then `2ⁿ` by `vscalefps`: a few
/// f32 ulps. `x < -87` (and `-∞`, masked keys) gives exactly 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp512(x: __m512) -> __m512 {
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

/// `Σ a[i]·b[i]` over equal-length slices: 16-lane FMAs where the CPU has AVX-512,
/// [`dot_lanes`] elsewhere.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512 F is available (checked); equal lengths (asserted).
        return unsafe { dot512(a, b) };
    }
    dot_lanes(a, b)
}

/// Dot product with 16 independent lanes, so LLVM vectorizes it (a plain float sum may not
/// be reordered); inlined into the SIMD-compiled decode attention.
#[inline(always)]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() / 16 * 16;
    let mut acc = _mm512_setzero_ps();
    for (x, y) in a[..n].chunks_exact(16).zip(b[..n].chunks_exact(16)) {
        // SAFETY: 16-value chunks.
        unsafe {
            acc = _mm512_fmadd_ps(
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(y.as_ptr()),
                acc,
            );
        }
    }
    let tail: f32 = a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum();
    _mm512_reduce_add_ps(acc) + tail
}

/// `out[j] = q · k[j]` for the `hd`-wide rows `k[j]` (attention scores of one query).
pub(crate) fn row_dots(q: &[f32], k: &[f32], out: &mut [f32]) {
    let hd = q.len();
    assert_eq!(k.len(), out.len() * hd);
    #[cfg(target_arch = "x86_64")]
    if avx512() && hd.is_multiple_of(16) {
        // SAFETY: AVX-512 F is available (checked); lengths asserted, `hd` a multiple of 16.
        unsafe { row_dots512(q, k, out) };
        return;
    }
    for (o, kj) in out.iter_mut().zip(k.chunks_exact(hd.max(1))) {
        *o = dot(q, kj);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_dots512(q: &[f32], k: &[f32], out: &mut [f32]) {
    let hd = q.len();
    // Four keys at a time: four independent accumulator chains instead of one chain of
    // `hd / 16` dependent multiply-adds per key.
    let mut quads = out.chunks_exact_mut(4);
    let mut keys = k.chunks_exact(4 * hd);
    for (o, kq) in (&mut quads).zip(&mut keys) {
        let mut acc = [_mm512_setzero_ps(); 4];
        for l in (0..hd).step_by(16) {
            // SAFETY: `l + 16 ≤ hd`; key `r < 4` spans `kq[r·hd..(r + 1)·hd]`.
            unsafe {
                let x = _mm512_loadu_ps(q.as_ptr().add(l));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(x, _mm512_loadu_ps(kq.as_ptr().add(r * hd + l)), *a);
                }
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = _mm512_reduce_add_ps(a);
        }
    }
    for (o, kj) in quads
        .into_remainder()
        .iter_mut()
        .zip(keys.remainder().chunks_exact(hd))
    {
        let mut acc = _mm512_setzero_ps();
        for (x, y) in q.chunks_exact(16).zip(kj.chunks_exact(16)) {
            // SAFETY: 16-value chunks.
            unsafe {
                acc = _mm512_fmadd_ps(
                    _mm512_loadu_ps(x.as_ptr()),
                    _mm512_loadu_ps(y.as_ptr()),
                    acc,
                );
            }
        }
        *o = _mm512_reduce_add_ps(acc);
    }
}

/// `o += Σⱼ c[j] · x[j]` for the `hd`-wide rows `x[j]` (`hd = o.len()`); rows with `c[j] = 0`
/// are skipped.
pub(crate) fn combine_rows(c: &[f32], x: &[f32], o: &mut [f32]) {
    let hd = o.len();
    assert_eq!(x.len(), c.len() * hd);
    #[cfg(target_arch = "x86_64")]
    if avx512() && hd.is_multiple_of(16) && hd <= 128 {
        // SAFETY: AVX-512 F is available (checked); lengths asserted, `hd` ≤ 128 a multiple
        // of 16.
        unsafe { combine_rows512(c, x, o) };
        return;
    }
    for (&cj, xj) in c.iter().zip(x.chunks_exact(hd.max(1))) {
        if cj != 0.0 {
            o.iter_mut().zip(xj).for_each(|(a, b)| *a += cj * b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn combine_rows512(c: &[f32], x: &[f32], o: &mut [f32]) {
    let hd = o.len();
    let lanes = hd / 16;
    let mut acc = [_mm512_setzero_ps(); 8];
    for (&cj, xj) in c.iter().zip(x.chunks_exact(hd)) {
        if cj == 0.0 {
            continue;
        }
        let s = _mm512_set1_ps(cj);
        for (l, a) in acc.iter_mut().enumerate().take(lanes) {
            // SAFETY: `l < hd / 16` chunks of the row.
            unsafe { *a = _mm512_fmadd_ps(s, _mm512_loadu_ps(xj.as_ptr().add(16 * l)), *a) };
        }
    }
    for (l, a) in acc.iter().enumerate().take(lanes) {
        // SAFETY: `l < hd / 16` chunks of `o`.
        unsafe {
            let p = o.as_mut_ptr().add(16 * l);
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *a));
        }
    }
}

/// `rows[j] += c[j] · x` for the `hd`-wide rows of `rows` (`hd = x.len()`); rows with
/// `c[j] = 0` are skipped.
pub(crate) fn scatter_rows(c: &[f32], x: &[f32], rows: &mut [f32]) {
    let hd = x.len();
    assert_eq!(rows.len(), c.len() * hd);
    #[cfg(target_arch = "x86_64")]
    if avx512() && hd.is_multiple_of(16) && hd <= 128 {
        // SAFETY: AVX-512 F is available (checked); lengths asserted, `hd` ≤ 128 a multiple
        // of 16.
        unsafe { scatter_rows512(c, x, rows) };
        return;
    }
    for (&cj, r) in c.iter().zip(rows.chunks_exact_mut(hd.max(1))) {
        if cj != 0.0 {
            r.iter_mut().zip(x).for_each(|(a, b)| *a += cj * b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scatter_rows512(c: &[f32], x: &[f32], rows: &mut [f32]) {
    let hd = x.len();
    let lanes = hd / 16;
    let mut xv = [_mm512_setzero_ps(); 8];
    for (l, v) in xv.iter_mut().enumerate().take(lanes) {
        // SAFETY: `l < hd / 16` chunks of `x`.
        unsafe { *v = _mm512_loadu_ps(x.as_ptr().add(16 * l)) };
    }
    for (&cj, r) in c.iter().zip(rows.chunks_exact_mut(hd)) {
        if cj == 0.0 {
            continue;
        }
        let s = _mm512_set1_ps(cj);
        for (l, v) in xv.iter().enumerate().take(lanes) {
            // SAFETY: `l < hd / 16` chunks of the row.
            unsafe {
                let p = r.as_mut_ptr().add(16 * l);
                _mm512_storeu_ps(p, _mm512_fmadd_ps(s, *v, _mm512_loadu_ps(p)));
            }
        }
    }
}

/// `x[i] ← e^(x[i] − max)` (every `x[i] ≤ max`, so the argument is ≤ 0) and returns the sum:
/// the softmax numerator, [`exp512`] on 16 lanes where the CPU has AVX-512.
pub(crate) fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    let mut done = 0;
    let mut sum = 0.0;
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        done = x.len() / 16 * 16;
        // SAFETY: AVX-512 F is available (checked).
        sum = unsafe { exp_sub_sum512(&mut x[..done], max) };
    }
    for v in &mut x[done..] {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_sub_sum512(x: &mut [f32], max: f32) -> f32 {
    let m = _mm512_set1_ps(max);
    let mut acc = _mm512_setzero_ps();
    for c in x.chunks_exact_mut(16) {
        // SAFETY: 16-value chunks.
        unsafe {
            let e = exp512(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), m));
            acc = _mm512_add_ps(acc, e);
            _mm512_storeu_ps(c.as_mut_ptr(), e);
        }
    }
    _mm512_reduce_add_ps(acc)
}

/// `out[i] = σ(x[i]) = 1 / (1 + e^(−x[i]))`, 16 lanes at a time with [`exp512`] where the
/// CPU has AVX-512 (`e^(−|x|)` keeps its argument ≤ 0), `f32::exp` elsewhere.
pub(crate) fn sigmoid(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        done = x.len() / 16 * 16;
        // SAFETY: AVX-512 F is available (checked); both slices hold `done` values.
        unsafe { sigmoid512(&x[..done], &mut out[..done]) };
    }
    for (o, &v) in out[done..].iter_mut().zip(&x[done..]) {
        *o = 1.0 / (1.0 + (-v).exp());
    }
}

/// [`sigmoid`] on whole 16-lane chunks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sigmoid512(x: &[f32], out: &mut [f32]) {
    let one = _mm512_set1_ps(1.0);
    for (o, v) in out.chunks_exact_mut(16).zip(x.chunks_exact(16)) {
        // SAFETY: 16-value chunks.
        unsafe {
            let v = _mm512_loadu_ps(v.as_ptr());
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
            let minus_abs = _mm512_min_ps(v, _mm512_sub_ps(_mm512_setzero_ps(), v));
            let e = exp512(minus_abs);
            let inv = _mm512_div_ps(one, _mm512_add_ps(one, e));
            // x ≥ 0: 1/(1+e^−x); x < 0: e^x/(1+e^x).
            let s = _mm512_mask_mul_ps(inv, neg, inv, e);
            _mm512_storeu_ps(o.as_mut_ptr(), s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn group_attention_avx2(group: &crate::decode::GroupAttention<'_>, out: &mut [f32]) {
    group.run(out)
}

/// How far ahead (bytes) the decode kernels prefetch quantized weights.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 1024;

/// Block format of a row.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// Scales, minimums, 16 packed bytes per block.
    Q4_1(&'a [f32], &'a [f32], &'a [u8]),
    /// Scales, 16 packed bytes per block (offset 8).
    Q4_0(&'a [f32], &'a [u8]),
    /// Scales, 32 signed bytes per block.
    Q8_0(&'a [f32], &'a [i8]),
}

impl Kind<'_> {
    /// The per-block term the kernels add through the block sums of x: the Q4_1 minimum
    /// `m[b]`, the Q4_0 offset `-8·d[b]`, nothing for Q8_0.
    #[inline(always)]
    fn offset(&self, b: usize) -> f32 {
        match self {
            Kind::Q4_1(_, m, _) => m[b],
            Kind::Q4_0(d, _) => -8.0 * d[b],
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
        let scale = _mm256_set1_ps($d[$b]);
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
#[target_feature(enable = "avx2,fma")]
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
                let scale = _mm256_set1_ps(d[b]);
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
    for b in 0..bpr {
        // Quants of block b as floats: weights 0..16 and 16..32, and the block scale.
        let (w0, w1, d) = match kind {
            Kind::Q4_1(d, _, q) | Kind::Q4_0(d, q) => {
                let block: &[u8; 16] = q[b * 16..b * 16 + 16].try_into().expect("16 bytes");
                // SAFETY: reads exactly the 16 bytes of `block`.
                let bytes = unsafe { _mm_loadu_si128(block.as_ptr() as *const __m128i) };
                let lo = _mm_and_si128(bytes, low);
                let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
                (
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)),
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)),
                    d[b],
                )
            }
            Kind::Q8_0(d, q) => {
                let block: &[i8; 32] = q[b * 32..b * 32 + 32].try_into().expect("32 bytes");
                let p = block.as_ptr() as *const __m128i;
                // SAFETY: two 16-byte reads inside the 32 bytes of `block`.
                let (a, c) = unsafe { (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) };
                (
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a)),
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c)),
                    d[b],
                )
            }
        };
        let scale = _mm512_set1_ps(d);
        for k in 0..N {
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
            acc[k] = _mm512_fmadd_ps(scale, dot, acc[k]);
            extra[k] += kind.offset(b) * xsum[k * bpr + b];
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

/// One row against one input, with iterators instead of indexing.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn dot1_avx512(kind: Kind<'_>, x: &[f32], xsum: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    let low = _mm_set1_epi8(0x0F);
    // Two accumulators (even and odd blocks) break the FMA dependency chain.
    let mut acc2 = _mm512_setzero_ps();
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
    macro_rules! q4_loop {
        ($d:ident, $q:ident) => {
            let mut qs = $q.chunks_exact(32);
            let mut xs = x.chunks_exact(64);
            let mut ds = $d.chunks_exact(2);
            for ((q2, x2), d2) in (&mut qs).zip(&mut xs).zip(&mut ds) {
                // A prefetch is only a hint: it never faults, whatever the address. The
                // scales run 4 bytes per block beside the 16 bytes of quants.
                _mm_prefetch::<_MM_HINT_T0>(q2.as_ptr().wrapping_add(PREFETCH) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(d2.as_ptr().wrapping_add(PREFETCH / 16) as *const i8);
                q4_block!(&q2[..16], &x2[..32], d2[0], acc);
                q4_block!(&q2[16..], &x2[32..], d2[1], acc2);
            }
            if let (Some(&db), true) = (ds.remainder().first(), qs.remainder().len() == 16) {
                q4_block!(qs.remainder(), xs.remainder(), db, acc);
            }
        };
    }
    match kind {
        Kind::Q4_1(d, _, q) | Kind::Q4_0(d, q) => {
            q4_loop!(d, q);
        }
        Kind::Q8_0(d, q) => {
            for ((qb, xb), &db) in q.chunks_exact(32).zip(x.chunks_exact(32)).zip(d) {
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
    let extra: f32 = (0..xsum.len()).map(|b| kind.offset(b) * xsum[b]).sum();
    _mm512_reduce_add_ps(_mm512_add_ps(acc, acc2)) + extra
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn vector_exp_matches_libm() {
        if !avx512() {
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
    /// The vector sigmoid agrees with the f64 formula over the range the MLP sees, and the
    /// scalar tail (a length not a multiple of 16) too.
    #[test]
    fn sigmoid_matches_f64() {
        let xs: Vec<f32> = (0..=4001).map(|i| -100.0 + 0.05 * i as f32).collect();
        let mut got = vec![0f32; xs.len()];
        sigmoid(&xs, &mut got);
        for (x, g) in xs.iter().zip(&got) {
            let want = 1.0 / (1.0 + (-(*x as f64)).exp());
            assert!(
                (*g as f64 - want).abs() <= 1e-6 * want + 1e-30,
                "σ({x}) = {g}, want {want}"
            );
        }
    }
}
