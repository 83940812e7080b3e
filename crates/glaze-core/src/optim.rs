//! AdamW (Loshchilov & Hutter 2019) over an adapter's parameters, with global-norm gradient
//! clipping.
//!
//! The update runs on host vectors keyed by parameter name: only the adapter's parameters
//! ever have state here (the backbone has none to give), the state is saved in checkpoints
//! under stable names, and the arithmetic is the same on every device, so a resumed run
//! reproduces an uninterrupted one bit for bit.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use burn::prelude::*;

use crate::alloc::Out;
use crate::params::{HostGrads, NamedTensor, update_params};
use crate::product_grad::ProductGrad;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWSettings {
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Denominator epsilon. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.01.
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        AdamWSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimizer and its state: step count and both moments of every parameter it updated.
///
/// Each update takes the parameters' values out of the module (without a copy when the
/// module holds the only reference), updates them in place and gives them back.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Hyper-parameters.
    pub settings: AdamWSettings,
    /// Updates applied so far.
    pub t: u64,
    moments: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

/// What one update did.
#[derive(Debug, Clone, Copy)]
pub struct UpdateStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// True when the gradients were scaled down to the clipping norm.
    pub clipped: bool,
}

impl AdamW {
    /// A fresh optimizer.
    pub fn new(settings: AdamWSettings) -> Self {
        AdamW {
            settings,
            t: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Applies one update with learning rate `lr`; gradients whose global norm exceeds
    /// `clip_norm` are scaled down to it first.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: HostGrads,
        lr: f64,
        clip_norm: Option<f64>,
    ) -> (M, UpdateStats) {
        let grad_norm = grads.norm();
        // Clipping scales the gradients inside the update (the same f32 product as scaling
        // them first: a pass over every gradient less).
        let (clipped, scale) = match clip_norm {
            Some(c) if grad_norm > c && grad_norm.is_finite() => (true, (c / grad_norm) as f32),
            _ => (false, 1.0),
        };
        self.t += 1;
        let s = self.settings;
        let t = self.t as i32;
        let bc1 = 1.0 - s.beta1.powi(t);
        let bc2 = 1.0 - s.beta2.powi(t);
        let moments = &mut self.moments;
        let coeffs = Coeffs {
            scale,
            b1: s.beta1 as f32,
            b2: s.beta2 as f32,
            decay: (1.0 - lr * s.weight_decay) as f32,
            step: lr as f32,
            eps: s.eps as f32,
            r1: (1.0 / bc1) as f32,
            r2: (1.0 / bc2) as f32,
        };
        let module = update_params(module, |name, read| {
            if let Some(g) = grads.products.get(name) {
                let (m, v) = moments
                    .entry(name.to_string())
                    .or_insert_with(|| (vec![0.0; g.len()], vec![0.0; g.len()]));
                let mut p = read();
                update_from_product(&mut p, g, m, v, coeffs);
                return Some(p);
            }
            let g = grads.grads.get(name)?;
            let (m, v) = moments
                .entry(name.to_string())
                .or_insert_with(|| (vec![0.0; g.len()], vec![0.0; g.len()]));
            let mut p = read();
            update(&mut p, g, m, v, coeffs);
            Some(p)
        });
        (module, UpdateStats { grad_norm, clipped })
    }

    /// Number of `f32` values of optimizer state (two moments per updated parameter).
    pub fn state_len(&self) -> usize {
        self.moments.values().map(|(m, v)| m.len() + v.len()).sum()
    }

    /// The state as named tensors (`m.<param>` and `v.<param>`), for checkpoints.
    pub fn export_state(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for (name, (m, v)) in &self.moments {
            for (prefix, data) in [("m", m), ("v", v)] {
                out.push(NamedTensor {
                    name: format!("{prefix}.{name}"),
                    shape: vec![data.len()],
                    data: data.clone(),
                });
            }
        }
        out
    }

    /// Restores state written by [`AdamW::export_state`]; `None` when a moment lacks its pair.
    pub fn import_state(
        settings: AdamWSettings,
        t: u64,
        tensors: Vec<NamedTensor>,
    ) -> Option<Self> {
        let mut ms = BTreeMap::new();
        let mut vs = BTreeMap::new();
        for nt in tensors {
            if let Some(name) = nt.name.strip_prefix("m.") {
                ms.insert(name.to_string(), nt.data);
            } else if let Some(name) = nt.name.strip_prefix("v.") {
                vs.insert(name.to_string(), nt.data);
            } else {
                return None;
            }
        }
        if ms.len() != vs.len() {
            return None;
        }
        let mut moments = BTreeMap::new();
        for (name, m) in ms {
            let v = vs.remove(&name)?;
            if v.len() != m.len() {
                return None;
            }
            moments.insert(name, (m, v));
        }
        Some(AdamW {
            settings,
            t,
            moments,
        })
    }
}

/// The update's constants for one step (bias corrections as reciprocals).
#[derive(Clone, Copy)]
struct Coeffs {
    /// The clipping factor applied to each gradient (1 when not clipped).
    scale: f32,
    b1: f32,
    b2: f32,
    decay: f32,
    step: f32,
    eps: f32,
    r1: f32,
    r2: f32,
}

/// One AdamW update of `p` with gradient `g` and moments `m`, `v`, in place, in parallel
/// chunks.
/// Deliberately not generic: it is compiled (and vectorised) in this crate whatever the
/// profile of the crate that instantiates [`AdamW::step`] (at `opt-level = 0` the per-element
/// closure was an out-of-line call: 35 ms for 4.9 M parameters).
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coeffs) {
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
fn update_from_product(p: &mut [f32], g: &ProductGrad, m: &mut [f32], v: &mut [f32], c: Coeffs) {
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

/// [`update_chunk`] on one piece, compiled for AVX-512 where the CPU has it.
fn update_piece(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coeffs) {
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
