//! Prompts made of text and soft-token segments, templates with placeholders, and the splice
//! that turns them into input embeddings of a frozen backbone.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::prelude::*;

use crate::backbone::{FrozenBackbone, TextCodec};
use crate::error::{Error, Result};
use crate::soft::SoftTokens;

/// The placeholders a template recognises unless told otherwise.
pub const DEFAULT_PLACEHOLDERS: [&str; 4] = ["<image>", "<audio>", "<speech>", "<series>"];

/// One part of a prompt.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a prompt holds a handful of segments
pub enum Segment {
    /// Text, tokenized by the backbone's tokenizer (special tokens recognised).
    Text(String),
    /// Pre-tokenized ids.
    Ids(Vec<u32>),
    /// Soft tokens spliced in as they are.
    Soft(SoftTokens),
}

/// A prompt: an ordered list of text and soft-token segments, any number and any mix.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    segments: Vec<Segment>,
}

impl Prompt {
    /// An empty prompt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends text.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.segments.push(Segment::Text(text.into()));
        self
    }

    /// Appends token ids.
    pub fn ids(mut self, ids: Vec<u32>) -> Self {
        self.segments.push(Segment::Ids(ids));
        self
    }

    /// Appends soft tokens.
    pub fn soft(mut self, tokens: SoftTokens) -> Self {
        self.segments.push(Segment::Soft(tokens));
        self
    }

    /// Prepends soft tokens (prompt tuning puts its vectors first).
    pub fn prepend_soft(mut self, tokens: SoftTokens) -> Self {
        self.segments.insert(0, Segment::Soft(tokens));
        self
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// A text template with placeholders (`<image>`, `<audio>`, `<speech>`, `<series>` by default)
/// to be filled with soft tokens.
#[derive(Debug, Clone)]
pub struct PromptTemplate {
    text: String,
    placeholders: Vec<String>,
}

impl PromptTemplate {
    /// A template recognising the default placeholders.
    pub fn new(text: impl Into<String>) -> Self {
        PromptTemplate {
            text: text.into(),
            placeholders: DEFAULT_PLACEHOLDERS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Registers one more placeholder.
    pub fn with_placeholder(mut self, placeholder: impl Into<String>) -> Self {
        self.placeholders.push(placeholder.into());
        self
    }

    /// How often each registered placeholder occurs.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> =
            self.placeholders.iter().map(|p| (p.clone(), 0)).collect();
        for (_, p) in self.occurrences() {
            *counts.entry(p.to_string()).or_default() += 1;
        }
        counts
    }

    /// Placeholder occurrences as (byte offset, placeholder), left to right.
    fn occurrences(&self) -> Vec<(usize, &str)> {
        let mut found = Vec::new();
        let mut at = 0;
        while at < self.text.len() {
            let rest = &self.text[at..];
            let next = self
                .placeholders
                .iter()
                .filter_map(|p| rest.find(p.as_str()).map(|i| (i, p.as_str())))
                .min_by_key(|&(i, p)| (i, std::cmp::Reverse(p.len())));
            match next {
                Some((i, p)) => {
                    found.push((at + i, p));
                    at += i + p.len();
                }
                None => break,
            }
        }
        found
    }

    /// Fills the placeholders in order: the k-th occurrence of a placeholder gets the k-th
    /// soft-token input bound to it. Every occurrence must get exactly one input.
    pub fn fill(&self, bindings: Vec<(&str, SoftTokens)>) -> Result<Prompt> {
        let mut queues: BTreeMap<&str, std::collections::VecDeque<SoftTokens>> = BTreeMap::new();
        for (name, tokens) in bindings {
            if !self.placeholders.iter().any(|p| p == name) {
                return Err(Error::UnknownPlaceholder {
                    placeholder: name.to_string(),
                });
            }
            if tokens.is_empty() {
                return Err(Error::EmptySoftTokens {
                    placeholder: name.to_string(),
                });
            }
            queues.entry(name).or_default().push_back(tokens);
        }
        let counts = self.counts();
        for (name, count) in &counts {
            let provided = queues.get(name.as_str()).map_or(0, |q| q.len());
            if provided != *count {
                return Err(Error::PlaceholderMismatch {
                    placeholder: name.clone(),
                    placeholders: *count,
                    provided,
                });
            }
        }
        let mut prompt = Prompt::new();
        let mut at = 0;
        for (offset, name) in self.occurrences() {
            if offset > at {
                prompt = prompt.text(&self.text[at..offset]);
            }
            let tokens = queues
                .get_mut(name)
                .and_then(|q| q.pop_front())
                .expect("invariant: counts were checked above");
            prompt = prompt.soft(tokens);
            at = offset + name.len();
        }
        if at < self.text.len() {
            prompt = prompt.text(&self.text[at..]);
        }
        Ok(prompt)
    }
}

/// A prompt turned into input embeddings.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Input embeddings `[1, T, D]`.
    pub embeds: Tensor<3>,
    /// For every position, the token id, or `None` for a soft token.
    pub ids: Vec<Option<u32>>,
    /// Position ranges that hold soft tokens.
    pub soft_ranges: Vec<Range<usize>>,
}

impl Embedded {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no positions.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Turns a prompt into input embeddings: text is tokenized and embedded by the backbone, soft
/// tokens are spliced in unchanged (gradients flow back to them).
pub fn embed_prompt(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompt: &Prompt,
) -> Result<Embedded> {
    let d = backbone.spec().d_model;
    let device = backbone.device();
    let mut parts: Vec<Tensor<2>> = Vec::new();
    let mut ids_out = Vec::new();
    let mut soft_ranges = Vec::new();
    let mut any_autodiff = false;
    // A model that expects a beginning-of-sequence token gets it once, first, unless the
    // prompt's text already starts with it (a chat template that writes it).
    let mut bos = codec.bos_id();
    for segment in prompt.segments() {
        let mut ids = match segment {
            Segment::Text(text) => codec.encode(text)?,
            Segment::Ids(ids) => ids.clone(),
            Segment::Soft(tokens) => {
                if tokens.width() != d {
                    return Err(Error::WidthMismatch {
                        expected: d,
                        got: tokens.width(),
                    });
                }
                if let Some(b) = bos.take() {
                    let t = Tensor::<2, Int>::from_data(
                        TensorData::new(vec![b as i64], [1, 1]),
                        device,
                    );
                    parts.push(backbone.embed(t).reshape([1, d]));
                    ids_out.push(Some(b));
                }
                let start = ids_out.len();
                ids_out.extend(std::iter::repeat_n(None, tokens.len()));
                soft_ranges.push(start..ids_out.len());
                any_autodiff |= tokens.tensor().device().is_autodiff();
                parts.push(tokens.tensor().clone());
                continue;
            }
        };
        if !ids.is_empty()
            && let Some(b) = bos.take()
            && ids[0] != b
        {
            ids.insert(0, b);
        }
        if ids.is_empty() {
            continue;
        }
        backbone.check_ids(&ids)?;
        let n = ids.len();
        let t = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, n]),
            device,
        );
        parts.push(backbone.embed(t).reshape([n, d]));
        ids_out.extend(ids.into_iter().map(Some));
    }
    if ids_out.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    let max = backbone.spec().context_length;
    if ids_out.len() > max {
        return Err(Error::ContextOverflow {
            len: ids_out.len(),
            max,
        });
    }
    // Soft tokens may live on an autodiff device: bring text embeddings there so one tensor
    // carries the graph.
    if any_autodiff {
        let target = parts
            .iter()
            .find(|p| p.device().is_autodiff())
            .map(|p| p.device())
            .expect("invariant: any_autodiff implies an autodiff part");
        parts = parts.into_iter().map(|p| p.to_device(&target)).collect();
    }
    let t = ids_out.len();
    let embeds = Tensor::cat(parts, 0).reshape([1, t, d]);
    Ok(Embedded {
        embeds,
        ids: ids_out,
        soft_ranges,
    })
}

