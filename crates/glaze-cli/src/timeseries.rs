//! `glaze timeseries train|eval|forecast|sweep`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use glaze::llm::LanguageModel;
use glaze::timeseries::{
    self as ts, Channels, ForecasterConfig, ModelKind, RunSpec, SplitScheme, WindowSpec,
    baselines::repeat_last, experiment::ETT_DESCRIPTION,
};
use glaze::train::{LinePlot, LrSchedule, TrainConfig};

use crate::ModelArgs;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

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

#[derive(Subcommand)]
pub enum TsCmd {
    /// Train a forecaster and report test MSE/MAE next to repeat-last.
    Train {
        /// CSV file: a date column, then numeric columns.
        #[arg(long)]
        data: PathBuf,
        /// Target column (default: the last).
        #[arg(long)]
        target: Option<String>,
        /// Forecast horizon H.
        #[arg(long)]
        horizon: usize,
        /// Forecasting model.
        #[arg(long, value_enum, default_value = "time-llm")]
        forecaster: Kind,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run directory: checkpoints (resumable), metrics.jsonl, curve.png, adapter.safetensors.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        setup: Setup,
        #[command(flatten)]
        llm: ModelArgs,
    },
    /// Test metrics of a trained checkpoint on a CSV file's test split.
    Eval {
        /// adapter.safetensors of a run.
        #[arg(long)]
        checkpoint: PathBuf,
        /// CSV file.
        #[arg(long)]
        data: PathBuf,
        /// Distance between test windows.
        #[arg(long, default_value_t = 1)]
        eval_stride: usize,
        #[command(flatten)]
        llm: ModelArgs,
    },
    /// Forecast from one window of a CSV file and plot history, forecast and truth.
    Forecast {
        /// adapter.safetensors of a run.
        #[arg(long)]
        checkpoint: PathBuf,
        /// CSV file.
        #[arg(long)]
        data: PathBuf,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// First row of the input window (default: the last full window of the file).
        #[arg(long)]
        at: Option<usize>,
        #[command(flatten)]
        llm: ModelArgs,
    },
    /// Time training steps of Time-LLM (JSON on stdout, for `cargo xtask bench`).
    BenchStep {
        /// CSV file whose training windows feed the steps.
        #[arg(long)]
        data: PathBuf,
        /// Steps timed after one warm-up step.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Forecast horizon.
        #[arg(long, default_value_t = 96)]
        horizon: usize,
        #[command(flatten)]
        setup: Setup,
        #[command(flatten)]
        llm: ModelArgs,
    },
    /// Train and test every (dataset, horizon, model, seed) and write the results table.
    Sweep {
        /// Directory with ETTh1.csv / ETTh2.csv.
        #[arg(long)]
        data_dir: PathBuf,
        /// Datasets (file stems).
        #[arg(long, value_delimiter = ',', default_value = "ETTh1,ETTh2")]
        datasets: Vec<String>,
        /// Horizons.
        #[arg(long, value_delimiter = ',', default_value = "96,192")]
        horizons: Vec<usize>,
        /// Seeds.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        seeds: Vec<u64>,
        /// Forecasting models.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "dlinear,no-llm,gpt4ts,time-llm"
        )]
        forecasters: Vec<Kind>,
        #[command(flatten)]
        files: crate::sweep::SweepFiles,
        #[command(flatten)]
        setup: Setup,
        #[command(flatten)]
        llm: ModelArgs,
    },
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

