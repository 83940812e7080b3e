//! End-to-end vision runs: frozen features (through the offline feature cache), adapter training
//! on the training engine, greedy answers on the test split, baselines beside them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use glaze_core::{Encoder, FrozenBackbone, SplitMix64, TextCodec};
use glaze_train::{
    AdapterIdentity, FeatureBank, FeatureCache, RunOptions, TrainConfig, adapter_identity,
    encode_bank, train,
};
use image::RgbImage;

use crate::adapter::{VisionAdapter, VisionAdapterConfig};
use crate::decode::{DecodeLimits, decode_file};
use crate::encoder::VisionEncoder;
use crate::error::{Error, Result};
use crate::probe::{LinearProbe, probe_input};
use crate::shapes::{CaptionScore, Scene, normalise, score};
use crate::task::{VisionPipeline, VqaItem, VqaLoss, VqaTask};
use crate::textiles::{CLASSES, QUESTION as TEXTILE_QUESTION, load_splits};

/// Images per encoder forward when filling the cache.
const ENCODE_CHUNK: usize = 8;

/// Opens the feature cache of an encoder under `root`.
pub fn open_cache(root: &Path, encoder: &VisionEncoder) -> Result<FeatureCache> {
    Ok(glaze_train::open_cache(root, "vision", encoder)?)
}

/// Frozen features of many images: read from the cache, or encoded in chunks and stored.
/// `key(i)` is the cache key of image `i` (its file bytes, or its pixels), `load(i)` decodes it.
pub fn encode_all(
    encoder: &VisionEncoder,
    cache: &FeatureCache,
    count: usize,
    key: impl Fn(usize) -> Result<Vec<u8>>,
    load: impl Fn(usize) -> Result<RgbImage>,
    device: &Device,
) -> Result<FeatureBank> {
    encode_bank(
        encoder,
        Some(cache),
        count,
        ENCODE_CHUNK,
        key,
        |i, _| load(i),
        device,
    )
}

/// Which task a run is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisionTaskKind {
    /// Textile defects (3 classes), answered in words.
    Textiles,
    /// Generated shapes, captioned with positions.
    Shapes,
}

/// Images, features and question/answer pairs of a task.
#[derive(Debug, Clone)]
pub struct VisionData {
    /// Frozen features of every image.
    pub bank: FeatureBank,
    /// Training pairs.
    pub train: Vec<VqaItem>,
    /// Validation pairs.
    pub val: Vec<VqaItem>,
    /// Test pairs.
    pub test: Vec<VqaItem>,
    /// Shapes only: the scene of every image (for per-attribute scores).
    pub scenes: Vec<Scene>,
    /// Textiles only: the class of every image.
    pub classes: Vec<usize>,
    /// Textiles only: the file of every image.
    pub paths: Vec<PathBuf>,
}

/// Sizes of the generated shapes task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShapesSizes {
    /// Training scenes.
    pub train: usize,
    /// Validation scenes.
    pub val: usize,
    /// Test scenes.
    pub test: usize,
}

/// At most `limit` items, evenly spread over the list (all when `None` or larger).
pub fn spread<T: Clone>(items: &[T], limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(limit) if limit < items.len() => {
            let step = items.len() as f64 / limit as f64;
            (0..limit)
                .map(|i| items[(i as f64 * step) as usize].clone())
                .collect()
        }
        _ => items.to_vec(),
    }
}

/// Optional caps on the split sizes (applied before any image is encoded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitLimits {
    /// Training items.
    pub train: Option<usize>,
    /// Validation items.
    pub val: Option<usize>,
    /// Test items.
    pub test: Option<usize>,
}

/// Textile images from `dir` (70/10/20 split per class, then capped by `limits`), with their
/// features.
pub fn load_textiles(
    encoder: &VisionEncoder,
    cache: &FeatureCache,
    dir: &Path,
    seed: u64,
    limits: SplitLimits,
    device: &Device,
) -> Result<VisionData> {
    let mut splits = load_splits(dir, (0.7, 0.1), seed)?;
    splits.train = spread(&splits.train, limits.train);
    splits.val = spread(&splits.val, limits.val);
    splits.test = spread(&splits.test, limits.test);
    let all: Vec<_> = splits
        .train
        .iter()
        .chain(&splits.val)
        .chain(&splits.test)
        .cloned()
        .collect();
    let limits = DecodeLimits::default();
    let bank = encode_all(
        encoder,
        cache,
        all.len(),
        |i| {
            std::fs::read(&all[i].path).map_err(|source| Error::Io {
                path: all[i].path.clone(),
                source,
            })
        },
        |i| decode_file(&all[i].path, &limits),
        device,
    )?;
    let item = |i: usize| VqaItem {
        image: i,
        question: TEXTILE_QUESTION.into(),
        answer: CLASSES[all[i].class].1.into(),
    };
    let (a, b) = (splits.train.len(), splits.train.len() + splits.val.len());
    Ok(VisionData {
        bank,
        train: (0..a).map(item).collect(),
        val: (a..b).map(item).collect(),
        test: (b..all.len()).map(item).collect(),
        scenes: Vec::new(),
        classes: all.iter().map(|x| x.class).collect(),
        paths: all.iter().map(|x| x.path.clone()).collect(),
    })
}

