//! Single-precision matrix multiply `C = A · B` for CPUs with AVX-512, used by
//! [`crate::matmul`] on the flex device (training through the frozen backbone, the adapters'
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

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile (two 16-lane vectors).
const NR: usize = 32;
/// Depth of one packed slab (a `KC × NR` panel of B stays in L1).
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
    fn in_bounds(&self) -> bool {
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

/// A row-major `rows × cols` matrix of 8-bit values with one `f32` scale per 32 consecutive
/// values of a row: element `(i, j)` is `q[i·cols + j] as f32 · scales[(i·cols + j) / 32]`
/// (a GGUF Q8_0 table with its scales widened to `f32`).
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
    /// The same values as `NR`-row panels read down the columns, made by the first
    /// transposed product (see [`ColumnPanels`]).
    by_column: std::sync::OnceLock<ColumnPanels>,
}

/// A [`Q8Matrix`] regrouped for products with its transpose: panel `p` holds rows
/// `32p..32p + 32` (zero rows beyond the matrix), column by column — `q[(p·cols + j)·32 + n]`
/// is element `(32p + n, j)` and `scales[(p·cols/32 + b)·32 + n]` the scale of row `32p + n`,
/// block `b`. A transposed B panel is then read front to back instead of gathered.
#[derive(Debug, Clone)]
struct ColumnPanels {
    q: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Matrix {
    /// The matrix, or `None` when `cols` is not a multiple of 32 or the lengths disagree.
    pub fn new(rows: usize, cols: usize, q: Vec<i8>, scales: Vec<f32>) -> Option<Self> {
        let ok = cols.is_multiple_of(32)
            && rows.checked_mul(cols) == Some(q.len())
            && scales.len() == q.len() / 32;
        ok.then_some(Q8Matrix {
            rows,
            cols,
            q,
            scales,
            by_column: std::sync::OnceLock::new(),
        })
    }

    fn column_panels(&self) -> &ColumnPanels {
        self.by_column.get_or_init(|| {
            let (cols, bpr) = (self.cols, self.cols / 32);
            let panels = self.rows.div_ceil(NR);
            let mut q = vec![0i8; panels * cols * NR];
            let mut scales = vec![0f32; panels * bpr * NR];
            for i in 0..self.rows {
                let (p, n) = (i / NR, i % NR);
                for (j, &v) in self.q[i * cols..(i + 1) * cols].iter().enumerate() {
                    q[(p * cols + j) * NR + n] = v;
                }
                for (b, &s) in self.scales[i * bpr..(i + 1) * bpr].iter().enumerate() {
                    scales[(p * bpr + b) * NR + n] = s;
                }
            }
            ColumnPanels { q, scales }
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        let at = i * self.cols + j;
        self.q[at] as f32 * self.scales[at / 32]
    }

    /// All elements, row-major `f32`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.q
            .chunks_exact(32)
            .zip(&self.scales)
            .flat_map(|(q, &s)| q.iter().map(move |&v| v as f32 * s))
            .collect()
    }

    /// Dequantizes `count` blocks starting at row `i`, column `j0` (a multiple of 32), the
    /// next block `down` a row (else along the row), block `t` to `out[t·stride..][..32]`.
    fn dequantize_blocks(
        &self,
        i: usize,
        j0: usize,
        count: usize,
        down: bool,
        out: &mut [f32],
        stride: usize,
    ) {
        if count == 0 {
            return;
        }
        let step = if down { self.cols } else { 32 };
        let first = i * self.cols + j0;
        let last = first + (count - 1) * step;
        assert!(last + 32 <= self.q.len() && out.len() >= (count - 1) * stride + 32);
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX-512F is available; the assertion above bounds every block read and
            // written.
            unsafe {
                dequantize_strided(
                    self.q[first..].as_ptr(),
                    self.scales[first / 32..].as_ptr(),
                    count,
                    step,
                    out.as_mut_ptr(),
                    stride,
                )
            };
            return;
        }
        for t in 0..count {
            let at = first + t * step;
            let s = self.scales[at / 32];
            for (o, &q) in out[t * stride..t * stride + 32]
                .iter_mut()
                .zip(&self.q[at..at + 32])
            {
                *o = q as f32 * s;
            }
        }
    }
}

/// `out[t·stride + j] = q[t·step + j] · scales[t·step / 32]` for `t < count`, `j < 32` (the
/// same single rounding as `q as f32 * s`).
///
/// # Safety
/// AVX-512F must be available; `step` must be a multiple of 32, `q` must hold
/// `(count − 1)·step + 32` values, `scales` the matching blocks and `out`
/// `(count − 1)·stride + 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dequantize_strided(
    q: *const i8,
    scales: *const f32,
    count: usize,
    step: usize,
    out: *mut f32,
    stride: usize,
) {
    use std::arch::x86_64::*;
    for t in 0..count {
        // SAFETY (caller): block `t` has 32 quants, a scale and 32 output slots.
        unsafe {
            let scale = _mm512_set1_ps(*scales.add(t * step / 32));
            for h in 0..2 {
                let bytes = _mm_loadu_si128(q.add(t * step + 16 * h).cast());
                let v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
                _mm512_storeu_ps(out.add(t * stride + 16 * h), _mm512_mul_ps(v, scale));
            }
        }
    }
}

