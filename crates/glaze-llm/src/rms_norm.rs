//! RMSNorm (Zhang & Sennrich 2019), as in HF `LlamaRMSNorm`: `x / sqrt(mean(x²) + eps) * w`,
//! the gain frozen. The arithmetic is `glaze_kernels::rms_norm` (one fused pass each way on
//! the flex device).

use burn::prelude::*;

/// Configuration of an [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// Width `D`.
    pub d_model: usize,
    /// Epsilon. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
}

impl RmsNormConfig {
    /// Weights of ones.
    pub fn init(&self, device: &Device) -> RmsNorm {
        let mut norm = RmsNorm {
            weight: Tensor::ones([self.d_model], device),
            host: Default::default(),
            eps: self.eps,
        };
        norm.set_weight(vec![1.0; self.d_model], device);
        norm
    }
}

/// Root-mean-square normalisation with a learned (here: frozen) gain.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub(crate) weight: Tensor<1>,
    /// The same gain as a plain vector, for decode steps on the CPU.
    host: std::sync::Arc<Vec<f32>>,
    eps: f64,
}

impl RmsNorm {
    /// The same norm on another device.
    pub fn to_device(self, device: &Device) -> Self {
        RmsNorm {
            weight: self.weight.to_device(device),
            host: self.host,
            eps: self.eps,
        }
    }

    /// Sets the gain (a loader's job).
    pub(crate) fn set_weight(&mut self, gain: Vec<f32>, device: &Device) {
        let n = gain.len();
        self.weight = Tensor::from_data(TensorData::new(gain.clone(), [n]), device);
        self.host = std::sync::Arc::new(gain);
    }

    /// The gain as a plain vector.
    pub(crate) fn host_weight(&self) -> &[f32] {
        &self.host
    }

    /// Epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// # Shapes
    /// `[B, T, D]` → `[B, T, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        glaze_kernels::rms_norm::rms_norm(x.reshape([b * t, d]), self.weight.clone(), self.eps)
            .reshape([b, t, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_by_hand() {
        let device = Device::flex();
        let mut norm = RmsNormConfig::new(2).with_eps(0.0).init(&device);
        norm.set_weight(vec![1.0, 2.0], &device);
        let y = norm.forward(Tensor::from_data([[[3.0f32, 4.0]]], &device));
        // rms = sqrt((9 + 16) / 2) = 3.5355
        let v: Vec<f32> = y.into_data().try_into_vec().expect("f32");
        let rms = (12.5f32).sqrt();
        assert!((v[0] - 3.0 / rms).abs() < 1e-6 && (v[1] - 8.0 / rms).abs() < 1e-6);
    }
}
