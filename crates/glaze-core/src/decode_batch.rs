//! Continuous batching: prompts join a running batch of generations and leave it as they
//! finish, so that one decode step serves every live request (a server's engine loop).
//!
//! Each prompt is prefilled alone, then its cache rows are stacked onto the batch's
//! ([`KvCache::stack`], right-aligned with masked padding); finished or cancelled rows are
//! dropped at the next step ([`KvCache::select_rows`]), freeing their keys and values.
//!
//! A [`PrefixCache`] keeps the caches of recent prompts: a prompt that begins like one of them
//! (a shared system prompt) reuses those positions and prefills only the rest. Reuse is
//! rounded down to whole prefill pieces, so the positions a prompt computes are grouped as a
//! prefill from scratch groups them, and its answer is the same either way (the tests compare
//! the texts).

use std::collections::VecDeque;
use std::time::Instant;

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::generate::{
    FinishReason, GenerationConfig, last_logits, next_token, prefill, prefill_piece,
};
use crate::{ForwardOptions, FrozenBackbone, KvCache, SplitMix64, TextCodec};

/// Identifies a generation in a [`DecodeBatch`].
pub type RowId = u64;

/// What one generation produced in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct RowEvent {
    /// Which generation.
    pub id: RowId,
    /// New text (possibly empty: a token that ends inside a multi-byte character).
    pub text: String,
    /// Set when the generation ended with this step.
    pub finish: Option<FinishReason>,
    /// Tokens produced so far (without a stop token).
    pub tokens: usize,
}

/// How a prompt was admitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// Its id.
    pub id: RowId,
    /// Positions of the prompt.
    pub prompt_len: usize,
    /// Of those, the positions taken from the prefix cache (not computed again).
    pub reused: usize,
    /// Seconds spent on the prefill.
    pub prefill_secs: f64,
    /// The first token's event.
    pub first: RowEvent,
}

struct Row {
    id: RowId,
    /// The token to feed at the next step.
    next: u32,
    ids: Vec<u32>,
    /// Bytes of text already handed out.
    emitted: usize,
    config: GenerationConfig,
    rng: SplitMix64,
    budget: usize,
    finish: Option<FinishReason>,
}

impl Row {
    /// Takes the sampled token: records it (or the stop), and returns the new text.
    fn accept(&mut self, token: u32, codec: &dyn TextCodec) -> Result<RowEvent> {
        if self.config.stop_at_eos && codec.stop_ids().contains(&token) {
            self.finish = Some(FinishReason::Stop);
        } else {
            self.ids.push(token);
            self.next = token;
            if self.ids.len() >= self.budget {
                self.finish = Some(FinishReason::Length);
            }
        }
        let text = codec.decode(&self.ids, false)?;
        // Text is handed out once it no longer ends inside a multi-byte character, and
        // whatever is left when the generation ends.
        let ready = self.finish.is_some() || !text.ends_with('\u{FFFD}');
        let new = if ready && text.len() > self.emitted {
            let new = text[self.emitted..].to_string();
            self.emitted = text.len();
            new
        } else {
            String::new()
        };
        Ok(RowEvent {
            id: self.id,
            text: new,
            finish: self.finish,
            tokens: self.ids.len(),
        })
    }
}

/// The caches of recent prompts, for prompts that begin the same way.
#[derive(Default)]
pub struct PrefixCache {
    /// Oldest first: the prompt's embedding rows (`T·D` values) and its cache after prefill.
    entries: VecDeque<(Vec<f32>, KvCache)>,
    capacity: usize,
}

