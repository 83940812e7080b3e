//! The speech adapters behind the core [`Adapter`] interface, chosen by a serde enum.

use burn::prelude::*;
use glaze_core::{Adapter, Condition, Features};

use crate::conv::{ConvDownsampler, ConvDownsamplerConfig};
use crate::error::{Error, Result};
use crate::frame_stack::{FrameStack, FrameStackConfig};

/// Which speech adapter, with its size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SpeechAdapterConfig {
    /// Frame stacking + projection.
    FrameStack {
        /// Encoder frames (20 ms each) per soft token.
        stride: usize,
        /// Hidden width of a two-layer projector; 0 = linear.
        hidden: usize,
    },
    /// Strided 1-D convolutions + projection.
    Conv {
        /// Stride of each convolution.
        stride: usize,
        /// Number of convolutions.
        layers: usize,
        /// Channels.
        hidden: usize,
    },
}

impl SpeechAdapterConfig {
    /// Short name: `frame-stack` or `conv`.
    pub fn name(&self) -> &'static str {
        match self {
            SpeechAdapterConfig::FrameStack { .. } => "frame-stack",
            SpeechAdapterConfig::Conv { .. } => "conv",
        }
    }

    /// Default sizes for a kind name: frame stacking by 4 (80 ms per token, 12.5 tokens/s)
    /// with a 1024-wide two-layer projector; two stride-2 convolutions (also 80 ms per token)
    /// of 512 channels.
    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "frame-stack" => SpeechAdapterConfig::FrameStack {
                stride: 4,
                hidden: 1024,
            },
            "conv" => SpeechAdapterConfig::Conv {
                stride: 2,
                layers: 2,
                hidden: 512,
            },
            other => {
                return Err(Error::config(
                    "adapter",
                    format!("`{other}` is not frame-stack or conv"),
                ));
            }
        })
    }

    /// Soft tokens for `n` encoder frames.
    pub fn num_tokens(&self, n: usize) -> usize {
        match *self {
            SpeechAdapterConfig::FrameStack { stride, .. } => n.div_ceil(stride.max(1)),
            SpeechAdapterConfig::Conv { stride, layers, .. } => {
                (0..layers).fold(n, |m, _| m.div_ceil(stride.max(1)))
            }
        }
    }

    /// Checks the sizes and builds the adapter from features of width `d_feature` to `d_model`.
    pub fn init(&self, d_feature: usize, d_model: usize, device: &Device) -> Result<SpeechAdapter> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(Error::config(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        Ok(match *self {
            SpeechAdapterConfig::FrameStack { stride, hidden } => {
                positive("stride", stride)?;
                SpeechAdapter::FrameStack(
                    FrameStackConfig::new(d_feature, d_model, stride)
                        .with_hidden(hidden)
                        .init(device),
                )
            }
            SpeechAdapterConfig::Conv {
                stride,
                layers,
                hidden,
            } => {
                positive("stride", stride)?;
                positive("layers", layers)?;
                positive("hidden", hidden)?;
                SpeechAdapter::Conv(
                    ConvDownsamplerConfig::new(d_feature, d_model, hidden, stride, layers)
                        .init(device),
                )
            }
        })
    }
}

/// A speech adapter.
#[derive(Module, Debug)]
pub enum SpeechAdapter {
    /// Frame stacking + projection.
    FrameStack(FrameStack),
    /// Strided convolutions.
    Conv(ConvDownsampler),
}

impl SpeechAdapter {
    /// # Shapes
    /// `[B, N, F]` → `[B, num_tokens(N), D]`.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        match self {
            SpeechAdapter::FrameStack(m) => m.forward(features),
            SpeechAdapter::Conv(m) => m.forward(features),
        }
    }
}

impl Adapter for SpeechAdapter {
    fn output_width(&self) -> usize {
        match self {
            SpeechAdapter::FrameStack(m) => m.second.as_ref().unwrap_or(&m.first).weight.dims()[1],
            SpeechAdapter::Conv(m) => m.out.weight.dims()[1],
        }
    }

    fn num_tokens(&self, n_features: usize) -> usize {
        match self {
            SpeechAdapter::FrameStack(m) => m.num_tokens(n_features),
            SpeechAdapter::Conv(m) => m.num_tokens(n_features),
        }
    }

    /// Padded frames (mask `false`) are zeroed first, so they add nothing to a stacked group
    /// or a convolution window; the caller keeps each row's own `num_tokens(len)` tokens.
    fn adapt(&self, features: &Features, _condition: Option<&Condition>) -> Tensor<3> {
        let x = match &features.mask {
            Some(mask) => {
                let [b, n, _] = features.tokens.dims();
                let keep = mask
                    .clone()
                    .float()
                    .reshape([b, n, 1])
                    .to_device(&features.tokens.device());
                features.tokens.clone() * keep
            }
            None => features.tokens.clone(),
        };
        self.forward(x)
    }
}

impl glaze_train::AdapterConfig for SpeechAdapterConfig {
    type Adapter = SpeechAdapter;
    type Error = Error;

    fn kind(&self) -> String {
        format!("speech/{}", self.name())
    }

    fn build(
        &self,
        encoder: Option<&glaze_core::EncoderSpec>,
        backbone: &dyn glaze_core::FrozenBackbone,
        device: &Device,
    ) -> Result<SpeechAdapter> {
        let encoder = encoder
            .ok_or_else(|| Error::config("encoder", "a speech adapter needs its encoder"))?;
        self.init(encoder.feature_dim, backbone.spec().d_model, device)
    }
}