/// A batch of embedded prompts, left-padded to one length.
#[derive(Debug, Clone)]
pub struct EmbeddedBatch {
    /// Input embeddings `[B, T, D]` (padding positions are zero vectors).
    pub embeds: Tensor<3>,
    /// Padding mask `[B, T]`, `true` for real positions.
    pub mask: Tensor<2, Bool>,
    /// Real length of every row.
    pub lengths: Vec<usize>,
}

/// Embeds several prompts and left-pads them into one batch.
pub fn embed_batch(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompts: &[Prompt],
) -> Result<EmbeddedBatch> {
    let rows = prompts
        .iter()
        .map(|p| embed_prompt(backbone, codec, p))
        .collect::<Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    Ok(pad_left(rows.into_iter().map(|r| r.embeds).collect()))
}

/// Left-pads `[1, T_i, D]` rows into `[B, T, D]` with a padding mask.
pub fn pad_left(rows: Vec<Tensor<3>>) -> EmbeddedBatch {
    let lengths: Vec<usize> = rows.iter().map(|r| r.dims()[1]).collect();
    let t = lengths.iter().copied().max().unwrap_or(0);
    let b = rows.len();
    let mut mask = vec![false; b * t];
    let mut padded = Vec::with_capacity(b);
    let device = rows.first().map(|r| r.device()).unwrap_or_default();
    let any_autodiff = rows.iter().any(|r| r.device().is_autodiff());
    let device = if any_autodiff {
        rows.iter()
            .find(|r| r.device().is_autodiff())
            .map(|r| r.device())
            .unwrap_or(device)
    } else {
        device
    };
    for (i, row) in rows.into_iter().enumerate() {
        let [_, len, d] = row.dims();
        for j in t - len..t {
            mask[i * t + j] = true;
        }
        let row = row.to_device(&device);
        let row = if len < t {
            Tensor::cat(vec![Tensor::zeros([1, t - len, d], &device), row], 1)
        } else {
            row
        };
        padded.push(row);
    }
    let mask_device = device.clone().without_autodiff();
    EmbeddedBatch {
        embeds: Tensor::cat(padded, 0),
        mask: Tensor::<2, Bool>::from_data(TensorData::new(mask, [b, t]), &mask_device),
        lengths,
    }
}
