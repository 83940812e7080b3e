//! The rows of the vision results table: one trained adapter with its test scores, and the
//! baselines beside it (majority class, the frozen LLM without the image, a linear probe) —
//! what `glaze vision train|sweep|eval` run and print.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use glaze_core::{FrozenBackbone, TextCodec};
use glaze_train::{FeatureCache, TrainConfig};

use crate::adapter::VisionAdapterConfig;
use crate::encoder::VisionEncoder;
use crate::error::{Error, Result};
use crate::experiment::{
    self as ex, CaptionTotals, RunOutcome, ShapesSizes, SplitLimits, VisionData, VisionTaskKind,
};
use crate::task::{VisionPipeline, VqaItem};
use crate::textiles::default_textiles_dir;

impl VisionTaskKind {
    /// Name in result rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            VisionTaskKind::Textiles => "textiles",
            VisionTaskKind::Shapes => "shapes",
        }
    }

    /// Longest answer generated at test time (a class in words; a caption).
    pub fn max_answer_tokens(self) -> usize {
        match self {
            VisionTaskKind::Textiles => 6,
            VisionTaskKind::Shapes => 20,
        }
    }
}

/// Which items a task loads.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// The task.
    pub kind: VisionTaskKind,
    /// Textile image folder (default: the fetched conformal-clip-data).
    pub dir: Option<PathBuf>,
    /// Generated scenes (shapes).
    pub scenes: ShapesSizes,
    /// Data split seed (textiles) or scene seed (shapes).
    pub seed: u64,
    /// Caps on the split sizes, items spread over each split.
    pub limits: SplitLimits,
}

/// Loads a task's items and their frozen features (through `cache`).
pub fn load_task(
    task: &TaskData,
    encoder: &VisionEncoder,
    cache: &FeatureCache,
    device: &Device,
) -> Result<VisionData> {
    let mut data = match task.kind {
        VisionTaskKind::Textiles => {
            let dir = task.dir.clone().unwrap_or_else(default_textiles_dir);
            ex::load_textiles(encoder, cache, &dir, task.seed, task.limits, device)?
        }
        VisionTaskKind::Shapes => ex::load_shapes(encoder, cache, task.scenes, task.seed, device)?,
    };
    data.train = ex::spread(&data.train, task.limits.train);
    data.val = ex::spread(&data.val, task.limits.val);
    data.test = ex::spread(&data.test, task.limits.test);
    Ok(data)
}

/// Test scores of a task's answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scores {
    /// Textiles: the exact answer, and the class named anywhere in it.
    Textiles {
        /// Exact-answer accuracy.
        accuracy: f64,
        /// Class-named accuracy.
        class_accuracy: f64,
    },
    /// Shapes: caption scores.
    Shapes(CaptionTotals),
}

impl Scores {
    /// Scores `answers` to `data.test`.
    pub fn of(kind: VisionTaskKind, answers: &[String], data: &VisionData) -> Self {
        match kind {
            VisionTaskKind::Textiles => Scores::Textiles {
                accuracy: ex::accuracy(answers, &data.test),
                class_accuracy: ex::class_accuracy(answers, &data.test),
            },
            VisionTaskKind::Shapes => {
                Scores::Shapes(ex::caption_totals(answers, &data.test, &data.scenes))
            }
        }
    }

    /// One line of a report, `label` right-aligned.
    pub fn line(&self, label: &str) -> String {
        match self {
            Scores::Textiles {
                accuracy,
                class_accuracy,
            } => {
                format!("{label:>18}: exact answer {accuracy:.3}, class named {class_accuracy:.3}")
            }
            Scores::Shapes(t) => format!(
                "{label:>18}: exact {:.3}  colour {:.3}  shape {:.3}  size {:.3}  position {:.3}  count {:.3}",
                t.exact, t.colour, t.shape, t.size, t.position, t.count
            ),
        }
    }

    /// The scores as a result row stores them.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scores::Textiles {
                accuracy,
                class_accuracy,
            } => serde_json::json!({ "accuracy": accuracy, "class_accuracy": class_accuracy }),
            Scores::Shapes(t) => serde_json::to_value(t).unwrap_or_default(),
        }
    }
}

/// The first `n` expected and given answers, for a report.
pub fn examples(answers: &[String], items: &[VqaItem], n: usize) -> Vec<String> {
    answers
        .iter()
        .zip(items)
        .take(n)
        .map(|(a, i)| format!("  expected: {:?}\n  answered: {:?}", i.answer, a))
        .collect()
}

