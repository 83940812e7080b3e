//! `glaze vision train|eval` and `glaze ask --image`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use glaze::llm::LanguageModel;
use glaze::train::{LrSchedule, TrainConfig};
use glaze::vision::experiment::{
    self as ex, ShapesSizes, VisionData, VisionTaskKind, caption_totals, majority_accuracy,
    probe_accuracy,
};
use glaze::vision::task::VisionPipeline;
use glaze::vision::textiles::default_textiles_dir;
use glaze::vision::{DecodeLimits, VisionAdapterConfig, VisionEncoder, VqaItem, decode_file};

use crate::ModelArgs;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

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
    task: TaskArg,
    /// Textile image folder (default: the fetched conformal-clip-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Data split seed (textiles) or scene seed (shapes).
    #[arg(long, default_value_t = 0)]
    data_seed: u64,
    /// Generated scenes for training / validation / test (shapes).
    #[arg(long, value_delimiter = ',', default_value = "1200,100,300")]
    scenes: Vec<usize>,
    /// Test on at most this many items (spread over the split).
    #[arg(long)]
    test_limit: Option<usize>,
    /// Train on at most this many items (spread over the split).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Validate on at most this many items (spread over the split).
    #[arg(long, default_value_t = 64)]
    val_limit: usize,
    /// Answers generated per batch.
    #[arg(long, default_value_t = 16)]
    eval_batch: usize,
    /// Feature cache directory (default: $GLAZE_CACHE/features).
    #[arg(long)]
    cache: Option<PathBuf>,
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

fn load_data(
    args: &DataArgs,
    encoder: &VisionEncoder,
    device: &burn::prelude::Device,
) -> Res<VisionData> {
    let root = args
        .cache
        .clone()
        .unwrap_or_else(|| glaze::core::cache_dir().join("features"));
    let cache = ex::open_cache(&root, encoder)?;
    let pb = crate::spinner("frozen image features (cached after the first run)");
    let mut data = match args.task {
        TaskArg::Textiles => {
            let dir = args.data.clone().unwrap_or_else(default_textiles_dir);
            let limits = ex::SplitLimits {
                train: args.train_limit,
                val: Some(args.val_limit),
                test: args.test_limit,
            };
            ex::load_textiles(encoder, &cache, &dir, args.data_seed, limits, device)?
        }
        TaskArg::Shapes => {
            let [train, val, test] = args.scenes[..] else {
                return Err("--scenes takes three counts: train,val,test".into());
            };
            ex::load_shapes(
                encoder,
                &cache,
                ShapesSizes { train, val, test },
                args.data_seed,
                device,
            )?
        }
    };
    pb.finish_and_clear();
    eprintln!(
        "features: {} images ({} from the cache, {} encoded); train {} / val {} / test {}",
        data.bank.rows.len(),
        cache.hits(),
        cache.misses(),
        data.train.len(),
        data.val.len(),
        data.test.len()
    );
    data.train = ex::spread(&data.train, args.train_limit);
    data.val = ex::spread(&data.val, Some(args.val_limit));
    data.test = ex::spread(&data.test, args.test_limit);
    Ok(data)
}

fn adapter_config(
    name: &str,
    pool: Option<usize>,
    queries: Option<usize>,
) -> Res<VisionAdapterConfig> {
    let mut cfg = VisionAdapterConfig::preset(name)?;
    match &mut cfg {
        VisionAdapterConfig::Linear { pool: p } | VisionAdapterConfig::Mlp { pool: p } => {
            if let Some(v) = pool {
                *p = v;
            }
        }
        VisionAdapterConfig::QFormer { queries: q, .. }
        | VisionAdapterConfig::Perceiver { latents: q, .. } => {
            if let Some(v) = queries {
                *q = v;
            }
        }
    }
    Ok(cfg)
}

fn report(task: TaskArg, label: &str, answers: &[String], data: &VisionData) -> serde_json::Value {
    let acc = ex::accuracy(answers, &data.test);
    match task {
        TaskArg::Textiles => {
            let class = ex::class_accuracy(answers, &data.test);
            println!("{label:>18}: exact answer {acc:.3}, class named {class:.3}");
            serde_json::json!({ "accuracy": acc, "class_accuracy": class })
        }
        TaskArg::Shapes => {
            let t = caption_totals(answers, &data.test, &data.scenes);
            println!(
                "{label:>18}: exact {:.3}  colour {:.3}  shape {:.3}  size {:.3}  position {:.3}  count {:.3}",
                t.exact, t.colour, t.shape, t.size, t.position, t.count
            );
            serde_json::to_value(t).unwrap_or_default()
        }
    }
}

