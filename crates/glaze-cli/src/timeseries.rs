//! `glaze timeseries train|eval|forecast|sweep`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use glaze::llm::LanguageModel;
use glaze::timeseries::{self as ts, ModelKind, baselines::repeat_last};

use crate::ModelArgs;
use crate::timeseries_args::{Kind, Setup, cache_root, spec};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

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
            let (set, pipeline) = reopen(&model, &stored, &data, eval_stride)?;
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
            let (set, pipeline) = reopen(&model, &stored, &data, 1)?;
            let plotted =
                ts::experiment::forecast_plot(&pipeline, &forecaster, &stored, &set, &out, at)?;
            let rows = plotted.rows;
            match plotted.metrics {
                Some(m) => println!(
                    "forecast of rows {}..{} (scaled MSE {:.4}, MAE {:.4}) → {}",
                    rows.start,
                    rows.end,
                    m.mse(),
                    m.mae(),
                    out.display()
                ),
                None => println!(
                    "forecast of rows {}..{} → {}",
                    rows.start,
                    rows.end,
                    out.display()
                ),
            }
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

fn reopen<'a>(
    model: &'a LanguageModel,
    stored: &ts::StoredConfig,
    data: &Path,
    eval_stride: usize,
) -> Res<(ts::SeriesData, ts::Pipeline<'a>)> {
    let cache = glaze::llm::cache_dir().join("features");
    Ok(ts::experiment::reopen(
        &model.llama,
        &model.tokenizer,
        stored,
        data,
        eval_stride,
        Some(&cache),
    )?)
}

fn bench_step(
    data: &Path,
    steps: usize,
    horizon: usize,
    setup: &Setup,
    llm: &ModelArgs,
) -> Res<()> {
    let model = crate::load(llm)?;
    let kind = ModelKind::TimeLlm;
    let spec = spec(setup, data, Some("OT".into()), horizon, kind, 0, &model);
    let cache = cache_root(setup);
    let timing = ts::bench::train_step_timing(
        &model.llama,
        &model.tokenizer,
        &spec,
        steps,
        cache.as_deref(),
    )?;
    let mut row = serde_json::to_value(timing)?;
    row["engine"] = "glaze".into();
    row["peak_rss_mb"] = serde_json::json!(crate::bench::peak_rss_mb());
    println!("{row}");
    Ok(())
}
