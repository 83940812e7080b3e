//! The arguments of `glaze speech …`, and the encoder and corpora they name.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use glaze::audio::{AudioEncoder, Window};
use glaze::speech::evaluation::Corpora;

use crate::ModelArgs;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The frozen audio encoder.
#[derive(Args, Clone)]
pub struct EncoderArgs {
    /// Whisper encoder: `tiny` (tiny.en, default), `base`, a CTranslate2 `model.bin`, or an HF
    /// Whisper safetensors directory.
    #[arg(long, default_value = "tiny")]
    pub(crate) encoder: String,
    /// `trim` (only the clip's frames) or `full` (zero-filled 30 s window, as Whisper trained).
    #[arg(long, default_value = "trim")]
    pub(crate) window: String,
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
    pub(crate) fsdd: bool,
    /// FSDD folder (holding `recordings/`).
    #[arg(long)]
    pub(crate) fsdd_dir: Option<PathBuf>,
    /// Use the espeak-ng corpus of `cargo xtask speech-data`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) synthetic: bool,
    /// Train, validation and test clips per corpus.
    #[arg(long, value_delimiter = ',', default_value = "100000,40,150")]
    pub(crate) limits: Vec<usize>,
    /// Clips per validation / transcription batch.
    #[arg(long, default_value_t = 16)]
    pub(crate) eval_batch: usize,
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

impl CorpusArgs {
    pub(crate) fn corpora(&self) -> Res<Corpora> {
        Ok(Corpora {
            fsdd: match (&self.fsdd_dir, self.fsdd) {
                (_, false) => None,
                (Some(dir), true) => Some(dir.clone()),
                (None, true) => Some(crate::shared_data("fsdd")?),
            },
            synthetic: self
                .synthetic
                .then(glaze::speech::corpus::default_synthetic_dir),
            jfk: crate::shared_data("speech/jfk.wav")?,
        })
    }
}
