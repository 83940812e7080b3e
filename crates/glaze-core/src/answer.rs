//! Answering in words through the frozen LLM — what every plugin's question-answering,
//! captioning and transcription tasks share: a chat prompt with soft-token runs spliced in at
//! markers, a teacher-forced cross-entropy on the answer tokens only (prompt and soft tokens
//! masked out), and greedy answers.

use burn::prelude::*;

use crate::backbone::{ChatMessage, ForwardOptions, FrozenBackbone, TextCodec};
use crate::error::{Error, Result};
use crate::loss::masked_cross_entropy;
use crate::prompt::{Prompt, embed_batch};
use crate::soft::SoftTokens;

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

/// A prompt from chat segments (split at `marker`, [`chat_segments`]) with one soft-token run
/// between each two, optionally followed by the answer ids. A number of runs other than
/// `segments.len() - 1` is [`Error::PlaceholderMismatch`]: a run is never dropped or left out
/// silently.
pub fn interleave(
    segments: &[Vec<u32>],
    marker: &str,
    runs: Vec<SoftTokens>,
    answer: Option<Vec<u32>>,
) -> Result<Prompt> {
    let markers = segments.len().saturating_sub(1);
    if runs.len() != markers {
        return Err(Error::PlaceholderMismatch {
            placeholder: marker.to_string(),
            placeholders: markers,
            provided: runs.len(),
        });
    }
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
    Ok(p)
}

/// Checks that a user's text (a question, an instruction) holds no soft-token `placeholder`:
/// the pipeline places the soft tokens itself, and a placeholder in the text would move them
/// or pair them with the wrong input ([`Error::PlaceholderInText`]).
pub fn reject_placeholder(text: &str, placeholder: &str, field: &'static str) -> Result<()> {
    if text.contains(placeholder) {
        return Err(Error::PlaceholderInText {
            placeholder: placeholder.to_string(),
            field,
        });
    }
    Ok(())
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

/// The soft-token question-answer pipeline of every plugin that answers in words: a chat whose
/// user turn holds one `marker` per soft-token run, the runs spliced in count-checked
/// ([`interleave`]), an answer-only cross-entropy ([`answer_loss`]) and greedy answers
/// ([`greedy_answers`]). A plugin supplies the runs (encoder features through its adapter);
/// everything between them and the backbone is this.
#[derive(Clone, Copy)]
pub struct AnswerPipeline<'a> {
    /// The frozen backbone.
    pub backbone: &'a dyn FrozenBackbone,
    /// Its tokenizer and chat template.
    pub codec: &'a dyn TextCodec,
    /// The system line of every prompt.
    pub system: &'a str,
    /// Where a soft-token run goes in the user turn, e.g. `<image>`.
    pub marker: &'a str,
}

impl<'a> AnswerPipeline<'a> {
    /// The pipeline of a plugin: its system line and soft-token marker on `backbone`.
    pub fn new(
        backbone: &'a dyn FrozenBackbone,
        codec: &'a dyn TextCodec,
        system: &'a str,
        marker: &'a str,
    ) -> Self {
        AnswerPipeline {
            backbone,
            codec,
            system,
            marker,
        }
    }

    /// The user turn for a question about one input: the marker, a new line, the question. A
    /// question holding the marker is [`Error::PlaceholderInText`].
    pub fn about_one(&self, question: &str) -> Result<String> {
        reject_placeholder(question, self.marker, "question")?;
        Ok(format!("{}\n{question}", self.marker))
    }

    /// The rendered chat of `user` split at its markers, as token ids ([`chat_segments`]).
    pub fn segments(&self, user: &str) -> Result<Vec<Vec<u32>>> {
        chat_segments(self.codec, self.system, user, self.marker)
    }

    /// The prompt for `user` with one run of `runs` per marker (a count mismatch is
    /// [`Error::PlaceholderMismatch`]), followed by the `answer` ids when given. `runs = None`
    /// asks the same question with no soft tokens at all (the no-input baseline): the chat's
    /// pieces around the markers, joined.
    pub fn prompt(
        &self,
        user: &str,
        runs: Option<Vec<SoftTokens>>,
        answer: Option<Vec<u32>>,
    ) -> Result<Prompt> {
        let segments = self.segments(user)?;
        match runs {
            Some(runs) => interleave(&segments, self.marker, runs, answer),
            None => {
                let ids: Vec<u32> = segments
                    .into_iter()
                    .flatten()
                    .chain(answer.into_iter().flatten())
                    .collect();
                Ok(Prompt::new().ids(ids))
            }
        }
    }

    /// The ids of `answer` followed by the end-of-turn id ([`answer_target`]).
    pub fn target(&self, answer: &str) -> Result<Vec<u32>> {
        answer_target(self.codec, answer)
    }

    /// Mean cross-entropy of `targets[i]`, which each `prompts[i]` ends with ([`answer_loss`]).
    pub fn loss(
        &self,
        prompts: &[Prompt],
        targets: &[Vec<u32>],
        device: &Device,
    ) -> Result<Tensor<1>> {
        answer_loss(self.backbone, self.codec, prompts, targets, device)
    }

    /// Greedy answers to `items`, `batch` at a time ([`greedy_answers`]).
    pub fn answers<T>(
        &self,
        items: &[T],
        batch: usize,
        max_new_tokens: usize,
        prompts: impl FnMut(&[&T], &Device) -> Result<Vec<Prompt>>,
    ) -> Result<Vec<String>> {
        greedy_answers(
            self.backbone,
            self.codec,
            items,
            batch,
            max_new_tokens,
            prompts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> SoftTokens {
        SoftTokens::new(Tensor::zeros([2, 4], &Device::flex()))
    }

    /// One run per marker splices; one too many or too few is a typed error, not a prompt
    /// with a run silently dropped.
    #[test]
    fn interleave_counts_runs_against_markers() {
        let segments = vec![vec![1, 2], vec![3], vec![4, 5]];
        let p = interleave(&segments, "<audio>", vec![run(), run()], Some(vec![9]))
            .expect("two markers, two runs");
        assert_eq!(p.segments().len(), 6);
        for n in [1, 3] {
            let err = interleave(&segments, "<audio>", (0..n).map(|_| run()).collect(), None)
                .expect_err("count mismatch");
            assert!(
                matches!(
                    &err,
                    Error::PlaceholderMismatch { placeholder, placeholders: 2, provided }
                        if placeholder == "<audio>" && *provided == n
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn a_placeholder_in_a_question_is_an_error() {
        reject_placeholder("What colour is it?", "<image>", "question").expect("plain text");
        let err = reject_placeholder("Compare <image> with this", "<image>", "question")
            .expect_err("placeholder in the text");
        assert!(
            matches!(
                &err,
                Error::PlaceholderInText {
                    field: "question",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("<image>"), "{err}");
    }
}