fn show_examples(answers: &[String], items: &[VqaItem]) {
    for (a, i) in answers.iter().zip(items).take(3) {
        eprintln!("  expected: {:?}\n  answered: {:?}", i.answer, a);
    }
}

/// Training settings shared by `train` and `sweep`.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Optimizer steps.
    #[arg(long, default_value_t = 150)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Peak learning rate (warmup + cosine).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Pooling factor of linear/mlp (patch grid k×k → 1 token).
    #[arg(long)]
    pool: Option<usize>,
    /// Queries or latents of qformer/perceiver.
    #[arg(long)]
    queries: Option<usize>,
}

fn task_name(task: TaskArg) -> &'static str {
    match task {
        TaskArg::Textiles => "textiles",
        TaskArg::Shapes => "shapes",
    }
}

/// Trains one adapter and returns its results row.
#[allow(clippy::too_many_arguments)]
fn train_one(
    model: &LanguageModel,
    encoder: &VisionEncoder,
    data: &VisionData,
    data_args: &DataArgs,
    adapter: &VisionAdapterConfig,
    args: &TrainArgs,
    seed: u64,
    out: &Path,
) -> Res<serde_json::Value> {
    let train = TrainConfig {
        batch_size: args.batch,
        lr: args.lr,
        max_steps: Some(args.steps),
        epochs: (args.steps * args.batch).div_ceil(data.train.len()).max(1),
        schedule: LrSchedule::WarmupCosine {
            warmup: 0.1,
            min_ratio: 0.1,
        },
        seed,
        eval_every: Some((args.steps / 3).max(1)),
        checkpoint_every: 25,
        ..TrainConfig::default()
    };
    let spec = ex::RunSpec {
        adapter: adapter.clone(),
        train,
        seed,
        dir: Some(out.to_path_buf()),
        eval_batch: data_args.eval_batch,
        max_new_tokens: max_tokens(data_args.task),
        progress: true,
    };
    let outcome = ex::run(&model.llama, &model.tokenizer, encoder, data, &spec)?;
    eprintln!(
        "{}: {} params, {} soft tokens per image, {} steps in {:.0} s; test answers in {:.0} s",
        adapter.name(),
        outcome.params,
        outcome.tokens,
        outcome.steps,
        outcome.train_secs,
        outcome.test_secs
    );
    show_examples(&outcome.answers, &data.test);
    let scores = report(data_args.task, adapter.name(), &outcome.answers, data);
    Ok(serde_json::json!({
        "task": task_name(data_args.task),
        "adapter": adapter.name(),
        "config": adapter,
        "seed": seed,
        "steps": outcome.steps,
        "batch": args.batch,
        "lr": args.lr,
        "params": outcome.params,
        "tokens": outcome.tokens,
        "train_secs": outcome.train_secs,
        "test_secs": outcome.test_secs,
        "test_items": data.test.len(),
        "scores": scores,
    }))
}

/// Majority class, the frozen LLM without soft tokens, and (textiles) a linear probe.
fn baselines_row(
    model: &LanguageModel,
    data: &VisionData,
    data_args: &DataArgs,
) -> Res<serde_json::Value> {
    let pipeline = VisionPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    let none = pipeline.answer(
        None,
        &data.bank,
        &data.test,
        data_args.eval_batch,
        max_tokens(data_args.task),
    )?;
    show_examples(&none, &data.test);
    let none_scores = report(data_args.task, "no image", &none, data);
    let majority = majority_accuracy(data);
    println!("{:>18}: accuracy {majority:.3}", "majority");
    let mut row = serde_json::json!({
        "task": task_name(data_args.task),
        "adapter": "baselines",
        "test_items": data.test.len(),
        "no_image": none_scores,
        "majority": majority,
    });
    if matches!(data_args.task, TaskArg::Textiles) {
        let probe = probe_accuracy(data);
        println!("{:>18}: accuracy {probe:.3}", "linear probe");
        row["linear_probe"] = serde_json::json!(probe);
    }
    Ok(row)
}

fn setup(model_args: &ModelArgs) -> Res<(LanguageModel, VisionEncoder)> {
    let model = crate::load(model_args)?;
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let encoder = VisionEncoder::load_default(&device)?;
    Ok((model, encoder))
}

