//! `glaze speech train|eval|transcribe`: speech recognition through the frozen LLM.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use glaze::audio::{AudioEncoder, AudioLimits, Window};
use glaze::llm::LanguageModel;
use glaze::speech::experiment::{self as ex, SpeechData, SplitLimits};
use glaze::speech::{SpeechAdapterConfig, SpeechItem, SpeechPipeline};
use glaze::train::{LrSchedule, TrainConfig};

use crate::ModelArgs;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The frozen audio encoder.
#[derive(Args, Clone)]
pub struct EncoderArgs {
    /// Whisper encoder: `tiny` (tiny.en, default), `base`, a CTranslate2 `model.bin`, or an HF
    /// Whisper safetensors directory.
    #[arg(long, default_value = "tiny")]
    encoder: String,
    /// `trim` (only the clip's frames) or `full` (zero-filled 30 s window, as Whisper trained).
    #[arg(long, default_value = "trim")]
    window: String,
}

impl EncoderArgs {
    pub fn load(&self, device: &burn::prelude::Device) -> Res<AudioEncoder> {
        let enc = match self.encoder.as_str() {
            "tiny" => AudioEncoder::load_default(device)?,
            "base" => AudioEncoder::from_ct2(&glaze::audio::default_base_path(), device)?,
            p if Path::new(p).is_dir() => AudioEncoder::from_hf_dir(Path::new(p), device)?,
            p => AudioEncoder::from_ct2(Path::new(p), device)?,
        };
        Ok(enc.with_window(self.window.parse::<Window>()?))
    }
}

/// Which corpora and how much of them.
#[derive(Args, Clone)]
pub struct CorpusArgs {
    /// Use the spoken digits of `$GLAZE_SHARED/data/fsdd` (or `--fsdd-dir`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fsdd: bool,
    /// FSDD folder (holding `recordings/`).
    #[arg(long)]
    fsdd_dir: Option<PathBuf>,
    /// Use the espeak-ng corpus of `cargo xtask speech-data`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    synthetic: bool,
    /// Train, validation and test clips per corpus.
    #[arg(long, value_delimiter = ',', default_value = "100000,40,150")]
    limits: Vec<usize>,
    /// Clips per validation / transcription batch.
    #[arg(long, default_value_t = 16)]
    eval_batch: usize,
}

