//! Text generation over any [`FrozenBackbone`]: greedy, temperature, top-k/top-p sampling with
//! a seed, stop tokens, and batches of prompts (left-padded, one shared KV cache).

use std::time::Instant;

use crate::error::{Error, Result};
use crate::{ForwardOptions, FrozenBackbone, KvCache, Prompt, TextCodec, embed_batch};
use burn::prelude::*;

/// Settings of a generation.
#[derive(Config, Debug)]
pub struct GenerationConfig {
    /// Maximum number of new tokens. Default: 64.
    #[config(default = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy. Default: 0.
    #[config(default = 0.0)]
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (0 = off). Default: 0.
    #[config(default = 0)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (1 = off). Default: 1.
    #[config(default = 1.0)]
    pub top_p: f64,
    /// Seed of the sampler. Default: 0.
    #[config(default = 0)]
    pub seed: u64,
    /// Suppress the stop ids (their logits set to -inf) until this many tokens were produced,
    /// as HF `min_new_tokens` does. Default: 0.
    #[config(default = 0)]
    pub min_new_tokens: usize,
    /// Stop at the codec's stop ids (EOS, end of turn). Default: true.
    #[config(default = true)]
    pub stop_at_eos: bool,
    /// The prompt goes through the backbone in pieces of at most this many positions, each
    /// attending to the cache of the pieces before (llama.cpp's micro-batches): the
    /// activations held at once no longer grow with the prompt. `Some(0)`: the whole prompt
    /// at once. Default: `None`, the backbone's choice ([`FrozenBackbone::prefill_chunk`]).
    #[config(default = "None")]
    pub prefill_chunk: Option<usize>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was produced (it is not part of the output).
    Stop,
    /// `max_new_tokens` were produced.
    Length,
    /// The text callback of [`generate_until`] asked to stop.
    Cancelled,
}

/// The result of generating from one prompt.
#[derive(Debug, Clone)]
pub struct Generation {
    /// New token ids (without the stop token).
    pub ids: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Positions in the prompt (text and soft tokens).
    pub prompt_len: usize,
    /// Why it ended.
    pub finish: FinishReason,
    /// Seconds spent on the prompt (prefill).
    pub prefill_secs: f64,
    /// Seconds spent decoding new tokens.
    pub decode_secs: f64,
}

pub use crate::rng::SplitMix64;

/// Picks the next token from one row of logits.
pub fn sample(logits: &[f32], config: &GenerationConfig, rng: &mut SplitMix64) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0 as u32
    };
    if config.temperature <= 0.0 {
        return argmax();
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if config.top_k > 0 {
        idx.truncate(config.top_k);
    }
    let max = logits[idx[0]] as f64;
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / config.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if config.top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                acc += p;
                acc >= config.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        idx.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut u = rng.next_f64();
    for (p, &i) in probs.iter().zip(&idx) {
        if u < *p {
            return i as u32;
        }
        u -= p;
    }
    idx[probs.len() - 1] as u32
}

