#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use glaze_core::answer::AnswerPipeline;
use glaze_core::{
    Adapter, Condition, Encoder, EncoderSpec, Error, Features, FrozenBackbone, Prompt, Result,
    SoftTokens, SplitMix64, TextCodec,
};
use glaze_train::ItemLoss;

/// Where the soft tokens go in the user turn.
pub const MARKER: &str = "<imu>";
const SYSTEM: &str = "You describe motion from accelerometer readings.";
/// Features per frame: mean, standard deviation, minimum and maximum of each axis.
pub const FEATURES: usize = 12;

/// A window of 3-axis accelerometer samples (m/s²).
#[derive(Debug, Clone)]
pub struct ImuWindow {
    /// `[x, y, z]` per sample.
    pub samples: Vec<[f32; 3]>,
}

/// The frozen encoder: frames of `frame` samples, 12 statistics each.
#[derive(Debug, Clone)]
pub struct ImuEncoder {
    frame: usize,
    spec: EncoderSpec,
}

impl ImuEncoder {
    /// An encoder cutting windows into frames of `frame` samples (the last partial frame is
    /// dropped).
    pub fn new(frame: usize) -> Self {
        let spec = EncoderSpec {
            name: format!("imu-stats-frame{frame}"),
            feature_dim: FEATURES,
            weights_hash: "none".into(),
        };
        ImuEncoder {
            frame: frame.max(1),
            spec,
        }
    }

    fn frame_features(frame: &[[f32; 3]]) -> [f32; FEATURES] {
        let mut out = [0f32; FEATURES];
        for axis in 0..3 {
            let v: Vec<f32> = frame.iter().map(|s| s[axis]).collect();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            out[4 * axis..4 * axis + 4].copy_from_slice(&[mean, var.sqrt(), lo, hi]);
        }
        out
    }
}

impl Encoder for ImuEncoder {
    type Input = ImuWindow;

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    /// # Shapes
    /// `B` windows of equal frame count `N` → `[B, N, 12]`.
    fn encode(&self, inputs: &[ImuWindow], device: &Device) -> Result<Features> {
        let n = inputs.first().map_or(0, |w| self.num_features(w));
        if n == 0 || inputs.iter().any(|w| self.num_features(w) != n) {
            return Err(Error::InvalidConfig {
                field: "windows",
                problem: format!(
                    "every window needs the same number (≥ 1) of {}-sample frames",
                    self.frame
                ),
            });
        }
        let mut data = Vec::with_capacity(inputs.len() * n * FEATURES);
        for w in inputs {
            for f in w.samples.chunks_exact(self.frame) {
                data.extend(Self::frame_features(f));
            }
        }
        let tokens = Tensor::from_data(TensorData::new(data, [inputs.len(), n, FEATURES]), device);
        Ok(Features::new(tokens))
    }

    fn num_features(&self, input: &ImuWindow) -> usize {
        input.samples.len() / self.frame
    }
}

/// Configuration of an [`ImuAdapter`].
#[derive(Config, Debug)]
pub struct ImuAdapterConfig {
    /// The backbone's width `D`.
    pub d_model: usize,
}

impl ImuAdapterConfig {
    /// A linear map from the encoder's 12 features to `D`.
    pub fn init(&self, device: &Device) -> ImuAdapter {
        ImuAdapter {
            proj: LinearConfig::new(FEATURES, self.d_model).init(device),
        }
    }
}

/// One soft token per frame: a linear map of the frame's statistics.
#[derive(Module, Debug)]
pub struct ImuAdapter {
    proj: Linear,
}

impl Adapter for ImuAdapter {
    fn output_width(&self) -> usize {
        self.proj.weight.dims()[1]
    }

    fn num_tokens(&self, n_features: usize) -> usize {
        n_features
    }

    /// # Shapes
    /// `[B, N, 12]` → `[B, N, D]`.
    fn adapt(&self, features: &Features, _: Option<&Condition>) -> Tensor<3> {
        self.proj.forward(features.tokens.clone())
    }
}

