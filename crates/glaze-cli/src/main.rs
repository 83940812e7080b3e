//! `glaze`: generate, chat and prompt-tune with a frozen LLM from the command line.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

mod audio;
mod bench;
mod serve;
mod speech;
mod speech_args;
mod sweep;
mod text;
mod timeseries;
mod timeseries_args;
mod vision;
mod vision_args;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use glaze::core::DeviceChoice;
use glaze::llm::{GenerationConfig, LanguageModel};
use glaze::train::Modality;
use indicatif::ProgressBar;

#[derive(Parser)]
#[command(name = "glaze", version, about = "Modality plugins for frozen LLMs")]
struct Cli {
    /// Show the libraries' log: `-v` progress and decisions, `-vv` details. `RUST_LOG`
    /// (e.g. `RUST_LOG=glaze_llm=debug`) overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

/// A file or folder of the project's shared data, `$GLAZE_SHARED/data/<rel>` (`cargo xtask`
/// sets `GLAZE_SHARED` to the `shared` folder beside the repository); no data path is compiled
/// into the binary.
fn shared_data(rel: &str) -> Result<PathBuf, String> {
    match std::env::var_os("GLAZE_SHARED").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("data").join(rel)),
        None => Err(format!(
            "data/{rel} is read from the shared data folder: set GLAZE_SHARED to it \
             (the `shared` folder beside the repository) or pass the path explicitly"
        )),
    }
}

/// Installs the `tracing` subscriber that prints the libraries' messages to stderr: warnings
/// by default, more with `-v`, or whatever `RUST_LOG` asks for.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A second installation (there is none in this binary) would be the only failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A GGUF file or a Hugging Face model directory (default: the fetched SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device: flex (CPU), wgpu, wgpu:cpu, cuda, cuda:N.
    #[arg(long, default_value = "flex")]
    device: String,
}

#[derive(Args, Clone)]
struct SampleArgs {
    /// Maximum new tokens.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Top-k filter (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Top-p (nucleus) filter (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SampleArgs {
    fn config(&self) -> GenerationConfig {
        GenerationConfig::new()
            .with_max_new_tokens(self.max_tokens)
            .with_temperature(self.temperature)
            .with_top_k(self.top_k)
            .with_top_p(self.top_p)
            .with_seed(self.seed)
    }
}

// Parsed once per process; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Continue a prompt, streaming tokens, and print tokens/s.
    Generate {
        /// The prompt text (used as is, no chat template).
        #[arg(long)]
        prompt: String,
        /// Wrap the prompt in the model's chat template as a user turn.
        #[arg(long)]
        chat: bool,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Chat: reads user turns from stdin (one per line), answers with the chat template.
    Chat {
        /// Optional system prompt.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Train a soft prompt so the frozen model answers a question with a chosen sentence;
    /// prints the answer before and after.
    PromptTune {
        /// The user question.
        #[arg(long)]
        question: String,
        /// The answer to teach.
        #[arg(long)]
        target: String,
        /// Number of soft-prompt vectors.
        #[arg(long, default_value_t = 8)]
        tokens: usize,
        /// Maximum optimizer steps.
        #[arg(long, default_value_t = 150)]
        steps: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 0.05)]
        lr: f64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Time-series forecasting through the frozen LLM (Time-LLM, GPT4TS-style, baselines).
    #[command(subcommand)]
    Timeseries(timeseries::TsCmd),
    /// Images through the frozen LLM: train and evaluate vision adapters.
    #[command(subcommand)]
    Vision(vision::VisionCmd),
    /// General audio through the frozen LLM: train and evaluate APT aligners.
    #[command(subcommand)]
    Audio(audio::AudioCmd),
    /// Speech through the frozen LLM: train, evaluate and use speech recognition adapters.
    #[command(subcommand)]
    Speech(speech::SpeechCmd),
    /// Ask the frozen LLM about an image (vision adapter) or an audio clip (speech adapter).
    Ask {
        /// The image file.
        #[arg(long, conflicts_with = "audio", required_unless_present = "audio")]
        image: Option<PathBuf>,
        /// The audio file (WAV, FLAC, MP3, Ogg; at most 30 s).
        #[arg(long)]
        audio: Option<PathBuf>,
        /// The trained adapter (`adapter.safetensors` of `glaze vision train` or
        /// `glaze speech train`).
        #[arg(long)]
        adapter: PathBuf,
        /// The question.
        question: String,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Measure prefill and decode speed (used by `cargo xtask bench`).
    Bench(bench::BenchArgs),
    /// Serve the model and adapters over HTTP (OpenAI's chat API with image and audio parts).
    Serve(serve::ServeArgs),
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn load(args: &ModelArgs) -> Result<LanguageModel, Box<dyn std::error::Error>> {
    let choice: DeviceChoice = args.device.parse()?;
    let device = choice.device()?;
    let pb = spinner("loading model");
    let start = Instant::now();
    let model = match &args.model {
        Some(path) => LanguageModel::load(path, &device)?,
        None => LanguageModel::load_default(&device)?,
    };
    pb.finish_and_clear();
    let spec = glaze::FrozenBackbone::spec(&model.llama);
    eprintln!(
        "loaded {} ({} layers, width {}) on {:?} in {:.1} s",
        spec.name,
        spec.n_layers,
        spec.d_model,
        choice,
        start.elapsed().as_secs_f64()
    );
    Ok(model)
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Cmd::Generate {
            prompt,
            chat,
            model,
            sample,
        } => text::generate(&prompt, chat, &model, &sample)?,
        Cmd::Chat {
            system,
            model,
            sample,
        } => text::chat(system, &model, &sample)?,
        Cmd::PromptTune {
            question,
            target,
            tokens,
            steps,
            lr,
            seed,
            model,
        } => text::prompt_tune(&question, &target, tokens, steps, lr, seed, &model)?,
        Cmd::Bench(args) => bench::run(args)?,
        Cmd::Serve(args) => serve::run(args)?,
        Cmd::Timeseries(cmd) => timeseries::run(cmd)?,
        Cmd::Vision(cmd) => vision::run(cmd)?,
        Cmd::Speech(cmd) => speech::run(cmd)?,
        Cmd::Audio(cmd) => audio::run(cmd)?,
        Cmd::Ask {
            image,
            audio,
            adapter,
            question,
            model,
        } => {
            let model = load(&model)?;
            let answer = match (image, audio) {
                (Some(image), _) => vision::ask(&model, &image, &adapter, &question)?,
                (None, Some(audio)) => {
                    let identity = glaze::train::Checkpoint::load(&adapter)?.identity;
                    match identity.modality() {
                        Modality::Audio => audio::ask(&model, &audio, &adapter, &question)?,
                        Modality::Speech => speech::ask(&model, &audio, &adapter, &question)?,
                        other => {
                            return Err(format!(
                                "{}: a {other} adapter ({}) cannot answer about audio",
                                adapter.display(),
                                identity.kind
                            )
                            .into());
                        }
                    }
                }
                (None, None) => return Err("give --image or --audio".into()),
            };
            println!("{answer}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glaze: error: {e}");
            ExitCode::FAILURE
        }
    }
}
