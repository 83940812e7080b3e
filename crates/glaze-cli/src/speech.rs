//! `glaze speech train|eval|transcribe`: speech recognition through the frozen LLM.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use glaze::audio::{AudioEncoder, AudioLimits, Window, decode_file, resample};
use glaze::core::{LrSchedule, TrainConfig};
use glaze::llm::LanguageModel;
use glaze::speech::experiment::{self as ex, SpeechData, SplitLimits};
use glaze::speech::{ClipBank, SpeechAdapterConfig, SpeechItem, SpeechPipeline};

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
    /// Use the spoken digits of `../shared/data/fsdd` (or `--fsdd-dir`).
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
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        encoder: EncoderArgs,
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

fn jfk_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/speech/jfk.wav")
}

/// The jfk.wav transcript (../shared/ASSETS.md).
pub const JFK_TEXT: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";

fn load_data(args: &CorpusArgs, encoder: &AudioEncoder, device: &burn::prelude::Device) -> Res<SpeechData> {
    let [train, val, test] = args.limits[..] else {
        return Err("--limits takes three numbers: train,val,test".into());
    };
    let limits = SplitLimits { train, val, test };
    let cache = glaze::speech::open_cache(&glaze::core::cache_dir().join("features"), encoder)?;
    let mut data = SpeechData::default();
    let start = Instant::now();
    if args.fsdd {
        let dir = args
            .fsdd_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fsdd"));
        let utts = glaze::speech::fsdd(&dir)?;
        data.add_corpus("fsdd", &utts, limits, encoder, Some(&cache), device)?;
    }
    if args.synthetic {
        let utts = glaze::speech::synthetic(&glaze::speech::corpus::default_synthetic_dir())?;
        data.add_corpus("synthetic", &utts, limits, encoder, Some(&cache), device)?;
    }
    let jfk = jfk_path();
    let bank = glaze::speech::encode_files(encoder, Some(&cache), &[jfk], &AudioLimits::default(), device)?;
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

fn max_tokens(name: &str) -> usize {
    if name == "jfk" { 48 } else { 24 }
}

fn evaluate_all(model: &LanguageModel, adapter: &glaze::speech::SpeechAdapter, data: &SpeechData, batch: usize) -> Res<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, items) in &data.tests {
        let start = Instant::now();
        let (hyps, counts) = ex::evaluate(&model.llama, &model.tokenizer, adapter, &data.bank, items, batch, max_tokens(name))?;
        let secs = start.elapsed().as_secs_f64();
        println!("{name:>10}: WER {:.3} ({} errors / {} words, {} clips, {secs:.0} s)", counts.rate(), counts.errors, counts.words, items.len());
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
        SpeechCmd::Train { adapter, stride, steps, batch, lr, seed, out, results, corpus, encoder, model } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let data = load_data(&corpus, &encoder, &device)?;
            let mut config = SpeechAdapterConfig::preset(&adapter)?;
            if let Some(s) = stride {
                match &mut config {
                    SpeechAdapterConfig::FrameStack { stride, .. } | SpeechAdapterConfig::Conv { stride, .. } => *stride = s,
                }
            }
            let train = TrainConfig {
                batch_size: batch,
                lr,
                max_steps: Some(steps),
                epochs: (steps * batch).div_ceil(data.train.len().max(1)).max(1),
                schedule: LrSchedule::WarmupCosine { warmup: 0.05, min_ratio: 0.1 },
                seed,
                eval_every: Some((steps / 4).max(1)),
                checkpoint_every: 25,
                ..TrainConfig::default()
            };
            let spec = ex::RunSpec { adapter: config.clone(), train, dir: Some(out.clone()), eval_batch: corpus.eval_batch, progress: true };
            let (trained, steps_done, params, secs) = ex::train_adapter(&model.llama, &model.tokenizer, &encoder, &data, &spec)?;
            eprintln!("{}: {params} params, {steps_done} steps in {secs:.0} s", config.name());
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
        SpeechCmd::Eval { adapter, corpus, encoder, model } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let (trained, _) = ex::load_adapter(&model.llama, &encoder, &adapter)?;
            let data = load_data(&corpus, &encoder, &device)?;
            evaluate_all(&model, &trained, &data, corpus.eval_batch)?;
        }
        SpeechCmd::Transcribe { adapter, files, encoder, model } => {
            let model = crate::load(&model)?;
            let device = glaze::FrozenBackbone::device(&model.llama).clone();
            let encoder = encoder.load(&device)?;
            let (trained, _) = ex::load_adapter(&model.llama, &encoder, &adapter)?;
            for file in &files {
                println!("{}: {}", file.display(), transcribe(&model, &encoder, &trained, file)?);
            }
        }
    }
    Ok(())
}

/// One file through the encoder, the adapter and the frozen LLM.
pub fn transcribe(model: &LanguageModel, encoder: &AudioEncoder, adapter: &glaze::speech::SpeechAdapter, file: &Path) -> Res<String> {
    let device = glaze::FrozenBackbone::device(&model.llama).clone();
    let audio = resample(&decode_file(file, &AudioLimits::default())?, glaze::audio::WHISPER_RATE)?;
    let feats = encoder.encode_clip(&audio, &device)?;
    let f = feats.dims()[2];
    let bank = ClipBank { f, rows: vec![feats.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?] };
    let pipeline = SpeechPipeline { backbone: &model.llama, codec: &model.tokenizer };
    let text = pipeline.transcribe(adapter, &bank, &[0], 1, 64)?;
    Ok(text.into_iter().next().unwrap_or_default())
}