/// The token after `step` tokens were produced: stop ids suppressed while fewer than
/// `min_new_tokens` were, then [`sample`].
pub(crate) fn next_token(
    logits: &mut [f32],
    step: usize,
    config: &GenerationConfig,
    stop_ids: &[u32],
    rng: &mut SplitMix64,
) -> u32 {
    if step < config.min_new_tokens {
        for &stop in stop_ids {
            if let Some(l) = logits.get_mut(stop as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    sample(logits, config, rng)
}

/// Generates from one prompt; `on_text` receives each new piece of text as it is decoded.
pub fn generate(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompt: &Prompt,
    config: &GenerationConfig,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    generate_until(backbone, codec, prompt, config, |t| {
        on_text(t);
        true
    })
}

/// [`generate`] whose callback can end the generation: when `on_text` returns `false` no
/// further token is decoded and the finish reason is [`FinishReason::Cancelled`] (a server
/// whose client went away, a stop string found in the text).
pub fn generate_until(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompt: &Prompt,
    config: &GenerationConfig,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Generation> {
    let mut out = generate_inner(
        backbone,
        codec,
        std::slice::from_ref(prompt),
        config,
        &mut on_text,
    )?;
    Ok(out.remove(0))
}

/// Generates from several prompts at once (left-padded batch, one KV cache).
pub fn generate_batch(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompts: &[Prompt],
    config: &GenerationConfig,
) -> Result<Vec<Generation>> {
    generate_inner(backbone, codec, prompts, config, &mut |_| true)
}

pub(crate) fn last_logits(backbone: &dyn FrozenBackbone, hidden: Tensor<3>) -> (Vec<f32>, usize) {
    let [b, t, d] = hidden.dims();
    let last = hidden.slice(s![.., t - 1..t, ..]).reshape([b, 1, d]);
    let logits = backbone.generation_head(last);
    let v = logits.dims()[2];
    let data = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("invariant: float logits convert to f32");
    (data, v)
}

fn generate_inner(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompts: &[Prompt],
    config: &GenerationConfig,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<Generation>> {
    let batch = embed_batch(backbone, codec, prompts)?;
    let b = prompts.len();
    let max = backbone.spec().context_length;
    let prompt_t = batch.embeds.dims()[1];
    let budget = config.max_new_tokens.min(max.saturating_sub(prompt_t));
    let padded = batch.lengths.iter().any(|&l| l != prompt_t);
    let mut cache = backbone.new_cache();
    cache.reserve(prompt_t + budget);
    let start = Instant::now();
    let mask = padded.then_some(batch.mask);
    let hidden = prefill(backbone, batch.embeds, mask, &mut cache, config)?;
    let (logits, v) = last_logits(backbone, hidden);
    let prefill_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (ids, done) = decode_loop(
        backbone, codec, &mut cache, logits, v, b, budget, config, on_text,
    )?;
    let decode_secs = start.elapsed().as_secs_f64();
    ids.into_iter()
        .zip(done)
        .zip(batch.lengths)
        .map(|((ids, done), prompt_len)| {
            Ok(Generation {
                text: codec.decode(&ids, false)?,
                ids,
                prompt_len,
                finish: done.unwrap_or(FinishReason::Length),
                prefill_secs,
                decode_secs,
            })
        })
        .collect()
}

/// The prompt positions per prefill piece: the config's, else the backbone's choice; `None`:
/// the whole prompt at once.
pub(crate) fn prefill_piece(
    backbone: &dyn FrozenBackbone,
    config: &GenerationConfig,
) -> Option<usize> {
    match config.prefill_chunk.or_else(|| backbone.prefill_chunk()) {
        None | Some(0) => None,
        Some(c) => Some(c),
    }
}

/// Runs `embeds [B, T, D]` (T ≥ 1; `mask [B, T]` when rows are padded) through `cache` in
/// pieces of [`prefill_piece`] positions, each attending to the cache of those before, and
/// returns the last piece's hidden states.
pub(crate) fn prefill(
    backbone: &dyn FrozenBackbone,
    embeds: Tensor<3>,
    mask: Option<Tensor<2, Bool>>,
    cache: &mut KvCache,
    config: &GenerationConfig,
) -> Result<Tensor<3>> {
    let t = embeds.dims()[1];
    let chunk = prefill_piece(backbone, config).unwrap_or(t).max(1);
    let mut hidden = None;
    for c0 in (0..t).step_by(chunk) {
        let c1 = (c0 + chunk).min(t);
        let (piece, piece_mask) = if c1 - c0 == t {
            (embeds.clone(), mask.clone())
        } else {
            (
                embeds.clone().slice(s![.., c0..c1, ..]),
                mask.clone().map(|m| m.slice(s![.., c0..c1])),
            )
        };
        hidden = Some(backbone.forward(
            piece,
            ForwardOptions {
                mask: piece_mask,
                cache: Some(&mut *cache),
                approximate: true,
                ..Default::default()
            },
        ));
    }
    hidden.ok_or(Error::EmptyPrompt)
}

/// New ids per row, and why each row stopped (`None`: the budget ran out).
type Decoded = (Vec<Vec<u32>>, Vec<Option<FinishReason>>);

/// Greedy/sampled decoding from logits `[b, v]` of the last prompt position, feeding each new
/// token through the cache. Returns the new ids per row and why each row stopped. A single row
/// streams its text to `on_text`, which ends the generation by returning `false`.
#[allow(clippy::too_many_arguments)]
fn decode_loop(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    cache: &mut KvCache,
    mut logits: Vec<f32>,
    v: usize,
    b: usize,
    budget: usize,
    config: &GenerationConfig,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Decoded> {
    let mut rng = SplitMix64::new(config.seed);
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done: Vec<Option<FinishReason>> = vec![None; b];
    let mut emitted = 0usize;
    for step in 0..budget {
        let mut next = Vec::with_capacity(b);
        for r in 0..b {
            let id = if done[r].is_some() {
                codec.pad_id()
            } else {
                let row = &mut logits[r * v..(r + 1) * v];
                let id = next_token(row, step, config, codec.stop_ids(), &mut rng);
                if config.stop_at_eos && codec.stop_ids().contains(&id) {
                    done[r] = Some(FinishReason::Stop);
                } else {
                    ids[r].push(id);
                }
                id
            };
            next.push(id as i64);
        }
        if b == 1 && done[0].is_none() {
            // Stream text once it no longer ends inside a multi-byte character.
            let text = codec.decode(&ids[0], false)?;
            if !text.ends_with('\u{FFFD}') && text.len() > emitted {
                let go_on = on_text(&text[emitted..]);
                emitted = text.len();
                if !go_on {
                    done[0] = Some(FinishReason::Cancelled);
                }
            }
        }
        if done.iter().all(Option::is_some) || step + 1 == budget {
            break;
        }
        let t = Tensor::<2, Int>::from_data(TensorData::new(next, [b, 1]), backbone.device());
        let hidden = backbone.forward(backbone.embed(t), ForwardOptions::generating(cache));
        logits = last_logits(backbone, hidden).0;
    }
    Ok((ids, done))
}

/// Continues a single prompt whose beginning is already in `cache`: prefills `tail` (embeddings
/// `[1, T, D]`, T ≥ 1) through the cache, then decodes. Used by streaming, where most of the
/// prompt was prefilled while the input was still arriving; `prefill_secs` covers only the tail.
pub fn generate_cached(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    cache: &mut KvCache,
    tail: Tensor<3>,
    config: &GenerationConfig,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let mut on_text = |t: &str| {
        on_text(t);
        true
    };
    let [b, t, _] = tail.dims();
    if b != 1 || t == 0 {
        return Err(Error::InvalidConfig {
            field: "tail",
            problem: format!("one row of at least one position, got [{b}, {t}]"),
        });
    }
    let max = backbone.spec().context_length;
    let prompt_len = cache.len() + t;
    if prompt_len > max {
        return Err(Error::ContextOverflow {
            len: prompt_len,
            max,
        });
    }
    let budget = config.max_new_tokens.min(max - prompt_len);
    // The buffers grow once (at the tail's append) to hold the whole generation.
    cache.reserve(cache.reserved().max(prompt_len + budget));
    let start = Instant::now();
    let hidden = backbone.forward(tail, ForwardOptions::generating(cache));
    let (logits, v) = last_logits(backbone, hidden);
    let prefill_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (mut ids, mut done) = decode_loop(
        backbone,
        codec,
        cache,
        logits,
        v,
        1,
        budget,
        config,
        &mut on_text,
    )?;
    let ids = ids.remove(0);
    Ok(Generation {
        text: codec.decode(&ids, false)?,
        ids,
        prompt_len,
        finish: done.remove(0).unwrap_or(FinishReason::Length),
        prefill_secs,
        decode_secs: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_filters() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut rng = SplitMix64::new(1);
        assert_eq!(sample(&logits, &GenerationConfig::new(), &mut rng), 1);
        // top-k 1 is greedy whatever the temperature.
        let k1 = GenerationConfig::new().with_temperature(5.0).with_top_k(1);
        assert!((0..50).all(|_| sample(&logits, &k1, &mut rng) == 1));
        // top-k 2 only ever picks the two best.
        let k2 = GenerationConfig::new().with_temperature(1.0).with_top_k(2);
        let picks: Vec<u32> = (0..200).map(|_| sample(&logits, &k2, &mut rng)).collect();
        assert!(picks.iter().all(|&p| p == 1 || p == 3));
        assert!(picks.contains(&1) && picks.contains(&3));
        // A tiny top-p keeps only the most likely token.
        let p = GenerationConfig::new()
            .with_temperature(1.0)
            .with_top_p(0.1);
        assert!((0..50).all(|_| sample(&logits, &p, &mut rng) == 1));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p(1) = e^1 / (e^0 + e^1) ≈ 0.731 at temperature 1.
        let logits = [0.0f32, 1.0];
        let config = GenerationConfig::new().with_temperature(1.0);
        let mut rng = SplitMix64::new(7);
        let ones = (0..4000)
            .filter(|_| sample(&logits, &config, &mut rng) == 1)
            .count();
        let freq = ones as f64 / 4000.0;
        assert!((freq - 0.731).abs() < 0.03, "frequency {freq}");
    }
}
