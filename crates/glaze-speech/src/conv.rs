//! A strided 1-D convolution downsampler: `layers` convolutions of kernel `2·stride − 1`
//! (odd, centred: padding `stride − 1`) and stride `stride`, GELU after each, then a linear
//! map to the LLM width. Each layer turns `N` frames into `ceil(N / stride)`; unlike frame
//! stacking its windows overlap, so neighbouring tokens share context.

use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::gelu;

/// Configuration of a [`ConvDownsampler`].
#[derive(Config, Debug)]
pub struct ConvDownsamplerConfig {
    /// Encoder feature width `F`.
    pub d_feature: usize,
    /// LLM width `D`.
    pub d_model: usize,
    /// Channels of the convolutions.
    pub hidden: usize,
    /// Stride of each convolution.
    pub stride: usize,
    /// Number of convolutions.
    pub layers: usize,
}

impl ConvDownsamplerConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> ConvDownsampler {
        let k = 2 * self.stride - 1;
        let convs = (0..self.layers)
            .map(|i| {
                let c_in = if i == 0 { self.d_feature } else { self.hidden };
                Conv1dConfig::new(c_in, self.hidden, k)
                    .with_stride(self.stride)
                    .with_padding(PaddingConfig1d::Explicit(self.stride - 1, self.stride - 1))
                    .init(device)
            })
            .collect();
        ConvDownsampler {
            convs,
            out: LinearConfig::new(self.hidden, self.d_model).init(device),
            stride: self.stride,
        }
    }
}

/// Strided convolutions and a projection.
#[derive(Module, Debug)]
pub struct ConvDownsampler {
    /// The convolutions.
    pub convs: Vec<Conv1d>,
    /// Projection to the LLM width.
    pub out: Linear,
    /// Stride of each convolution.
    pub stride: usize,
}

impl ConvDownsampler {
    /// Soft tokens for `n` frames: `ceil(·/stride)` once per layer.
    pub fn num_tokens(&self, n: usize) -> usize {
        (0..self.convs.len()).fold(n, |m, _| m.div_ceil(self.stride))
    }

    /// # Shapes
    /// `[B, N, F]` → `[B, num_tokens(N), D]`.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        let mut x = features.swap_dims(1, 2);
        for c in &self.convs {
            x = gelu(c.forward(x));
        }
        self.out.forward(x.swap_dims(1, 2))
    }
}