/// One transposed B panel from a [`ColumnPanels`] panel: row `kk` of `out` is matrix column
/// `d0 + kk` across the panel's `NR` rows, `q[kk·NR + n] · scales[((d0 + kk) / 32)·NR + n]`.
fn dequantize_columns(q: &[i8], scales: &[f32], d0: usize, out: &mut [f32]) {
    let kc = q.len() / NR;
    assert!(out.len() >= kc * NR && scales.len() >= (d0 + kc).div_ceil(32) * NR);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F is available; the assertion bounds every read and write.
        unsafe { dequantize_columns512(q, scales, d0, out) };
        return;
    }
    for (kk, (o, q)) in out.chunks_exact_mut(NR).zip(q.chunks_exact(NR)).enumerate() {
        let s = &scales[(d0 + kk) / 32 * NR..][..NR];
        for n in 0..NR {
            o[n] = q[n] as f32 * s[n];
        }
    }
}

/// [`dequantize_columns`] with AVX-512.
///
/// # Safety
/// AVX-512F must be available; bounds as asserted by [`dequantize_columns`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dequantize_columns512(q: &[i8], scales: &[f32], d0: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let kc = q.len() / NR;
    let (q, s, o) = (q.as_ptr(), scales.as_ptr(), out.as_mut_ptr());
    for kk in 0..kc {
        // SAFETY (caller): row `kk` has `NR` quants and outputs; its block's `NR` scales exist.
        unsafe {
            let sb = s.add((d0 + kk) / 32 * NR);
            for h in 0..2 {
                let bytes = _mm_loadu_si128(q.add(kk * NR + 16 * h).cast());
                let v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
                let scale = _mm512_loadu_ps(sb.add(16 * h));
                _mm512_storeu_ps(o.add(kk * NR + 16 * h), _mm512_mul_ps(v, scale));
            }
        }
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

/// A [`Q8Matrix`] window as a right operand: `B[k, j]` is element `(r0 + k, c0 + j)` of the
/// matrix, or `(c0 + j, r0 + k)` when `transposed`.
#[derive(Clone, Copy)]
struct Q8View<'a> {
    m: &'a Q8Matrix,
    transposed: bool,
    r0: usize,
    c0: usize,
    width: usize,
}

impl Q8View<'_> {
    fn at(&self, k: usize, j: usize) -> f32 {
        if self.transposed {
            self.m.at(self.c0 + j, self.r0 + k)
        } else {
            self.m.at(self.r0 + k, self.c0 + j)
        }
    }
}