pub fn run(cmd: VisionCmd) -> Res<()> {
    match cmd {
        VisionCmd::Train {
            data: data_args,
            adapter,
            train,
            seed,
            out,
            baselines,
            results,
            ask: ask_after,
            model: model_args,
        } => {
            let (model, encoder) = setup(&model_args)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let data = load_data(&data_args, &encoder, &device)?;
            let adapter = adapter_config(&adapter, train.pool, train.queries)?;
            let mut row = train_one(
                &model, &encoder, &data, &data_args, &adapter, &train, seed, &out,
            )?;
            if let Some(item) = data.test.first()
                && let Some(path) = data.paths.get(item.image)
            {
                let file = out.join("adapter.safetensors");
                eprintln!(
                    "held-out image: glaze ask --image {} --adapter {} \"{}\"",
                    path.display(),
                    file.display(),
                    item.question
                );
                if ask_after {
                    let answer = ask(&model, path, &file, &item.question)?;
                    println!(
                        "question: {}\nanswer:   {answer}\n(truth: {})",
                        item.question, item.answer
                    );
                }
            }
            if baselines {
                row["baselines"] = baselines_row(&model, &data, &data_args)?;
            }
            if let Some(path) = results {
                crate::sweep::append_json_line(&path, &row)?;
            }
        }
        VisionCmd::Sweep {
            data: data_args,
            tasks,
            adapters,
            train,
            seeds,
            files,
            model: model_args,
        } => {
            let (results, markdown, runs) = (files.results, files.markdown, files.runs);
            let (model, encoder) = setup(&model_args)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let mut done: Vec<serde_json::Value> = std::fs::read_to_string(&results)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let has = |done: &[serde_json::Value], task: &str, adapter: &str, seed: Option<u64>| {
                done.iter().any(|r| {
                    r["task"] == task
                        && r["adapter"] == adapter
                        && seed.is_none_or(|s| r["seed"] == s)
                })
            };
            for task in tasks {
                let args = DataArgs {
                    task,
                    ..data_args.clone()
                };
                let name = task_name(task);
                let todo = !has(&done, name, "baselines", None)
                    || adapters
                        .iter()
                        .any(|a| seeds.iter().any(|&s| !has(&done, name, a, Some(s))));
                if !todo {
                    continue;
                }
                let data = load_data(&args, &encoder, &device)?;
                if !has(&done, name, "baselines", None) {
                    let row = baselines_row(&model, &data, &args)?;
                    crate::sweep::append_json_line(&results, &row)?;
                    done.push(row);
                }
                for a in &adapters {
                    let cfg = adapter_config(a, train.pool, train.queries)?;
                    for &seed in &seeds {
                        if has(&done, name, cfg.name(), Some(seed)) {
                            continue;
                        }
                        let out = runs.join(format!("{name}-{}-{seed}", cfg.name()));
                        let row =
                            train_one(&model, &encoder, &data, &args, &cfg, &train, seed, &out)?;
                        crate::sweep::append_json_line(&results, &row)?;
                        done.push(row);
                        write_tables(&done, &markdown)?;
                    }
                }
            }
            write_tables(&done, &markdown)?;
        }
        VisionCmd::Bench { images, reps } => bench(&images, reps)?,
        VisionCmd::Eval {
            data: data_args,
            adapter,
            model: model_args,
        } => {
            let (model, encoder) = setup(&model_args)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let (trained, config) = ex::load_adapter(&model.llama, &encoder, &adapter)?;
            let data = load_data(&data_args, &encoder, &device)?;
            let pipeline = VisionPipeline {
                backbone: &model.llama,
                codec: &model.tokenizer,
            };
            let answers = pipeline.answer(
                Some(&trained),
                &data.bank,
                &data.test,
                data_args.eval_batch,
                max_tokens(data_args.task),
            )?;
            show_examples(&answers, &data.test);
            report(data_args.task, config.name(), &answers, &data);
        }
    }
    Ok(())
}

fn bench(images: &[PathBuf], reps: usize) -> Res<()> {
    let device = burn::prelude::Device::flex();
    let mut row = glaze::vision::bench::image_to_soft_tokens(images, reps, &device)?;
    row["peak_rss_mb"] = serde_json::json!(crate::bench::peak_rss_mb());
    println!("{row}");
    Ok(())
}

/// The tables of docs/results/vision.md, between the file's markers.
fn write_tables(rows: &[serde_json::Value], path: &Path) -> Res<()> {
    crate::sweep::replace_between_markers(path, &glaze::vision::report::results_tables(rows))
}

fn max_tokens(task: TaskArg) -> usize {
    match task {
        TaskArg::Textiles => 6,
        TaskArg::Shapes => 20,
    }
}

/// `glaze ask --image FILE --adapter FILE "question"`.
pub fn ask(model: &LanguageModel, image: &Path, adapter: &Path, question: &str) -> Res<String> {
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let encoder = VisionEncoder::load_default(&device)?;
    let (trained, _) = ex::load_adapter(&model.llama, &encoder, adapter)?;
    let img = decode_file(image, &DecodeLimits::default())?;
    let pipeline = VisionPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    Ok(pipeline.ask(&trained, &encoder, img, question, 48)?)
}