/// Generated scenes (seeded), with their features.
pub fn load_shapes(
    encoder: &VisionEncoder,
    cache: &FeatureCache,
    sizes: ShapesSizes,
    seed: u64,
    device: &Device,
) -> Result<VisionData> {
    let total = sizes.train + sizes.val + sizes.test;
    let mut rng = SplitMix64::new(seed);
    let mut scenes = Vec::with_capacity(total);
    let mut images = Vec::with_capacity(total);
    for _ in 0..total {
        let scene = Scene::random(&mut rng);
        images.push(scene.draw(&mut rng));
        scenes.push(scene);
    }
    let bank = encode_all(
        encoder,
        cache,
        total,
        |i| Ok(images[i].as_raw().clone()),
        |i| Ok(images[i].clone()),
        device,
    )?;
    let item = |i: usize| VqaItem {
        image: i,
        question: crate::shapes::QUESTION.into(),
        answer: scenes[i].caption(),
    };
    let (a, b) = (sizes.train, sizes.train + sizes.val);
    Ok(VisionData {
        bank,
        train: (0..a).map(item).collect(),
        val: (a..b).map(item).collect(),
        test: (b..total).map(item).collect(),
        scenes,
        classes: Vec::new(),
        paths: Vec::new(),
    })
}

/// The identity of a vision adapter trained against `encoder` and `backbone`.
pub fn identity(
    backbone: &dyn FrozenBackbone,
    encoder: &VisionEncoder,
    adapter: &VisionAdapterConfig,
) -> Result<AdapterIdentity> {
    Ok(adapter_identity(adapter, Some(encoder.spec()), backbone)?)
}

/// Loads a trained adapter, checking that it was trained for this encoder and backbone.
pub fn load_adapter(
    backbone: &dyn FrozenBackbone,
    encoder: &VisionEncoder,
    path: &Path,
) -> Result<(VisionAdapter, VisionAdapterConfig)> {
    glaze_train::load_adapter(path, "a vision adapter", Some(encoder.spec()), backbone)
}

/// Accuracy of answers against the test items (normalised text equality).
pub fn accuracy(answers: &[String], items: &[VqaItem]) -> f64 {
    let right = answers
        .iter()
        .zip(items)
        .filter(|(a, i)| normalise(a) == normalise(&i.answer))
        .count();
    right as f64 / items.len().max(1) as f64
}

/// The class an answer names first ("nominal", "global…", "local…"), if any: the textile score
/// that accepts free-form answers such as "This fabric shows a local defect".
pub fn named_class(answer: &str) -> Option<usize> {
    let a = answer.to_lowercase();
    CLASSES
        .iter()
        .enumerate()
        .filter_map(|(i, (folder, _))| a.find(folder).map(|at| (at, i)))
        .min()
        .map(|(_, i)| i)
}

/// Share of answers that name the right class first (see [`named_class`]).
pub fn class_accuracy(answers: &[String], items: &[VqaItem]) -> f64 {
    let right = answers
        .iter()
        .zip(items)
        .filter(|(a, i)| {
            let want = CLASSES.iter().position(|(_, ans)| *ans == i.answer);
            want.is_some() && named_class(a) == want
        })
        .count();
    right as f64 / items.len().max(1) as f64
}

/// Summed caption scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaptionTotals {
    /// Exact-match rate.
    pub exact: f64,
    /// Object-count accuracy.
    pub count: f64,
    /// Colour accuracy per object.
    pub colour: f64,
    /// Shape accuracy per object.
    pub shape: f64,
    /// Size accuracy per object.
    pub size: f64,
    /// Position accuracy (cell or relation + order).
    pub position: f64,
}

