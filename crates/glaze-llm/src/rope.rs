//! Rotary position embeddings (Su et al. 2021, RoFormer), with cos/sin tables computed once.
//!
//! Two pairings: rotate-half (HF Llama) and interleaved (GPT-J, raw GGUF q/k rows). A GGUF
//! loader may un-permute q/k rows and use rotate-half; both give the same attention scores.

use burn::prelude::*;
use glaze_kernels::rope::rotate_half_heads;

pub use glaze_kernels::rope::RopeLayout;

/// Rotary frequencies; the cos/sin tables of a forward pass are computed for its positions
/// (a table for the whole context was 2 MB for SmolLM2's 8k, held by every loaded model).
#[derive(Debug, Clone)]
pub struct Rope {
    /// `1 / θ^(2i / hd)` for `i < hd/2`.
    inv_freq: Vec<f64>,
    max_positions: usize,
    layout: RopeLayout,
    device: Device,
}

/// Positions of the rows of one forward pass.
#[allow(clippy::large_enum_variant)] // built once per forward pass
#[derive(Debug, Clone)]
pub enum Positions {
    /// Every row has positions `start..start + T`.
    Range(usize),
    /// Per-row positions `[B, T]` (left-padded batches).
    PerRow(Tensor<2, Int>),
}

impl Rope {
    /// Rotary embedding for up to `max_positions` positions of heads of width `head_dim`.
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        theta: f64,
        layout: RopeLayout,
        device: &Device,
    ) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        Rope {
            inv_freq,
            max_positions,
            layout,
            device: device.clone(),
        }
    }

    /// The same embedding on another device.
    pub fn to_device(self, device: &Device) -> Self {
        Rope {
            device: device.clone(),
            ..self
        }
    }

    /// How dimensions are paired.
    pub fn layout(&self) -> RopeLayout {
        self.layout
    }

    /// cos and sin for the positions, shaped `[B|1, 1, T, hd/2]`: `cos(p · f_i)`, `sin(p ·
    /// f_i)` computed in f64 and rounded to f32.
    ///
    /// # Panics
    /// If a position is negative or not below the `max_positions` given to [`Rope::new`]
    /// (callers check the context length first).
    pub fn tables(&self, positions: &Positions, t: usize) -> (Tensor<4>, Tensor<4>) {
        let (rows, pos): (usize, Vec<i64>) = match positions {
            Positions::Range(start) => (1, (*start..*start + t).map(|p| p as i64).collect()),
            Positions::PerRow(pos) => {
                let [b, _] = pos.dims();
                let data = pos.clone().into_data().convert::<i64>();
                let pos = data
                    .try_into_vec::<i64>()
                    .expect("invariant: int positions convert to i64");
                (b, pos)
            }
        };
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(pos.len() * half);
        let mut sin = Vec::with_capacity(pos.len() * half);
        for &p in &pos {
            assert!(
                (0..self.max_positions as i64).contains(&p),
                "position {p} outside the rotary range 0..{}",
                self.max_positions
            );
            for f in &self.inv_freq {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = [rows, 1, t, half];
        (
            Tensor::from_data(TensorData::new(cos, shape), &self.device),
            Tensor::from_data(TensorData::new(sin, shape), &self.device),
        )
    }

    /// Rotates `x` with the given tables.
    ///
    /// # Shapes
    /// `x [B, H, T, hd]`, tables `[B|1, 1, T, hd/2]` → `[B, H, T, hd]`.
    pub fn apply(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        match self.layout {
            RopeLayout::Half => rotate_half_heads(x, cos, sin),
            RopeLayout::Interleaved => {
                let pairs = x.reshape([b, h, t, half, 2]);
                let x0 = pairs
                    .clone()
                    .slice(s![.., .., .., .., 0..1])
                    .reshape([b, h, t, half]);
                let x1 = pairs
                    .slice(s![.., .., .., .., 1..2])
                    .reshape([b, h, t, half]);
                let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
                let r1 = x0 * sin.clone() + x1 * cos.clone();
                Tensor::stack::<5>(vec![r0, r1], 4).reshape([b, h, t, d])
            }
        }
    }
}

/// Index map from interleaved (raw GGUF) q/k rows of one head to rotate-half rows:
/// rotate-half row `j * hd/2 + i` is interleaved row `2i + j`.
pub fn unpermute_rows(rows: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows.len()];
    let half = head_dim / 2;
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                let dst = (h * head_dim + j * half + i) * cols;
                let src = (h * head_dim + 2 * i + j) * cols;
                out[dst..dst + cols].copy_from_slice(&rows[src..src + cols]);
            }
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn interleaved_equals_half_on_unpermuted_rows() {
        let device = Device::flex();
        let (hd, t) = (8, 5);
        let x = Tensor::<4>::random([1, 2, t, hd], Distribution::Normal(0.0, 1.0), &device);
        let inter = Rope::new(hd, 16, 10000.0, RopeLayout::Interleaved, &device);
        let half = Rope::new(hd, 16, 10000.0, RopeLayout::Half, &device);
        let (c, s) = inter.tables(&Positions::Range(3), t);
        let yi = inter.apply(x.clone(), &c, &s);
        // Un-permute the head dimension of x: treat [.., hd] as rows of width 1.
        let xv: Vec<f32> = x
            .clone()
            .swap_dims(2, 3)
            .into_data()
            .try_into_vec()
            .expect("f32");
        let xh = unpermute_rows(&xv, 2, hd, t);
        let xh =
            Tensor::<4>::from_data(TensorData::new(xh, [1, 2, hd, t]), &device).swap_dims(2, 3);
        let yh = half.apply(xh, &c, &s);
        let yiv: Vec<f32> = yi.swap_dims(2, 3).into_data().try_into_vec().expect("f32");
        let yi_perm = unpermute_rows(&yiv, 2, hd, t);
        let yhv: Vec<f32> = yh.swap_dims(2, 3).into_data().try_into_vec().expect("f32");
        for (a, b) in yi_perm.iter().zip(&yhv) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let device = Device::flex();
        let rope = Rope::new(4, 8, 10000.0, RopeLayout::Half, &device);
        let x =
            Tensor::<4>::from_data([[[[1.0f32, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]]], &device);
        let (c, s) = rope.tables(&Positions::Range(0), 2);
        let y: Vec<f32> = rope
            .apply(x, &c, &s)
            .into_data()
            .try_into_vec()
            .expect("f32");
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        let norm: f32 = y[4..].iter().map(|v| v * v).sum();
        assert!((norm - 30.0).abs() < 1e-4);
        // Position 1, first pair (x[0], x[2]) rotated by angle 1 rad.
        assert!((y[4] - (1.0f32.cos() - 3.0 * 1.0f32.sin())).abs() < 1e-5);
    }
}
