//! The Acoustic-Prompt-Tuning aligner (Liang et al. 2023, "Acoustic Prompt Tuning"): a Q-Former
//! whose learned queries read the frozen audio features by cross-attention and, in instruction
//! mode, the instruction's LLM embeddings by self-attention, so every clip becomes `queries`
//! soft tokens shaped by what is asked. The layers are the core's (`glaze_core::layers`), the
//! same Q-Former the vision plugin uses.

use burn::prelude::*;
use glaze_core::layers::qformer::{QFormer, QFormerConfig};
use glaze_core::{Adapter, Condition, Features};

use crate::error::{Error, Result};

/// Size of the aligner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AptConfig {
    /// Learned queries (soft tokens per clip).
    pub queries: usize,
    /// Inner width.
    pub width: usize,
    /// Blocks.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
    /// Condition the queries on the instruction (APT); false = a plain Q-Former (ablation).
    pub instruction: bool,
}

impl Default for AptConfig {
    fn default() -> Self {
        AptConfig {
            queries: 16,
            width: 256,
            layers: 2,
            heads: 4,
            instruction: true,
        }
    }
}

impl AptConfig {
    /// Short name: `apt` or `qformer`.
    pub fn name(&self) -> &'static str {
        if self.instruction { "apt" } else { "qformer" }
    }

    /// Checks the sizes and builds the aligner from features of width `d_feature` to `d_model`.
    pub fn init(&self, d_feature: usize, d_model: usize, device: &Device) -> Result<AptAligner> {
        if self.queries == 0 || self.layers == 0 || self.heads == 0 {
            return Err(Error::config(
                "apt",
                "queries, layers and heads must be at least 1",
            ));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(Error::config(
                "heads",
                format!(
                    "{} heads do not divide the width {}",
                    self.heads, self.width
                ),
            ));
        }
        Ok(AptAligner {
            qformer: QFormerConfig::new(d_feature, d_model)
                .with_num_queries(self.queries)
                .with_width(self.width)
                .with_layers(self.layers)
                .with_heads(self.heads)
                .with_instruction(self.instruction)
                .init(device),
        })
    }
}

/// The aligner module.
#[derive(Module, Debug)]
pub struct AptAligner {
    /// The Q-Former.
    pub qformer: QFormer,
}

impl AptAligner {
    /// Whether the queries read the instruction.
    pub fn uses_instruction(&self) -> bool {
        self.qformer.instruction.is_some()
    }
}

impl Adapter for AptAligner {
    fn output_width(&self) -> usize {
        self.qformer.out.weight.dims()[1]
    }

    fn num_tokens(&self, _n_features: usize) -> usize {
        self.qformer.num_queries()
    }

    /// Padded frames (mask `false`) are never attended.
    fn adapt(&self, features: &Features, condition: Option<&Condition>) -> Tensor<3> {
        let mask = features
            .mask
            .clone()
            .map(|m| m.to_device(&features.tokens.device()));
        self.qformer
            .forward(features.tokens.clone(), mask, condition)
    }
}

impl glaze_train::AdapterConfig for AptConfig {
    type Adapter = AptAligner;
    type Error = Error;

    fn kind(&self) -> String {
        format!("audio/{}", self.name())
    }

    fn build(
        &self,
        encoder: Option<&glaze_core::EncoderSpec>,
        backbone: &dyn glaze_core::FrozenBackbone,
        device: &Device,
    ) -> Result<AptAligner> {
        let encoder = encoder
            .ok_or_else(|| Error::config("encoder", "an audio aligner needs its encoder"))?;
        self.init(encoder.feature_dim, backbone.spec().d_model, device)
    }
}
