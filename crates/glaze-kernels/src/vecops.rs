//! Vector helpers of the attention and MLP kernels: a decode step's group attention, dot
//! products, the softmax of a score row and the sigmoid — AVX-512 where the CPU has it
//! (checked at run time), portable loops elsewhere.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::f16;

use crate::vmath::exp512;

use crate::qkernels::{available, avx512};

/// The attention of one group of query heads over its cached keys and values.
#[derive(Debug)]
pub struct GroupAttention<'a, T> {
    /// `rep` query heads, `hd` values each.
    pub q: &'a [f32],
    /// Cached keys `[S, hd]`.
    pub keys: &'a [T],
    /// Cached values `[S, hd]`.
    pub values: &'a [T],
    /// Additive bias per key (padding), if any.
    pub bias: Option<&'a [f32]>,
    /// Head width.
    pub hd: usize,
    /// Score scale `1/sqrt(hd)`.
    pub scale: f32,
}

impl<T: KvElem> GroupAttention<'_, T> {
    /// Writes the `rep` output heads into `out`. Inlined into the SIMD-compiled wrappers of
    /// `vecops::group_attention`, where LLVM vectorizes the lane loops.
    #[inline(always)]
    pub fn run(&self, out: &mut [f32]) {
        let hd = self.hd;
        let s_len = self.keys.len() / hd;
        let mut scores = vec![0f32; s_len];
        for (q, o) in self.q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
            let mut max = f32::NEG_INFINITY;
            for (j, key) in self.keys.chunks_exact(hd).enumerate() {
                let sc = dot_lanes(q, key) * self.scale + self.bias.map_or(0.0, |b| b[j]);
                scores[j] = sc;
                max = max.max(sc);
            }
            let mut total = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                total += *sc;
            }
            o.fill(0.0);
            for (p, value) in scores.iter().zip(self.values.chunks_exact(hd)) {
                let w = p / total;
                for (acc, v) in o.iter_mut().zip(value) {
                    *acc += w * v.widen();
                }
            }
        }
    }
}

/// An element of the decode KV cache: f32, or f16 when generating with 8-bit activations
/// (llama.cpp's cache type: half the bytes, read back widened to f32).
pub trait KvElem: Copy + Send + Sync + burn::tensor::Element {
    /// The value as f32.
    fn widen(self) -> f32;
    /// `v` rounded to this type (to nearest).
    fn narrow(v: f32) -> Self;
    /// 16 consecutive values at `p` as f32 lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, and 16 values are readable at `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> __m512;
}

impl KvElem for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        v
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: guaranteed by the caller.
        unsafe { _mm512_loadu_ps(p) }
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: guaranteed by the caller (16 halves are 32 bytes).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
}

/// Runs a decode step's group attention with the best SIMD level the CPU has.
pub fn group_attention<T: KvElem>(group: &GroupAttention<'_, T>, out: &mut [f32]) {
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
fn group_attention_avx512<T: KvElem>(group: &GroupAttention<'_, T>, out: &mut [f32]) {
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
            // SAFETY: 16 values at 16·c < hd inside `key`; AVX-512 F (this function's).
            *kc = unsafe { T::load16(key.as_ptr().add(16 * c)) };
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
                // SAFETY: 16 values at 16·c < hd inside `value`; AVX-512 F.
                let v = unsafe { T::load16(value.as_ptr().add(16 * c)) };
                *a = _mm512_fmadd_ps(w, v, *a);
            }
        }
        for (c, a) in acc.iter().take(nv).enumerate() {
            // SAFETY: 16 floats at 16·c < hd inside `o`.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * c), *a) };
        }
    }
}

/// `Σ a[i]·b[i]` over equal-length slices: 16-lane FMAs where the CPU has AVX-512,
/// [`dot_lanes`] elsewhere.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512 F is available (checked); equal lengths (asserted).
        return unsafe { dot512(a, b) };
    }
    dot_lanes(a, b)
}

/// Dot product with 16 independent lanes, so LLVM vectorizes it (a plain float sum may not
/// be reordered); inlined into the SIMD-compiled decode attention. `b` may be a cache row
/// of f16 values (widened as they are read).
#[inline(always)]
pub fn dot_lanes<T: KvElem>(a: &[f32], b: &[T]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y.widen())
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i].widen();
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

/// `out[i] = σ(x[i]) = 1 / (1 + e^(−x[i]))`, 16 lanes at a time with [`exp512`] where the
/// CPU has AVX-512 (`e^(−|x|)` keeps its argument ≤ 0), `f32::exp` elsewhere.
pub fn sigmoid(x: &[f32], out: &mut [f32]) {
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
fn group_attention_avx2<T: KvElem>(group: &GroupAttention<'_, T>, out: &mut [f32]) {
    group.run(out)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

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
