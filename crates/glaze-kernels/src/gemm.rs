//! Single-precision matrix multiply `C = A · B` for CPUs with AVX-512, used by
//! [`crate::matmul()`] on the flex device (training through the frozen backbone, the adapters'
//! large projections). burn-flex's own matmul (the `gemm` crate's AVX2 kernels) reaches
//! ≈ 100 GFLOP/s on the 2-core AVX-512 benchmark machine; this one packs both operands into
//! cache-sized panels and runs a 12 × 32 register-tile microkernel on both FMA ports.
//!
//! Operands are strided views, so transposed tensors (the backward pass's `dY · Wᵀ`,
//! `Xᵀ · dY`) are read in place: packing does the transposition. The right operand can also
//! be a [`Q8Matrix`] (8-bit rows with one scale per 32 values, as a GGUF Q8_0 table), used as
//! is or transposed: packing dequantizes it, so the product reads a quarter of the bytes of
//! the f32 matrix and gives exactly the f32 matrix's products.
#![allow(unsafe_code)]

use rayon::prelude::*;

use crate::alloc::Out;

#[cfg(target_arch = "x86_64")]
use crate::vmath::lanes;

mod kernel;
mod packed;
mod q8;
mod transpose;
use kernel::{kernel, store_transposed};
pub use packed::{PackedMatrix, matmul_packed};
pub use q8::{Q8Matrix, matmul_q8, matmul_q8_out_t, matmul_q8_out_t_each};
pub use transpose::transpose;
#[cfg(target_arch = "x86_64")]
pub use transpose::transpose16;

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile (two 16-lane vectors).
const NR: usize = 32;
/// Depth of one packed slab, and the most rows of a B panel one pass over the row tiles
/// reads (a `KC × NR` part of a panel stays in L1).
const KC: usize = 256;
/// The largest inner dimension packed as a single slab (see [`slab_depth`]).
const KC_ONE: usize = 768;
/// Rows of A packed at once (an `MC × KC` block stays in L2).
const MC: usize = 768;
/// Columns of B packed at once.
const NC: usize = 3072;
/// A packed B block larger than this is packed panel by panel as the kernel reaches it.
const JIT_BYTES: usize = 1 << 20;

/// A read-only strided matrix: element `(i, j)` is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            offset: 0,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// A `rows × cols` matrix with element `(i, j)` at `data[i·rs + j·cs]`.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        View {
            data,
            offset: 0,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `lo..hi`.
    fn rows(self, lo: usize, hi: usize) -> Self {
        View {
            offset: self.offset + lo * self.rs,
            rows: hi - lo,
            ..self
        }
    }

    /// Columns `lo..hi`.
    fn cols(self, lo: usize, hi: usize) -> Self {
        View {
            offset: self.offset + lo * self.cs,
            cols: hi - lo,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    pub fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1)
                .checked_mul(self.rs)
                .zip((self.cols - 1).checked_mul(self.cs))
                .and_then(|(a, b)| a.checked_add(b))
                .and_then(|x| x.checked_add(self.offset))
                .is_some_and(|last| last < self.data.len())
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.offset + i * self.rs + j * self.cs]
    }
}

/// The right operand of the packed loops: what [`product`] splits and [`serial`] packs.
trait Rhs: Copy + Send + Sync {
    /// Columns.
    fn width(&self) -> usize;
    /// Rows `lo..hi`.
    fn sub_rows(self, lo: usize, hi: usize) -> Self;
    /// Columns `lo..hi`.
    fn sub_cols(self, lo: usize, hi: usize) -> Self;
    /// Packs `B[k0..k0+kc, j0..j0+nc]` into `NR`-wide panels of `kc` rows (zero-padded).
    fn pack_slab(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]);
    /// The panel of columns `j..j + NR` from row `k0` on, already packed (at least `NR` values
    /// per remaining row), when the operand is stored that way.
    fn panel(&self, _k0: usize, _j: usize) -> Option<&[f32]> {
        None
    }
}

