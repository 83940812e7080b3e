//! AdamW's per-element update on host vectors: parallel chunks, each compiled for AVX-512
//! where the CPU has it, with the same operations and bits as the portable loop; and the
//! update from a gradient kept as a product ([`ProductGrad`]), block by block as its GEMM
//! hands the rows out.

#![allow(unsafe_code)]

use crate::alloc::Out;
use crate::product_grad::ProductGrad;

/// The update's constants for one step (bias corrections as reciprocals).
#[derive(Clone, Copy)]
pub struct Coeffs {
    /// The clipping factor applied to each gradient (1 when not clipped).
    pub scale: f32,
    /// First-moment decay `β₁`.
    pub b1: f32,
    /// Second-moment decay `β₂`.
    pub b2: f32,
    /// The decoupled weight-decay factor `1 − lr·λ`.
    pub decay: f32,
    /// The learning rate.
    pub step: f32,
    /// `ε` of the denominator.
    pub eps: f32,
    /// `1 / (1 − β₁ᵗ)`.
    pub r1: f32,
    /// `1 / (1 − β₂ᵗ)`.
    pub r2: f32,
}

/// One AdamW update of `p` with gradient `g` and moments `m`, `v`, in place, in parallel
/// chunks.
/// Deliberately not generic: it is compiled (and vectorised) in this crate whatever the
/// profile of the crate that instantiates the optimizer's step (at `opt-level = 0` the per-element
/// closure was an out-of-line call: 35 ms for 4.9 M parameters).
pub fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coeffs) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| update_piece(p, g, m, v, c));
}

/// [`update`] with a gradient kept as a product: its GEMM hands each block of rows to the
/// update of the same rows of `p`, `m` and `v` while the block is in L1 (the same values
/// and arithmetic as forming the gradient and calling [`update`]).
pub fn update_from_product(
    p: &mut [f32],
    g: &ProductGrad,
    m: &mut [f32],
    v: &mut [f32],
    c: Coeffs,
) {
    assert!(
        p.len() == g.len() && m.len() == p.len() && v.len() == p.len(),
        "invariant: a parameter, its gradient and its moments have the same length"
    );
    let (len, width) = (p.len(), g.rows);
    let (pp, mp, vp) = (
        Out(p.as_mut_ptr()),
        Out(m.as_mut_ptr()),
        Out(v.as_mut_ptr()),
    );
    let consume = |row: usize, block: &[f32]| {
        let (lo, n) = (row * width, block.len());
        assert!(lo + n <= len, "invariant: a block lies in the parameter");
        // SAFETY: the blocks are disjoint ranges of rows inside the parameter (checked above),
        // so no two calls — on whichever threads — touch the same values, and `p`, `m`, `v`
        // stay borrowed by this function until `each_block` returns.
        let (p, m, v) = unsafe {
            let at = |o: Out| std::slice::from_raw_parts_mut(o.at(lo), n);
            (at(pp), at(mp), at(vp))
        };
        update_piece(p, block, m, v, c);
    };
    g.each_block(&consume);
}

/// The update of one piece, element by element, compiled for AVX-512 where the CPU has it.
pub fn update_piece(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coeffs) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::available() {
        // SAFETY: AVX-512 F is available (checked).
        unsafe { update_chunk512(p, g, m, v, c) };
        return;
    }
    update_chunk(p, g, m, v, c);
}

/// [`update`] on one chunk, element by element (the same operations in the same order at any
/// vector width: no fused multiply-adds, so every build gives the same bits).
#[inline(always)]
fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coeffs) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * c.scale;
        let mi = c.b1 * *m + (1.0 - c.b1) * g;
        let vi = c.b2 * *v + (1.0 - c.b2) * g * g;
        *m = mi;
        *v = vi;
        *p = *p * c.decay - c.step * (mi * c.r1) / ((vi * c.r2).sqrt() + c.eps);
    }
}

/// [`update_chunk`] compiled for AVX-512: 16 lanes per square root and division (the
/// portable build's 4-lane SSE loop was 4 % of a Time-LLM training step's samples).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn update_chunk512(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coeffs) {
    update_chunk(p, g, m, v, c);
}
