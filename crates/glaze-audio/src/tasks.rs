//! General-audio tasks through the frozen LLM (issue 5): questions about one or several clips,
//! answered in words. A prompt's user turn holds one `<audio>` marker per clip — interleaved
//! audio-text prompts — and each marker becomes the aligner's soft tokens for that clip. The
//! "no audio" baseline asks the same question with the markers removed.
//!
//! Tasks built here: (a) speaker identification on FSDD (6 speakers), (b) description of
//! generated sound events, (c) two-clip comparison ("same speaker?"), and (d) zero-shot questions
//! on the animal sounds (`glaze audio` CLI).

use burn::prelude::*;
use glaze_core::answer::AnswerPipeline;
use glaze_core::{Adapter, Condition, FrozenBackbone, Prompt, SoftTokens, TextCodec, embed_batch};
use glaze_train::{FeatureBank, ItemLoss, ItemTask};

use crate::aligner::AptAligner;
use crate::corpus::{Split, Utterance};
use crate::sounds::SoundEvent;
use glaze_whisper::{AudioEncoder, AudioLimits, WHISPER_RATE, decode_file, encode_clips, resample};

/// The system line of every prompt.
pub const SYSTEM: &str = "You answer questions about sounds.";
/// Where a clip's soft tokens go.
pub const MARKER: &str = "<audio>";

/// A question about clips of a bank, and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioItem {
    /// The task it belongs to (`speaker`, `sound`, `compare`, …).
    pub task: String,
    /// Clips, in the order of the markers.
    pub clips: Vec<usize>,
    /// The user turn with one [`MARKER`] per clip.
    pub question: String,
    /// The expected answer.
    pub answer: String,
}

/// The frozen LLM and its text side.
#[derive(Clone, Copy)]
pub struct AudioPipeline<'a> {
    /// The frozen backbone.
    pub backbone: &'a dyn FrozenBackbone,
    /// Its tokenizer and chat template.
    pub codec: &'a dyn TextCodec,
}

fn instruction_text(question: &str) -> String {
    question
        .replace(MARKER, " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl AudioPipeline<'_> {
    /// The shared answer pipeline with this plugin's system line and marker.
    pub fn qa(&self) -> AnswerPipeline<'_> {
        AnswerPipeline::new(self.backbone, self.codec, SYSTEM, MARKER)
    }

    /// Soft tokens per item: one run per clip, in marker order.
    pub fn soft_tokens(
        &self,
        model: &AptAligner,
        bank: &FeatureBank,
        items: &[&AudioItem],
        device: &Device,
    ) -> glaze_core::Result<Vec<Vec<SoftTokens>>> {
        let clips: Vec<usize> = items.iter().flat_map(|i| i.clips.iter().copied()).collect();
        let features = bank.batch(&clips, device);
        let condition = if model.uses_instruction() {
            let prompts: Vec<Prompt> = items
                .iter()
                .flat_map(|i| {
                    let text = instruction_text(&i.question);
                    i.clips
                        .iter()
                        .map(move |_| Prompt::new().text(text.clone()))
                })
                .collect();
            let batch = embed_batch(self.backbone, self.codec, &prompts)?;
            Some(Condition {
                embeds: batch.embeds.to_device(device),
                mask: Some(batch.mask.to_device(&device.clone().without_autodiff())),
            })
        } else {
            None
        };
        let all = model.adapt(&features, condition.as_ref());
        let runs = SoftTokens::from_batch(all);
        let mut runs = runs.into_iter();
        Ok(items
            .iter()
            .map(|i| i.clips.iter().filter_map(|_| runs.next()).collect())
            .collect())
    }

    fn prompts(
        &self,
        soft: Option<Vec<Vec<SoftTokens>>>,
        items: &[&AudioItem],
        targets: Option<&[Vec<u32>]>,
    ) -> glaze_core::Result<Vec<Prompt>> {
        items
            .iter()
            .enumerate()
            .map(|(r, item)| {
                let target = targets.map(|t| t[r].clone());
                match &soft {
                    Some(s) => self.qa().prompt(&item.question, Some(s[r].clone()), target),
                    // The baseline: the question with its markers removed, no audio.
                    None => self.qa().prompt(
                        &instruction_text(&item.question),
                        Some(Vec::new()),
                        target,
                    ),
                }
            })
            .collect()
    }

    /// Mean cross-entropy of the answers.
    pub fn loss(
        &self,
        model: &AptAligner,
        bank: &FeatureBank,
        items: &[&AudioItem],
        device: &Device,
    ) -> glaze_core::Result<Tensor<1>> {
        let targets: Vec<Vec<u32>> = items
            .iter()
            .map(|i| self.qa().target(&i.answer))
            .collect::<glaze_core::Result<_>>()?;
        let soft = self.soft_tokens(model, bank, items, device)?;
        let prompts = self.prompts(Some(soft), items, Some(&targets))?;
        self.qa().loss(&prompts, &targets, device)
    }

    /// A free question about each of `files` (`glaze ask --audio`, zero-shot sets): each file
    /// decoded (at most 30 s), resampled and cut to the encoder's window, encoded through the
    /// shared feature bank, and answered greedily with its soft tokens at the marker.
    pub fn ask_files(
        &self,
        model: &AptAligner,
        encoder: &AudioEncoder,
        files: &[std::path::PathBuf],
        question: &str,
        max_new_tokens: usize,
    ) -> crate::Result<Vec<String>> {
        let user = self.qa().about_one(question)?;
        let device = self.backbone.device().clone();
        let limits = AudioLimits { max_seconds: 30.0 };
        let mut clips = Vec::with_capacity(files.len());
        for f in files {
            let mut a = resample(&decode_file(f, &limits)?, WHISPER_RATE)?;
            a.samples.truncate(encoder.max_samples());
            clips.push((f.to_string_lossy().as_bytes().to_vec(), a));
        }
        let bank = encode_clips(encoder, None, &clips, &device)?;
        let items: Vec<AudioItem> = (0..files.len())
            .map(|i| AudioItem {
                task: "ask".into(),
                clips: vec![i],
                question: user.clone(),
                answer: String::new(),
            })
            .collect();
        Ok(self.answer(Some(model), &bank, &items, 10, max_new_tokens)?)
    }

    /// Greedy answers; `model = None` asks without audio (the baseline).
    pub fn answer(
        &self,
        model: Option<&AptAligner>,
        bank: &FeatureBank,
        items: &[AudioItem],
        batch: usize,
        max_new_tokens: usize,
    ) -> glaze_core::Result<Vec<String>> {
        self.qa()
            .answers(items, batch, max_new_tokens, |refs, device| {
                let soft = match model {
                    Some(m) => Some(self.soft_tokens(m, bank, refs, device)?),
                    None => None,
                };
                self.prompts(soft, refs, None)
            })
    }
}