/// The training budget of a results row: `steps` AdamW steps of `batch`, warmup 10 % + cosine
/// to 10 % of `lr`, three validations, a checkpoint every 25 steps.
#[derive(Debug, Clone, Copy)]
pub struct StepBudget {
    /// Optimizer steps.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
}

impl StepBudget {
    /// The trainer's settings for `n_train` training items.
    pub fn train_config(&self, seed: u64, n_train: usize) -> TrainConfig {
        TrainConfig::step_budget(self.steps, self.batch, self.lr, seed, n_train, 0.1, 3)
    }
}

/// A trained adapter's results row.
#[derive(Debug, Clone)]
pub struct TrainedRow {
    /// The run.
    pub outcome: RunOutcome,
    /// Its test scores.
    pub scores: Scores,
    /// The row a results file stores.
    pub row: serde_json::Value,
}

/// Trains `adapter` on `data` (checkpoints in `out`, resumable) and scores its test answers.
#[allow(clippy::too_many_arguments)]
pub fn train_row(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    encoder: &VisionEncoder,
    data: &VisionData,
    kind: VisionTaskKind,
    adapter: &VisionAdapterConfig,
    budget: StepBudget,
    eval_batch: usize,
    seed: u64,
    out: &Path,
) -> Result<TrainedRow> {
    let spec = ex::RunSpec {
        adapter: adapter.clone(),
        train: budget.train_config(seed, data.train.len()),
        seed,
        dir: Some(out.to_path_buf()),
        eval_batch,
        max_new_tokens: kind.max_answer_tokens(),
        progress: true,
    };
    let outcome = ex::run(backbone, codec, encoder, data, &spec)?;
    let scores = Scores::of(kind, &outcome.answers, data);
    let row = serde_json::json!({
        "task": kind.name(),
        "adapter": adapter.name(),
        "config": adapter,
        "seed": seed,
        "steps": outcome.steps,
        "batch": budget.batch,
        "lr": budget.lr,
        "params": outcome.params,
        "tokens": outcome.tokens,
        "train_secs": outcome.train_secs,
        "test_secs": outcome.test_secs,
        "test_items": data.test.len(),
        "scores": scores.to_json(),
    });
    Ok(TrainedRow {
        outcome,
        scores,
        row,
    })
}

/// The baselines' results row and its report lines.
#[derive(Debug, Clone)]
pub struct BaselinesRow {
    /// Examples of the answers without the image.
    pub examples: Vec<String>,
    /// One report line per baseline.
    pub lines: Vec<String>,
    /// The row a results file stores.
    pub row: serde_json::Value,
}

/// Majority class, the frozen LLM without soft tokens, and (textiles) a linear probe.
pub fn baselines_row(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    data: &VisionData,
    kind: VisionTaskKind,
    eval_batch: usize,
) -> Result<BaselinesRow> {
    let pipeline = VisionPipeline { backbone, codec };
    let none = pipeline.answer(
        None,
        &data.bank,
        &data.test,
        eval_batch,
        kind.max_answer_tokens(),
    )?;
    let none_scores = Scores::of(kind, &none, data);
    let majority = ex::majority_accuracy(data);
    let mut lines = vec![none_scores.line("no image")];
    lines.push(format!("{:>18}: accuracy {majority:.3}", "majority"));
    let mut row = serde_json::json!({
        "task": kind.name(),
        "adapter": "baselines",
        "test_items": data.test.len(),
        "no_image": none_scores.to_json(),
        "majority": majority,
    });
    if kind == VisionTaskKind::Textiles {
        let probe = ex::probe_accuracy(data);
        lines.push(format!("{:>18}: accuracy {probe:.3}", "linear probe"));
        row["linear_probe"] = serde_json::json!(probe);
    }
    Ok(BaselinesRow {
        examples: examples(&none, &data.test, 3),
        lines,
        row,
    })
}

/// True when `rows` holds a row of `task` and `adapter` (and `seed`, when given): what a sweep
/// skips.
pub fn has_row(rows: &[serde_json::Value], task: &str, adapter: &str, seed: Option<u64>) -> bool {
    rows.iter().any(|r| {
        r["task"] == task && r["adapter"] == adapter && seed.is_none_or(|s| r["seed"] == s)
    })
}

/// `--scenes train,val,test` as sizes.
pub fn scene_sizes(counts: &[usize]) -> Result<ShapesSizes> {
    match counts {
        &[train, val, test] => Ok(ShapesSizes { train, val, test }),
        _ => Err(Error::config(
            "scenes",
            "takes three counts: train,val,test",
        )),
    }
}
