//! The arguments `glaze timeseries train|bench-step|sweep` share, and the run specification
//! they make.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use glaze::llm::LanguageModel;
use glaze::timeseries::{
    Channels, ForecasterConfig, ModelKind, RunSpec, SplitScheme, WindowSpec,
    experiment::ETT_DESCRIPTION,
};
use glaze::train::{LrSchedule, TrainConfig};

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    TimeLlm,
    Gpt4ts,
    NoLlm,
    Dlinear,
}

impl From<Kind> for ModelKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::TimeLlm => ModelKind::TimeLlm,
            Kind::Gpt4ts => ModelKind::Gpt4ts,
            Kind::NoLlm => ModelKind::NoLlm,
            Kind::Dlinear => ModelKind::Dlinear,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LossArg {
    Mse,
    Mae,
}

/// Model, window and training settings shared by `train` and `sweep`.
#[derive(Args, Clone)]
pub struct Setup {
    /// Input length L.
    #[arg(long, default_value_t = 96)]
    input_len: usize,
    /// Frozen LLM blocks K run by time-llm and gpt4ts.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Text prototypes of the reprogramming layer.
    #[arg(long, default_value_t = 100)]
    prototypes: usize,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Batch size (examples = one channel of one window).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    accumulation: usize,
    /// Peak learning rate (one-cycle schedule, as Time-LLM).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Distance between training windows (1 = all).
    #[arg(long, default_value_t = 1)]
    train_stride: usize,
    /// Distance between validation/test windows (1 = all, the papers' protocol).
    #[arg(long, default_value_t = 1)]
    eval_stride: usize,
    /// Only the target column (the papers' `S` setting) instead of all columns (`M`).
    #[arg(long)]
    univariate: bool,
    /// Split rows 70/10/20 instead of the ETT hourly 12/4/4 months.
    #[arg(long)]
    ratio_split: bool,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Early-stopping patience in validations.
    #[arg(long)]
    patience: Option<usize>,
    /// Validate every this many steps (besides each epoch end).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Training loss.
    #[arg(long, value_enum, default_value = "mse")]
    loss: LossArg,
    /// Covariates read beside the target (default: every other column), comma-separated.
    #[arg(long, value_delimiter = ',')]
    covariates: Option<Vec<String>>,
    /// Prompt-prefix cache directory (default: $GLAZE_CACHE/features); `none` disables it.
    #[arg(long)]
    cache: Option<String>,
    /// Gradient checkpointing: recompute memory-bound activations in the backward pass.
    #[arg(long)]
    gradient_checkpointing: bool,
}

pub(crate) fn cache_root(setup: &Setup) -> Option<PathBuf> {
    match setup.cache.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(glaze::llm::cache_dir().join("features")),
    }
}

pub(crate) fn spec(
    setup: &Setup,
    data: &Path,
    target: Option<String>,
    horizon: usize,
    kind: ModelKind,
    seed: u64,
    model: &LanguageModel,
) -> RunSpec {
    let s = glaze::FrozenBackbone::spec(&model.llama);
    RunSpec {
        data: data.to_path_buf(),
        target,
        window: WindowSpec {
            input_len: setup.input_len,
            horizon,
            scheme: if setup.ratio_split {
                SplitScheme::Ratio {
                    train: 0.7,
                    test: 0.2,
                }
            } else {
                SplitScheme::EttHourly
            },
            channels: if setup.univariate {
                Channels::Univariate
            } else {
                Channels::Multivariate
            },
            train_stride: setup.train_stride,
            eval_stride: setup.eval_stride,
        },
        model: ForecasterConfig::new(kind, setup.input_len, horizon, s.d_model, s.vocab_size)
            .with_llm_layers(setup.layers)
            .with_num_prototypes(setup.prototypes),
        train: TrainConfig {
            epochs: setup.epochs,
            batch_size: setup.batch,
            accumulation: setup.accumulation,
            lr: setup.lr,
            schedule: LrSchedule::OneCycle {
                pct_start: 0.2,
                div: 25.0,
                final_div: 1e4,
            },
            seed,
            patience: setup.patience,
            eval_every: setup.eval_every,
            max_steps: setup.max_steps,
            checkpoint_every: 25,
            gradient_checkpointing: setup.gradient_checkpointing,
            ..TrainConfig::default()
        },
        description: ETT_DESCRIPTION.to_string(),
        eval_batch: 256,
        loss: match setup.loss {
            LossArg::Mse => glaze::core::RegressionLoss::Mse,
            LossArg::Mae => glaze::core::RegressionLoss::Mae,
        },
        covariates: setup.covariates.clone(),
    }
}
