//! Time-LLM's adapter seen through the core [`Adapter`] interface: patch embedding plus
//! reprogramming turn patch features into soft tokens of the LLM's width, one per patch, that
//! can be spliced into any prompt (e.g. beside speech or image tokens).

use burn::prelude::*;
use glaze_core::{Adapter, Condition, Features};

use crate::patch::PatchEmbedding;
use crate::reprogramming::{Reprogramming, WordTable};

/// Patch features → soft tokens, by reprogramming onto text prototypes.
#[derive(Module, Debug)]
pub struct SeriesAdapter {
    /// Patch embedding.
    pub patch_embed: PatchEmbedding,
    /// Reprogramming layer.
    pub reprogram: Reprogramming,
    /// The frozen LLM's word embeddings `[V, D]` (not a parameter, not saved).
    #[module(skip)]
    pub embed: WordTable,
}

impl Adapter for SeriesAdapter {
    fn output_width(&self) -> usize {
        self.reprogram.out.weight.val().dims()[1]
    }

    fn num_tokens(&self, n_features: usize) -> usize {
        n_features
    }

    /// # Shapes
    /// `features.tokens [B, N, patch_len]` → `[B, N, D]`.
    fn adapt(&self, features: &Features, _condition: Option<&Condition>) -> Tensor<3> {
        let tokens = self.patch_embed.forward(features.tokens.clone());
        let protos = self.reprogram.prototypes(&self.embed, None);
        self.reprogram.forward(tokens, protos)
    }
}
