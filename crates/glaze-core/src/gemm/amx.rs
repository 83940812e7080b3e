//! The AMX path of [`super`]'s products: single-precision `C = A · B` computed with the
//! tile unit's bf16 dot products (Intel AMX-BF16, Sapphire Rapids and later), chosen at run
//! time where the CPU and the kernel allow it.
//!
//! **Exact splitting.** Every `f32` operand value `x` is cut into three bf16 parts by
//! truncation, `x = x₁ + x₂ + x₃` *exactly* (each part keeps the next 8 bits of the
//! 24-bit significand). The product `a · b` is then the sum of the nine part products; the
//! six of them down to order `2⁻¹⁶` (`a₁b₁, a₁b₂, a₂b₁, a₁b₃, a₂b₂, a₃b₁`) are computed,
//! each exactly (a bf16 × bf16 product fits an `f32`), and summed in `f32` by the tile unit.
//! The dropped three are below `2⁻²⁴ · |a b|`, the size of one `f32` rounding: the result has
//! the accuracy of an `f32` product (tested against `f64`). The six terms are laid out along
//! the inner dimension, so one bf16 product of depth `6k` computes the `f32` product of depth
//! `k`; the tile unit's 1024 flops per cycle make that still 2–3× the AVX-512 kernel.
//!
//! **Layout.** A tile of A is 16 rows × 32 bf16 (64 bytes a row), a tile of B 16 pairs of
//! rows × 16 columns with each column's pair adjacent (the "VNNI" layout). For a group of 16
//! consecutive `k` the packed depth holds 6 runs of 16: run `t` carries part `PA[t]` of A and
//! part `PB[t]` of B for those 16 `k`, so a 32-deep tile step covers two runs.
#![allow(unsafe_code)]

use super::{Rhs, Split, View, choose_split, ranges, written};
use std::sync::OnceLock;

/// Part of A (0 = high, 1 = middle, 2 = low) in each of the six runs of a 16-`k` group.
const PA: [usize; TERMS] = [0, 0, 1, 0, 1, 2];
/// Part of B in each run: runs pair `a₁b₁, a₁b₂, a₂b₁, a₁b₃, a₂b₂, a₃b₁`.
const PB: [usize; TERMS] = [0, 1, 0, 2, 1, 0];
/// Bf16 products per `f32` product.
const TERMS: usize = 6;
/// Packed depth of one tile step (bf16 values of a tile row).
const STEP: usize = 32;
/// `u16` values in one packed tile (16 rows of 64 bytes).
const TILE: usize = 512;
/// Inner dimension of one block when A does not fit [`A_BYTES`] whole.
const KB: usize = 384;
/// Largest packed A block kept (in L2 with a panel of B).
const A_BYTES: usize = 1536 << 10;

/// Whether the AMX path runs: the CPU has AMX-BF16 and AVX-512, the kernel granted the tile
/// state to the process, and `GLAZE_AMX` is not `0`.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("GLAZE_AMX").map_or(true, |v| v != "0") && supported()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn supported() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if !super::available() {
        return false;
    }
    // CPUID leaf 7 exists on every x86-64 CPU with AVX-512.
    let leaf7 = __cpuid_count(7, 0);
    let amx_bf16 = leaf7.edx & (1 << 22) != 0;
    let amx_tile = leaf7.edx & (1 << 24) != 0;
    if !(amx_bf16 && amx_tile) {
        return false;
    }
    // Linux hands the 8 KB tile state to a process only on request (ARCH_REQ_XCOMP_PERM for
    // XFEATURE_XTILEDATA); it fails where the kernel or the hypervisor does not support it.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn supported() -> bool {
    false
}

