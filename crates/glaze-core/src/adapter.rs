//! Encoder and adapter interfaces shared by every modality plugin.
//!
//! An [`Encoder`] turns a typed modality input (an image, a clip, a series window) into
//! features; an [`Adapter`] turns features, optionally conditioned on the instruction text, into
//! soft tokens of the backbone's width.

use burn::prelude::*;

use crate::error::Result;

/// Identity of a frozen encoder, recorded in adapter checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderSpec {
    /// Name, e.g. `dinov2-vit-s14`.
    pub name: String,
    /// Feature width `F`.
    pub feature_dim: usize,
    /// Hash of the weights file(s), hex; `none` for encoders without weights.
    pub weights_hash: String,
}

/// Features produced by an encoder.
#[derive(Debug, Clone)]
pub struct Features {
    /// `[B, N, F]`: `N` feature vectors of width `F` per example.
    pub tokens: Tensor<3>,
    /// Optional validity mask `[B, N]` (`true` = real), for variable-length inputs.
    pub mask: Option<Tensor<2, Bool>>,
}

impl Features {
    /// Features without a mask.
    pub fn new(tokens: Tensor<3>) -> Self {
        Features { tokens, mask: None }
    }

    /// Batch size `B`.
    pub fn batch(&self) -> usize {
        self.tokens.dims()[0]
    }
}

/// A frozen encoder of one modality.
pub trait Encoder {
    /// The typed input (decoded image, audio clip, series window, ...).
    type Input;

    /// Identity and feature width.
    fn spec(&self) -> &EncoderSpec;

    /// Encodes a batch of inputs. Invalid inputs are typed errors.
    fn encode(&self, inputs: &[Self::Input], device: &Device) -> Result<Features>;

    /// How many feature vectors one input produces (the preprocessor's formula).
    fn num_features(&self, input: &Self::Input) -> usize;
}

/// Text the adapter may condition on (InstructBLIP's instruction-aware Q-Former, APT's
/// instruction-conditioned aligner, text-conditioned resamplers).
#[derive(Debug, Clone)]
pub struct Condition {
    /// Embedded instruction `[B, L, D]` (backbone width).
    pub embeds: Tensor<3>,
    /// Padding mask `[B, L]`, `true` for real positions.
    pub mask: Option<Tensor<2, Bool>>,
}

/// A trainable map from features to soft tokens.
pub trait Adapter {
    /// Width of the soft tokens (must equal the backbone's `d_model`).
    fn output_width(&self) -> usize;

    /// How many soft tokens `n_features` feature vectors become.
    fn num_tokens(&self, n_features: usize) -> usize;

    /// Maps features to soft tokens.
    ///
    /// # Shapes
    /// `features.tokens [B, N, F]` → `[B, num_tokens(N), output_width]`.
    fn adapt(&self, features: &Features, condition: Option<&Condition>) -> Tensor<3>;
}
