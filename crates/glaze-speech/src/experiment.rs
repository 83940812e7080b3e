//! Recognition experiments: corpora → cached features → one adapter trained through the frozen
//! LLM → word error rates on named test sets. Used by `glaze speech` and `cargo xtask results
//! speech`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use glaze_core::{Encoder, FrozenBackbone, TextCodec};
use glaze_train::{AdapterIdentity, FeatureCache, RunOptions, TrainConfig, train};
use glaze_whisper::{AudioEncoder, AudioLimits};

use crate::adapter::{SpeechAdapter, SpeechAdapterConfig};
use crate::asr::{AsrLoss, AsrTask, SpeechItem, SpeechPipeline};
use crate::corpus::{Split, Utterance};
use crate::error::Result;
use crate::wer::{WerCount, wer};
use glaze_train::FeatureBank;
use glaze_whisper::bank::encode_files;
use glaze_whisper::corpus::{gcd, spread};

/// Clips of all corpora, features cached, split for training.
#[derive(Debug, Clone, Default)]
pub struct SpeechData {
    /// Features of every clip used.
    pub bank: FeatureBank,
    /// Training items.
    pub train: Vec<SpeechItem>,
    /// Validation items.
    pub val: Vec<SpeechItem>,
    /// Named test sets (`fsdd`, `synthetic`, `jfk`).
    pub tests: Vec<(String, Vec<SpeechItem>)>,
}

/// How many items of each split to keep per corpus (the first ones, after a seeded shuffle of the
/// training split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLimits {
    /// Training items per corpus.
    pub train: usize,
    /// Validation items per corpus.
    pub val: usize,
    /// Test items per corpus.
    pub test: usize,
}

impl SpeechData {
    /// Encodes the utterances of a corpus and adds them: train/val to the shared splits, test
    /// as the named set.
    pub fn add_corpus(
        &mut self,
        name: &str,
        utterances: &[Utterance],
        limits: SplitLimits,
        encoder: &AudioEncoder,
        cache: Option<&FeatureCache>,
        device: &Device,
    ) -> Result<()> {
        let mut train: Vec<&Utterance> = utterances
            .iter()
            .filter(|u| u.split == Split::Train)
            .collect();
        // Interleave speakers and words: a fixed stride walk instead of file order.
        let n = train.len();
        if n > 1 {
            let step = (1..n)
                .rev()
                .find(|s| gcd(*s, n) == 1 && *s > n / 3)
                .unwrap_or(1);
            train = (0..n).map(|i| train[(i * step) % n]).collect();
        }
        // Validation and test picks spread over speakers and words too (all of them when the
        // limit is at least the split's size).
        let pick = |split: Split, k: usize| spread(utterances, split, k);
        let groups = [
            train.into_iter().take(limits.train).collect::<Vec<_>>(),
            pick(Split::Val, limits.val),
            pick(Split::Test, limits.test),
        ];
        let all: Vec<&Utterance> = groups.iter().flatten().copied().collect();
        let files: Vec<PathBuf> = all.iter().map(|u| u.path.clone()).collect();
        let start = Instant::now();
        let bank = encode_files(encoder, cache, &files, &AudioLimits::default(), device)?;
        tracing::info!(
            "{name}: {} clips encoded in {:.1} s",
            files.len(),
            start.elapsed().as_secs_f64()
        );
        let first = self.bank.extend(bank);
        let mut at = first;
        for (g, group) in groups.iter().enumerate() {
            let items: Vec<SpeechItem> = group
                .iter()
                .map(|u| {
                    let item = SpeechItem {
                        clip: at,
                        text: u.text.clone(),
                    };
                    at += 1;
                    item
                })
                .collect();
            match g {
                0 => self.train.extend(items),
                1 => self.val.extend(items),
                _ => self.tests.push((name.to_string(), items)),
            }
        }
        Ok(())
    }
}

