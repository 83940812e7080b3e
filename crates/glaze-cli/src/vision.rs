//! `glaze vision train|eval` and `glaze ask --image`.

use std::path::{Path, PathBuf};

use glaze::llm::LanguageModel;
use glaze::vision::experiment::{self as ex, VisionData, VisionTaskKind};
use glaze::vision::results;
use glaze::vision::task::VisionPipeline;
use glaze::vision::{DecodeLimits, VisionAdapterConfig, VisionEncoder, decode_file};

use crate::ModelArgs;
pub use crate::vision_args::{DataArgs, TrainArgs, VisionCmd};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

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
    let task = results::TaskData {
        kind: args.task.into(),
        dir: args.data.clone(),
        scenes: results::scene_sizes(&args.scenes)?,
        seed: args.data_seed,
        limits: ex::SplitLimits {
            train: args.train_limit,
            val: Some(args.val_limit),
            test: args.test_limit,
        },
    };
    let pb = crate::spinner("frozen image features (cached after the first run)");
    let data = results::load_task(&task, encoder, &cache, device)?;
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
    Ok(data)
}

/// Trains one adapter, prints its report and returns its results row.
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
    let kind = data_args.task.into();
    let r = results::train_row(
        &model.llama,
        &model.tokenizer,
        encoder,
        data,
        kind,
        adapter,
        args.budget(),
        data_args.eval_batch,
        seed,
        out,
    )?;
    let o = &r.outcome;
    eprintln!(
        "{}: {} params, {} soft tokens per image, {} steps in {:.0} s; test answers in {:.0} s",
        adapter.name(),
        o.params,
        o.tokens,
        o.steps,
        o.train_secs,
        o.test_secs
    );
    for line in results::examples(&o.answers, &data.test, 3) {
        eprintln!("{line}");
    }
    println!("{}", r.scores.line(adapter.name()));
    Ok(r.row)
}

fn baselines_row(
    model: &LanguageModel,
    data: &VisionData,
    args: &DataArgs,
) -> Res<serde_json::Value> {
    let kind = args.task.into();
    let b = results::baselines_row(&model.llama, &model.tokenizer, data, kind, args.eval_batch)?;
    for line in &b.examples {
        eprintln!("{line}");
    }
    for line in &b.lines {
        println!("{line}");
    }
    Ok(b.row)
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
            let adapter = VisionAdapterConfig::preset_sized(&adapter, train.pool, train.queries)?;
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
            let has = results::has_row;
            for task in tasks {
                let args = DataArgs {
                    task,
                    ..data_args.clone()
                };
                let name = VisionTaskKind::from(task).name();
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
                    let cfg = VisionAdapterConfig::preset_sized(a, train.pool, train.queries)?;
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
            let kind: VisionTaskKind = data_args.task.into();
            let answers = pipeline.answer(
                Some(&trained),
                &data.bank,
                &data.test,
                data_args.eval_batch,
                kind.max_answer_tokens(),
            )?;
            for line in results::examples(&answers, &data.test, 3) {
                eprintln!("{line}");
            }
            println!(
                "{}",
                results::Scores::of(kind, &answers, &data).line(config.name())
            );
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
