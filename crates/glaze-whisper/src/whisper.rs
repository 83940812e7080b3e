//! Whisper's audio encoder in burn: two 1-D convolutions (80 or 128 mel bins → d, kernel 3;
//! the second with stride 2, so 100 frames/s become 50), GELU after each, plus fixed sinusoidal
//! position embeddings, pre-norm transformer blocks and a final LayerNorm.
//!
//! **Inputs shorter than 30 s.** Whisper was trained on 3,000-frame (30 s) windows with 1,500
//! position embeddings. [`WhisperEncoder::forward`] accepts any even frame count up to 3,000
//! and adds the *first* `T/2` position embeddings — the rows for the time steps that exist —
//! exactly what the padded input would give those steps before attention. The difference from
//! the padded run is then only that attention no longer sees the padding frames;
//! `docs/results/speech.md` measures what that does to the features and to recognition.

use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::gelu;

use crate::whisper_layer::{WhisperLayer, WhisperLayerConfig};

/// Mel frames in Whisper's 30-second window.
pub const WINDOW_FRAMES: usize = 3000;

/// Configuration of a [`WhisperEncoder`].
#[derive(Config, Debug, PartialEq)]
pub struct WhisperEncoderConfig {
    /// Mel bins of the input (80; 128 for large-v3).
    pub n_mels: usize,
    /// Width.
    pub d_model: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Position embeddings (encoder frames of a 30 s window): 1,500.
    #[config(default = 1500)]
    pub n_ctx: usize,
}

impl WhisperEncoderConfig {
    /// Whisper tiny / tiny.en: 4 blocks, width 384, 6 heads.
    pub fn tiny() -> Self {
        Self::new(80, 384, 6, 4)
    }

    /// Whisper base / base.en: 6 blocks, width 512, 8 heads.
    pub fn base() -> Self {
        Self::new(80, 512, 8, 6)
    }

    /// Random initialisation (sinusoidal position embeddings as in Whisper).
    pub fn init(&self, device: &Device) -> WhisperEncoder {
        let (d, m) = (self.d_model, self.n_mels);
        let conv = |c_in: usize, stride: usize| {
            Conv1dConfig::new(c_in, d, 3)
                .with_stride(stride)
                .with_padding(PaddingConfig1d::Explicit(1, 1))
                .init(device)
        };
        WhisperEncoder {
            conv1: conv(m, 1),
            conv2: conv(d, 2),
            positions: Param::from_tensor(Tensor::from_data(
                TensorData::new(sinusoids(self.n_ctx, d), [self.n_ctx, d]),
                device,
            )),
            layers: (0..self.n_layers)
                .map(|_| WhisperLayerConfig::new(d, self.n_heads).init(device))
                .collect(),
            norm: LayerNormConfig::new(d).with_epsilon(1e-5).init(device),
        }
    }
}

/// Whisper's fixed position embeddings: `[sin(t·ω_i) | cos(t·ω_i)]`,
/// `ω_i = 10000^(−i/(d/2−1))`.
pub fn sinusoids(length: usize, channels: usize) -> Vec<f32> {
    let half = channels / 2;
    let step = (10000f64).ln() / (half.max(2) - 1) as f64;
    let mut out = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            let a = t as f64 * (-(i as f64) * step).exp();
            out[t * channels + i] = a.sin() as f32;
            out[t * channels + half + i] = a.cos() as f32;
        }
    }
    out
}

/// The Whisper audio encoder.
#[derive(Module, Debug)]
pub struct WhisperEncoder {
    /// Mel bins → width, stride 1.
    pub conv1: Conv1d,
    /// Width → width, stride 2.
    pub conv2: Conv1d,
    /// Position embeddings `[n_ctx, d]`.
    pub positions: Param<Tensor<2>>,
    /// Transformer blocks.
    pub layers: Vec<WhisperLayer>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
}

impl WhisperEncoder {
    /// Width `d`.
    pub fn d_model(&self) -> usize {
        self.positions.dims()[1]
    }

    /// Mel bins expected.
    pub fn n_mels(&self) -> usize {
        self.conv1.weight.dims()[1]
    }

    /// Longest input in mel frames (`2 · n_ctx`).
    pub fn max_frames(&self) -> usize {
        2 * self.positions.dims()[0]
    }

    /// Encoder frames for `frames` mel frames: `ceil(frames / 2)`.
    pub fn output_frames(frames: usize) -> usize {
        frames.div_ceil(2)
    }

    /// # Shapes
    /// `mel [B, n_mels, T]` with `T ≤ max_frames()` → `[B, ceil(T/2), d]`.
    ///
    /// # Panics
    /// When `T` exceeds [`max_frames`](Self::max_frames); the owning encoder checks lengths first.
    pub fn forward(&self, mel: Tensor<3>) -> Tensor<3> {
        let t = mel.dims()[2];
        assert!(
            t <= self.max_frames(),
            "invariant: callers cut inputs to the position table ({t} frames)"
        );
        let x = gelu(self.conv1.forward(mel));
        let x = gelu(self.conv2.forward(x)).swap_dims(1, 2);
        let n = x.dims()[1];
        let d = self.d_model();
        let mut x = x + self.positions.val().slice([0..n, 0..d]).unsqueeze::<3>();
        for layer in &self.layers {
            x = layer.forward(x);
        }
        self.norm.forward(x)
    }
}