/// A question about a window and its answer.
#[derive(Debug, Clone)]
pub struct ImuItem {
    /// The window.
    pub window: ImuWindow,
    /// The question (without the marker: the pipeline places the soft tokens).
    pub question: String,
    /// The answer.
    pub answer: String,
}

/// The shared answer pipeline over IMU windows.
#[derive(Clone, Copy)]
pub struct ImuQa<'a> {
    /// The frozen backbone.
    pub backbone: &'a dyn FrozenBackbone,
    /// Its tokenizer and chat template.
    pub codec: &'a dyn TextCodec,
    /// The frozen encoder.
    pub encoder: &'a ImuEncoder,
}

impl ImuQa<'_> {
    /// The shared answer pipeline with this modality's system line and marker.
    pub fn qa(&self) -> AnswerPipeline<'_> {
        AnswerPipeline::new(self.backbone, self.codec, SYSTEM, MARKER)
    }

    /// Prompts for `items` with the adapter's soft tokens spliced in, optionally ending with
    /// the answers' ids.
    pub fn prompts(
        &self,
        model: &ImuAdapter,
        items: &[&ImuItem],
        answers: Option<&[Vec<u32>]>,
        device: &Device,
    ) -> Result<Vec<Prompt>> {
        let windows: Vec<ImuWindow> = items.iter().map(|i| i.window.clone()).collect();
        let features = self.encoder.encode(&windows, device)?;
        let runs = SoftTokens::from_batch(model.adapt(&features, None));
        items
            .iter()
            .zip(runs)
            .enumerate()
            .map(|(r, (item, run))| {
                let qa = self.qa();
                qa.prompt(
                    &qa.about_one(&item.question)?,
                    Some(vec![run]),
                    answers.map(|a| a[r].clone()),
                )
            })
            .collect()
    }

    /// Greedy answers, `batch` items at a time.
    pub fn answer(
        &self,
        model: &ImuAdapter,
        items: &[ImuItem],
        batch: usize,
    ) -> Result<Vec<String>> {
        self.qa().answers(items, batch, 8, |chunk, device| {
            self.prompts(model, chunk, None, device)
        })
    }
}

impl ItemLoss for ImuQa<'_> {
    type Model = ImuAdapter;
    type Item = ImuItem;

    fn backbone(&self) -> &dyn FrozenBackbone {
        self.backbone
    }

    fn item_loss(
        &self,
        model: &ImuAdapter,
        items: &[&ImuItem],
        device: &Device,
    ) -> Result<Tensor<1>> {
        let targets = items
            .iter()
            .map(|i| self.qa().target(&i.answer))
            .collect::<Result<Vec<_>>>()?;
        let prompts = self.prompts(model, items, Some(&targets), device)?;
        self.qa().loss(&prompts, &targets, device)
    }
}

/// `n` seeded windows of `len` samples at 50 Hz, cycling through still, walking (≈ 2 Hz, 3 m/s²)
/// and running (≈ 3 Hz, 8 m/s²), each with the question "What is the person doing?".
pub fn synthetic_windows(n: usize, len: usize, seed: u64) -> Vec<ImuItem> {
    let mut rng = SplitMix64::new(seed);
    let kinds = [
        ("still", 0.0, 0.0),
        ("walking", 2.0, 3.0),
        ("running", 3.0, 8.0),
    ];
    (0..n)
        .map(|i| {
            let (label, hz, amp) = kinds[i % kinds.len()];
            let phase = rng.next_f64() as f32 * std::f32::consts::TAU;
            let samples = (0..len)
                .map(|t| {
                    let s = (std::f32::consts::TAU * hz * t as f32 / 50.0 + phase).sin();
                    let mut noise = || (rng.next_f64() as f32 - 0.5) * 0.2;
                    [
                        amp * s + noise(),
                        0.3 * amp * s + noise(),
                        9.81 + amp * s.abs() + noise(),
                    ]
                })
                .collect();
            ImuItem {
                window: ImuWindow { samples },
                question: "What is the person doing?".into(),
                answer: label.into(),
            }
        })
        .collect()
}
