//! Visual question answering through the frozen LLM: soft tokens from an adapter are spliced into
//! a chat prompt, the LLM answers in words. Training minimises cross-entropy on the answer tokens
//! only (prompt and soft tokens masked out); evaluation generates greedily and compares text.

use burn::prelude::*;
use glaze_core::answer::AnswerPipeline;
use glaze_core::{
    Adapter, Condition, Encoder, FrozenBackbone, Prompt, SoftTokens, TextCodec, embed_batch,
};
use glaze_train::{FeatureBank, ItemLoss, ItemTask, encode_bank};
use image::RgbImage;

use crate::adapter::VisionAdapter;

/// A question about an image and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqaItem {
    /// Index into the image [`FeatureBank`].
    pub image: usize,
    /// The question.
    pub question: String,
    /// The expected answer.
    pub answer: String,
}

/// The system line of every prompt (short: each token costs training time).
pub const SYSTEM: &str = "You answer questions about images.";
/// Where the soft tokens go in the user turn.
const MARKER: &str = "<image>";

/// The frozen LLM and its text side.
#[derive(Clone, Copy)]
pub struct VisionPipeline<'a> {
    /// The frozen backbone.
    pub backbone: &'a dyn FrozenBackbone,
    /// Its tokenizer and chat template.
    pub codec: &'a dyn TextCodec,
}

impl VisionPipeline<'_> {
    /// The shared answer pipeline with this plugin's system line and marker.
    pub fn qa(&self) -> AnswerPipeline<'_> {
        AnswerPipeline::new(self.backbone, self.codec, SYSTEM, MARKER)
    }

    /// The prompt for a question about one image: its soft tokens (`None`: the no-image
    /// baseline) spliced in at the marker, then the answer ids when given. A question holding
    /// `<image>` is an error.
    pub fn prompt(
        &self,
        question: &str,
        soft: Option<SoftTokens>,
        answer: Option<Vec<u32>>,
    ) -> glaze_core::Result<Prompt> {
        let qa = self.qa();
        qa.prompt(&qa.about_one(question)?, soft.map(|s| vec![s]), answer)
    }

    /// The instruction as adapter condition (InstructBLIP): question embeddings, left-padded.
    fn condition(&self, questions: &[&str], device: &Device) -> glaze_core::Result<Condition> {
        let prompts: Vec<Prompt> = questions.iter().map(|q| Prompt::new().text(*q)).collect();
        let batch = embed_batch(self.backbone, self.codec, &prompts)?;
        Ok(Condition {
            embeds: batch.embeds.to_device(device),
            mask: Some(batch.mask.to_device(&device.clone().without_autodiff())),
        })
    }

    /// Soft tokens for a batch of images `[B, T, D]`.
    pub fn soft_tokens(
        &self,
        model: &VisionAdapter,
        bank: &FeatureBank,
        items: &[&VqaItem],
        device: &Device,
    ) -> glaze_core::Result<Tensor<3>> {
        let images: Vec<usize> = items.iter().map(|i| i.image).collect();
        let features = bank.batch(&images, device);
        let condition = match model {
            VisionAdapter::QFormer(q) if q.instruction.is_some() => {
                let qs: Vec<&str> = items.iter().map(|i| i.question.as_str()).collect();
                Some(self.condition(&qs, device)?)
            }
            _ => None,
        };
        Ok(model.adapt(&features, condition.as_ref()))
    }

    fn prompts(
        &self,
        soft: Option<Tensor<3>>,
        items: &[&VqaItem],
        answers: Option<&[Vec<u32>]>,
    ) -> glaze_core::Result<Vec<Prompt>> {
        let mut runs = soft.map(|s| SoftTokens::from_batch(s).into_iter());
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let run = runs.as_mut().and_then(Iterator::next);
                self.prompt(&item.question, run, answers.map(|a| a[i].clone()))
            })
            .collect()
    }

    /// Mean cross-entropy of the answers (and their end-of-turn), a tracked scalar.
    pub fn answer_loss(
        &self,
        model: &VisionAdapter,
        bank: &FeatureBank,
        items: &[&VqaItem],
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

    /// A free question about one image (`glaze ask --image`): the image through the frozen
    /// `encoder` (the core `Encoder`), its soft tokens from `model`, a greedy answer.
    pub fn ask(
        &self,
        model: &VisionAdapter,
        encoder: &impl Encoder<Input = RgbImage>,
        image: RgbImage,
        question: &str,
        max_new_tokens: usize,
    ) -> glaze_core::Result<String> {
        let device = self.backbone.device().clone();
        let bank = encode_bank(
            encoder,
            None,
            1,
            1,
            |_| Ok::<_, glaze_core::Error>(Vec::new()),
            |_, _| Ok(image.clone()),
            &device,
        )?;
        let item = VqaItem {
            image: 0,
            question: question.into(),
            answer: String::new(),
        };
        let answers = self.answer(Some(model), &bank, &[item], 1, max_new_tokens)?;
        Ok(answers.into_iter().next().unwrap_or_default())
    }

    /// Greedy answers, `batch` prompts at a time. `model = None` asks without any soft tokens
    /// (the "no image" baseline).
    pub fn answer(
        &self,
        model: Option<&VisionAdapter>,
        bank: &FeatureBank,
        items: &[VqaItem],
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

/// Question/answer pairs over a feature bank: the vision pipeline's [`ItemLoss`].
#[derive(Clone, Copy)]
pub struct VqaLoss<'a> {
    /// The frozen LLM.
    pub pipeline: VisionPipeline<'a>,
    /// Frozen image features.
    pub bank: &'a FeatureBank,
}

impl ItemLoss for VqaLoss<'_> {
    type Model = VisionAdapter;
    type Item = VqaItem;

    fn backbone(&self) -> &dyn FrozenBackbone {
        self.pipeline.backbone
    }

    fn item_loss(
        &self,
        model: &VisionAdapter,
        items: &[&VqaItem],
        device: &Device,
    ) -> glaze_core::Result<Tensor<1>> {
        self.pipeline.answer_loss(model, self.bank, items, device)
    }
}

/// Training a vision adapter on question/answer pairs.
pub type VqaTask<'a> = ItemTask<'a, VqaLoss<'a>>;
