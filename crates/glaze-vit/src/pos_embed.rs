//! Position-embedding interpolation to the patch grid (DINOv2's `interpolate_pos_encoding`).
//!
//! The learned grid (37×37 for DINOv2, trained at 518 px) is resized to the input's patch grid with
//! bicubic interpolation as PyTorch's `interpolate(mode="bicubic", align_corners=False)` and ONNX
//! `Resize(mode=cubic, cubic_coeff_a=-0.75, coordinate_transformation_mode=half_pixel)` compute
//! it: Keys' kernel with a = -0.75, sample positions `(o + 0.5) · in/out − 0.5`, border samples
//! clamped to the edge. Host code: it runs once per grid size on a frozen table.

/// Keys' cubic convolution kernel weights for the four taps around fractional offset `t`.
fn cubic_weights(t: f32, a: f32) -> [f32; 4] {
    let near = |x: f32| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index: the four clamped source indices and their weights.
fn taps(src: usize, dst: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|o| {
            let x = (o as f32 + 0.5) * scale - 0.5;
            let x0 = x.floor();
            let w = cubic_weights(x - x0, -0.75);
            let idx = [-1i64, 0, 1, 2].map(|d| (x0 as i64 + d).clamp(0, src as i64 - 1) as usize);
            (idx, w)
        })
        .collect()
}

/// Resizes a `[src_h, src_w, dim]` grid (row-major, channels last) to `[dst_h, dst_w, dim]`.
pub fn resize_grid(
    grid: &[f32],
    (src_h, src_w): (usize, usize),
    (dst_h, dst_w): (usize, usize),
    dim: usize,
) -> Vec<f32> {
    assert_eq!(grid.len(), src_h * src_w * dim, "invariant: grid size");
    if (src_h, src_w) == (dst_h, dst_w) {
        return grid.to_vec();
    }
    // Separable: along x first, then along y.
    let tx = taps(src_w, dst_w);
    let mut rows = vec![0.0f32; src_h * dst_w * dim];
    for y in 0..src_h {
        for (ox, (idx, w)) in tx.iter().enumerate() {
            let out = &mut rows[(y * dst_w + ox) * dim..][..dim];
            for k in 0..4 {
                let src = &grid[(y * src_w + idx[k]) * dim..][..dim];
                for (o, s) in out.iter_mut().zip(src) {
                    *o += w[k] * s;
                }
            }
        }
    }
    let ty = taps(src_h, dst_h);
    let mut out = vec![0.0f32; dst_h * dst_w * dim];
    for (oy, (idx, w)) in ty.iter().enumerate() {
        for ox in 0..dst_w {
            let o = &mut out[(oy * dst_w + ox) * dim..][..dim];
            for k in 0..4 {
                let src = &rows[(idx[k] * dst_w + ox) * dim..][..dim];
                for (v, s) in o.iter_mut().zip(src) {
                    *v += w[k] * s;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_interpolate() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t, -0.75);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(cubic_weights(0.0, -0.75), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn identity_constant_and_hand_computed() {
        let g: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_grid(&g, (2, 3), (2, 3), 2), g);
        let c = vec![3.5f32; 4 * 4];
        assert!(
            resize_grid(&c, (4, 4), (3, 3), 1)
                .iter()
                .all(|v| (v - 3.5).abs() < 1e-5)
        );
        // 1-D case 2 → 1 on a row [a, b]: x = 0.5, taps at -1(→0), 0, 1, 2(→1) with weights of
        // t = 0.5: far(1.5) = near(0.5)... so the result is (a + b) / 2 by symmetry.
        let r = resize_grid(&[1.0, 5.0], (1, 2), (1, 1), 1);
        assert!((r[0] - 3.0).abs() < 1e-6, "{r:?}");
        // 1-D case 4 → 2 on [0, 1, 2, 3]: x = 0.5 and 2.5; weights at t=0.5 are
        // [-0.09375, 0.59375, 0.59375, -0.09375]; taps (0,0,1,2) and (1,2,3,3).
        let r = resize_grid(&[0.0, 1.0, 2.0, 3.0], (1, 4), (1, 2), 1);
        let w = [-0.09375f32, 0.59375, 0.59375, -0.09375];
        let want0 = w[0] * 0.0 + w[1] * 0.0 + w[2] * 1.0 + w[3] * 2.0;
        let want1 = w[0] * 1.0 + w[1] * 2.0 + w[2] * 3.0 + w[3] * 3.0;
        assert!(
            (r[0] - want0).abs() < 1e-6 && (r[1] - want1).abs() < 1e-6,
            "{r:?}"
        );
    }
}
