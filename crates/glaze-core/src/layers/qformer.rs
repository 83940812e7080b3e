//! BLIP-2's Querying Transformer (Li et al. 2023; LAVIS `Blip2Qformer`), sized for Glaze:
//! `Q` learned queries pass through blocks of self-attention, cross-attention onto the frozen
//! encoder features (image patches, audio frames), and a feed-forward layer; a final linear map
//! brings them to the LLM width (BLIP-2's `llm_proj`). So every image or clip becomes exactly
//! `Q` soft tokens.
//!
//! Instruction-aware mode (InstructBLIP, Dai et al. 2023): the instruction's LLM embeddings are
//! projected to the Q-Former width and join the keys/values of every self-attention, so the
//! queries extract what the question asks about. Differences from LAVIS, stated: pre-norm blocks
//! trained from scratch (no BERT initialisation, no image-text pre-training stage), and instruction
//! tokens are not themselves updated layer by layer (they are context only).

use crate::adapter::Condition;
use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::layers::attention::{Attention, AttentionConfig, learned_tokens, with_always_attended};
use crate::layers::mlp::{Mlp, MlpConfig};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn t3(v: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// InstructBLIP mode: the queries read the instruction (another instruction, other soft
    /// tokens), and padded instruction positions are ignored.
    #[test]
    fn instruction_conditions_the_queries_and_padding_is_ignored() {
        let device = Device::flex();
        device.seed(5);
        let q = QFormerConfig::new(6, 8)
            .with_num_queries(3)
            .with_width(8)
            .with_layers(1)
            .with_heads(2)
            .with_instruction(true)
            .init(&device);
        let feats = t3(
            (0..2 * 6).map(|i| (i as f32 * 0.3).sin()).collect(),
            [1, 2, 6],
            &device,
        );
        let instr = |v: f32| t3(vec![v; 2 * 8], [1, 2, 8], &device);
        let cond = |embeds: Tensor<3>, mask: Option<Vec<bool>>| Condition {
            mask: mask.map(|m| {
                let n = m.len();
                Tensor::<2, Bool>::from_data(TensorData::new(m, [1, n]), &device)
            }),
            embeds,
        };
        let a = q.forward(feats.clone(), None, Some(&cond(instr(0.5), None)));
        let b = q.forward(feats.clone(), None, Some(&cond(instr(-0.5), None)));
        assert_eq!(a.dims(), [1, 3, 8]);
        let diff = (a.clone() - b).abs().max().into_scalar::<f32>();
        assert!(
            diff > 1e-4,
            "the instruction changes the soft tokens ({diff})"
        );
        // A padded third instruction token changes nothing.
        let padded = Tensor::cat(vec![instr(0.5), t3(vec![9.0; 8], [1, 1, 8], &device)], 1);
        let c = q.forward(
            feats,
            None,
            Some(&cond(padded, Some(vec![true, true, false]))),
        );
        let same = (a - c).abs().max().into_scalar::<f32>();
        assert!(same < 1e-5, "padding leaked into the queries ({same})");
    }
}