impl Rhs for View<'_> {
    fn width(&self) -> usize {
        self.cols
    }
    fn sub_rows(self, lo: usize, hi: usize) -> Self {
        self.rows(lo, hi)
    }
    fn sub_cols(self, lo: usize, hi: usize) -> Self {
        self.cols(lo, hi)
    }
    fn pack_slab(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        pack_slab(self, k0, kc, j0, nc, dst)
    }
}

/// Whether the AVX-512 kernel can run on this CPU (elsewhere callers use burn's matmul).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `A · B` as a row-major `a.rows × b.cols` vector, or `None` when the kernel is unavailable
/// or the shapes disagree. Computes `(Bᵀ · Aᵀ)ᵀ` instead when that wastes less of the
/// register tiles on padding (a 100-column result fills 4 tiles of 32 for 100 useful columns).
pub fn matmul(a: View, b: View) -> Option<Vec<f32>> {
    if !available() || a.cols != b.rows || !a.in_bounds() || !b.in_bounds() {
        return None;
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let padded = |rows: usize, cols: usize| {
        (rows.div_ceil(MR) * MR) as f64 * (cols.div_ceil(NR) * NR) as f64 * k as f64
    };
    // The swapped product's tiles are stored transposed (a register transpose per tile, and
    // output rows written 12 values at a time): counted as 16 multiply-adds per element.
    let swap = padded(n, m) + ((m * n * 16) as f64) < padded(m, n);
    Some(if swap {
        product(b.t(), a.t(), true)
    } else {
        product(a, b, false)
    })
}

/// How [`product`] divides the work among threads: output columns, output rows, or the
/// inner dimension (partial products summed at the end).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Split {
    Cols,
    Rows,
    Depth,
}

/// The split that duplicates the least work: splitting columns packs all of A in every task,
/// splitting rows packs all of B in every task, splitting the depth adds one `M × N` partial
/// sum per extra task. A dimension needs a panel per task to be split at all.
fn choose_split(m: usize, k: usize, n: usize, tasks: usize) -> Split {
    let extra = tasks.saturating_sub(1) as f64;
    let mut best = (f64::INFINITY, Split::Cols);
    for (split, cost, panels) in [
        (Split::Cols, extra * (m * k) as f64, n.div_ceil(NR)),
        (Split::Rows, extra * (k * n) as f64, m.div_ceil(MR)),
        (Split::Depth, extra * (m * n) as f64 * 2.0, k.div_ceil(KC)),
    ] {
        if panels >= tasks && cost < best.0 {
            best = (cost, split);
        }
    }
    best.1
}

/// `0..len` split into at most `tasks` contiguous ranges made of whole `unit`-wide panels
/// (the last one clipped to `len`).
fn ranges(len: usize, unit: usize, tasks: usize) -> Vec<(usize, usize)> {
    let panels = len.div_ceil(unit);
    let tasks = tasks.clamp(1, panels.max(1));
    (0..tasks)
        .map(|t| {
            let lo = (panels * t / tasks * unit).min(len);
            let hi = (panels * (t + 1) / tasks * unit).min(len);
            (lo, hi)
        })
        .filter(|(lo, hi)| hi > lo)
        .collect()
}

