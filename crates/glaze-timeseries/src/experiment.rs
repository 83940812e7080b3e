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
        Ok(self.model.init(backbone, device))
    }

    /// Checkpoints written before the patch embedding and reprogramming became the
    /// [`crate::SeriesAdapter`] store them at the top level.
    fn param_name(&self, stored: &str) -> String {
        if stored.starts_with("patch_embed.") || stored.starts_with("reprogram.") {
            format!("adapter.{stored}")
        } else {
            stored.to_string()
        }
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

/// The run's data and its model's pipeline: what training and the step benchmark start from.
pub(crate) fn data_and_pipeline<'a>(
    backbone: &'a dyn FrozenBackbone,
    codec: &'a dyn TextCodec,
    spec: &RunSpec,
    cache_root: Option<&Path>,
) -> Result<(SeriesData, Pipeline<'a>)> {
    let data = load_data(spec)?;
    let pipeline = Pipeline::new(
        backbone,
        codec,
        spec.model.clone(),
        spec.description.clone(),
        cache_root,
    )?;
    Ok((data, pipeline))
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
    let (data, pipeline) = data_and_pipeline(backbone, codec, spec, cache_root)?;
    let stored = StoredConfig {
        model: spec.model.clone(),
        window: spec.window,
        columns: data.columns.clone(),
        scaler: data.scaler.clone(),
        description: spec.description.clone(),
    };
    let identity = identity(backbone, &stored)?;
    let device = spec.train.device(backbone.device());
    let model =
        glaze_core::rng::seeded_module(&device, spec.train.seed, |d| spec.model.init(backbone, d));
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

/// A trained model's data and pipeline for a new CSV file: the columns the model was trained
/// on, scaled with the statistics it was trained with (not the new file's).
pub fn reopen<'a>(
    backbone: &'a dyn FrozenBackbone,
    codec: &'a dyn TextCodec,
    stored: &StoredConfig,
    data: &Path,
    eval_stride: usize,
    cache_root: Option<&Path>,
) -> Result<(SeriesData, Pipeline<'a>)> {
    let (target, covariates) = match stored.columns.split_last() {
        Some((t, c)) => (Some(t.clone()), Some(c.to_vec())),
        None => (None, None),
    };
    let frame = read_csv(data, &ColumnSelection { target, covariates })?;
    let mut window = stored.window;
    window.eval_stride = eval_stride;
    let set = crate::dataset::prepare_scaled(&frame, &window, Some(&stored.scaler))?;
    let pipeline = Pipeline::new(
        backbone,
        codec,
        stored.model.clone(),
        stored.description.clone(),
        cache_root,
    )?;
    Ok((set, pipeline))
}

/// What [`forecast_plot`] drew.
#[derive(Debug, Clone)]
pub struct PlottedForecast {
    /// The forecast rows `start..end` of the file.
    pub rows: std::ops::Range<usize>,
    /// Errors in the scaled space, when the file holds the whole horizon's truth.
    pub metrics: Option<Metrics>,
}

/// Forecasts the target from the window of `pipeline`'s input length starting at row `at`
/// (default: the last window whose horizon the file holds) and draws history, forecast and
/// truth, in the file's units, to the PNG `out`.
pub fn forecast_plot(
    pipeline: &Pipeline<'_>,
    model: &Forecaster,
    stored: &StoredConfig,
    set: &SeriesData,
    out: &Path,
    at: Option<usize>,
) -> Result<PlottedForecast> {
    let (l, h) = (stored.window.input_len, stored.window.horizon);
    let c = set
        .scaled
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::config("data", "the file has no target column"))?;
    let series = &set.scaled[c];
    let rows = series.len();
    let start = at.unwrap_or(rows.saturating_sub(l + h));
    if start + l > rows {
        return Err(Error::config(
            "at",
            format!(
                "the input window needs rows {start}..{} but the file has {rows}",
                start + l
            ),
        ));
    }
    let input = &series[start..start + l];
    let pred: Vec<f32> = pipeline
        .predict(model, &[input], pipeline.backbone.device())?
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::config("forecast", format!("{e:?}")))?;
    let points = |from: usize, values: &[f32]| -> Vec<(f64, f64)> {
        stored
            .scaler
            .inverse(c, values)
            .iter()
            .enumerate()
            .map(|(i, &v)| ((from + i) as f64, v as f64))
            .collect()
    };
    let truth_end = (start + l + h).min(rows);
    let truth = &series[start + l..truth_end];
    let target = stored.columns.last().cloned().unwrap_or_default();
    let mut plot = glaze_train::LinePlot::new(
        format!("{} {target}: {l} IN, {h} OUT", stored.model.kind.name()),
        "ROW",
    )
    .line("history", points(start, input))
    .line("forecast", points(start + l, &pred));
    if !truth.is_empty() {
        plot = plot.line("truth", points(start + l, truth));
    }
    plot.marker_x = Some((start + l) as f64 - 0.5);
    plot.save_png(out)?;
    let metrics = (truth.len() == h).then(|| {
        let mut m = Metrics::default();
        m.add(&pred, truth);
        m
    });
    Ok(PlottedForecast {
        rows: start + l..start + l + h,
        metrics,
    })
}