#[derive(Subcommand)]
pub enum SpeechCmd {
    /// Train a speech adapter on transcribed clips, then report WER on the test sets.
    Train {
        /// Adapter: frame-stack or conv.
        #[arg(long, default_value = "frame-stack")]
        adapter: String,
        /// Frames per token (frame-stack) or stride per convolution (conv).
        #[arg(long)]
        stride: Option<usize>,
        /// Optimizer steps.
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Batch size.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Peak learning rate (warmup + cosine).
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run directory (checkpoints resume; `adapter.safetensors` is the result).
        #[arg(long)]
        out: PathBuf,
        /// Append the results row to this JSONL file.
        #[arg(long)]
        results: Option<PathBuf>,
        /// Gradient checkpointing: recompute memory-bound activations in the backward pass.
        #[arg(long)]
        gradient_checkpointing: bool,
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        encoder: EncoderArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// WER of a trained adapter on the test sets.
    Eval {
        /// The trained adapter.
        #[arg(long)]
        adapter: PathBuf,
        /// Evaluate an adapter trained on this window's features with `--window`'s features
        /// (to measure what the window does); the checkpoint is checked against this window.
        #[arg(long)]
        trained_window: Option<String>,
        /// Append the results row to this JSONL file.
        #[arg(long)]
        results: Option<PathBuf>,
        /// Label of the results row.
        #[arg(long, default_value = "eval")]
        label: String,
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        encoder: EncoderArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Write the test clips (`{"set", "path", "ref"}` JSON lines) for a peer to transcribe.
    ListTests {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        corpus: CorpusArgs,
    },
    /// WER per set of `{"set", "ref", "hyp"}` JSON lines (a peer's transcripts), printed as JSON
    /// (and appended as a results row labelled `--label` when `--results` is given).
    Wer {
        /// The transcripts.
        file: PathBuf,
        /// Append a results row to this JSONL file.
        #[arg(long)]
        results: Option<PathBuf>,
        /// Label of the results row.
        #[arg(long, default_value = "peer")]
        label: String,
    },
    /// Write the WER table of a results JSONL file between the markers of a Markdown file.
    Report {
        /// The results rows.
        #[arg(long)]
        results: PathBuf,
        /// The Markdown file (its `<!-- sweep:begin -->` … `<!-- sweep:end -->` part).
        #[arg(long)]
        markdown: PathBuf,
    },
    /// Real-time factor of decode + log-mel + encoder (both windows), and streaming first-token
    /// latency with a frame-stacking adapter (used by `cargo xtask bench`).
    Bench {
        /// Audio files, comma-separated.
        #[arg(long, value_delimiter = ',')]
        files: Vec<PathBuf>,
        /// Timed repetitions per file (after one warm-up).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Transcribe audio files with a trained adapter.
    Transcribe {
        /// The trained adapter.
        #[arg(long)]
        adapter: PathBuf,
        /// Audio files (WAV, FLAC, MP3, Ogg), at most 30 s each.
        files: Vec<PathBuf>,
        #[command(flatten)]
        encoder: EncoderArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
}

fn jfk_path() -> Res<PathBuf> {
    Ok(crate::shared_data("speech/jfk.wav")?)
}

/// The jfk.wav transcript (../shared/ASSETS.md).
pub const JFK_TEXT: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";

fn load_data(
    args: &CorpusArgs,
    encoder: &AudioEncoder,
    device: &burn::prelude::Device,
) -> Res<SpeechData> {
    let [train, val, test] = args.limits[..] else {
        return Err("--limits takes three numbers: train,val,test".into());
    };
    let limits = SplitLimits { train, val, test };
    let cache = glaze::speech::open_cache(&glaze::core::cache_dir().join("features"), encoder)?;
    let mut data = SpeechData::default();
    let start = Instant::now();
    if args.fsdd {
        let dir = match &args.fsdd_dir {
            Some(dir) => dir.clone(),
            None => crate::shared_data("fsdd")?,
        };
        let utts = glaze::speech::fsdd(&dir)?;
        data.add_corpus("fsdd", &utts, limits, encoder, Some(&cache), device)?;
    }
    if args.synthetic {
        let utts = glaze::speech::synthetic(&glaze::speech::corpus::default_synthetic_dir())?;
        data.add_corpus("synthetic", &utts, limits, encoder, Some(&cache), device)?;
    }
    let jfk = jfk_path()?;
    let bank = glaze::speech::encode_files(
        encoder,
        Some(&cache),
        &[jfk],
        &AudioLimits::default(),
        device,
    )?;
    let clip = data.bank.extend(bank);
    data.tests.push((
        "jfk".into(),
        vec![SpeechItem {
            clip,
            text: JFK_TEXT.into(),
        }],
    ));
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

/// The utterances of each test set, as `load_data` selects them.
fn test_sets(args: &CorpusArgs) -> Res<Vec<(String, Vec<glaze::speech::Utterance>)>> {
    let test = args.limits.get(2).copied().unwrap_or(0);
    let mut sets = Vec::new();
    // The same picks as `SpeechData::add_corpus`.
    let keep = |utts: Vec<glaze::speech::Utterance>| -> Vec<glaze::speech::Utterance> {
        glaze::audio::corpus::spread(&utts, glaze::speech::Split::Test, test)
            .into_iter()
            .cloned()
            .collect()
    };
    if args.fsdd {
        let dir = match &args.fsdd_dir {
            Some(dir) => dir.clone(),
            None => crate::shared_data("fsdd")?,
        };
        sets.push(("fsdd".to_string(), keep(glaze::speech::fsdd(&dir)?)));
    }
    if args.synthetic {
        let utts = glaze::speech::synthetic(&glaze::speech::corpus::default_synthetic_dir())?;
        sets.push(("synthetic".to_string(), keep(utts)));
    }
    sets.push((
        "jfk".to_string(),
        vec![glaze::speech::Utterance {
            path: jfk_path()?,
            text: JFK_TEXT.into(),
            speaker: "jfk".into(),
            split: glaze::speech::Split::Test,
        }],
    ));
    Ok(sets)
}

fn max_tokens(name: &str) -> usize {
    if name == "jfk" { 48 } else { 24 }
}

fn evaluate_all(
    model: &LanguageModel,
    adapter: &glaze::speech::SpeechAdapter,
    data: &SpeechData,
    batch: usize,
) -> Res<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, items) in &data.tests {
        let start = Instant::now();
        let (hyps, counts) = ex::evaluate(
            &model.llama,
            &model.tokenizer,
            adapter,
            &data.bank,
            items,
            batch,
            max_tokens(name),
        )?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:>10}: WER {:.3} ({} errors / {} words, {} clips, {secs:.0} s)",
            counts.rate(),
            counts.errors,
            counts.words,
            items.len()
        );
        for (item, hyp) in items.iter().zip(&hyps).take(3) {
            println!("            \"{}\" → \"{hyp}\"", item.text);
        }
        out.insert(name.clone(), serde_json::json!({
            "wer": counts.rate(), "errors": counts.errors, "words": counts.words,
            "clips": items.len(), "secs": secs,
            "examples": items.iter().zip(&hyps).take(3).map(|(i, h)| serde_json::json!([i.text, h])).collect::<Vec<_>>(),
        }));
    }
    Ok(serde_json::Value::Object(out))
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
            let mut train = crate::speech::step_budget(steps, batch, lr, seed, data.train.len());
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
            let mut text = String::new();
            for (set, utts) in test_sets(&corpus)? {
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
            let text = std::fs::read_to_string(&file)?;
            let mut sets: std::collections::BTreeMap<String, glaze::speech::WerCount> =
                Default::default();
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| format!("{}: line {}: {e}", file.display(), n + 1))?;
                let field = |k: &str| {
                    v[k].as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{}: line {}: no `{k}`", file.display(), n + 1))
                };
                let (set, r, h) = (field("set")?, field("ref")?, field("hyp")?);
                let c = glaze::speech::wer([(r.as_str(), h.as_str())]);
                let e = sets.entry(set).or_default();
                e.errors += c.errors;
                e.words += c.words;
            }
            let out: serde_json::Map<String, serde_json::Value> = sets
                .into_iter()
                .map(|(k, c)| {
                    (
                        k,
                        serde_json::json!({"wer": c.rate(), "errors": c.errors, "words": c.words}),
                    )
                })
                .collect();
            let scores = serde_json::Value::Object(out);
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
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let bank = glaze::audio::encode_files(
        encoder,
        None,
        &[file.to_path_buf()],
        &AudioLimits::default(),
        &device,
    )?;
    let pipeline = SpeechPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    let text = pipeline.transcribe(adapter, &bank, &[0], 1, 64)?;
    Ok(text.into_iter().next().unwrap_or_default())
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
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let ck = glaze::train::Checkpoint::load(adapter)?;
    let window = ck
        .identity
        .encoder
        .as_ref()
        .and_then(Window::of_spec)
        .unwrap_or_default();
    let encoder = AudioEncoder::load_default(&device)?.with_window(window);
    let (trained, _) = ex::load_adapter(&model.llama, &encoder, adapter)?;
    let bank = glaze::audio::encode_files(
        &encoder,
        None,
        &[file.to_path_buf()],
        &AudioLimits::default(),
        &device,
    )?;
    let pipeline = SpeechPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    Ok(pipeline.ask(&trained, &bank, 0, question, 64)?)
}

/// The training settings of `glaze speech train` and `glaze audio train`: `steps` AdamW steps of
/// `batch`, warmup 5 % + cosine to 10 % of `lr`, four validations, a checkpoint every 25 steps.
pub fn step_budget(steps: usize, batch: usize, lr: f64, seed: u64, n_train: usize) -> TrainConfig {
    TrainConfig {
        batch_size: batch,
        lr,
        max_steps: Some(steps),
        epochs: (steps * batch).div_ceil(n_train.max(1)).max(1),
        schedule: LrSchedule::WarmupCosine {
            warmup: 0.05,
            min_ratio: 0.1,
        },
        seed,
        eval_every: Some((steps / 4).max(1)),
        checkpoint_every: 25,
        ..TrainConfig::default()
    }
}