impl Rhs for Q8View<'_> {
    fn width(&self) -> usize {
        self.width
    }
    fn sub_rows(self, lo: usize, _hi: usize) -> Self {
        Q8View {
            r0: self.r0 + lo,
            ..self
        }
    }
    fn sub_cols(self, lo: usize, hi: usize) -> Self {
        Q8View {
            c0: self.c0 + lo,
            width: hi - lo,
            ..self
        }
    }
    fn pack_slab(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let np = nc.div_ceil(NR);
        for (p, panel) in dst.chunks_exact_mut(kc * NR).take(np).enumerate() {
            let j = j0 + p * NR;
            let cols = NR.min(j0 + nc - j);
            if !self.transposed && cols == NR && (self.c0 + j).is_multiple_of(32) {
                // Each panel row is one block of a matrix row.
                self.m
                    .dequantize_blocks(self.r0 + k0, self.c0 + j, kc, true, panel, NR);
            } else if self.transposed && (self.c0 + j).is_multiple_of(NR) {
                // Matrix rows `c0 + j..` are one column panel, read front to back.
                let cp = self.m.column_panels();
                let (cols, bpr) = (self.m.cols, self.m.cols / 32);
                let p = (self.c0 + j) / NR;
                let d0 = self.r0 + k0;
                let q = &cp.q[(p * cols + d0) * NR..(p * cols + d0 + kc) * NR];
                let scales = &cp.scales[p * bpr * NR..(p + 1) * bpr * NR];
                dequantize_columns(q, scales, d0, panel);
            } else {
                panel.fill(0.0);
                for kk in 0..kc {
                    for jj in 0..cols {
                        panel[kk * NR + jj] = self.at(k0 + kk, j + jj);
                    }
                }
            }
        }
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
    // Transposing the result back costs about as much as 16 multiply-adds per element.
    let swap = padded(n, m) + ((m * n * 16) as f64) < padded(m, n);
    if swap {
        let ct = product(b.t(), a.t());
        let mut c = vec![0f32; m * n];
        for (j, row) in ct.chunks_exact(m.max(1)).enumerate().take(n) {
            for (i, &v) in row.iter().enumerate() {
                c[i * n + j] = v;
            }
        }
        Some(c)
    } else {
        Some(product(a, b))
    }
}

/// `A · B` with `B` the [`Q8Matrix`] `m` (or `mᵀ` when `transposed`), row-major; `None`
/// when the kernel is unavailable or the shapes disagree. Equal to [`matmul`] on the
/// dequantized matrix: the packed panels hold the same values.
pub fn matmul_q8(a: View, m: &Q8Matrix, transposed: bool) -> Option<Vec<f32>> {
    let (depth, width) = if transposed {
        (m.cols, m.rows)
    } else {
        (m.rows, m.cols)
    };
    if !available() || a.cols != depth || !a.in_bounds() {
        return None;
    }
    let b = Q8View {
        m,
        transposed,
        r0: 0,
        c0: 0,
        width,
    };
    Some(product(a, b))
}

/// A raw output pointer shared by the tasks that write disjoint tiles of it.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes a disjoint set of tiles of the output (distinct row or column
// panels), and the buffer outlives the parallel region.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so closures capture the whole `Out`, not its raw field).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
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

