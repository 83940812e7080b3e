//! ggml tensor types and their dequantization to f32 (bit-exact with ggml's reference C code
//! `dequantize_row_*` in `ggml-quants.c`).

use half::{bf16, f16};

/// ggml element types this crate knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, 32-weight blocks with a scale.
    Q4_0,
    /// 4-bit, 32-weight blocks with a scale and a minimum.
    Q4_1,
    /// 5-bit, 32-weight blocks with a scale.
    Q5_0,
    /// 5-bit, 32-weight blocks with a scale and a minimum.
    Q5_1,
    /// 8-bit, 32-weight blocks with a scale.
    Q8_0,
    /// 4-bit k-quant, 256-weight super-blocks.
    Q4K,
    /// 5-bit k-quant, 256-weight super-blocks.
    Q5K,
    /// 6-bit k-quant, 256-weight super-blocks.
    Q6K,
    /// Known but not dequantized here (Q8_1, Q2_K, Q3_K, Q8_K).
    Other(u32),
}

impl GgmlType {
    /// From the numeric type code.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            9 | 10 | 11 | 15 => GgmlType::Other(v),
            _ => return None,
        })
    }

    /// Name of a numeric type code.
    pub fn name_of(v: u32) -> &'static str {
        match v {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            6 => "Q5_0",
            7 => "Q5_1",
            8 => "Q8_0",
            9 => "Q8_1",
            10 => "Q2_K",
            11 => "Q3_K",
            12 => "Q4_K",
            13 => "Q5_K",
            14 => "Q6_K",
            15 => "Q8_K",
            30 => "BF16",
            _ => "unknown",
        }
    }

    /// (weights per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
            GgmlType::Other(9) => (32, 36),
            GgmlType::Other(10) => (256, 84),
            GgmlType::Other(11) => (256, 110),
            GgmlType::Other(15) => (256, 292),
            GgmlType::Other(_) => (1, 0),
        }
    }

    /// Whether [`dequantize`] supports it.
    pub fn can_dequantize(self) -> bool {
        !matches!(self, GgmlType::Other(_))
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` elements stored as `ty` in `data` (whose length the caller has checked:
/// `n / block * block_bytes`).
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let (block, bytes) = ty.block();
    let blocks = data.chunks_exact(bytes).zip(out.chunks_exact_mut(block));
    match ty {
        GgmlType::F32 => {
            for (b, o) in blocks {
                o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, o) in blocks {
                o[0] = f16_at(b, 0);
            }
        }
        GgmlType::BF16 => {
            for (b, o) in blocks {
                o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Other(_) => {}
        _ => {
            for (b, o) in blocks {
                for (sub, w) in o.chunks_exact_mut(32).enumerate() {
                    let w: &mut [f32; 32] = w.try_into().expect("32 weights");
                    dequantize_sub(ty, b, sub, w);
                }
            }
        }
    }
    out
}

/// Dequantizes the 32 weights `32·sub..32·sub + 32` of one block of `ty` (`block` holds its
/// bytes): the whole block of a 32-weight type (`sub` 0), one of the eight sub-blocks of a
/// 256-weight k-quant super-block. For every block type [`dequantize`] reads.
pub fn dequantize_sub(ty: GgmlType, block: &[u8], sub: usize, w: &mut [f32; 32]) {
    let b = block;
    match ty {
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                let q = b[2 + j];
                w[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
                w[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            let d = f16_at(b, 0);
            let m = f16_at(b, 2);
            for j in 0..16 {
                let q = b[4 + j];
                w[j] = (q & 0x0F) as f32 * d + m;
                w[j + 16] = (q >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                w[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            // Q5_0: d, qh (4 bytes: the fifth bit of each weight), qs; `(q - 16) · d`.
            // Q5_1: d, m, qh, qs; `q · d + m`.
            let has_min = ty == GgmlType::Q5_1;
            let at = if has_min { 4 } else { 2 };
            let d = f16_at(b, 0);
            let (m, offset) = if has_min {
                (f16_at(b, 2), 0)
            } else {
                (0.0, 16)
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            for j in 0..16 {
                let q = b[at + 4 + j];
                let h0 = ((qh >> j) & 1) << 4;
                let h1 = ((qh >> (j + 16)) & 1) << 4;
                w[j] = (((q & 0x0F) as u32 | h0) as i32 - offset) as f32 * d + m;
                w[j + 16] = (((q >> 4) as u32 | h1) as i32 - offset) as f32 * d + m;
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            // d, dmin, 12 bytes of 6-bit scales and minimums, [Q5_K: qh[32]], qs[128]: chunk
            // `sub / 2` of 32 quant bytes, low nibbles for even sub-blocks, high for odd; Q5_K's
            // fifth bit of weight `l` of sub-block `j` is bit `j` of `qh[l]`.
            let d = f16_at(b, 0);
            let dmin = f16_at(b, 2);
            let (sc, m) = scale_min_k4(sub, &b[4..16]);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            let (qh, qs) = if ty == GgmlType::Q5K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            let q = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
            let shift = 4 * (sub % 2);
            for l in 0..32 {
                let high = qh.map_or(0, |h| ((h[l] >> sub) & 1) << 4);
                w[l] = dl * (((q[l] >> shift) & 0x0F) | high) as f32 - ml;
            }
        }
        GgmlType::Q6K => {
            // ql[128], qh[64], 16 signed scales, d: half `sub / 4` of 128 weights; quarter
            // `sub % 4` takes the low (quarters 0, 1) or high (2, 3) nibbles of `ql[l]`
            // (0, 2) or `ql[l + 32]` (1, 3) and bits `2·quarter` of `qh[l]`; one scale per 16.
            let d = f16_at(b, 208);
            let (half, quarter) = (sub / 4, sub % 4);
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            let sc = &b[192 + 8 * half..192 + 8 * half + 8];
            let (lo_off, shift) = ([0, 32, 0, 32][quarter], [0, 0, 4, 4][quarter]);
            for l in 0..32 {
                let low = (ql[l + lo_off] >> shift) & 0x0F;
                let high = (qh[l] >> (2 * quarter)) & 3;
                let q = (low | (high << 4)) as i32 - 32;
                w[l] = d * (sc[l / 16 + 2 * quarter] as i8) as f32 * q as f32;
            }
        }
        other => unreachable!("invariant: {other:?} is not read block by block"),
    }
}

/// Scale and minimum of sub-block `j` of a Q4_K super-block (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_1_block_by_hand() {
        // d = 0.5, m = -1.0, nibbles: low = j % 16, high = 15 - j % 16.
        let mut b = Vec::new();
        b.extend(f16b(0.5));
        b.extend(f16b(-1.0));
        for j in 0..16u8 {
            b.push(j | ((15 - j) << 4));
        }
        let w = dequantize(GgmlType::Q4_1, &b, 32);
        for j in 0..16 {
            assert_eq!(w[j], 0.5 * j as f32 - 1.0);
            assert_eq!(w[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q4_0_and_q8_0_blocks_by_hand() {
        let mut b = Vec::new();
        b.extend(f16b(2.0));
        b.extend(std::iter::repeat_n(0x1Fu8, 16)); // low 15 -> 7, high 1 -> -7
        let w = dequantize(GgmlType::Q4_0, &b, 32);
        assert!(w[..16].iter().all(|&v| v == 14.0));
        assert!(w[16..].iter().all(|&v| v == -14.0));

        let mut b = Vec::new();
        b.extend(f16b(0.25));
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let w = dequantize(GgmlType::Q8_0, &b, 32);
        for (i, v) in w.iter().enumerate() {
            assert_eq!(*v, 0.25 * (i as f32 - 16.0));
        }
    }

    #[test]
    fn float_types() {
        let mut b = Vec::new();
        b.extend(1.5f32.to_le_bytes());
        b.extend((-2.25f32).to_le_bytes());
        assert_eq!(dequantize(GgmlType::F32, &b, 2), vec![1.5, -2.25]);
        let b: Vec<u8> = [f16b(0.125), f16b(-3.0)].concat();
        assert_eq!(dequantize(GgmlType::F16, &b, 2), vec![0.125, -3.0]);
        let b: Vec<u8> = [bf16::from_f32(7.0).to_le_bytes()].concat();
        assert_eq!(dequantize(GgmlType::BF16, &b, 1), vec![7.0]);
    }
}
