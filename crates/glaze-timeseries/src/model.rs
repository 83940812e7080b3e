//! The forecasting models behind one interface: Time-LLM (patches reprogrammed into the
//! frozen LLM after a Prompt-as-Prefix), a GPT4TS-style variant (patches projected straight
//! into the frozen LLM, Zhou et al. NeurIPS 2023 "One Fits All"), the no-LLM ablation (the
//! Time-LLM pipeline with the LLM layers removed, as in Tan et al. NeurIPS 2024 "Are Language
//! Models Actually Useful for Time Series Forecasting?") and DLinear.
//!
//! Data flow of the LLM variants, per example (one channel of one window), through the core
//! interfaces: `L values → encoder (RevIN, N patches) → adapter (patch embedding,
//! [reprogramming]) → [prompt prefix +] first K frozen blocks → last N hidden states → [first
//! d_ff dims] → flatten → linear → H values → RevIN⁻¹`. The encoder is
//! [`glaze_patch::PatchEncoder`], the adapter [`SeriesAdapter`].

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use glaze_core::{ForwardOptions, FrozenBackbone};
use glaze_kernels::product_grad::ProductSink;
use glaze_patch::{PatchEncoder, num_patches, revin};

use crate::adapter::SeriesAdapter;
use crate::dlinear::{DLinear, DLinearConfig};
use crate::error::{Error, Result};
use crate::patch::PatchEmbeddingConfig;
use crate::prefix::{PrefixKvCache, batch_cache};
use crate::prompt::{input_stats, prompt_text};
use crate::reprogramming::ReprogrammingConfig;

/// Which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Time-LLM: reprogramming + Prompt-as-Prefix + truncated frozen LLM.
    TimeLlm,
    /// GPT4TS-style: patches projected into the truncated frozen LLM, no prompt.
    Gpt4ts,
    /// Time-LLM with the LLM layers (and so the prompt) removed.
    NoLlm,
    /// DLinear.
    Dlinear,
}

impl ModelKind {
    /// Name used in checkpoints, tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::TimeLlm => "time-llm",
            ModelKind::Gpt4ts => "gpt4ts",
            ModelKind::NoLlm => "no-llm",
            ModelKind::Dlinear => "dlinear",
        }
    }

    /// True when the model runs blocks of the frozen LLM.
    pub fn uses_llm_layers(self) -> bool {
        matches!(self, ModelKind::TimeLlm | ModelKind::Gpt4ts)
    }
}

/// Configuration of a [`Forecaster`].
#[derive(Config, Debug)]
pub struct ForecasterConfig {
    /// Which model.
    pub kind: ModelKind,
    /// Input length `L`.
    pub input_len: usize,
    /// Horizon `H`.
    pub horizon: usize,
    /// Width `D` of the frozen LLM.
    pub d_llm: usize,
    /// Vocabulary size of the frozen LLM.
    pub vocab: usize,
    /// Values per patch. Default 16.
    #[config(default = 16)]
    pub patch_len: usize,
    /// Patch stride. Default 8.
    #[config(default = 8)]
    pub stride: usize,
    /// Patch-embedding width (Time-LLM's `d_model`). Default 32.
    #[config(default = 32)]
    pub d_patch: usize,
    /// Hidden dimensions the head reads (Time-LLM's `d_ff`). Default 128.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Text prototypes. Default 1000 (Time-LLM).
    #[config(default = 1000)]
    pub num_prototypes: usize,
    /// Reprogramming heads. Default 8.
    #[config(default = 8)]
    pub n_heads: usize,
    /// Reprogramming key width per head. Default 32.
    #[config(default = 32)]
    pub d_keys: usize,
    /// Frozen LLM blocks run (`K`). Default 2.
    #[config(default = 2)]
    pub llm_layers: usize,
}

impl ForecasterConfig {
    /// Number of patches per window.
    pub fn num_patches(&self) -> usize {
        num_patches(self.input_len, self.patch_len, self.stride)
    }

    /// Width of the hidden states the head reads.
    fn head_width(&self) -> usize {
        match self.kind {
            ModelKind::Gpt4ts => self.d_llm,
            _ => self.d_ff.min(self.d_llm),
        }
    }

    /// Blocks of the LLM the model runs (0 for the no-LLM ablation and DLinear).
    pub fn layers_used(&self) -> usize {
        if self.kind.uses_llm_layers() {
            self.llm_layers
        } else {
            0
        }
    }

