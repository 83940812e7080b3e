//! `glaze speech train|eval|transcribe`: speech recognition through the frozen LLM.

use std::path::{Path, PathBuf};
use std::time::Instant;

use glaze::audio::{AudioEncoder, Window};
use glaze::llm::LanguageModel;
use glaze::speech::evaluation::{evaluate_sets, scores_json};
use glaze::speech::experiment::{self as ex, SpeechData, SplitLimits};
use glaze::speech::{SpeechAdapterConfig, SpeechPipeline};
use glaze::train::TrainConfig;

use crate::ModelArgs;
pub use crate::speech_args::{CorpusArgs, EncoderArgs, SpeechCmd};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn load_data(
    args: &CorpusArgs,
    encoder: &AudioEncoder,
    device: &burn::prelude::Device,
) -> Res<SpeechData> {
    let [train, val, test] = args.limits[..] else {
        return Err("--limits takes three numbers: train,val,test".into());
    };
    let cache = glaze::speech::open_cache(&glaze::core::cache_dir().join("features"), encoder)?;
    let start = Instant::now();
    let limits = SplitLimits { train, val, test };
    let data = args.corpora()?.load(limits, encoder, &cache, device)?;
    eprintln!(
        "features: {} clips ({} train, {} val) in {:.0} s (cache hits {}, misses {})",
        data.bank.len(),
        data.train.len(),
        data.val.len(),
        start.elapsed().as_secs_f64(),
        cache.hits(),
        cache.misses()
    );
    Ok(data)
}

/// Prints every test set's WER and returns the scores as a results row stores them.
fn evaluate_all(
    model: &LanguageModel,
    adapter: &glaze::speech::SpeechAdapter,
    data: &SpeechData,
    batch: usize,
) -> Res<serde_json::Value> {
    let scores = evaluate_sets(&model.llama, &model.tokenizer, adapter, data, batch)?;
    for line in scores.iter().flat_map(|s| s.lines()) {
        println!("{line}");
    }
    Ok(scores_json(&scores))
}

