//! Flamingo's Perceiver resampler (Alayrac et al. 2022, §A.1.1): `Q` learned latents attend to
//! the concatenation of the image features and themselves, then pass a feed-forward layer, for a
//! few blocks; every image becomes exactly `Q` soft tokens after a final linear map to the LLM
//! width. Features are first projected to the resampler width when it differs.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use glaze_core::layers::attention::{
    Attention, AttentionConfig, learned_tokens, with_always_attended,
};
use glaze_core::layers::mlp::{Mlp, MlpConfig};

/// Configuration of a [`Perceiver`].
#[derive(Config, Debug)]
pub struct PerceiverConfig {
    /// Image feature width `F`.
    pub d_feature: usize,
    /// LLM width `D`.
    pub d_model: usize,
    /// Number of latents `Q` (= soft tokens per image). Default 64 (Flamingo).
    #[config(default = 64)]
    pub num_latents: usize,
    /// Inner width. Default 256.
    #[config(default = 256)]
    pub width: usize,
    /// Blocks. Default 2.
    #[config(default = 2)]
    pub layers: usize,
    /// Attention heads. Default 4.
    #[config(default = 4)]
    pub heads: usize,
}

impl PerceiverConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Perceiver {
        let w = self.width;
        let block = |_| PerceiverBlock {
            norm_features: LayerNormConfig::new(w).init(device),
            norm_latents: LayerNormConfig::new(w).init(device),
            attn: AttentionConfig::new(w, w, w, self.heads).init(device),
            norm_ff: LayerNormConfig::new(w).init(device),
            ff: MlpConfig::new(w, 4 * w, w).init(device),
        };
        Perceiver {
            latents: learned_tokens(self.num_latents, w, device),
            input: LinearConfig::new(self.d_feature, w).init(device),
            blocks: (0..self.layers).map(block).collect(),
            norm: LayerNormConfig::new(w).init(device),
            out: LinearConfig::new(w, self.d_model).init(device),
        }
    }
}

/// One resampler block.
#[derive(Module, Debug)]
pub struct PerceiverBlock {
    /// Norm of the features (keys/values).
    pub norm_features: LayerNorm,
    /// Norm of the latents (queries, and keys/values beside the features).
    pub norm_latents: LayerNorm,
    /// Attention of latents onto [features; latents].
    pub attn: Attention,
    /// Norm before the feed-forward layer.
    pub norm_ff: LayerNorm,
    /// Feed-forward layer.
    pub ff: Mlp,
}

/// The Perceiver resampler.
#[derive(Module, Debug)]
pub struct Perceiver {
    /// Learned latents `[1, Q, W]`.
    pub latents: Param<Tensor<3>>,
    /// Feature projection `F → W`.
    pub input: Linear,
    /// The blocks.
    pub blocks: Vec<PerceiverBlock>,
    /// Final norm.
    pub norm: LayerNorm,
    /// Map to the LLM width.
    pub out: Linear,
}

impl Perceiver {
    /// Number of latents.
    pub fn num_latents(&self) -> usize {
        self.latents.dims()[1]
    }

    /// # Shapes
    /// `features [B, N, F]` → `[B, Q, D]`.
    pub fn forward(&self, features: Tensor<3>, feature_mask: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let b = features.dims()[0];
        let [_, q, w] = self.latents.dims();
        let feats = self.input.forward(features);
        let mut x = self.latents.val().expand([b, q, w]);
        for block in &self.blocks {
            let f = block.norm_features.forward(feats.clone());
            let l = block.norm_latents.forward(x.clone());
            let kv = Tensor::cat(vec![f, l.clone()], 1);
            let mask = with_always_attended(feature_mask.clone(), q, false);
            x = x + block.attn.forward(l, kv, mask);
            x = x.clone() + block.ff.forward(block.norm_ff.forward(x));
        }
        self.out.forward(self.norm.forward(x))
    }
}