/// The identity of a speech adapter trained against `encoder` (its window included) and
/// `backbone`.
pub fn identity(
    backbone: &dyn FrozenBackbone,
    encoder: &AudioEncoder,
    adapter: &SpeechAdapterConfig,
) -> Result<AdapterIdentity> {
    Ok(glaze_train::adapter_identity(
        adapter,
        Some(encoder.spec()),
        backbone,
    )?)
}

/// Loads a trained adapter, checking it was trained for this encoder (and window) and backbone.
pub fn load_adapter(
    backbone: &dyn FrozenBackbone,
    encoder: &AudioEncoder,
    path: &Path,
) -> Result<(SpeechAdapter, SpeechAdapterConfig)> {
    glaze_train::load_adapter(path, "a speech adapter", Some(encoder.spec()), backbone)
}

/// Loads a trained adapter with the default encoder (Whisper tiny.en) set to the window the
/// adapter was trained on, as its checkpoint records it.
pub fn load_with_default_encoder(
    backbone: &dyn FrozenBackbone,
    path: &Path,
) -> Result<(SpeechAdapter, AudioEncoder)> {
    let ck = glaze_train::Checkpoint::load(path)?;
    let window = ck
        .identity
        .encoder
        .as_ref()
        .and_then(glaze_whisper::Window::of_spec)
        .unwrap_or_default();
    let encoder = AudioEncoder::load_default(backbone.device())?.with_window(window);
    let (adapter, _) = load_adapter(backbone, &encoder, path)?;
    Ok((adapter, encoder))
}

/// One training run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The adapter.
    pub adapter: SpeechAdapterConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// Checkpoint/metrics directory (resumable), or in memory.
    pub dir: Option<PathBuf>,
    /// Clips per validation / transcription batch.
    pub eval_batch: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// Trains an adapter on `data.train` (validation on `data.val`). Returns it with the number of
/// optimizer steps, trainable parameters and training seconds.
pub fn train_adapter(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    encoder: &AudioEncoder,
    data: &SpeechData,
    spec: &RunSpec,
) -> Result<(SpeechAdapter, usize, usize, f64)> {
    let device = spec.train.device(backbone.device());
    let model = glaze_core::rng::seeded(&device, spec.train.seed, |d| {
        spec.adapter
            .init(data.bank.f, backbone.spec().d_model, d)
            .inspect(glaze_core::params::materialize)
    })?;
    let task = AsrTask {
        pipeline: AsrLoss {
            pipeline: SpeechPipeline { backbone, codec },
            bank: &data.bank,
        },
        train: &data.train,
        val: (!data.val.is_empty()).then_some(data.val.as_slice()),
        eval_batch: spec.eval_batch,
    };
    let id = identity(backbone, encoder, &spec.adapter)?;
    let mut options = match &spec.dir {
        Some(dir) => RunOptions {
            dir: Some(dir.clone()),
            identity: id,
            progress: spec.progress,
            resume: true,
            on_step: None,
        },
        None => RunOptions::in_memory(id),
    };
    options.progress = spec.progress;
    let start = Instant::now();
    let (model, report) = train(&task, model, &spec.train, options)?;
    Ok((
        model.valid(),
        report.steps,
        report.trainable_params,
        start.elapsed().as_secs_f64(),
    ))
}

/// Transcripts and WER of `items`.
pub fn evaluate(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    model: &SpeechAdapter,
    bank: &FeatureBank,
    items: &[SpeechItem],
    batch: usize,
    max_new_tokens: usize,
) -> Result<(Vec<String>, WerCount)> {
    let pipeline = SpeechPipeline { backbone, codec };
    let clips: Vec<usize> = items.iter().map(|i| i.clip).collect();
    let hyps = pipeline.transcribe(model, bank, &clips, batch, max_new_tokens)?;
    let counts = wer(items
        .iter()
        .zip(&hyps)
        .map(|(i, h)| (i.text.as_str(), h.as_str())));
    Ok((hyps, counts))
}