    /// Checks the configuration against itself and the backbone.
    pub fn validate(&self, backbone: &dyn FrozenBackbone) -> Result<()> {
        let s = backbone.spec();
        if self.d_llm != s.d_model || self.vocab != s.vocab_size {
            return Err(Error::config(
                "d_llm/vocab",
                format!(
                    "the model is configured for width {} and {} tokens, the backbone has {} and {}",
                    self.d_llm, self.vocab, s.d_model, s.vocab_size
                ),
            ));
        }
        if self.kind.uses_llm_layers() && (self.llm_layers == 0 || self.llm_layers > s.n_layers) {
            return Err(Error::config(
                "llm_layers",
                format!("must be in 1..={} (the backbone's blocks)", s.n_layers),
            ));
        }
        if self.patch_len == 0 || self.stride == 0 || self.patch_len > self.input_len {
            return Err(Error::config(
                "patch_len/stride",
                "patch length and stride must be at least 1 and the patch no longer than the input",
            ));
        }
        Ok(())
    }

    /// The series encoder the model reads its patches from.
    pub fn encoder(&self) -> PatchEncoder {
        PatchEncoder::new(self.patch_len, self.stride)
    }

    /// Random initialisation; the reprogramming kinds read `backbone`'s word embeddings.
    pub fn init(&self, backbone: &dyn FrozenBackbone, device: &Device) -> Forecaster {
        let n = self.num_patches();
        let llm_like = self.kind != ModelKind::Dlinear;
        let reprogram = matches!(self.kind, ModelKind::TimeLlm | ModelKind::NoLlm);
        Forecaster {
            adapter: llm_like.then(|| {
                let d_out = if reprogram { self.d_patch } else { self.d_llm };
                SeriesAdapter {
                    patch_embed: PatchEmbeddingConfig::new(d_out)
                        .with_patch_len(self.patch_len)
                        .init(device),
                    reprogram: reprogram.then(|| {
                        ReprogrammingConfig::new(self.d_llm, self.vocab)
                            .with_d_patch(self.d_patch)
                            .with_num_prototypes(self.num_prototypes)
                            .with_n_heads(self.n_heads)
                            .with_d_keys(self.d_keys)
                            .init(backbone.word_embeddings(), device)
                    }),
                }
            }),
            head: llm_like
                .then(|| LinearConfig::new(n * self.head_width(), self.horizon).init(device)),
            dlinear: (!llm_like)
                .then(|| DLinearConfig::new(self.input_len, self.horizon).init(device)),
        }
    }
}

/// The trainable part of every model (only the parts its kind uses are present).
#[derive(Module, Debug)]
pub struct Forecaster {
    /// Patch features to tokens of the LLM's width (every kind but DLinear).
    pub adapter: Option<SeriesAdapter>,
    /// Flatten head.
    pub head: Option<Linear>,
    /// DLinear.
    pub dlinear: Option<DLinear>,
}

/// Everything frozen a model needs: the backbone, its word embeddings and the prompt prefix.
pub struct Pipeline<'a> {
    /// The frozen LLM.
    pub backbone: &'a dyn FrozenBackbone,
    /// The configuration.
    pub config: ForecasterConfig,
    /// Dataset description for the prompt.
    pub description: String,
    /// RevIN and patching of the input windows.
    encoder: PatchEncoder,
    /// The prompt prefix (Time-LLM).
    prefix: Option<PrefixKvCache<'a>>,
}

impl<'a> Pipeline<'a> {
    /// Binds a configuration to a backbone (and, for Time-LLM, a text codec and an optional
    /// disk cache for the prompt prefix).
    pub fn new(
        backbone: &'a dyn FrozenBackbone,
        codec: &'a dyn glaze_core::TextCodec,
        config: ForecasterConfig,
        description: impl Into<String>,
        cache_root: Option<&std::path::Path>,
    ) -> Result<Self> {
        config.validate(backbone)?;
        let encoder = config.encoder();
        let prefix = match config.kind {
            ModelKind::TimeLlm => Some(PrefixKvCache::new(
                backbone,
                codec,
                config.llm_layers,
                cache_root,
            )?),
            _ => None,
        };
        Ok(Pipeline {
            backbone,
            config,
            description: description.into(),
            encoder,
            prefix,
        })
    }

    /// The series encoder the model reads its patches from.
    pub fn encoder(&self) -> &PatchEncoder {
        &self.encoder
    }

