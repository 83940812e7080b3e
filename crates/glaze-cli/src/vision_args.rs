//! The arguments of `glaze vision train|sweep|bench|eval`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use glaze::vision::experiment::VisionTaskKind;
use glaze::vision::results::StepBudget;

use crate::ModelArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum TaskArg {
    /// Textile defects (nominal / global defect / local defect), answered in words.
    Textiles,
    /// Generated shapes captioned with their positions.
    Shapes,
}

impl From<TaskArg> for VisionTaskKind {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Textiles => VisionTaskKind::Textiles,
            TaskArg::Shapes => VisionTaskKind::Shapes,
        }
    }
}

/// Data and evaluation settings shared by `train` and `eval`.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Task.
    #[arg(long, value_enum, default_value = "textiles")]
    pub(crate) task: TaskArg,
    /// Textile image folder (default: the fetched conformal-clip-data).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Data split seed (textiles) or scene seed (shapes).
    #[arg(long, default_value_t = 0)]
    pub(crate) data_seed: u64,
    /// Generated scenes for training / validation / test (shapes).
    #[arg(long, value_delimiter = ',', default_value = "1200,100,300")]
    pub(crate) scenes: Vec<usize>,
    /// Test on at most this many items (spread over the split).
    #[arg(long)]
    pub(crate) test_limit: Option<usize>,
    /// Train on at most this many items (spread over the split).
    #[arg(long)]
    pub(crate) train_limit: Option<usize>,
    /// Validate on at most this many items (spread over the split).
    #[arg(long, default_value_t = 64)]
    pub(crate) val_limit: usize,
    /// Answers generated per batch.
    #[arg(long, default_value_t = 16)]
    pub(crate) eval_batch: usize,
    /// Feature cache directory (default: $GLAZE_CACHE/features).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum VisionCmd {
    /// Train an adapter and report test accuracy (and caption scores for shapes).
    Train {
        #[command(flatten)]
        data: DataArgs,
        /// Adapter: linear, mlp, qformer, qformer-instruct, perceiver.
        #[arg(long, default_value = "mlp")]
        adapter: String,
        #[command(flatten)]
        train: TrainArgs,
        /// Seed of initialisation and data order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run directory: checkpoints (resumable), metrics.jsonl, curve.png, adapter.safetensors.
        #[arg(long)]
        out: PathBuf,
        /// Also report the baselines (majority, no image, linear probe for textiles).
        #[arg(long)]
        baselines: bool,
        /// Append one JSON line with the results to this file.
        #[arg(long)]
        results: Option<PathBuf>,
        /// After training, ask the question about the first held-out image through the saved
        /// adapter, as `glaze ask --image` does (textiles).
        #[arg(long)]
        ask: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Every adapter on every task, one process; finished rows in `--results` are skipped and
    /// the tables of `--markdown` are rewritten between its markers.
    Sweep {
        #[command(flatten)]
        data: DataArgs,
        /// Tasks.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "textiles,shapes"
        )]
        tasks: Vec<TaskArg>,
        /// Adapters.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "linear,mlp,qformer,qformer-instruct,perceiver"
        )]
        adapters: Vec<String>,
        #[command(flatten)]
        train: TrainArgs,
        /// Seeds.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        seeds: Vec<u64>,
        #[command(flatten)]
        files: crate::sweep::SweepFiles,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Image → soft tokens latency, one image at a time (used by `cargo xtask bench`): decode,
    /// preprocess, encode, adapt (MLP projector, pool 4); prints one JSON line.
    Bench {
        /// Image files.
        #[arg(long, value_delimiter = ',')]
        images: Vec<PathBuf>,
        /// Repetitions per image (the median is reported, after one warm-up).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Evaluate a trained adapter on the test split.
    Eval {
        #[command(flatten)]
        data: DataArgs,
        /// The adapter file (`adapter.safetensors` of a run).
        #[arg(long)]
        adapter: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// Training settings shared by `train` and `sweep`.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Optimizer steps.
    #[arg(long, default_value_t = 150)]
    pub(crate) steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// Peak learning rate (warmup + cosine).
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// Pooling factor of linear/mlp (patch grid k×k → 1 token).
    #[arg(long)]
    pub(crate) pool: Option<usize>,
    /// Queries or latents of qformer/perceiver.
    #[arg(long)]
    pub(crate) queries: Option<usize>,
}

impl TrainArgs {
    pub fn budget(&self) -> StepBudget {
        StepBudget {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
        }
    }
}
