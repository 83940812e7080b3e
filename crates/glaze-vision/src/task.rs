//! Visual question answering through the frozen LLM: soft tokens from an adapter are spliced into
//! a chat prompt, the LLM answers in words. Training minimises cross-entropy on the answer tokens
//! only (prompt and soft tokens masked out); evaluation generates greedily and compares text.

use burn::prelude::*;
use glaze_core::answer::{
    answer_loss, answer_target, chat_segments, greedy_answers, reject_placeholder,
};
use glaze_core::{
    Adapter, Condition, Features, FrozenBackbone, Prompt, SoftTokens, TextCodec, embed_batch,
};
use glaze_train::{ItemLoss, ItemTask};

use crate::adapter::VisionAdapter;

/// Frozen features of a set of images, on the host: one `[N, F]` array per image.
#[derive(Debug, Clone)]
pub struct FeatureBank {
    /// Feature vectors per image.
    pub n: usize,
    /// Feature width.
    pub f: usize,
    /// Row-major `[N, F]` per image.
    pub rows: Vec<Vec<f32>>,
}

impl FeatureBank {
    /// `[B, N, F]` for the given images.
    pub fn batch(&self, images: &[usize], device: &Device) -> Tensor<3> {
        let mut data = Vec::with_capacity(images.len() * self.n * self.f);
        for &i in images {
            data.extend_from_slice(&self.rows[i]);
        }
        Tensor::from_data(
            TensorData::new(data, [images.len(), self.n, self.f]),
            device,
        )
    }
}

/// A question about an image and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqaItem {
    /// Index into the [`FeatureBank`].
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
    /// Token ids before and after the image in the rendered chat (with the generation prompt).
    pub fn frame(&self, question: &str) -> glaze_core::Result<(Vec<u32>, Vec<u32>)> {
        reject_placeholder(question, MARKER, "question")?;
        let mut parts =
            chat_segments(self.codec, SYSTEM, &format!("{MARKER}\n{question}"), MARKER)?;
        let after = parts.pop().unwrap_or_default();
        Ok((parts.pop().unwrap_or_default(), after))
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
        let features = Features::new(bank.batch(&images, device));
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
        let runs = soft.map(SoftTokens::from_batch);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let (before, after) = self.frame(&item.question)?;
                let mut p = Prompt::new().ids(before);
                if let Some(runs) = &runs {
                    p = p.soft(runs[i].clone());
                }
                p = p.ids(after);
                if let Some(a) = answers {
                    p = p.ids(a[i].clone());
                }
                Ok(p)
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
            .map(|i| answer_target(self.codec, &i.answer))
            .collect::<glaze_core::Result<_>>()?;
        let soft = self.soft_tokens(model, bank, items, device)?;
        let prompts = self.prompts(Some(soft), items, Some(&targets))?;
        answer_loss(self.backbone, self.codec, &prompts, &targets, device)
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
        greedy_answers(
            self.backbone,
            self.codec,
            items,
            batch,
            max_new_tokens,
            |refs, device| {
                let soft = match model {
                    Some(m) => Some(self.soft_tokens(m, bank, refs, device)?),
                    None => None,
                };
                self.prompts(soft, refs, None)
            },
        )
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