/// Row-major `C = A · B` on the tile unit (caller: [`enabled`], shapes and bounds checked).
pub(super) fn product<B: Rhs>(a: View, b: B) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.width());
    if m == 0 || n == 0 || k == 0 {
        return vec![0f32; m * n];
    }
    let tasks = rayon::current_num_threads().max(1);
    use rayon::prelude::*;
    match choose_split(m, k, n, tasks) {
        // SAFETY (all three): `serial` stores every value of its share of the output (each
        // tile of the first block is stored, edges through a bounce tile); shares are disjoint.
        Split::Cols => unsafe {
            written(m * n, |out| {
                ranges(n, 32, tasks)
                    .into_par_iter()
                    .for_each(|(j0, j1)| serial(a, b.sub_cols(j0, j1), out.at(j0), n))
            })
        },
        Split::Rows => unsafe {
            written(m * n, |out| {
                ranges(m, 32, tasks)
                    .into_par_iter()
                    .for_each(|(i0, i1)| serial(a.rows(i0, i1), b, out.at(i0 * n), n))
            })
        },
        Split::Depth => {
            let parts: Vec<Vec<f32>> = ranges(k, 16, tasks)
                .into_par_iter()
                .map(|(k0, k1)| unsafe {
                    written(m * n, |out| {
                        serial(a.cols(k0, k1), b.sub_rows(k0, k1), out.at(0), n)
                    })
                })
                .collect();
            let mut parts = parts.into_iter();
            let mut c = parts.next().unwrap_or_else(|| vec![0f32; m * n]);
            for part in parts {
                for (x, y) in c.iter_mut().zip(&part) {
                    *x += y;
                }
            }
            c
        }
    }
}

/// Buffers of one thread: A rows as `f32`, packed A, a B panel as `f32`, packed B panel.
#[derive(Default)]
struct Buffers {
    a32: Vec<f32>,
    a: Lines,
    b32: Vec<f32>,
    b: Lines,
}

/// One cache line of packed bf16 values (tile rows must not straddle lines: a misaligned
/// tile load reads twice the lines and ran the kernel at 40 % of its speed).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// A growable, cache-line-aligned `u16` buffer.
#[derive(Default)]
struct Lines(Vec<Line>);

impl Lines {
    /// At least `len` values (contents unspecified where newly grown: zero).
    fn reserve_values(&mut self, len: usize) {
        let lines = len.div_ceil(32);
        if self.0.len() < lines {
            self.0.resize(lines, Line([0; 32]));
        }
    }

    fn values(&self) -> &[u16] {
        // SAFETY: `Line` is 32 `u16` with no padding; the slice covers the vector's lines.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 32) }
    }

    fn values_mut(&mut self) -> &mut [u16] {
        // SAFETY: as in `values`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 32) }
    }
}

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

/// `u16` values of one packed 16-row (or 16-column) strip of depth `kp` (a multiple of 16).
fn strip_len(kp: usize) -> usize {
    kp * TERMS * 16
}

