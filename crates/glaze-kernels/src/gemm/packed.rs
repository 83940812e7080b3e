//! [`PackedMatrix`]: a constant right operand (a frozen weight) packed once into the kernel's
//! panel layout, so its products read the panels in place instead of packing `B` on every
//! call. In a Time-LLM training step the per-call packing of the frozen blocks' weights read
//! them from memory 128 bytes per 12 KB row stride and was 10 % of the step's samples.

use std::sync::OnceLock;

use super::{NR, Rhs, View, available, pack, product};

/// A `depth × width` matrix stored as `⌈width / NR⌉` full-depth panels: panel `p` holds
/// columns `p·NR..p·NR + NR` (zero beyond `width`), row by row — element `(k, j)` is
/// `panels[((j / NR)·depth + k)·NR + j % NR]`. Any slab of a panel (rows `k0..k1`) is then
/// one contiguous run, whatever slab depth or column split a product picks.
#[derive(Debug)]
pub struct PackedMatrix {
    depth: usize,
    width: usize,
    panels: Vec<f32>,
    /// The transpose, packed by the first product that needs it (the backward pass).
    transposed: OnceLock<Box<PackedMatrix>>,
}

impl PackedMatrix {
    /// Packs `b` (any strides); `None` when the view is out of bounds.
    pub fn new(b: View) -> Option<Self> {
        if !b.in_bounds() {
            return None;
        }
        let (depth, width) = (b.rows, b.cols);
        let mut panels = vec![0f32; width.div_ceil(NR) * depth * NR];
        if depth > 0 {
            for (p, dst) in panels.chunks_exact_mut(depth * NR).enumerate() {
                let j = p * NR;
                pack::<NR>(&b, 0, depth, j, NR.min(width - j), dst);
            }
        }
        Some(PackedMatrix {
            depth,
            width,
            panels,
            transposed: OnceLock::new(),
        })
    }

    /// Rows (the products' inner dimension).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Element `(k, j)`.
    pub fn at(&self, k: usize, j: usize) -> f32 {
        self.panels[((j / NR) * self.depth + k) * NR + j % NR]
    }

    /// All elements, row-major.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.depth * self.width);
        for k in 0..self.depth {
            out.extend((0..self.width).map(|j| self.at(k, j)));
        }
        out
    }

    /// Bytes held, the transpose included once built.
    pub fn size_bytes(&self) -> usize {
        let own = self.panels.len() * 4;
        own + self.transposed.get().map_or(0, |t| t.panels.len() * 4)
    }

    /// The transpose (`width × depth`), packed from these panels on first use.
    fn transpose(&self) -> &PackedMatrix {
        self.transposed.get_or_init(|| {
            let (depth, width) = (self.width, self.depth);
            let mut panels = vec![0f32; width.div_ceil(NR) * depth * NR];
            // Element (k, j) of the transpose is element (j, k) of this matrix.
            for (p, src) in self.panels.chunks_exact(self.depth * NR).enumerate() {
                for (j, row) in src.chunks_exact(NR).enumerate() {
                    for (lane, &v) in row.iter().enumerate().take(depth - (p * NR).min(depth)) {
                        let k = p * NR + lane;
                        panels[((j / NR) * depth + k) * NR + j % NR] = v;
                    }
                }
            }
            Box::new(PackedMatrix {
                depth,
                width,
                panels,
                transposed: OnceLock::new(),
            })
        })
    }
}

/// A window of a [`PackedMatrix`] as a right operand: `B[k, j]` is element `(r0 + k, c0 + j)`.
#[derive(Clone, Copy)]
struct PackedView<'a> {
    m: &'a PackedMatrix,
    r0: usize,
    c0: usize,
    width: usize,
}

