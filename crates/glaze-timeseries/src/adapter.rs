//! The series adapter seen through the core [`Adapter`] interface: a patch embedding and,
//! for Time-LLM, reprogramming turn patch features into soft tokens of the LLM's width, one
//! per patch, that the forecaster runs through the frozen blocks or a prompt splices beside
//! other modalities.

use burn::prelude::*;
use glaze_core::{Adapter, Condition, Features};
use glaze_kernels::product_grad::ProductSink;

use crate::patch::PatchEmbedding;
use crate::reprogramming::Reprogramming;

/// Patch features → soft tokens: a patch embedding, then (Time-LLM and its no-LLM ablation)
/// reprogramming onto text prototypes; GPT4TS embeds patches straight to the LLM's width.
#[derive(Module, Debug)]
pub struct SeriesAdapter {
    /// Patch embedding.
    pub patch_embed: PatchEmbedding,
    /// Reprogramming layer (Time-LLM, no-LLM).
    pub reprogram: Option<Reprogramming>,
}

impl SeriesAdapter {
    /// [`Adapter::adapt`] in a training step: the prototype map's weight gradient may be
    /// deferred into `products` (`glaze_kernels::product_grad`).
    ///
    /// # Shapes
    /// `features.tokens [B, N, patch_len]` → `[B, N, output_width]`.
    pub fn adapt_deferring(
        &self,
        features: &Features,
        products: Option<&ProductSink>,
    ) -> Tensor<3> {
        let tokens = self.patch_embed.forward(features.tokens.clone());
        match &self.reprogram {
            Some(r) => r.forward(tokens, r.prototypes(products)),
            None => tokens,
        }
    }
}

impl Adapter for SeriesAdapter {
    fn output_width(&self) -> usize {
        match &self.reprogram {
            Some(r) => r.out.weight.val().dims()[1],
            None => self.patch_embed.linear.weight.val().dims()[1],
        }
    }

    fn num_tokens(&self, n_features: usize) -> usize {
        n_features
    }

    fn adapt(&self, features: &Features, _condition: Option<&Condition>) -> Tensor<3> {
        self.adapt_deferring(features, None)
    }
}