/// `C = A · B` on this thread, `C` row-major with row step `ldc`, every value stored.
///
/// # Safety
/// [`enabled`] must hold; `c` must be valid for `a.rows` rows of `b.width()` values with row
/// step `ldc`, and written by no one else meanwhile.
unsafe fn serial<B: Rhs>(a: View, b: B, c: *mut f32, ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.width());
    let env = |n: &str, d: usize| std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (kbd, abytes) = (env("AMX_KB", KB), env("AMX_AB", A_BYTES));
    let whole = m.div_ceil(16) * strip_len(k.div_ceil(16) * 16) * 2 <= abytes;
    let kb = if whole { k } else { kbd };
    // Rows per block: as many 16-row strips as fit A_BYTES (at least two).
    let mb = if whole {
        m
    } else {
        (abytes / (strip_len(kb) * 2)).max(2) * 16
    };
    BUFFERS.with_borrow_mut(|buf| {
        // SAFETY: the tile unit is enabled for this process (caller).
        unsafe { configure() };
        for pc in (0..k).step_by(kb) {
            let kc = kb.min(k - pc);
            let kp = kc.div_ceil(16) * 16;
            for ic in (0..m).step_by(mb) {
                let mc = mb.min(m - ic);
                let strips = mc.div_ceil(16);
                pack_a(&a, ic, mc, pc, kc, kp, buf);
                for j0 in (0..n).step_by(32) {
                    let cols = 32.min(n - j0);
                    let panel = &mut buf.b32;
                    if panel.len() < kp * 32 {
                        panel.resize(kp * 32, 0.0);
                    }
                    b.pack_slab(pc, kc, j0, cols, &mut panel[..kc * 32]);
                    // The depth padding must be zero (A's may be anything finite).
                    panel[kc * 32..kp * 32].fill(0.0);
                    pack_b(&buf.b32, kp, &mut buf.b);
                    let sl = strip_len(kp);
                    let (pa, pb) = (buf.a.values(), buf.b.values());
                    for s in (0..strips).step_by(2) {
                        let two = s + 1 < strips;
                        let tile = Tiles {
                            c,
                            ldc,
                            i0: ic + s * 16,
                            j0,
                            rows: (mc - s * 16).min(32),
                            cols,
                        };
                        // SAFETY: the packed strips hold `kp·TERMS/32` tile steps each; the
                        // tiles lie in the caller's output (bounds in `Tiles`).
                        unsafe {
                            kernel(
                                pa[s * sl..].as_ptr(),
                                if two {
                                    pa[(s + 1) * sl..].as_ptr()
                                } else {
                                    std::ptr::null()
                                },
                                pb.as_ptr(),
                                pb[sl..].as_ptr(),
                                kp * TERMS / STEP,
                                &tile,
                                pc > 0,
                            )
                        }
                    }
                }
            }
        }
        // SAFETY: releases this thread's tile state (configured above).
        unsafe { std::arch::asm!("tilerelease", options(nostack)) };
    });
}

/// Where a 32 × 32 block of output tiles lies.
struct Tiles {
    c: *mut f32,
    ldc: usize,
    i0: usize,
    j0: usize,
    /// Valid rows (≤ 32) and columns (≤ 32) of the block.
    rows: usize,
    cols: usize,
}

/// The three exact bf16 parts of each of 16 values, as the high halves of `f32` lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn parts(x: std::arch::x86_64::__m512) -> [std::arch::x86_64::__m512i; 3] {
    use std::arch::x86_64::*;
    let mask = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    let hi = _mm512_and_si512(_mm512_castps_si512(x), mask);
    let r = _mm512_sub_ps(x, _mm512_castsi512_ps(hi));
    let mid = _mm512_and_si512(_mm512_castps_si512(r), mask);
    let lo = _mm512_sub_ps(r, _mm512_castsi512_ps(mid));
    [hi, mid, _mm512_castps_si512(lo)]
}

/// Packs rows `i0..i0+rows` of A, depth `k0..k0+kc` (zero to `kp` and to whole strips),
/// into `buf.a`: strip after strip, each `kp·TERMS/32` tiles of 16 rows × 32 bf16.
fn pack_a(a: &View, i0: usize, rows: usize, k0: usize, kc: usize, kp: usize, buf: &mut Buffers) {
    let strips = rows.div_ceil(16);
    if buf.a32.len() < kp {
        buf.a32.resize(kp, 0.0);
    }
    buf.a32[kc..kp].fill(0.0);
    // Rows past `rows` keep whatever they held: they only reach output rows that are dropped.
    buf.a.reserve_values(strips * strip_len(kp));
    for r in 0..rows {
        let row = &mut buf.a32[..kc];
        let at = a.offset + (i0 + r) * a.rs + k0 * a.cs;
        if a.cs == 1 {
            row.copy_from_slice(&a.data[at..at + kc]);
        } else {
            for (kk, v) in row.iter_mut().enumerate() {
                *v = a.data[at + kk * a.cs];
            }
        }
        let (s, rr) = (r / 16, r % 16);
        let strip = &mut buf.a.values_mut()[s * strip_len(kp)..(s + 1) * strip_len(kp)];
        // SAFETY: AVX-512F is available (`enabled`); `a32` holds `kp` values, `strip` a
        // whole strip of depth `kp`.
        unsafe { split_row(&buf.a32, kp, rr, strip) };
    }
}

