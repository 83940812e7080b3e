//! `glaze serve`: the OpenAI-compatible server of `glaze-serve`.

use std::path::PathBuf;

use clap::Args;
use glaze_serve::{AdapterSpec, Limits, ServeConfig};

/// Arguments of `glaze serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A GGUF file or a Hugging Face model directory (default: the fetched SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The model's id in requests and /v1/models (default: the file's stem).
    #[arg(long)]
    model_id: Option<String>,
    /// An adapter, NAME=FILE, where NAME says what it serves: vision (image_url parts),
    /// speech or audio (input_audio parts), forecast (a time-series checkpoint for
    /// POST /v1/forecast). Repeat for several.
    #[arg(long = "adapter")]
    adapters: Vec<AdapterSpec>,
    /// Requests may name local image files under this directory.
    #[arg(long)]
    allow_dir: Option<PathBuf>,
    /// Requests that may wait for the engine; more are refused with 429.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Requests decoded together (continuous batching); more wait in the queue.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Recent prompts whose caches are kept for prompts that begin the same way (0: off).
    #[arg(long, default_value_t = 4)]
    prefix_cache: usize,
    /// Seconds a request may take, from arrival to its last token.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Temperature of requests that set none (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// max_tokens of requests that set none.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
}

pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = ServeConfig {
        host: args.host,
        port: args.port,
        model: args.model,
        model_id: args.model_id,
        adapters: args.adapters,
        limits: Limits {
            allow_dir: args.allow_dir,
            ..Limits::default()
        },
        queue: args.queue,
        batch: args.batch.max(1),
        prefix_cache: args.prefix_cache,
        timeout_secs: args.timeout,
        temperature: args.temperature,
        max_tokens: args.max_tokens,
    };
    glaze_serve::serve(config)?;
    Ok(())
}