/// Row-major `C = A · B` (shapes and bounds checked by [`matmul`]; AVX-512 available): one
/// parallel region, each task running the packed loops on its own share.
fn product<B: Rhs>(a: View, b: B) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.width());
    if m == 0 || n == 0 || k == 0 {
        return vec![0f32; m * n];
    }
    let tasks = rayon::current_num_threads().max(1);
    match choose_split(m, k, n, tasks) {
        // SAFETY (all three): `serial` with `accumulate = false` stores every value of its
        // output (the first slab stores each tile, masked to the edges), so the buffers
        // `written` hands out are fully written; the tasks' shares are disjoint.
        Split::Cols => unsafe {
            written(m * n, |out| {
                ranges(n, NR, tasks)
                    .into_par_iter()
                    .for_each(|(j0, j1)| serial(a, b.sub_cols(j0, j1), out.at(j0), n, false))
            })
        },
        Split::Rows => unsafe {
            written(m * n, |out| {
                ranges(m, MR, tasks)
                    .into_par_iter()
                    .for_each(|(i0, i1)| serial(a.rows(i0, i1), b, out.at(i0 * n), n, false))
            })
        },
        Split::Depth => {
            let parts: Vec<Vec<f32>> = ranges(k, KC, tasks)
                .into_par_iter()
                .map(|(k0, k1)| unsafe {
                    written(m * n, |out| {
                        serial(a.cols(k0, k1), b.sub_rows(k0, k1), out.at(0), n, false)
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

/// A vector of `len` values that `write` stores through the pointer it is given (no zeroing
/// pass: the products write their whole output anyway).
///
/// # Safety
/// `write` must store every one of the `len` values.
unsafe fn written(len: usize, write: impl FnOnce(Out)) -> Vec<f32> {
    let mut c: Vec<f32> = Vec::with_capacity(len);
    write(Out(c.as_mut_ptr()));
    // SAFETY (caller): all `len` values are initialised.
    unsafe { c.set_len(len) };
    c
}

/// The slab depth for an inner dimension `k`: one slab up to `KC_ONE` (the output is then
/// written once instead of read and written per slab — 3 times for `k = 576`), else `KC`.
fn slab_depth(k: usize) -> usize {
    if k <= KC_ONE { k.max(1) } else { KC }
}

thread_local! {
    /// Each thread's packing buffers (A block, B block), reused across products.
    static PACKS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `C = A · B` on this thread (or `C +=` when `accumulate`), `C` row-major with row step
/// `ldc`.
///
/// # Safety
/// AVX-512F must be available; `c` must be valid for `a.rows` rows of `b.cols` values with
/// row step `ldc`, and written by no one else meanwhile.
unsafe fn serial<B: Rhs>(a: View, b: B, c: *mut f32, ldc: usize, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.width());
    PACKS.with_borrow_mut(|(apack, bpack)| {
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
                // A block larger than half of L2 is packed panel by panel just before the
                // kernel first reads it (packed whole, its panels went out to L3 and came back).
                let by_panel = kc * np * NR * 4 > JIT_BYTES;
                if !by_panel {
                    b.pack_slab(pc, kc, jc, nc, &mut bpack[..np * kc * NR]);
                }
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let mp = mc.div_ceil(MR);
                    for (p, dst) in apack[..mp * kc * MR].chunks_exact_mut(kc * MR).enumerate() {
                        let i0 = ic + p * MR;
                        pack::<MR>(&a.t(), pc, kc, i0, MR.min(ic + mc - i0), dst);
                    }
                    for jp in 0..np {
                        let j0 = jc + jp * NR;
                        if by_panel && ic == 0 {
                            let panel = &mut bpack[jp * kc * NR..(jp + 1) * kc * NR];
                            b.pack_slab(pc, kc, j0, NR.min(n - j0), panel);
                        }
                        for ip in 0..mp {
                            let i0 = ic + ip * MR;
                            // SAFETY: AVX-512F is available (caller); the packed panels hold
                            // `kc · MR` and `kc · NR` values; the tile lies inside the
                            // caller's `m × n` output.
                            unsafe {
                                kernel(
                                    kc,
                                    apack[ip * kc * MR..].as_ptr(),
                                    bpack[jp * kc * NR..].as_ptr(),
                                    c.add(i0 * ldc + j0),
                                    ldc,
                                    MR.min(m - i0),
                                    NR.min(n - j0),
                                    accumulate || pc > 0,
                                )
                            }
                        }
                    }
                }
            }
        }
    });
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
        // a full B panel is gathered 16 columns at a time.
        let base = b.offset + k0 + j0 * b.cs;
        #[cfg(target_arch = "x86_64")]
        if W == NR && cols == NR && NR * b.cs < i32::MAX as usize && available() {
            // SAFETY: AVX-512F is available; every gathered index `base + j·cs + kk` with
            // `j < NR`, `kk < kc` is an element of the (bounds-checked) view.
            unsafe { gather_panel(&b.data[base..], b.cs, kc, dst) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if W == MR && cols == MR && MR * b.cs < i32::MAX as usize && available() {
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

/// `dst[kk·NR + j] = src[j·cs + kk]` for `j < NR`, `kk < kc`, two 16-lane gathers per row.
///
/// # Safety
/// AVX-512F must be available; `src` must hold index `(NR − 1)·cs + kc − 1`, `dst` `kc · NR`
/// values, and `NR · cs` must fit an `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_panel(src: &[f32], cs: usize, kc: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(src.len() > (NR - 1) * cs + kc - 1 && dst.len() >= kc * NR);
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let lo = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(cs as i32));
    let hi = _mm512_add_epi32(lo, _mm512_set1_epi32((16 * cs) as i32));
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for kk in 0..kc {
        // SAFETY (caller): indices `j·cs + kk` lie in `src`; row `kk` of `dst` holds NR values.
        unsafe {
            let p = s.add(kk);
            _mm512_storeu_ps(d.add(kk * NR), _mm512_i32gather_ps::<4>(lo, p));
            _mm512_storeu_ps(d.add(kk * NR + 16), _mm512_i32gather_ps::<4>(hi, p));
        }
    }
}

/// `dst[kk·MR + i] = src[i·cs + kk]` for `i < MR`, `kk < kc`: an A panel from `MR` rows of a
/// row-major A, one 12-lane gather per step.
///
/// # Safety
/// AVX-512F must be available; `src` must hold index `(MR − 1)·cs + kc − 1`, `dst` `kc · MR`
/// values, and `MR · cs` must fit an `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_rows(src: &[f32], cs: usize, kc: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(MR <= 16);
    debug_assert!(src.len() > (MR - 1) * cs + kc - 1 && dst.len() >= kc * MR);
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(cs as i32));
    let mask: __mmask16 = ((1u32 << MR) - 1) as u16;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for kk in 0..kc {
        // SAFETY (caller): the `MR` unmasked indices `i·cs + kk` lie in `src`; row `kk` of
        // `dst` holds `MR` values.
        unsafe {
            let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, s.add(kk));
            _mm512_mask_storeu_ps(d.add(kk * MR), mask, v);
        }
    }
}

/// One `MR × NR` tile: `C = Apanel · Bpanel` (or `C +=` when `accumulate`), writing only the
/// first `rows × cols` values.
///
/// # Safety
/// AVX-512F must be available; `a` must hold `kc · MR` values, `b` `kc · NR`; `c` must be
/// valid for `rows` rows of `cols` values with row step `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [0f32; MR * NR];
    // SAFETY (caller): panels of `kc · MR` and `kc · NR` values; `acc` holds the tile.
    unsafe { dot_tile(kc, a, b, acc.as_mut_ptr()) };
    let m0: __mmask16 = if cols >= 16 {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as u16
    };
    let m1: __mmask16 = if cols >= 32 {
        0xFFFF
    } else if cols > 16 {
        ((1u32 << (cols - 16)) - 1) as u16
    } else {
        0
    };
    for (i, r) in acc.chunks_exact(NR).take(rows).enumerate() {
        // SAFETY (caller): row `i < rows` of the tile, masked to `cols` columns.
        unsafe {
            let p = c.add(i * ldc);
            let mut x = _mm512_loadu_ps(r.as_ptr());
            let mut y = _mm512_loadu_ps(r.as_ptr().add(16));
            if accumulate {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m0, p));
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m1, p.add(16)));
            }
            _mm512_mask_storeu_ps(p, m0, x);
            _mm512_mask_storeu_ps(p.add(16), m1, y);
        }
    }
}

