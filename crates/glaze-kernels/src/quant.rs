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
        GgmlType::Q4_0 => {
            for (b, o) in blocks {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    let q = b[2 + j];
                    o[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
                    o[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (b, o) in blocks {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for j in 0..16 {
                    let q = b[4 + j];
                    o[j] = (q & 0x0F) as f32 * d + m;
                    o[j + 16] = (q >> 4) as f32 * d + m;
                }
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            // Q5_0: d, qh (4 bytes: the fifth bit of each weight), qs; `(q - 16) · d`.
            // Q5_1: d, m, qh, qs; `q · d + m`.
            let has_min = ty == GgmlType::Q5_1;
            let at = if has_min { 4 } else { 2 };
            for (b, o) in blocks {
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
                    o[j] = (((q & 0x0F) as u32 | h0) as i32 - offset) as f32 * d + m;
                    o[j + 16] = (((q >> 4) as u32 | h1) as i32 - offset) as f32 * d + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (b, o) in blocks {
                let d = f16_at(b, 0);
                for j in 0..32 {
                    o[j] = (b[2 + j] as i8) as f32 * d;
                }
            }
        }
        GgmlType::Q4K => {
            for (b, o) in blocks {
                let d = f16_at(b, 0);
                let dmin = f16_at(b, 2);
                let scales = &b[4..16];
                let qs = &b[16..144];
                for (chunk, pair) in (0..4).zip(o.chunks_exact_mut(64)) {
                    let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                    let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                    let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
                    let q = &qs[32 * chunk..32 * chunk + 32];
                    for l in 0..32 {
                        pair[l] = d1 * (q[l] & 0x0F) as f32 - min1;
                        pair[32 + l] = d2 * (q[l] >> 4) as f32 - min2;
                    }
                }
            }
        }
        GgmlType::Q5K => {
            // Q4_K's layout plus `qh[32]`: bit `2c` (`2c + 1`) of `qh[l]` is the fifth bit of
            // weight `l` of sub-block `2c` (`2c + 1`).
            for (b, o) in blocks {
                let d = f16_at(b, 0);
                let dmin = f16_at(b, 2);
                let scales = &b[4..16];
                let qh = &b[16..48];
                let qs = &b[48..176];
                for (chunk, pair) in (0..4).zip(o.chunks_exact_mut(64)) {
                    let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                    let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                    let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
                    let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
                    let q = &qs[32 * chunk..32 * chunk + 32];
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        pair[l] = d1 * ((q[l] & 0x0F) + h1) as f32 - min1;
                        pair[32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - min2;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (b, o) in blocks {
                let ql_all = &b[0..128];
                let qh_all = &b[128..192];
                let sc_all = &b[192..208];
                let d = f16_at(b, 208);
                for half in 0..2 {
                    let ql = &ql_all[64 * half..64 * half + 64];
                    let qh = &qh_all[32 * half..32 * half + 32];
                    let sc = &sc_all[8 * half..8 * half + 8];
                    let y = &mut o[128 * half..128 * half + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
        GgmlType::Other(_) => {}
    }
    out
}

/// Scale and minimum of sub-block `j` of a Q4_K super-block (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
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