/// Scores captions of the test items against their scenes.
pub fn caption_totals(answers: &[String], items: &[VqaItem], scenes: &[Scene]) -> CaptionTotals {
    let scores: Vec<CaptionScore> = answers
        .iter()
        .zip(items)
        .map(|(a, i)| score(&scenes[i.image], a))
        .collect();
    let n = scores.len().max(1) as f64;
    let objects = scores.iter().map(|s| s.objects).sum::<usize>().max(1) as f64;
    let rate = |f: &dyn Fn(&CaptionScore) -> usize| scores.iter().map(f).sum::<usize>() as f64;
    CaptionTotals {
        exact: rate(&|s| usize::from(s.exact)) / n,
        count: rate(&|s| usize::from(s.count)) / n,
        colour: rate(&|s| s.colour) / objects,
        shape: rate(&|s| s.shape) / objects,
        size: rate(&|s| s.size) / objects,
        position: rate(&|s| usize::from(s.position)) / n,
    }
}

/// One adapter run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The adapter.
    pub adapter: VisionAdapterConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// Initialisation seed.
    pub seed: u64,
    /// Checkpoint/metrics directory (resumable), or in memory.
    pub dir: Option<PathBuf>,
    /// Answers generated per batch at test time.
    pub eval_batch: usize,
    /// Longest answer generated.
    pub max_new_tokens: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The trained adapter.
    pub adapter: VisionAdapter,
    /// Greedy answers on the test split.
    pub answers: Vec<String>,
    /// Exact-match accuracy on the test split.
    pub accuracy: f64,
    /// Training seconds.
    pub train_secs: f64,
    /// Test seconds (generation).
    pub test_secs: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Trainable parameters.
    pub params: usize,
    /// Soft tokens per image.
    pub tokens: usize,
}

/// Trains an adapter on `data.train` and answers `data.test`.
pub fn run(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    encoder: &VisionEncoder,
    data: &VisionData,
    spec: &RunSpec,
) -> Result<RunOutcome> {
    let pipeline = VisionPipeline { backbone, codec };
    let device = spec.train.device(backbone.device());
    let model = glaze_core::rng::seeded(&device, spec.seed, |d| {
        spec.adapter
            .init(data.bank.f, backbone.spec().d_model, d)
            .inspect(glaze_core::params::materialize)
    })?;
    let task = VqaTask {
        pipeline: VqaLoss {
            pipeline,
            bank: &data.bank,
        },
        train: &data.train,
        val: (!data.val.is_empty()).then_some(data.val.as_slice()),
        eval_batch: spec.eval_batch,
    };
    let mut options = match &spec.dir {
        Some(dir) => RunOptions {
            dir: Some(dir.clone()),
            identity: identity(backbone, encoder, &spec.adapter)?,
            progress: spec.progress,
            resume: true,
            on_step: None,
        },
        None => RunOptions::in_memory(identity(backbone, encoder, &spec.adapter)?),
    };
    options.progress = spec.progress;
    let start = Instant::now();
    let (model, report) = train(&task, model, &spec.train, options)?;
    let train_secs = start.elapsed().as_secs_f64();
    let model = model.valid();
    let start = Instant::now();
    let answers = pipeline.answer(
        Some(&model),
        &data.bank,
        &data.test,
        spec.eval_batch,
        spec.max_new_tokens,
    )?;
    let test_secs = start.elapsed().as_secs_f64();
    Ok(RunOutcome {
        accuracy: accuracy(&answers, &data.test),
        tokens: spec.adapter.num_tokens(data.bank.len_of(0)),
        answers,
        adapter: model,
        train_secs,
        test_secs,
        steps: report.steps,
        params: report.trainable_params,
    })
}

/// The majority class of the training split, as a test accuracy.
pub fn majority_accuracy(data: &VisionData) -> f64 {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for i in &data.train {
        *counts.entry(i.answer.as_str()).or_default() += 1;
    }
    let best = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(a, _)| *a)
        .unwrap_or_default();
    let answers: Vec<String> = data.test.iter().map(|_| best.to_string()).collect();
    accuracy(&answers, &data.test)
}

/// A linear probe on CLS + mean patch features (textiles): test accuracy.
pub fn probe_accuracy(data: &VisionData) -> f64 {
    let input = |i: &VqaItem| {
        probe_input(
            &data.bank.rows[i.image],
            data.bank.len_of(i.image),
            data.bank.f,
        )
    };
    let xs: Vec<Vec<f32>> = data.train.iter().map(input).collect();
    let ys: Vec<usize> = data.train.iter().map(|i| data.classes[i.image]).collect();
    let probe = LinearProbe::fit(&xs, &ys, CLASSES.len(), 300, 0.5, 1e-3);
    let right = data
        .test
        .iter()
        .filter(|i| probe.predict(&input(i)) == data.classes[i.image])
        .count();
    right as f64 / data.test.len().max(1) as f64
}