/// Questions over a feature bank: the audio pipeline's [`ItemLoss`].
#[derive(Clone, Copy)]
pub struct AudioQaLoss<'a> {
    /// The frozen LLM.
    pub pipeline: AudioPipeline<'a>,
    /// Frozen clip features.
    pub bank: &'a FeatureBank,
}

impl ItemLoss for AudioQaLoss<'_> {
    type Model = AptAligner;
    type Item = AudioItem;

    fn backbone(&self) -> &dyn FrozenBackbone {
        self.pipeline.backbone
    }

    fn item_loss(
        &self,
        model: &AptAligner,
        items: &[&AudioItem],
        device: &Device,
    ) -> glaze_core::Result<Tensor<1>> {
        self.pipeline.loss(model, self.bank, items, device)
    }
}

/// Training the aligner on a mixture of tasks.
pub type AudioQaTask<'a> = ItemTask<'a, AudioQaLoss<'a>>;

/// Speaker identification items: one per utterance whose clip index is `clip_of(utterance)`.
pub fn speaker_items(utts: &[(usize, &Utterance)]) -> Vec<AudioItem> {
    utts.iter()
        .map(|(clip, u)| AudioItem {
            task: "speaker".into(),
            clips: vec![*clip],
            question: format!("{MARKER}\nWho is speaking?"),
            answer: u.speaker.clone(),
        })
        .collect()
}

/// Two-clip comparison items: `n` pairs, half from one speaker (different digits), half from
/// two speakers, drawn with `seed`.
pub fn comparison_items(utts: &[(usize, &Utterance)], n: usize, seed: u64) -> Vec<AudioItem> {
    let mut s = seed;
    let mut next = |m: usize| {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 33) % m.max(1) as u64) as usize
    };
    let mut out = Vec::with_capacity(n);
    let mut guard = 0;
    while out.len() < n && guard < 100 * n.max(1) {
        guard += 1;
        let (a, ua) = utts[next(utts.len())];
        let same = out.len() % 2 == 0;
        let (b, ub) = utts[next(utts.len())];
        if a == b || (ua.speaker == ub.speaker) != same || ua.text == ub.text {
            continue;
        }
        out.push(AudioItem {
            task: "compare".into(),
            clips: vec![a, b],
            question: format!("{MARKER}\n{MARKER}\nDo these two clips come from the same speaker?"),
            answer: if same { "yes" } else { "no" }.into(),
        });
    }
    out
}

/// Sound-description items for events whose clips start at `first`.
pub fn sound_items(events: &[SoundEvent], first: usize) -> Vec<AudioItem> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| AudioItem {
            task: "sound".into(),
            clips: vec![first + i],
            question: format!("{MARKER}\nDescribe the sound."),
            answer: e.caption(),
        })
        .collect()
}

/// Lower case, punctuation dropped, whitespace collapsed.
pub fn normalise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches('.')
        .to_string()
}

/// Exact-match accuracy after [`normalise`].
pub fn accuracy(answers: &[String], items: &[AudioItem]) -> f64 {
    let right = answers
        .iter()
        .zip(items)
        .filter(|(a, i)| normalise(a) == normalise(&i.answer))
        .count();
    right as f64 / items.len().max(1) as f64
}

/// The sound class (tone, noise, chirp, clicks, beeps → rhythm) an answer names first.
pub fn sound_class(answer: &str) -> Option<&'static str> {
    let a = normalise(answer);
    [
        ("tone", "tone"),
        ("noise", "noise"),
        ("chirp", "chirp"),
        ("click", "clicks"),
        ("beep", "rhythm"),
    ]
    .iter()
    .filter_map(|(w, c)| a.find(w).map(|at| (at, *c)))
    .min_by_key(|(at, _)| *at)
    .map(|(_, c)| c)
}

/// Utterances of one split.
pub fn of_split(utts: &[Utterance], split: Split) -> Vec<&Utterance> {
    utts.iter().filter(|u| u.split == split).collect()
}
