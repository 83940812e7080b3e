//! Answering in words through the frozen LLM — what every plugin's question-answering,
//! captioning and transcription tasks share: a chat prompt with soft-token runs spliced in at
//! markers, a teacher-forced cross-entropy on the answer tokens only (prompt and soft tokens
//! masked out), and greedy answers.

use burn::prelude::*;

use crate::backbone::{ChatMessage, ForwardOptions, FrozenBackbone, TextCodec};
use crate::error::{Error, Result};
use crate::loss::masked_cross_entropy;
use crate::prompt::{Prompt, embed_batch};

/// The rendered chat (system line, user turn, generation prompt) as token ids, split at every
/// occurrence of `marker` in the user turn: `k` markers give `k + 1` segments, between which
/// soft tokens go.
pub fn chat_segments(
    codec: &dyn TextCodec,
    system: &str,
    user: &str,
    marker: &str,
) -> Result<Vec<Vec<u32>>> {
    let text = codec.render_chat(
        &[ChatMessage::new("system", system), ChatMessage::user(user)],
        true,
    )?;
    let expected = user.matches(marker).count();
    let parts: Vec<&str> = text.split(marker).collect();
    if parts.len() != expected + 1 {
        return Err(Error::InvalidConfig {
            field: "marker",
            problem: format!(
                "`{marker}` appears {expected} times in the user turn but {} times in the rendered chat",
                parts.len() - 1
            ),
        });
    }
    parts.into_iter().map(|p| codec.encode(p)).collect()
}

/// A prompt from chat segments with soft-token runs between them (`runs.len()` must be
/// `segments.len() - 1`), optionally followed by the answer ids.
pub fn interleave(
    segments: &[Vec<u32>],
    runs: Vec<crate::soft::SoftTokens>,
    answer: Option<Vec<u32>>,
) -> Prompt {
    let mut p = Prompt::new();
    let mut runs = runs.into_iter();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0
            && let Some(r) = runs.next()
        {
            p = p.soft(r);
        }
        p = p.ids(seg.clone());
    }
    if let Some(a) = answer {
        p = p.ids(a);
    }
    p
}

/// The ids of `answer` followed by the end-of-turn id (so the model learns to stop).
pub fn answer_target(codec: &dyn TextCodec, answer: &str) -> Result<Vec<u32>> {
    let mut ids = codec.encode(answer)?;
    ids.push(*codec.stop_ids().first().unwrap_or(&codec.pad_id()));
    Ok(ids)
}

/// Mean cross-entropy of `targets[i]`, which each `prompts[i]` ends with (a tracked scalar when
/// the soft tokens are). Rows are left-padded to one length; only target positions count.
pub fn answer_loss(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompts: &[Prompt],
    targets: &[Vec<u32>],
    device: &Device,
) -> Result<Tensor<1>> {
    let batch = embed_batch(backbone, codec, prompts)?;
    let t = batch.embeds.dims()[1];
    let b = targets.len();
    let l = targets.iter().map(Vec::len).max().unwrap_or(1);
    if l + 1 > t {
        return Err(Error::InvalidConfig {
            field: "targets",
            problem: format!("answers of {l} tokens do not fit prompts of {t} positions"),
        });
    }
    let mut ids = vec![0i64; b * l];
    let mut weights = vec![0f32; b * l];
    for (r, tgt) in targets.iter().enumerate() {
        let off = l - tgt.len();
        for (j, &id) in tgt.iter().enumerate() {
            ids[r * l + off + j] = i64::from(id);
            weights[r * l + off + j] = 1.0;
        }
    }
    let padded = batch.lengths.iter().any(|&n| n != t);
    let hidden = backbone.forward(
        batch.embeds,
        ForwardOptions {
            mask: padded.then_some(batch.mask),
            ..Default::default()
        },
    );
    // Positions t-l-1 .. t-1 predict the last l tokens of every (left-padded) row.
    let logits = backbone.lm_head(hidden.slice(s![.., t - l - 1..t - 1, ..]));
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), device);
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, l]), device);
    Ok(masked_cross_entropy(logits, ids, weights))
}

/// A pipeline whose loss is computed over items of some kind (question/answer pairs,
/// transcribed clips): what [`ItemTask`] needs to train an adapter on them.
pub trait ItemLoss {
    /// The trainable adapter.
    type Model: Module;
    /// One training example.
    type Item;

    /// The frozen backbone (its device decides where losses run).
    fn backbone(&self) -> &dyn FrozenBackbone;

    /// Mean loss over `items`, a tracked scalar when `model` is on an autodiff device.
    fn item_loss(
        &self,
        model: &Self::Model,
        items: &[&Self::Item],
        device: &Device,
    ) -> Result<Tensor<1>>;
}

/// Training on items with an [`ItemLoss`]: training batches on the autodiff device; the
/// validation value is the item-weighted mean loss over `val` in `eval_batch` chunks.
pub struct ItemTask<'a, P: ItemLoss> {
    /// The pipeline.
    pub pipeline: P,
    /// Training items.
    pub train: &'a [P::Item],
    /// Validation items.
    pub val: Option<&'a [P::Item]>,
    /// Micro-batch for validation.
    pub eval_batch: usize,
}

impl<P: ItemLoss> crate::trainer::TrainTask for ItemTask<'_, P> {
    type Model = P::Model;

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn loss(&self, model: &P::Model, batch: &[usize]) -> Result<Tensor<1>> {
        // The adapter's device (its checkpointing strategy included).
        let device = model
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.pipeline.backbone().device().clone().autodiff());
        let items: Vec<&P::Item> = batch.iter().map(|&i| &self.train[i]).collect();
        self.pipeline.item_loss(model, &items, &device)
    }

    fn validate(&self, model: &P::Model) -> Result<Option<f64>> {
        let Some(val) = self.val else {
            return Ok(None);
        };
        let device = self.pipeline.backbone().device().clone();
        let model = model.valid();
        let mut total = 0.0;
        for chunk in val.chunks(self.eval_batch.max(1)) {
            let items: Vec<&P::Item> = chunk.iter().collect();
            let loss = self
                .pipeline
                .item_loss(&model, &items, &device)?
                .into_scalar::<f32>();
            total += f64::from(loss) * chunk.len() as f64;
        }
        Ok(Some(total / val.len().max(1) as f64))
    }
}

/// Greedy answers to `items`, `batch` at a time: `prompts` builds each chunk's prompts (without
/// answers); the generated text is trimmed.
pub fn greedy_answers<T>(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    items: &[T],
    batch: usize,
    max_new_tokens: usize,
    mut prompts: impl FnMut(&[&T], &Device) -> Result<Vec<Prompt>>,
) -> Result<Vec<String>> {
    let device = backbone.device().clone();
    let config = crate::generate::GenerationConfig::new().with_max_new_tokens(max_new_tokens);
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch.max(1)) {
        let refs: Vec<&T> = chunk.iter().collect();
        let built = prompts(&refs, &device)?;
        for g in crate::generate::generate_batch(backbone, codec, &built, &config)? {
            out.push(g.text.trim().to_string());
        }
    }
    Ok(out)
}