pub fn run(cmd: TsCmd) -> Res<()> {
    match cmd {
        TsCmd::Train {
            data,
            target,
            horizon,
            forecaster: kind,
            seed,
            out,
            setup,
            llm,
        } => {
            let model = crate::load(&llm)?;
            let spec = spec(&setup, &data, target, horizon, kind.into(), seed, &model);
            let cache = cache_root(&setup);
            let (_, outcome) = ts::run(
                &model.llama,
                &model.tokenizer,
                &spec,
                Some(&out),
                cache.as_deref(),
                true,
            )?;
            let base = repeat_last(&ts::experiment::load_data(&spec)?.test);
            println!(
                "{} H={horizon}: test MSE {:.4} MAE {:.4} (repeat-last {:.4} / {:.4}); {} steps in {:.0} s; {} → {}",
                spec.model.kind.name(),
                outcome.test.mse(),
                outcome.test.mae(),
                base.mse(),
                base.mae(),
                outcome.report.steps,
                outcome.train_seconds,
                data.display(),
                out.join("adapter.safetensors").display()
            );
        }
        TsCmd::Eval {
            checkpoint,
            data,
            eval_stride,
            llm,
        } => {
            let (model, forecaster, stored) = load_trained(&llm, &checkpoint)?;
            let (set, pipeline) = rebuild(&model, &stored, &data, eval_stride)?;
            let m = ts::evaluate(&pipeline, &forecaster, &set.test, 256)?;
            let base = repeat_last(&set.test);
            println!(
                "{}: test MSE {:.4} MAE {:.4} over {} forecasts (repeat-last {:.4} / {:.4})",
                stored.model.kind.name(),
                m.mse(),
                m.mae(),
                set.test.len(),
                base.mse(),
                base.mae()
            );
        }
        TsCmd::Forecast {
            checkpoint,
            data,
            out,
            at,
            llm,
        } => {
            let (model, forecaster, stored) = load_trained(&llm, &checkpoint)?;
            forecast_plot(&model, &forecaster, &stored, &data, &out, at)?;
        }
        TsCmd::BenchStep {
            data,
            steps,
            horizon,
            setup,
            llm,
        } => bench_step(&data, steps, horizon, &setup, &llm)?,
        TsCmd::Sweep {
            data_dir,
            datasets,
            horizons,
            seeds,
            forecasters: models,
            files,
            setup,
            llm,
        } => crate::sweep::sweep(
            &data_dir, &datasets, &horizons, &seeds, &models, &files, &setup, &llm,
        )?,
    }
    Ok(())
}

/// The frozen model and a trained forecaster checked against it.
fn load_trained(
    llm: &ModelArgs,
    checkpoint: &Path,
) -> Res<(LanguageModel, ts::Forecaster, ts::StoredConfig)> {
    let model = crate::load(llm)?;
    let (forecaster, stored) = ts::load_checkpoint(&model.llama, checkpoint)?;
    Ok((model, forecaster, stored))
}

fn rebuild<'a>(
    model: &'a LanguageModel,
    stored: &ts::StoredConfig,
    data: &Path,
    eval_stride: usize,
) -> Res<(ts::SeriesData, ts::Pipeline<'a>)> {
    let target = stored.columns.last().cloned();
    let frame = ts::read_csv(
        data,
        &ts::ColumnSelection {
            target,
            covariates: Some(stored.columns[..stored.columns.len() - 1].to_vec()),
        },
    )?;
    let mut window = stored.window;
    window.eval_stride = eval_stride;
    // Scale with the statistics the model was trained with, not the new file's.
    let set = ts::dataset::prepare_scaled(&frame, &window, Some(&stored.scaler))?;
    let pipeline = ts::Pipeline::new(
        &model.llama,
        &model.tokenizer,
        stored.model.clone(),
        stored.description.clone(),
        Some(&glaze::llm::cache_dir().join("features")),
    )?;
    Ok((set, pipeline))
}

fn forecast_plot(
    model: &LanguageModel,
    forecaster: &ts::Forecaster,
    stored: &ts::StoredConfig,
    data: &Path,
    out: &Path,
    at: Option<usize>,
) -> Res<()> {
    let (set, pipeline) = rebuild(model, stored, data, 1)?;
    let (l, h) = (stored.window.input_len, stored.window.horizon);
    let series = &set.scaled[set.scaled.len() - 1];
    let rows = series.len();
    let start = at.unwrap_or(rows.saturating_sub(l + h));
    if start + l > rows {
        return Err(format!(
            "--at {start}: the input window needs rows {start}..{} but the file has {rows}",
            start + l
        )
        .into());
    }
    let input = &series[start..start + l];
    let pred = pipeline.predict(
        forecaster,
        &[input],
        glaze::FrozenBackbone::device(&model.llama),
    )?;
    let pred: Vec<f32> = pred
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let c = set.scaled.len() - 1;
    let unscale = |x: &[f32]| stored.scaler.inverse(c, x);
    let points = |from: usize, values: &[f32]| -> Vec<(f64, f64)> {
        unscale(values)
            .iter()
            .enumerate()
            .map(|(i, &v)| ((from + i) as f64, v as f64))
            .collect()
    };
    let hist = points(start, input);
    let fc = points(start + l, &pred);
    let truth_end = (start + l + h).min(rows);
    let truth = points(start + l, &series[start + l..truth_end]);
    let target = stored.columns.last().cloned().unwrap_or_default();
    let mut plot = LinePlot::new(
        format!("{} {target}: {l} IN, {h} OUT", stored.model.kind.name()),
        "ROW",
    )
    .line("history", hist)
    .line("forecast", fc);
    if !truth.is_empty() {
        plot = plot.line("truth", truth.clone());
    }
    plot.marker_x = Some((start + l) as f64 - 0.5);
    plot.save_png(out)?;
    if truth.len() == h {
        let mut m = ts::Metrics::default();
        m.add(&pred, &series[start + l..truth_end]);
        println!(
            "forecast of rows {}..{} (scaled MSE {:.4}, MAE {:.4}) → {}",
            start + l,
            start + l + h,
            m.mse(),
            m.mae(),
            out.display()
        );
    } else {
        println!(
            "forecast of rows {}..{} → {}",
            start + l,
            start + l + h,
            out.display()
        );
    }
    Ok(())
}