/// The register tile: `out[MR × NR] = Apanel · Bpanel` over `kc` steps, 24 accumulators.
///
/// # Safety
/// AVX-512F must be available; `a` must hold `kc · MR` values, `b` `kc · NR`, `out` `MR · NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_tile(kc: usize, a: *const f32, b: *const f32, out: *mut f32) {
    use std::arch::x86_64::*;
    macro_rules! tile {
        ($(($i:literal, $x:ident, $y:ident)),*) => {{
            $(let mut $x = _mm512_setzero_ps(); let mut $y = _mm512_setzero_ps();)*
            let (mut ap, mut bp) = (a, b);
            for _ in 0..kc {
                // SAFETY (caller): `kc` steps stay inside both panels.
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
            // SAFETY (caller): `out` holds `MR · NR` values.
            unsafe {
                $(
                    _mm512_storeu_ps(out.add($i * NR), $x);
                    _mm512_storeu_ps(out.add($i * NR + 16), $y);
                )*
            }
        }};
    }
    tile!(
        (0, c0, d0),
        (1, c1, d1),
        (2, c2, d2),
        (3, c3, d3),
        (4, c4, d4),
        (5, c5, d5),
        (6, c6, d6),
        (7, c7, d7),
        (8, c8, d8),
        (9, c9, d9),
        (10, c10, d10),
        (11, c11, d11)
    );
}