impl PrefixCache {
    /// Keeps the caches of up to `capacity` prompts (0: off).
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// The cache of the stored prompt sharing the longest beginning with `rows` (`D` values
    /// per position), cut to that beginning rounded down to whole `piece`s and kept below
    /// `rows`' length (the last position is always computed: its logits start the answer).
    fn lookup(&mut self, rows: &[f32], d: usize, piece: usize) -> Option<(KvCache, usize)> {
        let t = rows.len() / d;
        let shared = |stored: &[f32]| {
            let n = (stored.len() / d).min(t.saturating_sub(1));
            let same = (0..n)
                .take_while(|&i| stored[i * d..(i + 1) * d] == rows[i * d..(i + 1) * d])
                .count();
            same / piece * piece
        };
        let (best, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (stored, _))| (i, shared(stored)))
            .max_by_key(|&(_, len)| len)?;
        if len == 0 {
            return None;
        }
        // The most recently used entry moves to the back (evicted last).
        let entry = self.entries.remove(best)?;
        let mut cache = entry.1.clone();
        self.entries.push_back(entry);
        cache.truncate(len);
        Some((cache, len))
    }

    fn insert(&mut self, rows: Vec<f32>, cache: KvCache) {
        if self.capacity == 0 {
            return;
        }
        // A stored prompt that this one extends is redundant.
        self.entries
            .retain(|(stored, _)| !(stored.len() <= rows.len() && rows.starts_with(stored)));
        self.entries.push_back((rows, cache));
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// Prompts held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A prompt waiting for its prefill.
struct Fresh {
    /// Its place among the prompts admitted together.
    index: usize,
    embeds: Tensor<3>,
    config: GenerationConfig,
    /// Its embedding rows, for the prefix cache.
    rows: Vec<f32>,
    start: Instant,
}

/// A prompt whose prefill is done.
struct NewRow {
    rows: Vec<f32>,
    cache: KvCache,
    reused: usize,
    start: Instant,
}

/// Generations decoded together, one step for all of them at a time.
pub struct DecodeBatch {
    /// The live rows' cache, in `rows` order.
    cache: KvCache,
    rows: Vec<Row>,
    /// Admitted rows and their own caches, stacked onto the batch at the next step.
    joining: Vec<(Row, KvCache)>,
    prefixes: PrefixCache,
    next_id: RowId,
}

impl DecodeBatch {
    /// An empty batch whose prefix cache keeps up to `prefix_entries` prompts (0: off).
    pub fn new(prefix_entries: usize) -> Self {
        DecodeBatch {
            cache: KvCache::default(),
            rows: Vec::new(),
            joining: Vec::new(),
            prefixes: PrefixCache::new(prefix_entries),
            next_id: 0,
        }
    }

    /// Live generations (joining ones included).
    pub fn len(&self) -> usize {
        self.rows.len() + self.joining.len()
    }

    /// Whether no generation is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prefills `embeds` (`[1, T, D]`, a prompt's input embeddings) and samples its first
    /// token; unless that ends it, the generation joins the batch at the next [`step`].
    ///
    /// # Errors
    /// [`Error::EmptyPrompt`] for T = 0, [`Error::ContextOverflow`] when the prompt leaves
    /// no room for a token, [`Error::InvalidConfig`] for a batch of several prompts.
    ///
    /// [`step`]: DecodeBatch::step
    pub fn admit(
        &mut self,
        backbone: &dyn FrozenBackbone,
        codec: &dyn TextCodec,
        embeds: Tensor<3>,
        config: &GenerationConfig,
    ) -> Result<Admitted> {
        let mut out = self.admit_many(backbone, codec, vec![(embeds, config.clone())]);
        out.remove(0)
    }

    /// [`DecodeBatch::admit`] for several prompts, one result each, in order. Prompts whose
    /// beginning is in the prefix cache continue from it one by one; the others are
    /// prefilled together, right-padded (a row's padding comes after its end, where none of
    /// its positions looks, and its positions are grouped in pieces as when alone), then
    /// split into one cache per row without the padding.
    pub fn admit_many(
        &mut self,
        backbone: &dyn FrozenBackbone,
        codec: &dyn TextCodec,
        prompts: Vec<(Tensor<3>, GenerationConfig)>,
    ) -> Vec<Result<Admitted>> {
        let mut out: Vec<Option<Result<Admitted>>> = prompts.iter().map(|_| None).collect();
        let mut fresh: Vec<Fresh> = Vec::new();
        for (i, (embeds, config)) in prompts.into_iter().enumerate() {
            let start = Instant::now();
            let [b, t, d] = embeds.dims();
            let max = backbone.spec().context_length;
            let problem = if b != 1 {
                Some(Error::InvalidConfig {
                    field: "embeds",
                    problem: format!("one prompt at a time, got {b}"),
                })
            } else if t == 0 {
                Some(Error::EmptyPrompt)
            } else if t >= max {
                Some(Error::ContextOverflow { len: t + 1, max })
            } else {
                None
            };
            if let Some(e) = problem {
                out[i] = Some(Err(e));
                continue;
            }
            // The prompt's rows on the host, for the prefix cache only (none when it is off).
            let rows: Vec<f32> = if self.prefixes.capacity > 0 {
                embeds
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("invariant: float embeddings convert to f32")
            } else {
                Vec::new()
            };
            // Without pieces a prompt is prefilled whole, so a reused beginning would be grouped
            // differently.
            let piece = prefill_piece(backbone, &config);
            match piece.and_then(|piece| self.prefixes.lookup(&rows, d, piece)) {
                Some((mut cache, reused)) => {
                    let budget = config.max_new_tokens.min(max - t);
                    cache.reserve(cache.reserved().max(t + budget));
                    let tail = embeds.slice(s![.., reused..t, ..]);
                    let done = prefill(backbone, tail, None, &mut cache, &config)
                        .map(|hidden| last_logits(backbone, hidden).0)
                        .and_then(|logits| {
                            let new = NewRow {
                                rows,
                                cache,
                                reused,
                                start,
                            };
                            self.start_row(codec, new, t, budget, &config, logits)
                        });
                    out[i] = Some(done);
                }
                None => fresh.push(Fresh {
                    index: i,
                    embeds,
                    config,
                    rows,
                    start,
                }),
            }
        }
        // Prompts prefilled in the same pieces go together.
        while let Some(first) = fresh.first() {
            let piece = prefill_piece(backbone, &first.config);
            let (group, rest): (Vec<Fresh>, Vec<Fresh>) = fresh
                .into_iter()
                .partition(|f| prefill_piece(backbone, &f.config) == piece);
            fresh = rest;
            for (i, r) in self.prefill_together(backbone, codec, group, piece) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.expect("invariant: every prompt got a result"))
            .collect()
    }

    /// Prefills prompts of `group` in one right-padded batch (pieces of `piece` positions).
    fn prefill_together(
        &mut self,
        backbone: &dyn FrozenBackbone,
        codec: &dyn TextCodec,
        group: Vec<Fresh>,
        piece: Option<usize>,
    ) -> Vec<(usize, Result<Admitted>)> {
        let lens: Vec<usize> = group.iter().map(|f| f.embeds.dims()[1]).collect();
        let t_max = lens.iter().copied().max().unwrap_or(0);
        let d = backbone.spec().d_model;
        let device = backbone.device();
        let padded: Vec<Tensor<3>> = group
            .iter()
            .zip(&lens)
            .map(|(f, &t)| {
                if t == t_max {
                    f.embeds.clone()
                } else {
                    let pad = Tensor::<3>::zeros([1, t_max - t, d], device);
                    Tensor::cat(vec![f.embeds.clone(), pad], 1)
                }
            })
            .collect();
        let embeds = Tensor::cat(padded, 0);
        let mut cache = backbone.new_cache();
        cache.reserve(t_max);
        let piece = piece.unwrap_or(t_max).max(1);
        let mut last: Vec<Option<Tensor<3>>> = vec![None; group.len()];
        for c0 in (0..t_max).step_by(piece) {
            let c1 = (c0 + piece).min(t_max);
            let hidden = backbone.forward(
                embeds.clone().slice(s![.., c0..c1, ..]),
                ForwardOptions::generating(&mut cache),
            );
            for (r, &t) in lens.iter().enumerate() {
                if (c0..c1).contains(&(t - 1)) {
                    let at = t - 1 - c0;
                    last[r] = Some(hidden.clone().slice(s![r..r + 1, at..at + 1, ..]));
                }
            }
        }
        let last: Vec<Tensor<3>> = last
            .into_iter()
            .map(|h| h.expect("invariant: every row's last position lies in a piece"))
            .collect();
        let hidden = Tensor::cat(last, 0);
        let (logits, v) = last_logits(backbone, hidden);
        let max = backbone.spec().context_length;
        group
            .into_iter()
            .enumerate()
            .map(|(r, f)| {
                let t = lens[r];
                let mut own = cache.clone();
                own.select_rows(&[r]);
                own.truncate(t);
                let budget = f.config.max_new_tokens.min(max - t);
                let new = NewRow {
                    rows: f.rows,
                    cache: own,
                    reused: 0,
                    start: f.start,
                };
                let logits = logits[r * v..(r + 1) * v].to_vec();
                (
                    f.index,
                    self.start_row(codec, new, t, budget, &f.config, logits),
                )
            })
            .collect()
    }

    /// A prefilled prompt becomes a row: its cache goes to the prefix cache, its first token
    /// is sampled from `logits` (`[V]`), and unless that ends it, it joins at the next step.
    fn start_row(
        &mut self,
        codec: &dyn TextCodec,
        new: NewRow,
        prompt_len: usize,
        budget: usize,
        config: &GenerationConfig,
        mut logits: Vec<f32>,
    ) -> Result<Admitted> {
        if self.prefixes.capacity > 0 {
            self.prefixes.insert(new.rows, new.cache.compacted());
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut row = Row {
            id,
            next: 0,
            ids: Vec::new(),
            emitted: 0,
            config: config.clone(),
            rng: SplitMix64::new(config.seed),
            budget,
            finish: (budget == 0).then_some(FinishReason::Length),
        };
        let first = if row.finish.is_some() {
            RowEvent {
                id,
                text: String::new(),
                finish: row.finish,
                tokens: 0,
            }
        } else {
            let token = next_token(&mut logits, 0, &row.config, codec.stop_ids(), &mut row.rng);
            row.accept(token, codec)?
        };
        if row.finish.is_none() {
            self.joining.push((row, new.cache));
        }
        Ok(Admitted {
            id,
            prompt_len,
            reused: new.reused,
            prefill_secs: new.start.elapsed().as_secs_f64(),
            first,
        })
    }

    /// Ends generation `id` (a client that went away, a stop string found): its cache rows
    /// are dropped at the next step. Unknown ids are ignored.
    pub fn cancel(&mut self, id: RowId) {
        self.joining.retain(|(row, _)| row.id != id);
        for row in self.rows.iter_mut().filter(|r| r.id == id) {
            row.finish.get_or_insert(FinishReason::Cancelled);
        }
    }

    /// Drops finished rows, stacks joining ones, and decodes one token for every live
    /// generation. Returns one event per generation that took part.
    pub fn step(
        &mut self,
        backbone: &dyn FrozenBackbone,
        codec: &dyn TextCodec,
    ) -> Result<Vec<RowEvent>> {
        self.drop_finished();
        if !self.joining.is_empty() {
            let (rows, caches): (Vec<Row>, Vec<KvCache>) = self.joining.drain(..).unzip();
            self.rows.extend(rows);
            let mut parts = vec![std::mem::take(&mut self.cache)];
            parts.extend(caches);
            let len = parts.iter().map(KvCache::len).max().unwrap_or(0);
            let room = self
                .rows
                .iter()
                .map(|r| r.budget - r.ids.len())
                .max()
                .unwrap_or(0);
            self.cache = KvCache::stack(parts, len + room)?;
        }
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let b = self.rows.len();
        let next: Vec<i64> = self.rows.iter().map(|r| r.next as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(next, [b, 1]), backbone.device());
        let hidden = backbone.forward(
            backbone.embed(ids),
            ForwardOptions::generating(&mut self.cache),
        );
        let (mut logits, v) = last_logits(backbone, hidden);
        let events = self
            .rows
            .iter_mut()
            .zip(logits.chunks_exact_mut(v))
            .map(|(row, l)| {
                let step = row.ids.len();
                let token = next_token(l, step, &row.config, codec.stop_ids(), &mut row.rng);
                row.accept(token, codec)
            })
            .collect::<Result<Vec<_>>>()?;
        // Finished rows free their keys and values now, not when the next request comes.
        self.drop_finished();
        Ok(events)
    }

    /// Removes finished and cancelled rows with their cache rows.
    fn drop_finished(&mut self) {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].finish.is_none())
            .collect();
        if keep.len() < self.rows.len() {
            self.cache.select_rows(&keep);
            let mut i = 0;
            self.rows.retain(|_| {
                i += 1;
                keep.contains(&(i - 1))
            });
        }
    }
}
