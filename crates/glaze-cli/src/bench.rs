//! `glaze bench`: prefill and decode speed of the backbone, as JSON for `cargo xtask bench`.

use std::time::Instant;

use clap::Args;
use glaze::llm::{GenerationConfig, generate};
use glaze::{Prompt, TextCodec};

/// Options of `glaze bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Prompt length in tokens for the prefill measurement.
    #[arg(long, default_value_t = 256)]
    prompt_tokens: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// Repetitions (the best is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[command(flatten)]
    model: super::ModelArgs,
}

pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let model = super::load(&args.model)?;
    let seed_text = "The history of the river valley begins with small farming villages, \
        whose people traded grain, pottery and tools along the water. ";
    let mut ids = Vec::new();
    while ids.len() < args.prompt_tokens {
        ids.extend(model.tokenizer.encode(seed_text)?);
    }
    ids.truncate(args.prompt_tokens);
    let config = GenerationConfig::new()
        .with_max_new_tokens(args.decode_tokens)
        .with_min_new_tokens(args.decode_tokens);
    let (mut best_prefill, mut best_decode) = (0f64, 0f64);
    let start = Instant::now();
    for _ in 0..args.reps.max(1) {
        let out = generate(
            &model.llama,
            &model.tokenizer,
            &Prompt::new().ids(ids.clone()),
            &config,
            |_| {},
        )?;
        best_prefill = best_prefill.max(ids.len() as f64 / out.prefill_secs);
        best_decode = best_decode.max((out.ids.len() - 1) as f64 / out.decode_secs);
    }
    println!(
        "{}",
        serde_json::json!({
            "engine": "glaze",
            "prompt_tokens": ids.len(),
            "decode_tokens": args.decode_tokens,
            "prefill_tok_s": best_prefill,
            "decode_tok_s": best_decode,
            "wall_s": start.elapsed().as_secs_f64(),
            "peak_rss_mb": peak_rss_mb(),
            "device": args.model.device,
        })
    );
    Ok(())
}

/// Peak resident set size of this process (`VmHWM`), in MiB; 0 where unavailable.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