/// Never called: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &View, b: &View) -> Vec<f32> {
        let mut c = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0f64;
                for k in 0..a.cols {
                    s += a.at(i, k) as f64 * b.at(k, j) as f64;
                }
                c[i * b.cols + j] = s as f32;
            }
        }
        c
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Ragged shapes (tile and slab edges), both operand layouts, both orientations: equal
    /// to an f64 reference within f32 rounding.
    #[test]
    fn matches_the_naive_product() {
        if !available() {
            return;
        }
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 7, 3),
            (12, 256, 32),
            (13, 257, 33),
            (100, 300, 576),
            (37, 600, 100),
            (781, 70, 45),
            (30, 40, 3100),
        ] {
            let ad = values(m * k, 1);
            let bd = values(k * n, 2);
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
                let got = matmul(a, b).expect("available");
                let want = naive(&a, &b);
                let tol = 1e-5 * (k as f32).sqrt() * 4.0;
                for (x, y) in got.iter().zip(&want) {
                    assert!((x - y).abs() <= tol, "{m}×{k}×{n} ({ta},{tb}): {x} vs {y}");
                }
            }
        }
    }

    /// The same product from several threads at once (each split, thread-local buffers
    /// shared with other callers) is bit-for-bit the same every time.
    #[test]
    fn concurrent_callers_get_identical_results() {
        if !available() {
            return;
        }
        let (ad, bd) = (values(300 * 500, 3), values(500 * 70, 4));
        let run = || {
            matmul(
                View::row_major(&ad, 300, 500),
                View::row_major(&bd, 500, 70),
            )
            .expect("available")
        };
        let first = run();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..20).map(|_| run()).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                for out in h.join().expect("thread") {
                    assert!(out == first, "a concurrent product differed");
                }
            }
        });
    }

    #[test]
    fn rejects_mismatched_or_out_of_bounds_views() {
        let d = vec![0f32; 12];
        let a = View::row_major(&d, 3, 4);
        assert!(matmul(a, View::row_major(&d, 3, 4)).is_none());
        let long = View {
            rows: 4,
            ..View::row_major(&d, 3, 4)
        };
        assert!(matmul(long, View::row_major(&d, 4, 3)).is_none());
    }

    fn q8(rows: usize, cols: usize, seed: u32) -> Q8Matrix {
        let q: Vec<i8> = values(rows * cols, seed)
            .iter()
            .map(|v| (v * 127.0) as i8)
            .collect();
        let scales = values(rows * cols / 32, seed + 1)
            .iter()
            .map(|v| v * 0.01 + 0.002)
            .collect();
        Q8Matrix::new(rows, cols, q, scales).expect("valid")
    }

    /// The 8-bit operand, as is and transposed (ragged widths, several slabs, every split),
    /// gives bit for bit the product of its dequantized `f32` matrix.
    #[test]
    fn q8_operand_equals_its_dequantized_matrix() {
        if !available() {
            return;
        }
        // (a rows, matrix rows, matrix cols)
        for &(m, rows, cols) in &[
            (1, 32, 32),
            (7, 45, 64),
            (100, 1000, 96),
            (13, 300, 800),
            (100, 2000, 576),
        ] {
            let mat = q8(rows, cols, 3);
            let deq = mat.dequantize();
            for transposed in [false, true] {
                let (depth, width) = if transposed {
                    (cols, rows)
                } else {
                    (rows, cols)
                };
                let ad = values(m * depth, 5);
                let a = View::row_major(&ad, m, depth);
                let dense = View::row_major(&deq, rows, cols);
                let dense = if transposed { dense.t() } else { dense };
                let want = product(a, dense);
                let got = matmul_q8(a, &mat, transposed).expect("available");
                assert_eq!(got.len(), m * width);
                assert!(
                    got == want,
                    "m={m} {rows}x{cols} transposed={transposed}: differs from the f32 matrix"
                );
            }
        }
        assert!(matmul_q8(View::row_major(&[0.0; 6], 2, 3), &q8(32, 32, 1), false).is_none());
        assert!(Q8Matrix::new(2, 30, vec![0; 60], vec![0.0; 1]).is_none());
        assert!(Q8Matrix::new(2, 32, vec![0; 64], vec![0.0; 1]).is_none());
    }
}