/// Row `rr` of an A strip from `kp` values: for each group of 16 and each run `t`, the 16
/// values' part `PA[t]` into half `(g·6 + t) % 2` of row `rr` of tile `(g·6 + t) / 2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_row(src: &[f32], kp: usize, rr: usize, strip: &mut [u16]) {
    use std::arch::x86_64::*;
    debug_assert!(src.len() >= kp && strip.len() >= strip_len(kp));
    for g in 0..kp / 16 {
        // SAFETY (caller): 16 values at `16g` lie in `src`.
        let p = parts(unsafe { _mm512_loadu_ps(src.as_ptr().add(g * 16)) });
        for t in 0..TERMS {
            let run = g * TERMS + t;
            let at = (run / 2) * TILE + rr * STEP + (run % 2) * 16;
            let bits = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(p[PA[t]]));
            // SAFETY: `at + 16 ≤ strip_len(kp)` (run < kp/16·6, rr < 16).
            unsafe { _mm256_storeu_si256(strip.as_mut_ptr().add(at).cast(), bits) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn split_row(_: &[f32], _: usize, _: usize, _: &mut [u16]) {
    unreachable!("the AMX path is x86-64 only")
}

/// Packs a 32-column `f32` panel (`kp` rows of 32, zero-padded) as two B strips in the pair
/// layout: run `t` of group `g` holds part `PB[t]`; rows `k, k+1` of a run share a tile row.
fn pack_b(panel: &[f32], kp: usize, dst: &mut Lines) {
    dst.reserve_values(2 * strip_len(kp));
    // Every value of both strips is written.
    // SAFETY: AVX-512F is available (`enabled`); sizes as allocated above.
    unsafe { split_panel(panel, kp, dst.values_mut()) };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_panel(panel: &[f32], kp: usize, dst: &mut [u16]) {
    use std::arch::x86_64::*;
    debug_assert!(panel.len() >= kp * 32 && dst.len() >= 2 * strip_len(kp));
    let sl = strip_len(kp);
    let low = _mm512_set1_epi32(0xFFFF);
    for g in 0..kp / 16 {
        for u in 0..8 {
            let k = g * 16 + 2 * u;
            for half in 0..2 {
                // SAFETY (caller): rows `k`, `k + 1` of the panel hold 32 values each.
                let (x0, x1) = unsafe {
                    let p = panel.as_ptr().add(k * 32 + half * 16);
                    (parts(_mm512_loadu_ps(p)), parts(_mm512_loadu_ps(p.add(32))))
                };
                for t in 0..TERMS {
                    let run = g * TERMS + t;
                    let row = (run % 2) * 8 + u;
                    let at = half * sl + (run / 2) * TILE + row * STEP;
                    // Lane j: column j's pair (k in the low half, k + 1 in the high half).
                    let v = _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi32::<16>(x0[PB[t]]), low),
                        x1[PB[t]],
                    );
                    // SAFETY: `at + 32 ≤ 2·sl`.
                    unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(at).cast(), v) };
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn split_panel(_: &[f32], _: usize, _: &mut [u16]) {
    unreachable!("the AMX path is x86-64 only")
}

/// The tile configuration: 8 tiles of 16 rows × 64 bytes (C: 0–3, A: 4–5, B: 6–7).
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// Loads the tile configuration on this thread.
///
/// # Safety
/// The tile unit must be enabled for the process ([`enabled`]).
unsafe fn configure() {
    let mut cfg = Config {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [0; 16],
        rows: [0; 16],
    };
    for t in 0..8 {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    // SAFETY (caller): AMX is enabled; `cfg` is a valid 64-byte palette-1 configuration.
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly)) };
}

/// A 32 × 32 output block (tiles `C00 C01 / C10 C11`) over `steps` tile steps: `C = A·B`, or
/// `C +=` when `accumulate`. `a1` is null when the block has one row strip. The tiles are
/// summed from zero and stored to an aligned bounce block, then added to C with vector
/// loads (a tile load of C waited on 16 scattered rows before the first product could start).
///
/// # Safety
/// The tile configuration must be loaded ([`configure`]), AVX-512F available; `a0`, `a1`,
/// `b0`, `b1` must hold `steps` tiles each; the block's valid part (`t.rows × t.cols` at
/// `t.i0, t.j0`) must lie in the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(
    a0: *const u16,
    a1: *const u16,
    b0: *const u16,
    b1: *const u16,
    steps: usize,
    t: &Tiles,
    accumulate: bool,
) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    #[repr(C, align(64))]
    struct Block([f32; 1024]);
    // Written whole by the four tile stores before any read.
    let mut out = std::mem::MaybeUninit::<Block>::uninit();
    let o: *mut f32 = out.as_mut_ptr().cast();
    // SAFETY (caller): configuration loaded; every tile load stays in its packed strip, the
    // stores in `out` (4 tiles of 16 rows × 64 bytes).
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        if a1.is_null() {
            asm!(
                "2:",
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "add {a0}, 1024",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {n}",
                "jnz 2b",
                a0 = inout(reg) a0 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                n = inout(reg) steps => _,
                s = in(reg) 64usize,
                options(nostack),
            );
        } else {
            asm!(
                "2:",
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 1024",
                "add {a1}, 1024",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {n}",
                "jnz 2b",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                n = inout(reg) steps => _,
                s = in(reg) 64usize,
                options(nostack),
            );
        }
        // Tile q at rows 16·(q/2), columns 16·(q%2) of the 32 × 32 block (row step 128 B).
        asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) o, s = in(reg) 128usize, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm1", p = in(reg) o.add(16), s = in(reg) 128usize, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm2", p = in(reg) o.add(512), s = in(reg) 128usize, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) o.add(528), s = in(reg) 128usize, options(nostack));
    }
    let mask = |cols: usize| -> __mmask16 {
        if cols >= 16 { 0xFFFF } else { ((1u32 << cols) - 1) as u16 }
    };
    let (m0, m1) = (mask(t.cols), mask(t.cols.saturating_sub(16)));
    for r in 0..t.rows {
        // SAFETY (caller): row `i0 + r` of the output holds the block's `cols` columns from
        // `j0`; `out` row `r` holds 32 values.
        unsafe {
            let p = t.c.add((t.i0 + r) * t.ldc + t.j0);
            let mut x = _mm512_load_ps(o.add(r * 32));
            let mut y = _mm512_load_ps(o.add(r * 32 + 16));
            if accumulate {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m0, p));
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m1, p.add(16)));
            }
            _mm512_mask_storeu_ps(p, m0, x);
            _mm512_mask_storeu_ps(p.add(16), m1, y);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(
    _: *const u16,
    _: *const u16,
    _: *const u16,
    _: *const u16,
    _: usize,
    _: &Tiles,
    _: bool,
) {
    unreachable!("the AMX path is x86-64 only")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::tests::values;

    /// Largest error against an `f64` product, relative to `Σ |a b|` of its element.
    fn error(a: &View, b: &View, got: &[f32]) -> f64 {
        let mut worst = 0f64;
        for i in 0..a.rows {
            for j in 0..b.cols {
                let (mut s, mut mag) = (0f64, 0f64);
                for k in 0..a.cols {
                    let p = a.at(i, k) as f64 * b.at(k, j) as f64;
                    s += p;
                    mag += p.abs();
                }
                worst = worst.max((got[i * b.cols + j] as f64 - s).abs() / mag.max(1e-30));
            }
        }
        worst
    }

    /// Ragged shapes, both layouts, every split, accumulated blocks: the tile unit's result
    /// is as accurate as the AVX-512 kernel's `f32` one (a single bf16 product would be off
    /// by ~1e-3).
    #[test]
    fn as_accurate_as_f32() {
        if !enabled() {
            eprintln!("no AMX here: skipped");
            return;
        }
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 7, 3),
            (16, 16, 16),
            (17, 33, 31),
            (33, 300, 70),
            (100, 576, 200),
            (40, 1500, 64),
            (300, 20, 40),
        ] {
            let ad = values(m * k, 5);
            let bd = values(k * n, 6);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = if ta {
                    View::row_major(&ad, k, m).t()
                } else {
                    View::row_major(&ad, m, k)
                };
                let b = if tb {
                    View::row_major(&bd, n, k).t()
                } else {
                    View::row_major(&bd, k, n)
                };
                let tiles = error(&a, &b, &product(a, b));
                let simd = error(&a, &b, &super::super::product_avx512(a, b));
                eprintln!("{m}x{k}x{n} {ta} {tb}: {tiles:e} {simd:e}");
                assert!(
                    tiles <= 2.0 * simd + 1e-7,
                    "{m}×{k}×{n} ({ta},{tb}): AMX error {tiles:e}, f32 kernel {simd:e}"
                );
            }
        }
    }
}
#[cfg(test)]
mod speed {
    use super::*;
    use crate::gemm::tests::values;
    #[test]
    #[ignore]
    fn speed() {
        assert!(enabled());
        for &(steps, pairs, ldc) in &[(48usize, 4usize, 32usize), (24, 10, 32), (24, 10, 1536), (48, 10, 1536), (12, 12, 1536)] {
            let mut la = Lines::default(); la.reserve_values(2 * pairs * steps * 512);
            let mut lb = Lines::default(); lb.reserve_values(2 * steps * 512);
            for (i, v) in la.values_mut().iter_mut().enumerate() { *v = 0x3f80 + (i as u16 % 97); }
            for (i, v) in lb.values_mut().iter_mut().enumerate() { *v = 0x3f00 + (i as u16 % 89); }
            let (a, b) = (la.values(), lb.values());
            let mut c = vec![0f32; pairs * 32 * ldc];
            let t = Tiles { c: c.as_mut_ptr(), ldc, i0: 0, j0: 0, rows: 32, cols: 32 };
            unsafe { configure() };
            let reps = 2_000_000 / steps;
            let t0 = std::time::Instant::now();
            for r in 0..reps {
                let s = (r % pairs) * 2;
                let tt = Tiles { i0: s * 16, j0: ((r / pairs) % (ldc / 32)) * 32, ..t };
                unsafe { kernel(a[s * steps * 512..].as_ptr(), a[(s + 1) * steps * 512..].as_ptr(), b.as_ptr(), b[steps * 512..].as_ptr(), steps, &tt, true) };
            }
            let e = t0.elapsed().as_secs_f64();
            eprintln!("kernel alone steps {steps} pairs {pairs} ldc {ldc}: {:.0} GF/s bf16", reps as f64 * steps as f64 * 4.0 * 16384.0 / e / 1e9);
        }
        let only = std::env::var("SHAPE").ok();
        for &(m, k, n) in &[(1024usize, 1024usize, 1024usize), (100, 49152, 576), (100, 576, 49152), (384, 576, 1536)] {
            if only.as_ref().is_some_and(|o| *o != format!("{m}x{k}x{n}")) { continue; }
            let ad = values(m * k, 5);
            let bd = values(k * n, 6);
            let (a, b) = (View::row_major(&ad, m, k), View::row_major(&bd, k, n));
            for pass in 0..30 {
                let t = std::time::Instant::now();
                let _ = std::hint::black_box(product(a, b));
                let t1 = t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                if std::env::var("AMXONLY").is_err() { let _ = std::hint::black_box(super::super::product_avx512(a, b)); }
                let t2 = t.elapsed().as_secs_f64();
                let fl = 2.0 * (m * k * n) as f64;
                if pass >= 1 { eprintln!("{m}x{k}x{n}: amx {:.1} ms {:.0} GF/s, avx512 {:.1} ms {:.0} GF/s", t1*1e3, fl/t1/1e9, t2*1e3, fl/t2/1e9); }
            }
        }
    }
}
