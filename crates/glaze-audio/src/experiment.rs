//! General-audio experiments: FSDD speakers, pairs and generated sound events → cached features
//! → one APT aligner trained on the task mixture through the frozen LLM → accuracy per task
//! against the "no audio" baseline. Used by `glaze audio` and the tests.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use glaze_core::{Encoder, FrozenBackbone, TextCodec};
use glaze_train::{AdapterIdentity, FeatureCache, RunOptions, TrainConfig, train};

use crate::aligner::{AptAligner, AptConfig};
use crate::bank::{encode_clips, encode_files};
use crate::corpus::{Split, Utterance, spread};
use crate::decode::AudioLimits;
use crate::encoder::AudioEncoder;
use crate::error::Result;
use crate::sounds::{event, render};
use crate::tasks::{
    AudioItem, AudioPipeline, AudioQaLoss, AudioQaTask, comparison_items, sound_items,
    speaker_items,
};
use glaze_train::FeatureBank;

/// How many items of each task and split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSizes {
    /// FSDD clips for speaker identification (train, val, test).
    pub speaker: (usize, usize, usize),
    /// Two-clip pairs (train, val, test), drawn from the same splits' clips.
    pub compare: (usize, usize, usize),
    /// Generated sound events (train, val, test).
    pub sound: (usize, usize, usize),
}

/// Items of every task over one bank.
#[derive(Debug, Clone, Default)]
pub struct AudioData {
    /// Features of every clip.
    pub bank: FeatureBank,
    /// Training items (tasks mixed).
    pub train: Vec<AudioItem>,
    /// Validation items.
    pub val: Vec<AudioItem>,
    /// Test items (tasks mixed; `AudioItem::task` tells them apart).
    pub test: Vec<AudioItem>,
}

/// Seed of the sound-event sequence; test events start at index 1,000,000.
const SOUND_SEED: u64 = 0x5EED;

/// Builds the data: FSDD clips through the cache (file bytes as keys), sound events rendered
/// and cached under their seed and index.
pub fn build(
    encoder: &AudioEncoder,
    cache: Option<&FeatureCache>,
    fsdd: &[Utterance],
    sizes: TaskSizes,
    device: &Device,
) -> Result<AudioData> {
    let mut data = AudioData::default();
    let splits = [
        (
            Split::Train,
            sizes.speaker.0,
            sizes.compare.0,
            sizes.sound.0,
            0u64,
        ),
        (
            Split::Val,
            sizes.speaker.1,
            sizes.compare.1,
            sizes.sound.1,
            500_000,
        ),
        (
            Split::Test,
            sizes.speaker.2,
            sizes.compare.2,
            sizes.sound.2,
            1_000_000,
        ),
    ];
    for (split, n_speaker, n_compare, n_sound, sound_from) in splits {
        // Pairs need clips of every speaker: take at least 60 clips of the split.
        let utts = spread(
            fsdd,
            split,
            n_speaker.max(if n_compare > 0 { 60 } else { 0 }),
        );
        let files: Vec<std::path::PathBuf> = utts.iter().map(|u| u.path.clone()).collect();
        let first = data.bank.extend(encode_files(
            encoder,
            cache,
            &files,
            &AudioLimits::default(),
            device,
        )?);
        let indexed: Vec<(usize, &Utterance)> = utts
            .iter()
            .enumerate()
            .map(|(i, u)| (first + i, *u))
            .collect();
        let mut items = speaker_items(&indexed[..n_speaker.min(indexed.len())]);
        items.extend(comparison_items(
            &indexed,
            n_compare,
            SOUND_SEED ^ sound_from,
        ));
        let events: Vec<_> = (0..n_sound as u64)
            .map(|i| event(SOUND_SEED, sound_from + i))
            .collect();
        let clips: Vec<(Vec<u8>, crate::decode::Audio)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let idx = sound_from + i as u64;
                (
                    format!("sound:{SOUND_SEED}:{idx}").into_bytes(),
                    render(e, idx),
                )
            })
            .collect();
        let first = data
            .bank
            .extend(encode_clips(encoder, cache, &clips, device)?);
        items.extend(sound_items(&events, first));
        match split {
            Split::Train => data.train = items,
            Split::Val => data.val = items,
            Split::Test => data.test = items,
        }
    }
    Ok(data)
}

/// The identity of an aligner trained against `encoder` and `backbone`.
pub fn identity(
    backbone: &dyn FrozenBackbone,
    encoder: &AudioEncoder,
    config: &AptConfig,
) -> Result<AdapterIdentity> {
    Ok(glaze_train::adapter_identity(
        config,
        Some(encoder.spec()),
        backbone,
    )?)
}

/// Loads a trained aligner, checking encoder and backbone.
pub fn load_aligner(
    backbone: &dyn FrozenBackbone,
    encoder: &AudioEncoder,
    path: &Path,
) -> Result<(AptAligner, AptConfig)> {
    glaze_train::load_adapter(path, "an audio aligner", Some(encoder.spec()), backbone)
}

/// Trains an aligner on `data.train`; returns it with steps, trainable parameters and seconds.
#[allow(clippy::too_many_arguments)]
pub fn train_aligner(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    encoder: &AudioEncoder,
    data: &AudioData,
    config: &AptConfig,
    train_config: &TrainConfig,
    dir: Option<&Path>,
    progress: bool,
) -> Result<(AptAligner, usize, usize, f64)> {
    let device = train_config.device(backbone.device());
    let model = glaze_core::rng::seeded(&device, train_config.seed, |d| {
        config
            .init(data.bank.f, backbone.spec().d_model, d)
            .inspect(glaze_core::params::materialize)
    })?;
    let task = AudioQaTask {
        pipeline: AudioQaLoss {
            pipeline: AudioPipeline { backbone, codec },
            bank: &data.bank,
        },
        train: &data.train,
        val: (!data.val.is_empty()).then_some(data.val.as_slice()),
        eval_batch: 16,
    };
    let id = identity(backbone, encoder, config)?;
    let mut options = match dir {
        Some(d) => RunOptions {
            dir: Some(d.to_path_buf()),
            identity: id,
            progress,
            resume: true,
            on_step: None,
        },
        None => RunOptions::in_memory(id),
    };
    options.progress = progress;
    let start = Instant::now();
    let (model, report) = train(&task, model, train_config, options)?;
    Ok((
        model.valid(),
        report.steps,
        report.trainable_params,
        start.elapsed().as_secs_f64(),
    ))
}
