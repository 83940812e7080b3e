//! Matrix products against GGUF-quantized weights kept in their blocks. Decode is bound by
//! memory traffic: an f32 SmolLM2 moves ~540 MB per token, its Q4_1/Q8_0 blocks ~115 MB.
//! Weights are dequantized on the fly, block by block, against f32 activations
//! ([`Activations::F32`]: the result equals the f32 path up to summation order), or multiplied
//! as integers against activations rounded to 8 bits per block ([`Activations::Int8`],
//! llama.cpp's scheme, [`crate::qint8`]).
//!
//! On x86-64 with AVX2/FMA or AVX-512 the kernels of [`crate::qkernels`] and
//! [`crate::qint8`] run (chosen at run time); elsewhere the portable code below, written so
//! that LLVM can vectorize it. Rows are split across rayon's threads.

use half::f16;
use rayon::prelude::*;

use crate::quant::GgmlType;

/// Block layout of a quantized matrix, repacked at load: the file's f16 scales (and
/// minimums) in one array, the packed quants in another (the same bytes as the file's blocks;
/// f32 scales held 15 MB more for SmolLM2). The kernels widen the scales with F16C.
#[derive(Debug, Clone)]
enum Blocks {
    /// `w = d * q + m`, 4-bit `q` (low nibbles: weights 0..16, high: 16..32).
    Q4_1 {
        d: Vec<f16>,
        m: Vec<f16>,
        qs: Vec<u8>,
    },
    /// `w = d * (q - 8)`, 4-bit `q`.
    Q4_0 { d: Vec<f16>, qs: Vec<u8> },
    /// `w = d * q`, 8-bit signed `q`.
    Q8_0 { d: Vec<f16>, qs: Vec<i8> },
    /// The file's own block bytes, read 32 weights at a time by the portable kernels: the
    /// 5-bit types and the k-quants (256-weight super-blocks), and stacks of rows of
    /// different types (a fused q/k/v whose v is Q8_0 beside Q5_0 q and k).
    Raw(Vec<RawPart>),
}

/// Consecutive rows of one type, as the file stores them.
#[derive(Debug, Clone)]
struct RawPart {
    ty: GgmlType,
    rows: usize,
    bytes: Vec<u8>,
}

/// Whether the portable kernels read `ty` from its own bytes.
fn raw_type(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K
    )
}

/// A `[rows, cols]` matrix in 32-weight quantized blocks along `cols`.
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

fn f16_at(b: &[u8], i: usize) -> f16 {
    f16::from_le_bytes([b[i], b[i + 1]])
}

