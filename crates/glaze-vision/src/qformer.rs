//! BLIP-2's Querying Transformer (Li et al. 2023; LAVIS `Blip2Qformer`), sized for Glaze:
//! `Q` learned queries pass through blocks of self-attention, cross-attention onto the frozen
//! image features, and a feed-forward layer; a final linear map brings them to the LLM width
//! (BLIP-2's `llm_proj`). So every image becomes exactly `Q` soft tokens.
//!
//! Instruction-aware mode (InstructBLIP, Dai et al. 2023): the instruction's LLM embeddings are
//! projected to the Q-Former width and join the keys/values of every self-attention, so the
//! queries extract what the question asks about. Differences from LAVIS, stated: pre-norm blocks
//! trained from scratch (no BERT initialisation, no image-text pre-training stage), and instruction
//! tokens are not themselves updated layer by layer (they are context only).

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use glaze_core::Condition;

use crate::attention::{Attention, AttentionConfig, learned_tokens, with_always_attended};
use crate::mlp::{Mlp, MlpConfig};

/// Configuration of a [`QFormer`].
#[derive(Config, Debug)]
pub struct QFormerConfig {
    /// Image feature width `F`.
    pub d_feature: usize,
    /// LLM width `D`.
    pub d_model: usize,
    /// Number of queries `Q` (= soft tokens per image). Default 32 (BLIP-2).
    #[config(default = 32)]
    pub num_queries: usize,
    /// Inner width. Default 256.
    #[config(default = 256)]
    pub width: usize,
    /// Blocks. Default 2.
    #[config(default = 2)]
    pub layers: usize,
    /// Attention heads. Default 4.
    #[config(default = 4)]
    pub heads: usize,
    /// Condition the queries on the instruction (InstructBLIP). Default false.
    #[config(default = false)]
    pub instruction: bool,
}

impl QFormerConfig {
    /// Random initialisation (queries ~ N(0, 0.02), as BLIP-2).
    pub fn init(&self, device: &Device) -> QFormer {
        let w = self.width;
        let block = |_| QFormerBlock {
            norm_self: LayerNormConfig::new(w).init(device),
            self_attn: AttentionConfig::new(w, w, w, self.heads).init(device),
            norm_cross: LayerNormConfig::new(w).init(device),
            cross_attn: AttentionConfig::new(w, self.d_feature, w, self.heads).init(device),
            norm_ff: LayerNormConfig::new(w).init(device),
            ff: MlpConfig::new(w, 4 * w, w).init(device),
        };
        QFormer {
            queries: learned_tokens(self.num_queries, w, device),
            feature_norm: LayerNormConfig::new(self.d_feature).init(device),
            instruction: self
                .instruction
                .then(|| LinearConfig::new(self.d_model, w).init(device)),
            blocks: (0..self.layers).map(block).collect(),
            norm: LayerNormConfig::new(w).init(device),
            out: LinearConfig::new(w, self.d_model).init(device),
        }
    }
}

/// One Q-Former block.
#[derive(Module, Debug)]
pub struct QFormerBlock {
    /// Norm before self-attention.
    pub norm_self: LayerNorm,
    /// Self-attention among queries (+ instruction context).
    pub self_attn: Attention,
    /// Norm before cross-attention.
    pub norm_cross: LayerNorm,
    /// Cross-attention onto image features.
    pub cross_attn: Attention,
    /// Norm before the feed-forward layer.
    pub norm_ff: LayerNorm,
    /// Feed-forward layer.
    pub ff: Mlp,
}

/// The Querying Transformer.
#[derive(Module, Debug)]
pub struct QFormer {
    /// Learned queries `[1, Q, W]`.
    pub queries: Param<Tensor<3>>,
    /// Norm of the frozen features (BLIP-2's `ln_vision`).
    pub feature_norm: LayerNorm,
    /// Instruction projection `D → W` (InstructBLIP mode only).
    pub instruction: Option<Linear>,
    /// The blocks.
    pub blocks: Vec<QFormerBlock>,
    /// Final norm.
    pub norm: LayerNorm,
    /// Map to the LLM width.
    pub out: Linear,
}

impl QFormer {
    /// Number of queries.
    pub fn num_queries(&self) -> usize {
        self.queries.dims()[1]
    }

    /// # Shapes
    /// `features [B, N, F]`, optional instruction `[B, L, D]` → `[B, Q, D]`.
    pub fn forward(
        &self,
        features: Tensor<3>,
        feature_mask: Option<Tensor<2, Bool>>,
        condition: Option<&Condition>,
    ) -> Tensor<3> {
        let b = features.dims()[0];
        let [_, q, w] = self.queries.dims();
        let feats = self.feature_norm.forward(features);
        let mut x = self.queries.val().expand([b, q, w]);
        let context = match (&self.instruction, condition) {
            (Some(proj), Some(c)) => Some((proj.forward(c.embeds.clone()), c.mask.clone())),
            _ => None,
        };
        for block in &self.blocks {
            let h = block.norm_self.forward(x.clone());
            let (kv, mask) = match &context {
                Some((t, m)) => (
                    Tensor::cat(vec![h.clone(), t.clone()], 1),
                    with_always_attended(m.clone(), q, true),
                ),
                None => (h.clone(), None),
            };
            x = x + block.self_attn.forward(h, kv, mask);
            let h = block.norm_cross.forward(x.clone());
            x = x + block
                .cross_attn
                .forward(h, feats.clone(), feature_mask.clone());
            x = x.clone() + block.ff.forward(block.norm_ff.forward(x));
        }
        self.out.forward(self.norm.forward(x))
    }
}
