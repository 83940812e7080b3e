//! Speech recognition through the frozen LLM: the adapter's soft tokens for a clip go into a
//! chat prompt (`<audio>` then "Transcribe the audio."), the LLM writes the transcript. Training is
//! cross-entropy on the transcript tokens only (core `answer_loss`); recognition is greedy.

use burn::prelude::*;
use glaze_core::answer::{AnswerPipeline, interleave};
use glaze_core::{
    Adapter, FrozenBackbone, GenerationConfig, Prompt, SoftTokens, TextCodec, generate_batch,
};
use glaze_train::{FeatureBank, ItemLoss, ItemTask};
use glaze_whisper::bank::encode_files;
use glaze_whisper::{AudioEncoder, AudioLimits};
use std::path::Path;

use crate::adapter::SpeechAdapter;

/// The system line of every prompt.
pub const SYSTEM: &str = "You transcribe speech.";
/// The user turn; the soft tokens replace [`MARKER`].
pub const INSTRUCTION: &str = "<audio>\nTranscribe the audio.";
/// Where the soft tokens go.
pub const MARKER: &str = "<audio>";

/// A clip of the bank and its transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechItem {
    /// Index into the [`FeatureBank`].
    pub clip: usize,
    /// The transcript.
    pub text: String,
}

/// The frozen LLM and its text side.
#[derive(Clone, Copy)]
pub struct SpeechPipeline<'a> {
    /// The frozen backbone.
    pub backbone: &'a dyn FrozenBackbone,
    /// Its tokenizer and chat template.
    pub codec: &'a dyn TextCodec,
}

impl SpeechPipeline<'_> {
    /// The shared answer pipeline with this plugin's system line and marker.
    pub fn qa(&self) -> AnswerPipeline<'_> {
        AnswerPipeline::new(self.backbone, self.codec, SYSTEM, MARKER)
    }

    /// Token ids around the audio in the rendered chat.
    pub fn segments(&self) -> glaze_core::Result<Vec<Vec<u32>>> {
        self.qa().segments(INSTRUCTION)
    }

    /// Soft tokens per clip: each row keeps its own `num_tokens(frames)` tokens.
    pub fn soft_tokens(
        &self,
        model: &SpeechAdapter,
        bank: &FeatureBank,
        clips: &[usize],
        device: &Device,
    ) -> Vec<SoftTokens> {
        let features = bank.batch(clips, device);
        let all = model.adapt(&features, None);
        let d = all.dims()[2];
        clips
            .iter()
            .enumerate()
            .map(|(r, &c)| {
                let n = model.num_tokens(bank.len_of(c));
                SoftTokens::new(all.clone().slice([r..r + 1, 0..n, 0..d]).reshape([n, d]))
            })
            .collect()
    }

    /// Prompts for `clips`, optionally ending with the target ids.
    pub fn prompts(
        &self,
        soft: Vec<SoftTokens>,
        targets: Option<&[Vec<u32>]>,
    ) -> glaze_core::Result<Vec<Prompt>> {
        let segments = self.segments()?;
        soft.into_iter()
            .enumerate()
            .map(|(i, s)| interleave(&segments, MARKER, vec![s], targets.map(|t| t[i].clone())))
            .collect()
    }

    /// Mean cross-entropy of the transcripts.
    pub fn loss(
        &self,
        model: &SpeechAdapter,
        bank: &FeatureBank,
        items: &[&SpeechItem],
        device: &Device,
    ) -> glaze_core::Result<Tensor<1>> {
        let targets: Vec<Vec<u32>> = items
            .iter()
            .map(|i| self.qa().target(&i.text))
            .collect::<glaze_core::Result<_>>()?;
        let clips: Vec<usize> = items.iter().map(|i| i.clip).collect();
        let soft = self.soft_tokens(model, bank, &clips, device);
        let prompts = self.prompts(soft, Some(&targets))?;
        self.qa().loss(&prompts, &targets, device)
    }

    /// A free question about one clip (`glaze ask --audio`): the question replaces the
    /// transcription instruction; the answer is greedy.
    pub fn ask(
        &self,
        model: &SpeechAdapter,
        bank: &FeatureBank,
        clip: usize,
        question: &str,
        max_new_tokens: usize,
    ) -> glaze_core::Result<String> {
        let qa = self.qa();
        let user = qa.about_one(question)?;
        let device = self.backbone.device().clone();
        let soft = self.soft_tokens(model, bank, &[clip], &device);
        let prompt = qa.prompt(&user, Some(soft), None)?;
        let config = GenerationConfig::new().with_max_new_tokens(max_new_tokens);
        let g = generate_batch(self.backbone, self.codec, &[prompt], &config)?;
        Ok(g.into_iter()
            .next()
            .map(|g| g.text.trim().to_string())
            .unwrap_or_default())
    }

    /// One audio file's features, encoded without a cache.
    fn encode_file(&self, encoder: &AudioEncoder, file: &Path) -> crate::Result<FeatureBank> {
        Ok(encode_files(
            encoder,
            None,
            &[file.to_path_buf()],
            &AudioLimits::default(),
            self.backbone.device(),
        )?)
    }

    /// One audio file through `encoder`, the adapter and the frozen LLM: its transcript.
    pub fn transcribe_file(
        &self,
        model: &SpeechAdapter,
        encoder: &AudioEncoder,
        file: &Path,
        max_new_tokens: usize,
    ) -> crate::Result<String> {
        let bank = self.encode_file(encoder, file)?;
        let text = self.transcribe(model, &bank, &[0], 1, max_new_tokens)?;
        Ok(text.into_iter().next().unwrap_or_default())
    }

    /// [`SpeechPipeline::ask`] about one audio file.
    pub fn ask_file(
        &self,
        model: &SpeechAdapter,
        encoder: &AudioEncoder,
        file: &Path,
        question: &str,
        max_new_tokens: usize,
    ) -> crate::Result<String> {
        let bank = self.encode_file(encoder, file)?;
        Ok(self.ask(model, &bank, 0, question, max_new_tokens)?)
    }

    /// Greedy transcripts, `batch` clips at a time.
    pub fn transcribe(
        &self,
        model: &SpeechAdapter,
        bank: &FeatureBank,
        clips: &[usize],
        batch: usize,
        max_new_tokens: usize,
    ) -> glaze_core::Result<Vec<String>> {
        self.qa()
            .answers(clips, batch, max_new_tokens, |chunk, device| {
                let ids: Vec<usize> = chunk.iter().map(|&&c| c).collect();
                self.prompts(self.soft_tokens(model, bank, &ids, device), None)
            })
    }
}

/// Transcribed clips over a feature bank: the speech pipeline's [`ItemLoss`].
#[derive(Clone, Copy)]
pub struct AsrLoss<'a> {
    /// The frozen LLM.
    pub pipeline: SpeechPipeline<'a>,
    /// Frozen clip features.
    pub bank: &'a FeatureBank,
}

impl ItemLoss for AsrLoss<'_> {
    type Model = SpeechAdapter;
    type Item = SpeechItem;

    fn backbone(&self) -> &dyn FrozenBackbone {
        self.pipeline.backbone
    }

    fn item_loss(
        &self,
        model: &SpeechAdapter,
        items: &[&SpeechItem],
        device: &Device,
    ) -> glaze_core::Result<Tensor<1>> {
        self.pipeline.loss(model, self.bank, items, device)
    }
}

/// Training a speech adapter on transcribed clips.
pub type AsrTask<'a> = ItemTask<'a, AsrLoss<'a>>;
