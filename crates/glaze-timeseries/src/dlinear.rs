//! DLinear (Zeng et al. AAAI 2023, "Are Transformers Effective for Time Series
//! Forecasting?"): the input is split by a moving average (kernel 25, edges padded by
//! repetition) into trend and remainder, and one linear map per part goes from the `L` inputs
//! to the `H` outputs; the maps are shared across channels (`individual = False`).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Moving-average decomposition of one window: `(seasonal, trend)`.
pub fn decompose(x: &[f32], kernel: usize) -> (Vec<f32>, Vec<f32>) {
    let n = x.len();
    let half = (kernel.max(1) - 1) / 2;
    let at = |i: isize| x[i.clamp(0, n as isize - 1) as usize];
    let trend: Vec<f32> = (0..n as isize)
        .map(|t| {
            let s: f32 = (t - half as isize..=t + half as isize).map(at).sum();
            s / (2 * half + 1) as f32
        })
        .collect();
    let seasonal = x.iter().zip(&trend).map(|(a, b)| a - b).collect();
    (seasonal, trend)
}

/// Configuration of a [`DLinear`].
#[derive(Config, Debug)]
pub struct DLinearConfig {
    /// Input length `L`.
    pub input_len: usize,
    /// Horizon `H`.
    pub horizon: usize,
    /// Moving-average kernel. Default 25.
    #[config(default = 25)]
    pub kernel: usize,
}

impl DLinearConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> DLinear {
        DLinear {
            seasonal: LinearConfig::new(self.input_len, self.horizon).init(device),
            trend: LinearConfig::new(self.input_len, self.horizon).init(device),
            kernel: self.kernel,
        }
    }
}

/// Two linear maps over a trend/remainder decomposition.
#[derive(Module, Debug)]
pub struct DLinear {
    /// Remainder map `L → H`.
    pub seasonal: Linear,
    /// Trend map `L → H`.
    pub trend: Linear,
    /// Moving-average kernel.
    pub kernel: usize,
}

impl DLinear {
    /// # Shapes
    /// `inputs`: `B` windows of `L` values → `[B, H]`.
    pub fn forward(&self, inputs: &[&[f32]], device: &Device) -> Tensor<2> {
        let b = inputs.len();
        let l = inputs.first().map_or(0, |x| x.len());
        let mut s = Vec::with_capacity(b * l);
        let mut t = Vec::with_capacity(b * l);
        for x in inputs {
            let (a, c) = decompose(x, self.kernel);
            s.extend(a);
            t.extend(c);
        }
        let s = Tensor::<2>::from_data(TensorData::new(s, [b, l]), device);
        let t = Tensor::<2>::from_data(TensorData::new(t, [b, l]), device);
        self.seasonal.forward(s) + self.trend.forward(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_by_hand() {
        let (s, t) = decompose(&[0.0, 3.0, 6.0, 3.0], 3);
        // Edges repeat: t0 = (0 + 0 + 3) / 3, t3 = (6 + 3 + 3) / 3.
        assert_eq!(t, [1.0, 3.0, 4.0, 4.0]);
        assert_eq!(s, [-1.0, 0.0, 2.0, -1.0]);
    }
}
