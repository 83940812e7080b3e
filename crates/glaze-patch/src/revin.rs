//! Reversible instance normalisation (RevIN, Kim et al. ICLR 2022), without the affine part,
//! as Time-LLM uses it (`Normalize(affine=False)` in its `layers/StandardNorm.py`): each input
//! window is shifted and scaled by its own mean and standard deviation, and the forecast is
//! mapped back with the same two numbers.

use burn::prelude::*;

/// Per-row statistics of a normalised batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RevinStats {
    /// Mean of each row.
    pub mean: Vec<f32>,
    /// Standard deviation of each row (population, `sqrt(var + eps)`).
    pub std: Vec<f32>,
}

/// RevIN's epsilon under the square root.
pub const EPS: f32 = 1e-5;

/// Normalises each row of `rows` (equal lengths) and returns the rows and their statistics.
pub fn normalize(rows: &[&[f32]]) -> (Vec<Vec<f32>>, RevinStats) {
    let mut out = Vec::with_capacity(rows.len());
    let mut stats = RevinStats {
        mean: Vec::with_capacity(rows.len()),
        std: Vec::with_capacity(rows.len()),
    };
    for x in rows {
        let n = x.len().max(1) as f64;
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
        let s = (var + EPS as f64).sqrt();
        out.push(x.iter().map(|&v| ((v as f64 - m) / s) as f32).collect());
        stats.mean.push(m as f32);
        stats.std.push(s as f32);
    }
    (out, stats)
}

/// Maps normalised forecasts back: `y · std + mean`, per row.
///
/// # Shapes
/// `y [B, H]` → `[B, H]`.
pub fn denormalize(y: Tensor<2>, stats: &RevinStats) -> Tensor<2> {
    let b = stats.mean.len();
    let device = y.device();
    let mean = Tensor::<2>::from_data(TensorData::new(stats.mean.clone(), [b, 1]), &device);
    let std = Tensor::<2>::from_data(TensorData::new(stats.std.clone(), [b, 1]), &device);
    y * std + mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_round_trip() {
        // [1, 2, 3, 6]: mean 3, var (4 + 1 + 0 + 9) / 4 = 3.5.
        let x = [1.0f32, 2.0, 3.0, 6.0];
        let (n, s) = normalize(&[&x]);
        let sd = (3.5f64 + 1e-5).sqrt() as f32;
        assert_eq!(s.mean, [3.0]);
        assert!((s.std[0] - sd).abs() < 1e-6);
        let want = [-2.0 / sd, -1.0 / sd, 0.0, 3.0 / sd];
        for (a, b) in n[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let y = Tensor::<2>::from_data(TensorData::new(n[0].clone(), [1, 4]), &Device::flex());
        let back: Vec<f32> = denormalize(y, &s)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        for (a, b) in back.iter().zip(x) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