fn bench_step(
    data: &Path,
    steps: usize,
    horizon: usize,
    setup: &Setup,
    llm: &ModelArgs,
) -> Res<()> {
    use std::ops::ControlFlow;
    let model = crate::load(llm)?;
    let mut spec = spec(
        setup,
        data,
        Some("OT".into()),
        horizon,
        ModelKind::TimeLlm,
        0,
        &model,
    );
    spec.train.max_steps = Some(steps + 1);
    spec.train.schedule = LrSchedule::Constant;
    spec.train.checkpoint_every = 0;
    let cache = cache_root(setup);
    let set = ts::experiment::load_data(&spec)?;
    let pipeline = ts::Pipeline::new(
        &model.llama,
        &model.tokenizer,
        spec.model.clone(),
        spec.description.clone(),
        cache.as_deref(),
    )?;
    // Warm the prefix cache for the examples the steps will see (the timed steps then read
    // it from disk, as epochs after the first do).
    let (_, order) = glaze::train::trainer::epoch_order(spec.train.seed, 0, set.train.len());
    let mut prompt_tokens = Vec::new();
    if cache.is_some() {
        for &i in order.iter().take((steps + 1) * setup.batch) {
            let (x, _, _) = set.train.get(i);
            let (n, _) = ts::revin::normalize(&[x]);
            let kv = pipeline
                .prefix()
                .ok_or("no prefix")?
                .encode(&pipeline.prompt(&n[0]))?;
            prompt_tokens.push(kv.shape[3]);
        }
    }
    let task = ts::ForecastTask {
        pipeline: &pipeline,
        train: &set.train,
        val: None,
        eval_batch: 256,
        loss: spec.loss,
    };
    let identity = ts::experiment::identity(
        &model.llama,
        &ts::StoredConfig {
            model: spec.model.clone(),
            window: spec.window,
            columns: set.columns.clone(),
            scaler: set.scaler.clone(),
            description: spec.description.clone(),
        },
    )?;
    let device = spec
        .train
        .device(glaze::FrozenBackbone::device(&model.llama));
    let forecaster = glaze::core::rng::seeded_module(&device, 0, |d| spec.model.init(d));
    let mut times = Vec::new();
    let mut phases: [Vec<f64>; 3] = Default::default();
    let batch = setup.batch as f64;
    let mut record = |s: &glaze::train::StepInfo| {
        if s.step > 1 {
            times.push(batch / s.examples_per_s);
            for (p, v) in phases.iter_mut().zip(s.phases) {
                p.push(v);
            }
        }
        ControlFlow::Continue(())
    };
    let (_, report) = glaze::train::train(
        &task,
        forecaster,
        &spec.train,
        glaze::train::RunOptions {
            dir: None,
            identity,
            progress: false,
            resume: false,
            on_step: Some(&mut record),
        },
    )?;
    let median = glaze::train::metrics::median;
    let steps_timed = times.len();
    let step_s = median(times);
    let [forward_s, backward_s, update_s] = phases.map(median);
    let mean_prompt = if prompt_tokens.is_empty() {
        f64::NAN
    } else {
        prompt_tokens.iter().sum::<usize>() as f64 / prompt_tokens.len() as f64
    };
    println!(
        "{}",
        serde_json::json!({
            "engine": "glaze",
            "mode": format!(
                "{}{}",
                if cache.is_some() { "prefix cached on disk" } else { "prefix computed every step" },
                if spec.train.gradient_checkpointing { ", gradient checkpointing" } else { "" }
            ),
            "batch": setup.batch,
            "layers": setup.layers,
            "prototypes": setup.prototypes,
            "patches": spec.model.num_patches(),
            "mean_prompt_tokens": mean_prompt,
            "step_s": step_s,
            "forward_s": forward_s,
            "backward_s": backward_s,
            "update_s": update_s,
            "steps": steps_timed,
            "trainable_params": report.trainable_params,
            "optimizer_state_floats": report.optimizer_state,
            "peak_rss_mb": crate::bench::peak_rss_mb(),
        })
    );
    Ok(())
}
