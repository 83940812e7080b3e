//! Training on items (question/answer pairs, transcribed clips) whose loss a pipeline computes:
//! the one [`TrainTask`] of the plugins that answer in words.

use burn::prelude::*;
use glaze_core::{FrozenBackbone, Result};

use crate::trainer::TrainTask;

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

impl<P: ItemLoss> TrainTask for ItemTask<'_, P> {
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
