//! `glaze bench`: prefill and decode speed of the backbone, as JSON for `cargo xtask bench`.

use std::time::Instant;

use burn::prelude::*;
use clap::Args;
use glaze::llm::{Activations, GenerationConfig, generate, generate_batch};
use glaze::{FrozenBackbone, Prompt, SoftTokens, TextCodec};

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
    /// Sequences decoded together (left-padded batch, one KV cache); throughput is reported
    /// over all of them.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Keep activations in f32 in the quantized kernels (the exact path) instead of 8 bits.
    #[arg(long)]
    exact: bool,
    /// Give the first half of the prompt as soft tokens (its embeddings) instead of ids.
    #[arg(long)]
    half_soft: bool,
    /// Prompt positions per prefill piece (0: the whole prompt at once; default: the
    /// backbone's choice).
    #[arg(long)]
    prefill_chunk: Option<usize>,
    #[command(flatten)]
    model: super::ModelArgs,
}

pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut model = super::load(&args.model)?;
    if args.exact {
        model.llama.set_generation_activations(Activations::F32);
    }
    let seed_text = "The history of the river valley begins with small farming villages, \
        whose people traded grain, pottery and tools along the water. ";
    let mut ids = Vec::new();
    while ids.len() < args.prompt_tokens + args.batch {
        ids.extend(model.tokenizer.encode(seed_text)?);
    }
    // Row r starts r tokens into the text: same length, different prompts.
    let prompts: Vec<Prompt> = (0..args.batch.max(1))
        .map(|r| {
            let row = ids[r..r + args.prompt_tokens].to_vec();
            if !args.half_soft {
                return Prompt::new().ids(row);
            }
            let half = row.len() / 2;
            let head = Tensor::<2, Int>::from_data(
                TensorData::new(
                    row[..half]
                        .iter()
                        .map(|&i| i64::from(i))
                        .collect::<Vec<_>>(),
                    [1, half],
                ),
                model.llama.device(),
            );
            let embeds = model
                .llama
                .embed(head)
                .reshape([half, model.llama.spec().d_model]);
            Prompt::new()
                .soft(SoftTokens::new(embeds))
                .ids(row[half..].to_vec())
        })
        .collect();
    let config = GenerationConfig::new()
        .with_max_new_tokens(args.decode_tokens)
        .with_min_new_tokens(args.decode_tokens)
        .with_prefill_chunk(args.prefill_chunk);
    let (mut best_prefill, mut best_decode) = (0f64, 0f64);
    let start = Instant::now();
    for _ in 0..args.reps.max(1) {
        let outs = if prompts.len() == 1 {
            vec![generate(
                &model.llama,
                &model.tokenizer,
                &prompts[0],
                &config,
                |_| {},
            )?]
        } else {
            generate_batch(&model.llama, &model.tokenizer, &prompts, &config)?
        };
        let out = &outs[0];
        let rows = outs.len() as f64;
        best_prefill = best_prefill.max(rows * args.prompt_tokens as f64 / out.prefill_secs);
        // The first new token comes from the prefill's logits.
        let decoded: usize = outs.iter().map(|o| o.ids.len() - 1).sum();
        best_decode = best_decode.max(decoded as f64 / out.decode_secs);
    }
    let mode = match (args.exact, args.half_soft, args.batch) {
        (true, ..) => "f32 activations (exact)".to_string(),
        (_, true, _) => "half the prompt as soft tokens".to_string(),
        (_, _, b) if b > 1 => format!("{b} sequences at once"),
        _ => "8-bit activations".to_string(),
    };
    println!(
        "{}",
        serde_json::json!({
            "engine": "glaze",
            "mode": mode,
            "batch": prompts.len(),
            "prompt_tokens": args.prompt_tokens,
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