impl QMatrix {
    /// Repacks GGUF block bytes of a row-major `[rows, cols]` matrix. `None` for types without
    /// a kernel (the caller keeps the dense path) or when `cols` is not a multiple of 32.
    pub fn from_ggml(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<Self> {
        let mut builder = QBuilder::new(ty, rows, cols, data.len())?;
        builder.push(data);
        builder.finish()
    }

    /// Stacks matrices with equal `cols` along rows (fused q/k/v, gate/up). Matrices of one
    /// kernel type stay in it; any other mixture keeps each part's own bytes.
    pub fn vstack(parts: Vec<QMatrix>) -> Option<QMatrix> {
        let cols = parts.first()?.cols;
        if parts.iter().any(|p| p.cols != cols) {
            return None;
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let native = |b: &Blocks| std::mem::discriminant(b);
        let same = parts
            .iter()
            .all(|p| native(&p.blocks) == native(&parts[0].blocks));
        if !same || matches!(parts[0].blocks, Blocks::Raw(_)) {
            let mut raw: Vec<RawPart> = Vec::new();
            for p in parts {
                for part in p.into_raw_parts() {
                    match raw.last_mut() {
                        Some(last) if last.ty == part.ty => {
                            last.rows += part.rows;
                            last.bytes.extend(part.bytes);
                        }
                        _ => raw.push(part),
                    }
                }
            }
            return Some(QMatrix {
                rows,
                cols,
                blocks: Blocks::Raw(raw),
            });
        }
        let mut iter = parts.into_iter();
        let mut first = iter.next()?;
        for p in iter {
            match (&mut first.blocks, p.blocks) {
                (
                    Blocks::Q4_1 { d, m, qs },
                    Blocks::Q4_1 {
                        d: d2,
                        m: m2,
                        qs: q2,
                    },
                ) => {
                    d.extend(d2);
                    m.extend(m2);
                    qs.extend(q2);
                }
                (Blocks::Q4_0 { d, qs }, Blocks::Q4_0 { d: d2, qs: q2 }) => {
                    d.extend(d2);
                    qs.extend(q2);
                }
                (Blocks::Q8_0 { d, qs }, Blocks::Q8_0 { d: d2, qs: q2 }) => {
                    d.extend(d2);
                    qs.extend(q2);
                }
                _ => unreachable!("invariant: one native type (checked above)"),
            }
        }
        first.rows = rows;
        Some(first)
    }

    /// The rows as the file's block bytes, by runs of one type.
    fn into_raw_parts(self) -> Vec<RawPart> {
        let (rows, n) = (self.rows, self.rows * self.cols / 32);
        let one = |ty, bytes| vec![RawPart { ty, rows, bytes }];
        let f16s = |v: &[f16], i: usize| v[i].to_le_bytes();
        match self.blocks {
            Blocks::Raw(parts) => parts,
            Blocks::Q4_1 { d, m, qs } => one(
                GgmlType::Q4_1,
                (0..n)
                    .flat_map(|i| {
                        let mut b = Vec::with_capacity(20);
                        b.extend(f16s(&d, i));
                        b.extend(f16s(&m, i));
                        b.extend(&qs[i * 16..i * 16 + 16]);
                        b
                    })
                    .collect(),
            ),
            Blocks::Q4_0 { d, qs } => one(
                GgmlType::Q4_0,
                (0..n)
                    .flat_map(|i| {
                        let mut b = Vec::with_capacity(18);
                        b.extend(f16s(&d, i));
                        b.extend(&qs[i * 16..i * 16 + 16]);
                        b
                    })
                    .collect(),
            ),
            Blocks::Q8_0 { d, qs } => one(
                GgmlType::Q8_0,
                (0..n)
                    .flat_map(|i| {
                        let mut b = Vec::with_capacity(34);
                        b.extend(f16s(&d, i));
                        b.extend(qs[i * 32..i * 32 + 32].iter().map(|&q| q as u8));
                        b
                    })
                    .collect(),
            ),
        }
    }

    /// Reorders rows: output row `i` is input row `order[i]`.
    pub fn permute_rows(&mut self, order: &[usize]) {
        let bpr = self.cols / 32;
        fn gather<T: Copy>(v: &[T], order: &[usize], per_row: usize) -> Vec<T> {
            order
                .iter()
                .flat_map(|&r| v[r * per_row..(r + 1) * per_row].iter().copied())
                .collect()
        }
        match &mut self.blocks {
            Blocks::Q4_1 { d, m, qs } => {
                *d = gather(d, order, bpr);
                *m = gather(m, order, bpr);
                *qs = gather(qs, order, bpr * 16);
            }
            Blocks::Q4_0 { d, qs } => {
                *d = gather(d, order, bpr);
                *qs = gather(qs, order, bpr * 16);
            }
            Blocks::Q8_0 { d, qs } => {
                *d = gather(d, order, bpr);
                *qs = gather(qs, order, bpr * 32);
            }
            Blocks::Raw(parts) => {
                assert!(parts.len() == 1, "invariant: rows of one type are permuted");
                let part = &mut parts[0];
                let (block, block_bytes) = part.ty.block();
                part.bytes = gather(&part.bytes, order, self.cols / block * block_bytes);
            }
        }
    }

    /// The matrix as 8-bit rows with `f32` scales (a copy), for Q8_0 blocks only: the same
    /// values as [`Self::dequantize`].
    pub fn to_q8(&self) -> Option<crate::gemm::Q8Matrix> {
        match &self.blocks {
            Blocks::Q8_0 { d, qs } => {
                let d = d.iter().map(|v| v.to_f32()).collect();
                crate::gemm::Q8Matrix::new(self.rows, self.cols, qs.clone(), d)
            }
            _ => None,
        }
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// FNV-1a over the scales, minimums and quants (for the backbone's weight digest).
    pub fn digest(&self, seed: u64) -> u64 {
        // Over the scales' f32 values (as when they were held in f32: feature caches keyed
        // by the digest stay valid).
        let f32s = |v: &[f16], h: u64| {
            v.iter()
                .fold(h, |h, x| crate::fnv1a64(&x.to_f32().to_le_bytes(), h))
        };
        match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => crate::fnv1a64(qs, f32s(m, f32s(d, seed))),
            Blocks::Q4_0 { d, qs } => crate::fnv1a64(qs, f32s(d, seed)),
            Blocks::Q8_0 { d, qs } => {
                let bytes: Vec<u8> = qs.iter().map(|&q| q as u8).collect();
                crate::fnv1a64(&bytes, f32s(d, seed))
            }
            Blocks::Raw(parts) => parts.iter().fold(seed, |h, p| {
                let code = format!("{:?}/{}", p.ty, p.rows);
                crate::fnv1a64(&p.bytes, crate::fnv1a64(code.as_bytes(), h))
            }),
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => d.len() * 2 + m.len() * 2 + qs.len(),
            Blocks::Q4_0 { d, qs } => d.len() * 2 + qs.len(),
            Blocks::Q8_0 { d, qs } => d.len() * 2 + qs.len(),
            Blocks::Raw(parts) => parts.iter().map(|p| p.bytes.len()).sum(),
        }
    }

    /// Dequantizes the given rows (an embedding lookup), `ids.len() · cols` values, with the
    /// formulas of the kernels' portable path.
    pub fn dequantize_rows(&self, ids: &[usize]) -> Vec<f32> {
        let bpr = self.cols / 32;
        let mut out = vec![0f32; ids.len() * self.cols];
        let mut w = [0f32; 32];
        for (row, &r) in out.chunks_exact_mut(self.cols).zip(ids) {
            for (b, o) in row.chunks_exact_mut(32).enumerate() {
                self.block(r * bpr + b, &mut w);
                o.copy_from_slice(&w);
            }
        }
        out
    }

    /// Dequantizes to a row-major `[rows, cols]` f32 matrix (the lazy dense copy; the reference
    /// for tests).
    pub fn dequantize(&self) -> Vec<f32> {
        self.dequantize_rows(&(0..self.rows).collect::<Vec<_>>())
    }

    /// `y = x · Wᵀ` for `x` row-major `[n, cols]`; returns `y` row-major `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with(x, n, crate::qkernels::available())
    }

    /// Whether [`Self::matmul_act`] with `act` runs the 8-bit kernels here (for the file's
    /// own bytes, the AVX2 ones of [`crate::qint8::raw`]).
    pub fn int8_ready(&self, act: Activations) -> bool {
        act == Activations::Int8
            && match &self.blocks {
                Blocks::Raw(parts) => {
                    crate::qint8::avx2() && parts.iter().all(|p| crate::qint8::raw::supported(p.ty))
                }
                _ => crate::qint8::available(),
            }
    }

    /// [`Self::matmul`] with the activations kept in f32 or rounded to 8 bits per block
    /// ([`crate::qint8`]; where the CPU has AVX-512 VNNI or AVX2 — elsewhere the f32 kernels
    /// run). Inputs go through in groups of up to 8 per pass over the weights.
    pub fn matmul_act(&self, x: &[f32], n: usize, act: Activations) -> Vec<f32> {
        if !self.int8_ready(act) || (n == 1 && self.raw_f32_kernels()) {
            return self.matmul(x, n);
        }
        assert_eq!(x.len(), n * self.cols, "invariant: x is [n, cols]");
        let groups: Vec<crate::qint8::QInput> = x
            .par_chunks(MAX_GROUP * self.cols)
            .map(|xg| crate::qint8::QInput::new(xg, xg.len() / self.cols, self.cols))
            .collect();
        // One parallel region: each task takes its rows through every group of inputs (a
        // prompt's groups reuse the task's weights from cache) and returns them input-major,
        // so the result is assembled with one contiguous copy per input and task.
        let per_task = self.rows_per_task();
        let parts: Vec<Vec<f32>> = (0..self.rows.div_ceil(per_task))
            .into_par_iter()
            .map(|t| {
                let (r0, r1) = (t * per_task, ((t + 1) * per_task).min(self.rows));
                let len = r1 - r0;
                let kind = self.rows_kind(r0, r1);
                let mut part = vec![0f32; len * MAX_GROUP];
                let mut block = vec![0f32; n * len];
                for (g, xq) in groups.iter().enumerate() {
                    let ng = xq.n();
                    let part = &mut part[..len * ng];
                    let done = match kind {
                        Some(kind) => crate::qint8::rows(kind, xq, part),
                        None => self.raw_spans(r0, r1).all(|(ty, bytes, rows, at)| {
                            let out = &mut part[(at - r0) * ng..(at - r0 + rows) * ng];
                            crate::qint8::raw::rows(ty, bytes, xq, out)
                        }),
                    };
                    assert!(done, "invariant: the int8 kernels run (checked above)");
                    for (i, p) in part.chunks_exact(ng).enumerate() {
                        for (kk, v) in p.iter().enumerate() {
                            block[(g * MAX_GROUP + kk) * len + i] = *v;
                        }
                    }
                }
                block
            })
            .collect();
        let mut y = vec![0f32; n * self.rows];
        for (t, block) in parts.iter().enumerate() {
            let (r0, len) = (t * per_task, block.len() / n);
            for (k, b) in block.chunks_exact(len).enumerate() {
                y[k * self.rows + r0..k * self.rows + r0 + len].copy_from_slice(b);
            }
        }
        y
    }

    /// Whether every row is of the file's own bytes in a type with an AVX2 f32-activation
    /// kernel (Q5_0, Q4_K, Q6_K): for one input (a decode step) those beat the 8-bit ones,
    /// whose per-block unpacking is then shared by no other input (measured on an AVX2
    /// machine: `docs/benchmarks.md`, "Qwen2 and Gemma 3 against llama.cpp").
    fn raw_f32_kernels(&self) -> bool {
        crate::qkernels::available()
            && matches!(&self.blocks, Blocks::Raw(parts) if parts.iter().all(|p| {
                matches!(p.ty, GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::Q6K)
            }))
    }

    /// Rows per parallel task: four tasks per thread, at least 16 rows.
    fn rows_per_task(&self) -> usize {
        let threads = rayon::current_num_threads().max(1);
        self.rows.div_ceil(threads * 4).max(16)
    }

    /// [`Self::matmul`] with the SIMD kernels on or off (the portable path is tested too).
    pub fn matmul_with(&self, x: &[f32], n: usize, simd: bool) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "invariant: x is [n, cols]");
        let mut y = vec![0f32; n * self.rows];
        // Inputs in groups of up to MAX_GROUP: each weight block is dequantized once per group.
        for (g, xg) in x.chunks(MAX_GROUP * self.cols).enumerate() {
            let ng = xg.len() / self.cols;
            let yt = self.matmul_group(xg, ng, simd);
            let part = transpose_rows(&yt, self.rows, ng);
            y[g * MAX_GROUP * self.rows..(g * MAX_GROUP + ng) * self.rows].copy_from_slice(&part);
        }
        y
    }

    /// `[rows, n]` results: rows split into tasks over rayon's threads; `task(r0, out)` fills
    /// `out` (`[len, n]`) for rows `r0..r0 + len`.
    fn matmul_rows(&self, n: usize, task: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
        let rows_per_task = self.rows_per_task();
        let mut yt = vec![0f32; self.rows * n];
        yt.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(i, out)| task(i * rows_per_task, out));
        yt
    }

    /// `[rows, n]` results for `n ≤ MAX_GROUP` inputs, f32 activations.
    fn matmul_group(&self, x: &[f32], n: usize, simd: bool) -> Vec<f32> {
        let xsum: Vec<f32> = x.chunks_exact(32).map(|c| c.iter().sum()).collect();
        self.matmul_rows(n, |r0, out| {
            #[cfg(target_arch = "x86_64")]
            if simd
                && n == 1
                && let Some(kind) = self.rows_kind(r0, r0 + out.len())
                && crate::qkernels::dot_rows1(kind, x, &xsum, out)
            {
                return;
            }
            for (i, y_row) in out.chunks_exact_mut(n).enumerate() {
                if simd {
                    self.dot_row_simd(r0 + i, x, &xsum, n, y_row);
                } else {
                    self.dot_row(r0 + i, x, n, y_row);
                }
            }
        })
    }

    /// Dequantizes block `b` (global index) into 32 weights.
    #[inline(always)]
    fn block(&self, b: usize, w: &mut [f32; 32]) {
        match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => {
                let q: &[u8; 16] = qs[b * 16..b * 16 + 16].try_into().expect("16 quants");
                let (db, mb) = (d[b].to_f32(), m[b].to_f32());
                for j in 0..16 {
                    w[j] = db * (q[j] & 15) as f32 + mb;
                    w[j + 16] = db * (q[j] >> 4) as f32 + mb;
                }
            }
            Blocks::Q4_0 { d, qs } => {
                let q: &[u8; 16] = qs[b * 16..b * 16 + 16].try_into().expect("16 quants");
                let db = d[b].to_f32();
                for j in 0..16 {
                    w[j] = db * ((q[j] & 15) as f32 - 8.0);
                    w[j + 16] = db * ((q[j] >> 4) as f32 - 8.0);
                }
            }
            Blocks::Q8_0 { d, qs } => {
                let q: &[i8; 32] = qs[b * 32..b * 32 + 32].try_into().expect("32 quants");
                let db = d[b].to_f32();
                for j in 0..32 {
                    w[j] = db * q[j] as f32;
                }
            }
            Blocks::Raw(parts) => {
                let bpr = self.cols / 32;
                let (mut row, k) = (b / bpr, b % bpr);
                for p in parts {
                    if row < p.rows {
                        let (block, block_bytes) = p.ty.block();
                        let subs = block / 32;
                        let at = (row * (self.cols / block) + k / subs) * block_bytes;
                        let bytes = &p.bytes[at..at + block_bytes];
                        crate::quant::dequantize_sub(p.ty, bytes, k % subs, w);
                        return;
                    }
                    row -= p.rows;
                }
                unreachable!("invariant: block {b} lies in the matrix");
            }
        }
    }

    /// Row `r`'s type and bytes, when the matrix keeps the file's own bytes.
    fn raw_row(&self, r: usize) -> Option<(GgmlType, &[u8])> {
        let Blocks::Raw(parts) = &self.blocks else {
            return None;
        };
        let mut row = r;
        for p in parts {
            if row < p.rows {
                let (block, block_bytes) = p.ty.block();
                let len = self.cols / block * block_bytes;
                return Some((p.ty, &p.bytes[row * len..(row + 1) * len]));
            }
            row -= p.rows;
        }
        unreachable!("invariant: row {r} lies in the matrix")
    }

    /// Rows `r0..r1` of the file's own bytes as runs of one type: `(type, bytes, rows, first
    /// row)` (nothing for the repacked types).
    fn raw_spans(
        &self,
        r0: usize,
        r1: usize,
    ) -> impl Iterator<Item = (GgmlType, &[u8], usize, usize)> + '_ {
        let parts: &[RawPart] = match &self.blocks {
            Blocks::Raw(parts) => parts,
            _ => &[],
        };
        let mut start = 0;
        parts.iter().filter_map(move |p| {
            let (s, e) = (start.max(r0), (start + p.rows).min(r1));
            let first = start;
            start += p.rows;
            (s < e).then(|| {
                let (block, block_bytes) = p.ty.block();
                let len = self.cols / block * block_bytes;
                let bytes = &p.bytes[(s - first) * len..(e - first) * len];
                (p.ty, bytes, e - s, s)
            })
        })
    }

    /// The blocks of rows `r0..r1` for the SIMD kernels (`None` for the file's own bytes).
    fn rows_kind(&self, r0: usize, r1: usize) -> Option<crate::qkernels::Kind<'_>> {
        use crate::qkernels::Kind;
        let bpr = self.cols / 32;
        let (s, e) = (r0 * bpr, r1 * bpr);
        Some(match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => Kind::Q4_1(&d[s..e], &m[s..e], &qs[s * 16..e * 16]),
            Blocks::Q4_0 { d, qs } => Kind::Q4_0(&d[s..e], &qs[s * 16..e * 16]),
            Blocks::Q8_0 { d, qs } => Kind::Q8_0(&d[s..e], &qs[s * 32..e * 32]),
            Blocks::Raw(_) => return None,
        })
    }

    /// [`Self::dot_row`] through the AVX2/FMA kernels, four inputs at a time.
    fn dot_row_simd(&self, r: usize, x: &[f32], xsum: &[f32], n: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::qkernels::{Kind, dot_row};
            let bpr = self.cols / 32;
            let (s, e) = (r * bpr, (r + 1) * bpr);
            let kind = match &self.blocks {
                Blocks::Q4_1 { d, m, qs } => Kind::Q4_1(&d[s..e], &m[s..e], &qs[s * 16..e * 16]),
                Blocks::Q4_0 { d, qs } => Kind::Q4_0(&d[s..e], &qs[s * 16..e * 16]),
                Blocks::Q8_0 { d, qs } => Kind::Q8_0(&d[s..e], &qs[s * 32..e * 32]),
                Blocks::Raw(_) => {
                    // Q5_0, Q4_K and Q6_K rows (the Q4_K_M files) through AVX2 kernels.
                    use crate::qkernels::{dot_row_q4_k, dot_row_q5_0, dot_row_q6_k};
                    let Some((ty, row)) = self.raw_row(r).filter(|(ty, _)| {
                        matches!(ty, GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::Q6K)
                    }) else {
                        return self.dot_row(r, x, n, out);
                    };
                    for (k0, o) in (0..n).step_by(4).zip(out.chunks_mut(4)) {
                        let xs = &x[k0 * self.cols..];
                        let cols = self.cols;
                        let done = match (o.len(), ty) {
                            (4, GgmlType::Q5_0) => dot_row_q5_0::<4>(row, xs, cols, o),
                            (3, GgmlType::Q5_0) => dot_row_q5_0::<3>(row, xs, cols, o),
                            (2, GgmlType::Q5_0) => dot_row_q5_0::<2>(row, xs, cols, o),
                            (_, GgmlType::Q5_0) => dot_row_q5_0::<1>(row, xs, cols, o),
                            (4, GgmlType::Q4K) => dot_row_q4_k::<4>(row, xs, cols, o),
                            (3, GgmlType::Q4K) => dot_row_q4_k::<3>(row, xs, cols, o),
                            (2, GgmlType::Q4K) => dot_row_q4_k::<2>(row, xs, cols, o),
                            (_, GgmlType::Q4K) => dot_row_q4_k::<1>(row, xs, cols, o),
                            (4, _) => dot_row_q6_k::<4>(row, xs, cols, o),
                            (3, _) => dot_row_q6_k::<3>(row, xs, cols, o),
                            (2, _) => dot_row_q6_k::<2>(row, xs, cols, o),
                            (_, _) => dot_row_q6_k::<1>(row, xs, cols, o),
                        };
                        if !done {
                            return self.dot_row(r, x, n, out);
                        }
                    }
                    return;
                }
            };
            for (k0, o) in (0..n).step_by(4).zip(out.chunks_mut(4)) {
                let (xs, ss) = (&x[k0 * self.cols..], &xsum[k0 * bpr..]);
                match o.len() {
                    4 => dot_row::<4>(kind, xs, ss, self.cols, o),
                    3 => dot_row::<3>(kind, xs, ss, self.cols, o),
                    2 => dot_row::<2>(kind, xs, ss, self.cols, o),
                    _ => dot_row::<1>(kind, xs, ss, self.cols, o),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.dot_row(r, x, n, out);
    }

    /// Row `r` against `n` inputs: `out[k] = Σ_c W[r, c] · x[k, c]`.
    #[inline(always)]
    fn dot_row(&self, r: usize, x: &[f32], n: usize, out: &mut [f32]) {
        match n {
            1 => self.dot_row_n::<1>(r, x, out),
            2 => self.dot_row_n::<2>(r, x, out),
            3 => self.dot_row_n::<3>(r, x, out),
            _ => {
                for (k0, o) in (0..n).step_by(4).zip(out.chunks_mut(4)) {
                    let xs = &x[k0 * self.cols..];
                    match o.len() {
                        4 => self.dot_row_n::<4>(r, xs, o),
                        3 => self.dot_row_n::<3>(r, xs, o),
                        2 => self.dot_row_n::<2>(r, xs, o),
                        _ => self.dot_row_n::<1>(r, xs, o),
                    }
                }
            }
        }
    }

    /// Row `r` against `N` inputs, accumulators in registers (16 lanes per input).
    #[inline(always)]
    fn dot_row_n<const N: usize>(&self, r: usize, x: &[f32], out: &mut [f32]) {
        let bpr = self.cols / 32;
        let mut acc = [[0f32; 16]; N];
        let mut w = [0f32; 32];
        // The file's own bytes: the row's part and bytes found once, not per block.
        let raw = self.raw_row(r);
        for b in 0..bpr {
            match raw {
                Some((ty, bytes)) => {
                    let (block, block_bytes) = ty.block();
                    let (subs, at) = (block / 32, b / (block / 32) * block_bytes);
                    crate::quant::dequantize_sub(
                        ty,
                        &bytes[at..at + block_bytes],
                        b % subs,
                        &mut w,
                    );
                }
                None => self.block(r * bpr + b, &mut w),
            }
            for (k, a) in acc.iter_mut().enumerate() {
                let off = k * self.cols + b * 32;
                let xb: &[f32; 32] = x[off..off + 32].try_into().expect("32 values");
                for j in 0..16 {
                    a[j] += w[j] * xb[j] + w[j + 16] * xb[j + 16];
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = a.iter().sum();
        }
    }
}

/// Builds a [`QMatrix`] from GGUF block bytes given piece by piece, so a file-backed tensor is
/// repacked through one small read buffer instead of being read whole first (the whole-tensor
/// buffers, up to the 30 MB embedding table, left holes in the heap below the blocks).
#[derive(Debug)]
pub struct QBuilder {
    rows: usize,
    cols: usize,
    blocks: Blocks,
    block_bytes: usize,
    /// Bytes still expected.
    left: usize,
}

impl QBuilder {
    /// A builder for `len` bytes of `ty` blocks of a `[rows, cols]` matrix; `None` when the
    /// type has no kernel, `cols` is not a multiple of 32 or `len` is not the matrix's size.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, len: usize) -> Option<Self> {
        let (block, block_bytes) = ty.block();
        if block < 32 || !cols.is_multiple_of(block) || rows == 0 {
            return None;
        }
        let n = rows * cols / block;
        if len != n * block_bytes {
            return None;
        }
        let blocks = match ty {
            GgmlType::Q4_1 => Blocks::Q4_1 {
                d: Vec::with_capacity(n),
                m: Vec::with_capacity(n),
                qs: Vec::with_capacity(n * 16),
            },
            GgmlType::Q4_0 => Blocks::Q4_0 {
                d: Vec::with_capacity(n),
                qs: Vec::with_capacity(n * 16),
            },
            GgmlType::Q8_0 => Blocks::Q8_0 {
                d: Vec::with_capacity(n),
                qs: Vec::with_capacity(n * 32),
            },
            ty if raw_type(ty) => Blocks::Raw(vec![RawPart {
                ty,
                rows,
                bytes: Vec::with_capacity(len),
            }]),
            _ => return None,
        };
        Some(QBuilder {
            rows,
            cols,
            blocks,
            block_bytes,
            left: len,
        })
    }

    /// Bytes per block: pieces given to [`QBuilder::push`] hold whole blocks.
    pub fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Appends the next whole blocks.
    ///
    /// # Panics
    /// If `bytes` is not a whole number of blocks or goes past the matrix.
    pub fn push(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len().is_multiple_of(self.block_bytes) && bytes.len() <= self.left,
            "invariant: whole blocks inside the matrix"
        );
        self.left -= bytes.len();
        for b in bytes.chunks_exact(self.block_bytes) {
            match &mut self.blocks {
                Blocks::Q4_1 { d, m, qs } => {
                    d.push(f16_at(b, 0));
                    m.push(f16_at(b, 2));
                    qs.extend_from_slice(&b[4..20]);
                }
                Blocks::Q4_0 { d, qs } => {
                    d.push(f16_at(b, 0));
                    qs.extend_from_slice(&b[2..18]);
                }
                Blocks::Q8_0 { d, qs } => {
                    d.push(f16_at(b, 0));
                    qs.extend(b[2..34].iter().map(|&q| q as i8));
                }
                Blocks::Raw(parts) => parts[0].bytes.extend_from_slice(b),
            }
        }
    }

    /// The matrix, once every byte was pushed (`None` before).
    pub fn finish(self) -> Option<QMatrix> {
        (self.left == 0).then_some(QMatrix {
            rows: self.rows,
            cols: self.cols,
            blocks: self.blocks,
        })
    }
}

/// Inputs handled together per weight pass.
const MAX_GROUP: usize = 8;

/// How the decode kernels treat activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activations {
    /// Kept in f32: the result equals the dequantize-then-multiply path up to summation order.
    F32,
    /// Rounded to 8 bits per 32-value block, integer dot products (llama.cpp's scheme);
    /// falls back to [`Activations::F32`] where the CPU has neither AVX-512 VNNI nor AVX2.
    #[default]
    Int8,
}

/// `[rows, n]` → `[n, rows]`.
fn transpose_rows(yt: &[f32], rows: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0f32; rows * n];
    for r in 0..rows {
        for k in 0..n {
            y[k * rows + r] = yt[r * n + k];
        }
    }
    y
}

#[cfg(test)]
mod tests;