pub fn run(cmd: SpeechCmd) -> Res<()> {
    match cmd {
        SpeechCmd::Train {
            adapter,
            stride,
            steps,
            batch,
            lr,
            seed,
            out,
            results,
            gradient_checkpointing,
            corpus,
            encoder,
            model,
        } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let data = load_data(&corpus, &encoder, &device)?;
            let mut config = SpeechAdapterConfig::preset(&adapter)?;
            if let Some(s) = stride {
                match &mut config {
                    SpeechAdapterConfig::FrameStack { stride, .. }
                    | SpeechAdapterConfig::Conv { stride, .. } => *stride = s,
                }
            }
            let mut train =
                TrainConfig::step_budget(steps, batch, lr, seed, data.train.len(), 0.05, 4);
            train.gradient_checkpointing = gradient_checkpointing;
            let spec = ex::RunSpec {
                adapter: config.clone(),
                train,
                dir: Some(out.clone()),
                eval_batch: corpus.eval_batch,
                progress: true,
            };
            let (trained, steps_done, params, secs) =
                ex::train_adapter(&model.llama, &model.tokenizer, &encoder, &data, &spec)?;
            eprintln!(
                "{}: {params} params, {steps_done} steps in {secs:.0} s",
                config.name()
            );
            let scores = evaluate_all(&model, &trained, &data, corpus.eval_batch)?;
            let row = serde_json::json!({
                "adapter": config.name(), "config": config, "encoder": glaze::core::Encoder::spec(&encoder).name,
                "seed": seed, "steps": steps_done, "batch": batch, "lr": lr, "params": params,
                "train_clips": data.train.len(), "train_secs": secs, "scores": scores,
            });
            std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&row)?)?;
            if let Some(path) = results {
                crate::sweep::append_json_line(&path, &row)?;
            }
        }
        SpeechCmd::Eval {
            adapter,
            trained_window,
            results,
            label,
            corpus,
            encoder,
            model,
        } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let check = match &trained_window {
                Some(w) => encoder.clone().with_window(w.parse::<Window>()?),
                None => encoder.clone(),
            };
            let (trained, config) = ex::load_adapter(&model.llama, &check, &adapter)?;
            let data = load_data(&corpus, &encoder, &device)?;
            let scores = evaluate_all(&model, &trained, &data, corpus.eval_batch)?;
            if let Some(path) = results {
                let row = serde_json::json!({
                    "adapter": label, "config": config,
                    "encoder": glaze::core::Encoder::spec(&encoder).name,
                    "trained_on": glaze::core::Encoder::spec(&check).name, "scores": scores,
                });
                crate::sweep::append_json_line(&path, &row)?;
            }
        }
        SpeechCmd::Report { results, markdown } => report(&results, &markdown)?,
        SpeechCmd::ListTests { out, corpus } => {
            let test = corpus.limits.get(2).copied().unwrap_or(0);
            let mut text = String::new();
            for (set, utts) in corpus.corpora()?.test_sets(test)? {
                for u in utts {
                    let path = u.path.canonicalize().unwrap_or(u.path);
                    text.push_str(
                        &serde_json::json!({"set": set, "path": path, "ref": u.text}).to_string(),
                    );
                    text.push('\n');
                }
            }
            std::fs::write(&out, text)?;
        }
        SpeechCmd::Wer {
            file,
            results,
            label,
        } => {
            let scores = glaze::speech::evaluation::wer_of_lines(&file)?;
            println!("{scores}");
            if let Some(path) = results {
                crate::sweep::append_json_line(
                    &path,
                    &serde_json::json!({"adapter": label, "scores": scores}),
                )?;
            }
        }
        SpeechCmd::Bench { files, reps, model } => bench(&files, reps, &model)?,
        SpeechCmd::Transcribe {
            adapter,
            files,
            encoder,
            model,
        } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let (trained, _) = ex::load_adapter(&model.llama, &encoder, &adapter)?;
            for file in &files {
                println!(
                    "{}: {}",
                    file.display(),
                    transcribe(&model, &encoder, &trained, file)?
                );
            }
        }
    }
    Ok(())
}

/// One file through the encoder, the adapter and the frozen LLM.
pub fn transcribe(
    model: &LanguageModel,
    encoder: &AudioEncoder,
    adapter: &glaze::speech::SpeechAdapter,
    file: &Path,
) -> Res<String> {
    Ok(pipeline(model).transcribe_file(adapter, encoder, file, 64)?)
}

fn pipeline(model: &LanguageModel) -> SpeechPipeline<'_> {
    SpeechPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    }
}

fn bench(files: &[PathBuf], reps: usize, model_args: &ModelArgs) -> Res<()> {
    let device = burn::prelude::Device::flex();
    let tiny = AudioEncoder::load_default(&device)?;
    for mut row in glaze::speech::bench::encoder_speed(&tiny, files, reps, &device)? {
        row["peak_rss_mb"] = serde_json::json!(crate::bench::peak_rss_mb());
        println!("{row}");
    }
    let model = crate::load(model_args)?;
    let row = glaze::speech::bench::first_token_latency(
        &model.llama,
        &model.tokenizer,
        &tiny,
        files,
        reps,
    )?;
    println!("{row}");
    Ok(())
}

/// The WER table of docs/results/speech.md, between the file's markers.
fn report(results: &Path, markdown: &Path) -> Res<()> {
    let table = glaze::speech::report::wer_table(&std::fs::read_to_string(results)?)?;
    crate::sweep::replace_between_markers(markdown, &table)
}

/// `glaze ask --audio FILE --adapter FILE "question"` with a speech adapter (Whisper tiny.en,
/// the window the adapter was trained on).
pub fn ask(model: &LanguageModel, file: &Path, adapter: &Path, question: &str) -> Res<String> {
    let (trained, encoder) = ex::load_with_default_encoder(&model.llama, adapter)?;
    Ok(pipeline(model).ask_file(&trained, &encoder, file, question, 64)?)
}