impl Rhs for PackedView<'_> {
    fn width(&self) -> usize {
        self.width
    }
    fn sub_rows(self, lo: usize, _hi: usize) -> Self {
        PackedView {
            r0: self.r0 + lo,
            ..self
        }
    }
    fn sub_cols(self, lo: usize, hi: usize) -> Self {
        PackedView {
            c0: self.c0 + lo,
            width: hi - lo,
            ..self
        }
    }
    fn pack_slab(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        for (p, panel) in dst
            .chunks_exact_mut(kc * NR)
            .take(nc.div_ceil(NR))
            .enumerate()
        {
            let j = j0 + p * NR;
            let cols = NR.min(j0 + nc - j);
            panel.fill(0.0);
            for kk in 0..kc {
                for jj in 0..cols {
                    panel[kk * NR + jj] = self.m.at(self.r0 + k0 + kk, self.c0 + j + jj);
                }
            }
        }
    }
    fn panel(&self, k0: usize, j: usize) -> Option<&[f32]> {
        let col = self.c0 + j;
        // Columns of the stored panel beyond this window's width are computed but never
        // stored (the kernel masks its output to the window).
        col.is_multiple_of(NR).then(|| {
            let at = ((col / NR) * self.m.depth + self.r0 + k0) * NR;
            &self.m.panels[at..(col / NR + 1) * self.m.depth * NR]
        })
    }
}

/// `A · B` with the packed constant `B = m` (or `mᵀ` when `transposed`, packed on first
/// use), row-major; `None` when the kernel is unavailable or the shapes disagree. Equal, bit
/// for bit, to [`super::matmul`] on the dense matrix: the panels hold the same values and
/// the products the same slabs.
pub fn matmul_packed(a: View, m: &PackedMatrix, transposed: bool) -> Option<Vec<f32>> {
    if !available() {
        return None;
    }
    let m = if transposed { m.transpose() } else { m };
    if a.cols != m.depth || !a.in_bounds() {
        return None;
    }
    let b = PackedView {
        m,
        r0: 0,
        c0: 0,
        width: m.width,
    };
    Some(product(a, b, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The packed operand, as is and transposed, strided sources included (ragged widths,
    /// several slabs, every split): bit for bit the dense product.
    #[test]
    fn packed_operand_equals_the_dense_product() {
        if !available() {
            return;
        }
        // (a rows, depth, width)
        for &(m, depth, width) in &[
            (1, 1, 1),
            (7, 45, 64),
            (13, 300, 33),
            (100, 576, 200),
            (384, 576, 960),
            (37, 1000, 100),
            (30, 40, 3100),
        ] {
            let bd = values(depth * width, 11);
            for strided in [false, true] {
                // The same matrix stored row-major or as its transpose.
                let stored_t: Vec<f32>;
                let b = if strided {
                    stored_t = crate::gemm::transpose(&bd, depth, width);
                    View::row_major(&stored_t, width, depth).t()
                } else {
                    View::row_major(&bd, depth, width)
                };
                let packed = PackedMatrix::new(b).expect("in bounds");
                assert_eq!(packed.to_dense(), bd);
                let ad = values(m * depth, 12);
                let a = View::row_major(&ad, m, depth);
                let got = matmul_packed(a, &packed, false).expect("available");
                assert!(got == product(a, b, false), "{m}×{depth}×{width}");
                // Transposed: A' (m × width) · Bᵀ.
                let ad = values(m * width, 13);
                let a = View::row_major(&ad, m, width);
                let got = matmul_packed(a, &packed, true).expect("available");
                assert!(got == product(a, b.t(), false), "{m}×{width}×{depth} (Bᵀ)");
            }
        }
        let packed = PackedMatrix::new(View::row_major(&[1.0; 6], 2, 3)).expect("in bounds");
        assert!(matmul_packed(View::row_major(&[0.0; 6], 2, 3), &packed, false).is_none());
        let long = View {
            rows: 3,
            ..View::row_major(&[0.0; 6], 2, 3)
        };
        assert!(PackedMatrix::new(long).is_none());
    }
}