/// Row-major `C = A · B`, or `Cᵀ` when `out_t` (shapes and bounds checked by [`matmul`];
/// AVX-512 available): one parallel region, each task running the packed loops on its own
/// share.
fn product<B: Rhs>(a: View, b: B, out_t: bool) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.width());
    // Where element `(i, j)` goes: `C[i·n + j]`, or `Cᵀ[j·m + i]`.
    let (ldc, row_step, col_step) = if out_t { (m, 1, m) } else { (n, n, 1) };
    if m == 0 || n == 0 || k == 0 {
        return vec![0f32; m * n];
    }
    let tasks = rayon::current_num_threads().max(1);
    match choose_split(m, k, n, tasks) {
        // SAFETY: (all three) `serial` with `accumulate = false` stores every value of its
        // output (the first slab stores each tile, masked to the edges), so the buffers
        // `written` hands out are fully written; the tasks' shares are disjoint.
        Split::Cols => unsafe {
            // Every task reads all of A: packed once, by all of them, instead of by each.
            let a_packed = (tasks > 1 && m * k >= SHARED_A).then(|| pack_all_a(a));
            written(m * n, |out| {
                ranges(n, NR, tasks).into_par_iter().for_each(|(j0, j1)| {
                    serial(
                        a,
                        b.sub_cols(j0, j1),
                        out.at(j0 * col_step),
                        ldc,
                        false,
                        out_t,
                        None,
                        a_packed.as_deref(),
                    )
                })
            })
        },
        // SAFETY: as for `Split::Cols` above.
        Split::Rows => unsafe {
            written(m * n, |out| {
                ranges(m, MR, tasks).into_par_iter().for_each(|(i0, i1)| {
                    serial(
                        a.rows(i0, i1),
                        b,
                        out.at(i0 * row_step),
                        ldc,
                        false,
                        out_t,
                        None,
                        None,
                    )
                })
            })
        },
        Split::Depth => {
            let parts: Vec<Vec<f32>> = ranges(k, KC, tasks)
                .into_par_iter()
                // SAFETY: as for `Split::Cols` above.
                .map(|(k0, k1)| unsafe {
                    written(m * n, |out| {
                        serial(
                            a.cols(k0, k1),
                            b.sub_rows(k0, k1),
                            out.at(0),
                            ldc,
                            false,
                            out_t,
                            None,
                            None,
                        )
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

/// `(A · B)ᵀ` handed to `consume` in blocks of whole rows instead of returned:
/// `consume(j0, rows)` gets rows `j0..j0 + rows.len() / m` (`m = a.rows` values each), on the
/// thread that computed them, as soon as they are final — while they are in L1, and without
/// the whole output ever being stored. The blocks are disjoint and cover every row once.
/// Their values are [`product`]'s (`out_t`), bit for bit.
fn product_each<B: Rhs>(a: View, b: B, consume: &(dyn Fn(usize, &[f32]) + Sync)) {
    let (m, k, n) = (a.rows, a.cols, b.width());
    if m == 0 || n == 0 {
        return;
    }
    // A panel's rows are final after its only slab and its only block of A rows.
    if k == 0 || k > KC_ONE || m > MC {
        let c = product(a, b, true);
        for (p, rows) in c.chunks(NR * m).enumerate() {
            consume(p * NR, rows);
        }
        return;
    }
    let tasks = rayon::current_num_threads().max(1);
    ranges(n, NR, tasks).into_par_iter().for_each(|(j0, j1)| {
        let sink = Sink { consume, col0: j0 };
        // SAFETY: with a sink, `serial` writes only its own thread's panel buffer.
        unsafe {
            serial(
                a,
                b.sub_cols(j0, j1),
                std::ptr::null_mut(),
                m,
                false,
                true,
                Some(&sink),
                None,
            )
        }
    });
}

/// Where [`serial`] hands a transposed product's finished rows (see [`product_each`]):
/// `consume(col0 + j0, rows)` for each panel of columns `j0..` of its share.
struct Sink<'a> {
    consume: &'a (dyn Fn(usize, &[f32]) + Sync),
    col0: usize,
}

/// The smallest A (`m · k` values) packed once for all the tasks of a column split: below it an
/// extra parallel region costs more than packing A twice.
const SHARED_A: usize = 1 << 16;

/// All of A in the layout [`serial`] packs it into, every slab at once: the slab at depth `pc`
/// (of depth `kc`, see [`slab_depth`]) from `pc · mp · MR` on, its panel `p` (`kc · MR` values)
/// at `p · kc · MR` within — packed in parallel, for the tasks of a column split to share.
fn pack_all_a(a: View) -> Vec<f32> {
    let (m, k) = (a.rows, a.cols);
    let (depth, mp) = (slab_depth(k), m.div_ceil(MR));
    let pieces: Vec<(usize, usize)> = (0..k)
        .step_by(depth)
        .flat_map(|pc| (0..mp).map(move |p| (pc, p)))
        .collect();
    // SAFETY: each piece writes its own panel (disjoint ranges inside the `mp · MR · k`
    // values), and `pack` writes every value of it (zeros beyond the last row), so all are
    // written.
    unsafe {
        written(mp * MR * k, |out| {
            pieces.into_par_iter().for_each(|(pc, p)| {
                let kc = depth.min(k - pc);
                let dst = std::slice::from_raw_parts_mut(out.at((pc * mp + p * kc) * MR), kc * MR);
                let i0 = p * MR;
                pack::<MR>(&a.t(), pc, kc, i0, MR.min(m - i0), dst);
            })
        })
    }
}

/// A vector of `len` values that `write` stores through the pointer it is given (no zeroing
/// pass: the products write their whole output anyway).
///
/// # Safety
/// `write` must store every one of the `len` values.
unsafe fn written(len: usize, write: impl FnOnce(Out)) -> Vec<f32> {
    let mut c: Vec<f32> = Vec::with_capacity(len);
    write(Out(c.as_mut_ptr()));
    // SAFETY: (caller) all `len` values are initialised.
    unsafe { c.set_len(len) };
    c
}

/// The slab depth for an inner dimension `k`: one slab up to `KC_ONE` (the output is then
/// written once instead of read and written per slab — 3 times for `k = 576`), else `KC`.
fn slab_depth(k: usize) -> usize {
    if k <= KC_ONE { k.max(1) } else { KC }
}

/// One thread's packing buffers, reused across products.
struct Packs {
    /// An A block.
    a: Vec<f32>,
    /// A B block (or panels packed as the kernel reaches them).
    b: Vec<f32>,
    /// One part of a B panel, packed just before the row tiles run over it.
    b_part: Vec<f32>,
    /// Row-major tiles of a transposed output, stored transposed after their last part.
    staging: Vec<f32>,
    /// One panel's rows of a transposed output handed to a [`Sink`].
    panel: Vec<f32>,
}

thread_local! {
    /// Each thread's packing buffers (A block, B block), reused across products.
    static PACKS: std::cell::RefCell<Packs> = const {
        std::cell::RefCell::new(Packs {
            a: Vec::new(),
            b: Vec::new(),
            b_part: Vec::new(),
            staging: Vec::new(),
            panel: Vec::new(),
        })
    };
}

/// Where the kernel reads one slab of B from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BSource {
    /// The operand's own pre-packed panels, in place.
    InPlace,
    /// The whole slab packed up front (it fits in half of L2).
    Slab,
    /// A larger slab packed panel by panel just before the kernel first reads each (packed
    /// whole, its panels went out to L3 and came back).
    Panel,
    /// As `Panel` with a single block of rows: each part of a panel packed into L1 just
    /// before its row tiles (a whole 576-deep panel went to L2 and was read back from there).
    Part,
}

impl BSource {
    /// The source of the `kc`-deep slab at row `pc`, columns `jc..` (`np` panels), for a
    /// product of `m` rows.
    fn choose<B: Rhs>(b: &B, pc: usize, kc: usize, jc: usize, np: usize, m: usize) -> Self {
        if b.panel(pc, jc).is_some() {
            BSource::InPlace
        } else if kc * np * NR * 4 <= JIT_BYTES {
            BSource::Slab
        } else if m <= MC {
            BSource::Part
        } else {
            BSource::Panel
        }
    }
}

/// `C = A · B` on this thread (or `C +=` when `accumulate`), `C` row-major with row step
/// `ldc` — or, when `out_t`, `Cᵀ` (element `(i, j)` at `c[j·ldc + i]`). With a `sink`
/// (`out_t`, not `accumulate`, one slab, at most `MC` rows: see [`product_each`]) each
/// panel's rows go to a buffer of this thread, handed to the sink when final; `c` is unused.
/// With `a_packed` (all of A as [`pack_all_a`] lays it out) A is read from there, not packed.
///
/// # Safety
/// AVX-512F must be available; without a sink, `c` must be valid for `a.rows` rows of
/// `b.cols` values with row step `ldc` (`b.cols` rows of `a.rows` when `out_t`), and written
/// by no one else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn serial<B: Rhs>(
    a: View,
    b: B,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    out_t: bool,
    sink: Option<&Sink>,
    a_packed: Option<&[f32]>,
) {
    let (m, k, n) = (a.rows, a.cols, b.width());
    PACKS.with_borrow_mut(|packs| {
        let Packs {
            a: apack,
            b: bpack,
            b_part,
            staging,
            panel,
        } = packs;
        if sink.is_some() && panel.len() < NR * m {
            panel.resize(NR * m, 0.0);
        }
        let depth = slab_depth(k);
        let need_b = depth * n.min(NC).div_ceil(NR) * NR;
        let need_a = depth * m.min(MC).div_ceil(MR) * MR;
        if bpack.len() < need_b {
            bpack.resize(need_b, 0.0);
        }
        if apack.len() < need_a {
            apack.resize(need_a, 0.0);
        }
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let np = nc.div_ceil(NR);
            for pc in (0..k).step_by(depth) {
                let kc = depth.min(k - pc);
                let source = BSource::choose(&b, pc, kc, jc, np, m);
                if source == BSource::Slab {
                    b.pack_slab(pc, kc, jc, nc, &mut bpack[..np * kc * NR]);
                }
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let mp = mc.div_ceil(MR);
                    // This block's panels: packed here, or where `pack_all_a` put them.
                    let ablock: &[f32] = match a_packed {
                        Some(all) => {
                            &all[(pc * m.div_ceil(MR) + ic / MR * kc) * MR..][..mp * kc * MR]
                        }
                        None => {
                            let block = &mut apack[..mp * kc * MR];
                            for (p, dst) in block.chunks_exact_mut(kc * MR).enumerate() {
                                let i0 = ic + p * MR;
                                pack::<MR>(&a.t(), pc, kc, i0, MR.min(ic + mc - i0), dst);
                            }
                            block
                        }
                    };
                    for jp in 0..np {
                        let j0 = jc + jp * NR;
                        if source == BSource::Panel && ic == 0 {
                            let panel = &mut bpack[jp * kc * NR..(jp + 1) * kc * NR];
                            b.pack_slab(pc, kc, j0, NR.min(n - j0), panel);
                        }
                        // The whole panel (empty when it is packed part by part below).
                        let bpanel = match source {
                            BSource::InPlace => b.panel(pc, j0).unwrap_or(&[]),
                            BSource::Part => &[],
                            BSource::Slab | BSource::Panel => {
                                &bpack[jp * kc * NR..(jp + 1) * kc * NR]
                            }
                        };
                        assert!(
                            source == BSource::Part || bpanel.len() >= kc * NR,
                            "a panel holds its slab"
                        );
                        // The panel's rows in parts of at most `KC`, each part run over all
                        // row tiles while it is in L1 (a whole 576-deep panel, 72 KB, is not).
                        let parts = kc.div_ceil(KC);
                        // A transposed output summed over several parts is staged row-major
                        // and stored transposed once (the same sums in the same order: part
                        // by part onto the first part's tile).
                        let staged = out_t && parts > 1 && !(accumulate || pc > 0);
                        if staged && staging.len() < mp * MR * NR {
                            staging.resize(mp * MR * NR, 0.0);
                        }
                        for part in 0..parts {
                            let (s0, s1) = (kc * part / parts, kc * (part + 1) / parts);
                            // A pre-packed operand comes from memory: the next part's rows
                            // are fetched into L2 while this part runs (else the first row
                            // tile of every part waits on them).
                            let ahead: &[f32] = if source != BSource::InPlace {
                                &[]
                            } else if part + 1 < parts {
                                &bpanel[s1 * NR..kc * (part + 2) / parts * NR]
                            } else if jp + 1 < np {
                                let next = b.panel(pc, j0 + NR).unwrap_or(&[]);
                                &next[..(kc / parts * NR).min(next.len())]
                            } else {
                                &[]
                            };
                            let bsrc: &[f32] = if source == BSource::Part {
                                let len = (s1 - s0) * NR;
                                if b_part.len() < len {
                                    b_part.resize(len, 0.0);
                                }
                                let dst = &mut b_part[..len];
                                b.pack_slab(pc + s0, s1 - s0, j0, NR.min(n - j0), dst);
                                &b_part[..len]
                            } else {
                                &bpanel[s0 * NR..]
                            };
                            for ip in 0..mp {
                                let i0 = ic + ip * MR;
                                prefetch_share(ahead, ip, mp);
                                // SAFETY: AVX-512F is available (caller); the packed panels
                                // hold `kc · MR` and `kc · NR` values, rows `s0..s1` of each
                                // inside; the tile lies inside the caller's `m × n` output (or,
                                // with a sink, inside `panel`: `NR` rows of `m = ldc`), and
                                // its staged copy inside `staging` (`mp` tiles of `MR · NR`,
                                // the first part's rows written before later parts read them).
                                unsafe {
                                    let (ap, bp) =
                                        (ablock[(ip * kc + s0) * MR..].as_ptr(), bsrc.as_ptr());
                                    let (rows, cols) = (MR.min(m - i0), NR.min(n - j0));
                                    let acc = accumulate || pc > 0 || part > 0;
                                    // A transposed tile's place: in the output, or in the
                                    // sink's panel buffer.
                                    let ct = match sink {
                                        Some(_) => panel.as_mut_ptr().add(i0),
                                        None => c.wrapping_add(j0 * ldc + i0),
                                    };
                                    if staged {
                                        let t = staging.as_mut_ptr().add(ip * MR * NR);
                                        kernel::<false>(s1 - s0, ap, bp, t, NR, rows, NR, acc);
                                        if part + 1 == parts {
                                            store_transposed(t, ct, ldc, rows, cols, false);
                                        }
                                    } else if out_t {
                                        kernel::<true>(s1 - s0, ap, bp, ct, ldc, rows, cols, acc)
                                    } else {
                                        let cr = c.add(i0 * ldc + j0);
                                        kernel::<false>(s1 - s0, ap, bp, cr, ldc, rows, cols, acc)
                                    }
                                }
                            }
                        }
                        if let Some(sink) = sink {
                            let cols = NR.min(n - j0);
                            (sink.consume)(sink.col0 + j0, &panel[..cols * m]);
                        }
                    }
                }
            }
        }
    });
}

/// Asks for share `i` of `shares` of `region`'s cache lines to be brought into L2.
fn prefetch_share(region: &[f32], i: usize, shares: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let lines = region.len().div_ceil(16);
        let per = lines.div_ceil(shares.max(1));
        for l in (i * per)..((i + 1) * per).min(lines) {
            // SAFETY: a prefetch has no architectural effect; the address lies in `region`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(region.as_ptr().add(16 * l).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (region, i, shares);
}

/// Packs the B slab `B[k0..k0+kc, j0..j0+nc]` into `NR`-wide panels. A row-major source is
/// read row by row across all panels (sequential memory traffic: the word-embedding matrix
/// streamed panel by panel was read at a 2.3 KB stride); other layouts panel by panel.
fn pack_slab(b: &View, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
    let np = nc.div_ceil(NR);
    if b.cs != 1 || !nc.is_multiple_of(NR) {
        for (p, panel) in dst.chunks_exact_mut(kc * NR).take(np).enumerate() {
            let j = j0 + p * NR;
            pack::<NR>(b, k0, kc, j, NR.min(j0 + nc - j), panel);
        }
        return;
    }
    for kk in 0..kc {
        let row = &b.data[b.offset + (k0 + kk) * b.rs + j0..][..nc];
        for (p, src) in row.chunks_exact(NR).enumerate() {
            let at = (p * kc + kk) * NR;
            let src: &[f32; NR] = src.try_into().expect("NR values");
            let out: &mut [f32; NR] = (&mut dst[at..at + NR]).try_into().expect("NR values");
            *out = *src;
        }
    }
}

/// Packs `B[k0..k0+kc, j0..j0+cols]` as `kc` rows of `W` values (zero beyond `cols`): the
/// layout of a B panel (`W = NR`) and, applied to `Aᵀ`, of an A panel (`W = MR`).
fn pack<const W: usize>(b: &View, k0: usize, kc: usize, j0: usize, cols: usize, dst: &mut [f32]) {
    if cols < W {
        dst.fill(0.0);
    }
    if b.cs == 1 {
        for (kk, row) in dst.chunks_exact_mut(W).take(kc).enumerate() {
            let s = b.offset + (k0 + kk) * b.rs + j0;
            if cols == W {
                // Fixed length: vector moves instead of a `memmove` call.
                let src: &[f32; W] = b.data[s..s + W].try_into().expect("W values");
                let dst: &mut [f32; W] = row.try_into().expect("W values");
                *dst = *src;
            } else {
                row[..cols].copy_from_slice(&b.data[s..s + cols]);
            }
        }
    } else if b.rs == 1 {
        // Column-major source (a transposed weight in the backward pass, a row-major A):
        // a full panel is turned 16 × 16 values at a time in registers.
        let base = b.offset + k0 + j0 * b.cs;
        #[cfg(target_arch = "x86_64")]
        if W == NR && cols == NR && available() {
            // SAFETY: AVX-512F is available; every read index `base + j·cs + kk` with
            // `j < NR`, `kk < kc` is an element of the (bounds-checked) view.
            unsafe { gather_panel(&b.data[base..], b.cs, kc, dst) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if W == MR && cols == MR && available() {
            // SAFETY: as above, for the `MR` rows of an A panel.
            unsafe { gather_rows(&b.data[base..], b.cs, kc, dst) };
            return;
        }
        for (kk, row) in dst.chunks_exact_mut(W).take(kc).enumerate() {
            for (j, v) in row[..cols].iter_mut().enumerate() {
                *v = b.data[base + j * b.cs + kk];
            }
        }
    } else {
        for kk in 0..kc {
            for j in 0..cols {
                dst[kk * W + j] = b.at(k0 + kk, j0 + j);
            }
        }
    }
}

/// `dst[kk·NR + j] = src[j·cs + kk]` for `j < NR`, `kk < kc`: a B panel from `NR` rows of a
/// row-major `Bᵀ`, read 16 values per row at a time and turned by 16 × 16 register
/// transposes (no index-width limit, unlike 32-bit gathers).
///
/// # Safety
/// AVX-512F must be available; `src` must hold index `(NR − 1)·cs + kc − 1` and `dst`
/// `kc · NR` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_panel(src: &[f32], cs: usize, kc: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    check!(src.len() > (NR - 1) * cs + kc - 1 && dst.len() >= kc * NR);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for k0 in (0..kc).step_by(16) {
        let h = (kc - k0).min(16);
        let kmask = lanes(h);
        for half in 0..NR / 16 {
            let mut x = [_mm512_setzero_ps(); 16];
            for (j, xj) in x.iter_mut().enumerate() {
                // SAFETY: (caller) row `16·half + j < NR` holds indices `k0..k0 + h`.
                *xj = unsafe { _mm512_maskz_loadu_ps(kmask, s.add((16 * half + j) * cs + k0)) };
            }
            let t = transpose::transpose16(x);
            for (r, tr) in t.iter().enumerate().take(h) {
                // SAFETY: (caller) row `k0 + r < kc` of `dst` holds `NR` values.
                unsafe { _mm512_storeu_ps(d.add((k0 + r) * NR + 16 * half), *tr) };
            }
        }
    }
}

/// `dst[kk·MR + i] = src[i·cs + kk]` for `i < MR`, `kk < kc`: an A panel from `MR` rows of a
/// row-major A, by 16 × 16 register transposes as in [`gather_panel`].
///
/// # Safety
/// AVX-512F must be available; `src` must hold index `(MR − 1)·cs + kc − 1` and `dst`
/// `kc · MR` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_rows(src: &[f32], cs: usize, kc: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(MR <= 16);
    check!(src.len() > (MR - 1) * cs + kc - 1 && dst.len() >= kc * MR);
    let rmask = lanes(MR);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for k0 in (0..kc).step_by(16) {
        let h = (kc - k0).min(16);
        let kmask = lanes(h);
        let mut x = [_mm512_setzero_ps(); 16];
        for (i, xi) in x.iter_mut().enumerate().take(MR) {
            // SAFETY: (caller) row `i < MR` holds indices `k0..k0 + h`.
            *xi = unsafe { _mm512_maskz_loadu_ps(kmask, s.add(i * cs + k0)) };
        }
        let t = transpose::transpose16(x);
        for (r, tr) in t.iter().enumerate().take(h) {
            // SAFETY: (caller) row `k0 + r < kc` of `dst` holds `MR` values.
            unsafe { _mm512_mask_storeu_ps(d.add((k0 + r) * MR), rmask, *tr) };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