    /// The prompt prefix encoder (Time-LLM).
    pub fn prefix(&self) -> Option<&PrefixKvCache<'a>> {
        self.prefix.as_ref()
    }

    /// Forecasts `H` values for each input window (values in the scaled space of the data).
    /// `device` is where `model` lives (autodiff for training).
    ///
    /// # Shapes
    /// `inputs`: `B` windows of `L` values → `[B, H]`.
    pub fn predict(
        &self,
        model: &Forecaster,
        inputs: &[&[f32]],
        device: &Device,
    ) -> Result<Tensor<2>> {
        self.predict_deferring(model, inputs, device, None)
    }

    /// [`Pipeline::predict`] in a training step: the prototype map's weight gradient may be
    /// deferred into `products` (`glaze_kernels::product_grad`).
    pub fn predict_deferring(
        &self,
        model: &Forecaster,
        inputs: &[&[f32]],
        device: &Device,
        products: Option<&ProductSink>,
    ) -> Result<Tensor<2>> {
        let c = &self.config;
        let b = inputs.len();
        if b == 0 {
            return Err(Error::config("batch", "empty batch"));
        }
        if let Some(bad) = inputs.iter().find(|x| x.len() != c.input_len) {
            return Err(Error::config(
                "input",
                format!(
                    "a window has {} values, the model takes {}",
                    bad.len(),
                    c.input_len
                ),
            ));
        }
        if let Some(d) = &model.dlinear {
            return Ok(d.forward(inputs, device));
        }
        let (hidden, stats) = self.hidden_deferring(model, inputs, device, products)?;
        let n = c.num_patches();
        let w = c.head_width();
        let feat = hidden.slice(s![.., .., 0..w]).reshape([b, n * w]);
        let y = glaze_kernels::matmul::linear(model.head.as_ref().ok_or_else(missing)?, feat);
        Ok(revin::denormalize(y, &stats))
    }

    /// The hidden states the head reads, `[B, N, D]` (after the LLM blocks for the LLM
    /// kinds), and the RevIN statistics of the inputs.
    pub fn hidden(
        &self,
        model: &Forecaster,
        inputs: &[&[f32]],
        device: &Device,
    ) -> Result<(Tensor<3>, revin::RevinStats)> {
        self.hidden_deferring(model, inputs, device, None)
    }

    fn hidden_deferring(
        &self,
        model: &Forecaster,
        inputs: &[&[f32]],
        device: &Device,
        products: Option<&ProductSink>,
    ) -> Result<(Tensor<3>, revin::RevinStats)> {
        let c = &self.config;
        let windows = self.encoder.encode_windows(inputs, device)?;
        let n = windows.features.tokens.dims()[1];
        let adapter = model.adapter.as_ref().ok_or_else(missing)?;
        let tokens = adapter.adapt_deferring(&windows.features, products);
        let hidden = match c.kind {
            ModelKind::TimeLlm => {
                let prefix = self.prefix.as_ref().ok_or_else(missing)?;
                let texts: Vec<String> =
                    windows.normalized.iter().map(|x| self.prompt(x)).collect();
                let kvs = prefix.encode_many(&texts)?;
                let longest = kvs.iter().map(|k| k.shape[3]).max().unwrap_or(0);
                let max = self.backbone.spec().context_length;
                if longest + n > max {
                    return Err(glaze_core::Error::ContextOverflow {
                        len: longest + n,
                        max,
                    }
                    .into());
                }
                let mut cache = batch_cache(&kvs, self.backbone.spec().n_layers, device)?;
                self.backbone.forward(
                    tokens,
                    ForwardOptions {
                        cache: Some(&mut cache),
                        layers: Some(c.llm_layers),
                        ..Default::default()
                    },
                )
            }
            ModelKind::Gpt4ts => self.backbone.forward(
                tokens,
                ForwardOptions {
                    layers: Some(c.llm_layers),
                    ..Default::default()
                },
            ),
            _ => tokens,
        };
        Ok((hidden, windows.stats))
    }

    /// The Prompt-as-Prefix text of one RevIN-normalised window.
    pub fn prompt(&self, normed: &[f32]) -> String {
        let c = &self.config;
        prompt_text(
            &self.description,
            c.input_len,
            c.horizon,
            &input_stats(normed),
        )
    }

    /// Time-LLM forward without the prefix cache: prompt embeddings and patch tokens in one
    /// sequence through the blocks (the reference computation the cached path must equal).
    /// Returns the hidden states of the patch positions, `[B, N, D]`, for one example.
    pub fn full_sequence_hidden(
        &self,
        model: &Forecaster,
        input: &[f32],
        codec: &dyn glaze_core::TextCodec,
    ) -> Result<Tensor<3>> {
        let c = &self.config;
        let device = self.backbone.device();
        let windows = self.encoder.encode_windows(&[input], device)?;
        let adapter = model.adapter.as_ref().ok_or_else(missing)?;
        let tokens = glaze_core::Adapter::adapt(adapter, &windows.features, None);
        let n = tokens.dims()[1];
        let ids = codec.encode(&self.prompt(&windows.normalized[0]))?;
        let p = ids.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(ids.into_iter().map(i64::from).collect::<Vec<_>>(), [1, p]),
            device,
        );
        let seq = Tensor::cat(vec![self.backbone.embed(ids), tokens], 1);
        let h = self.backbone.forward(
            seq,
            ForwardOptions {
                layers: Some(c.llm_layers),
                ..Default::default()
            },
        );
        Ok(h.slice(s![.., p..p + n, ..]))
    }
}

fn missing() -> Error {
    Error::config("model", "the model lacks a part its kind needs")
}
