//! One forecasting run from a CSV file to test metrics and a checkpoint, and loading that
//! checkpoint back: what the CLI and the results sweep call.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::Device;
use glaze_core::{FrozenBackbone, TextCodec};
use glaze_train::{AdapterIdentity, RunOptions, TrainConfig, TrainReport, train};

use crate::csv::{ColumnSelection, read_csv};
use crate::dataset::{Scaler, SeriesData, WindowSpec, prepare};
use crate::error::{Error, Result};
use crate::model::{Forecaster, ForecasterConfig, ModelKind, Pipeline};
use crate::task::{ForecastTask, Metrics, evaluate};

/// Description used in the prompt of the ETT sets.
pub const ETT_DESCRIPTION: &str = "ETT, hourly load and oil temperature of an electricity \
    transformer in China, July 2016 to July 2018.";

/// Everything that defines a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    /// The CSV file.
    pub data: PathBuf,
    /// Target column (default: the last).
    pub target: Option<String>,
    /// Windows and splits.
    pub window: WindowSpec,
    /// The model.
    pub model: ForecasterConfig,
    /// The training engine's settings.
    pub train: TrainConfig,
    /// Dataset description for the prompt.
    pub description: String,
    /// Batch size for validation and test.
    pub eval_batch: usize,
    /// Training loss (default MSE).
    #[serde(default)]
    pub loss: glaze_core::RegressionLoss,
    /// Covariates read beside the target (default: every other column).
    #[serde(default)]
    pub covariates: Option<Vec<String>>,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    /// Test metrics.
    pub test: Metrics,
    /// Best validation MSE.
    pub best_val: Option<f64>,
    /// Training report.
    pub report: TrainReport,
    /// Seconds spent training (including validations).
    pub train_seconds: f64,
    /// Seconds spent on the test set.
    pub test_seconds: f64,
    /// Training / validation / test examples.
    pub examples: [usize; 3],
    /// Prompt-prefix cache entries read from disk / computed (Time-LLM).
    pub prefix_cache: Option<(usize, usize)>,
}

/// The configuration stored in a checkpoint beside the weights: enough to rebuild the model
/// and to scale new data the way the training data was scaled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredConfig {
    /// The model.
    pub model: ForecasterConfig,
    /// Windows and splits.
    pub window: WindowSpec,
    /// Column names (target last).
    pub columns: Vec<String>,
    /// The scaler fitted on the training rows.
    pub scaler: Scaler,
    /// Dataset description for the prompt.
    pub description: String,
}

/// Identity of a forecasting adapter trained against `backbone`.
pub fn identity(backbone: &dyn FrozenBackbone, stored: &StoredConfig) -> Result<AdapterIdentity> {
    Ok(glaze_train::adapter_identity(stored, None, backbone)?)
}

impl glaze_train::AdapterConfig for StoredConfig {
    type Adapter = Forecaster;
    type Error = Error;

    fn kind(&self) -> String {
        format!("timeseries/{}", self.model.kind.name())
    }

    fn layers_used(&self, _: &dyn FrozenBackbone) -> usize {
        self.model.layers_used()
    }

    fn build(
        &self,
        _: Option<&glaze_core::EncoderSpec>,
        backbone: &dyn FrozenBackbone,
        device: &Device,
    ) -> Result<Forecaster> {
        self.model.validate(backbone)?;
        Ok(self.model.init(device))
    }
}

/// Reads and prepares the data of a run.
pub fn load_data(spec: &RunSpec) -> Result<SeriesData> {
    let frame = read_csv(
        &spec.data,
        &ColumnSelection {
            target: spec.target.clone(),
            covariates: spec.covariates.clone(),
        },
    )?;
    prepare(&frame, &spec.window)
}

/// Trains and tests one model. `dir` receives checkpoints, metrics and the curve (and makes
/// the run resumable); `cache_root` holds the prompt-prefix cache.
pub fn run(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    spec: &RunSpec,
    dir: Option<&Path>,
    cache_root: Option<&Path>,
    progress: bool,
) -> Result<(Forecaster, RunOutcome)> {
    let data = load_data(spec)?;
    let pipeline = Pipeline::new(
        backbone,
        codec,
        spec.model.clone(),
        spec.description.clone(),
        cache_root,
    )?;
    let stored = StoredConfig {
        model: spec.model.clone(),
        window: spec.window,
        columns: data.columns.clone(),
        scaler: data.scaler.clone(),
        description: spec.description.clone(),
    };
    let identity = identity(backbone, &stored)?;
    let device = spec.train.device(backbone.device());
    let model = glaze_core::rng::seeded_module(&device, spec.train.seed, |d| spec.model.init(d));
    let task = ForecastTask {
        pipeline: &pipeline,
        train: &data.train,
        val: Some(&data.val),
        eval_batch: spec.eval_batch,
        loss: spec.loss,
    };
    let t0 = Instant::now();
    let (model, report) = train(
        &task,
        model,
        &spec.train,
        RunOptions {
            dir: dir.map(Path::to_path_buf),
            identity,
            progress,
            resume: true,
            on_step: None,
        },
    )?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let test = evaluate(&pipeline, &model, &data.test, spec.eval_batch)?;
    let outcome = RunOutcome {
        test,
        best_val: report.best.map(|b| b.0),
        report,
        train_seconds,
        test_seconds: t1.elapsed().as_secs_f64(),
        examples: [data.train.len(), data.val.len(), data.test.len()],
        prefix_cache: pipeline
            .prefix()
            .and_then(|p| p.cache())
            .map(|c| (c.hits(), c.misses())),
    };
    Ok((model, outcome))
}

/// A trained model loaded from a checkpoint, checked against `backbone`.
pub fn load_checkpoint(
    backbone: &dyn FrozenBackbone,
    path: &Path,
) -> Result<(Forecaster, StoredConfig)> {
    glaze_train::load_adapter(path, "a time-series adapter", None, backbone)
}

/// True when `kind` needs the backbone's blocks at run time.
pub fn needs_llm(kind: ModelKind) -> bool {
    kind.uses_llm_layers()
}
