//! `SoftTokens`: vectors in the backbone's input-embedding space, produced by adapters.

use burn::prelude::*;

/// A run of soft tokens for one prompt slot.
///
/// # Shapes
/// `[N, D]`: `N` tokens of the backbone's width `D`.
#[derive(Debug, Clone)]
pub struct SoftTokens {
    tokens: Tensor<2>,
}

impl SoftTokens {
    /// Wraps a `[N, D]` tensor.
    pub fn new(tokens: Tensor<2>) -> Self {
        SoftTokens { tokens }
    }

    /// Splits a batch `[B, N, D]` into `B` runs of soft tokens.
    pub fn from_batch(batch: Tensor<3>) -> Vec<SoftTokens> {
        let [b, n, d] = batch.dims();
        (0..b)
            .map(|i| SoftTokens::new(batch.clone().slice(s![i..i + 1, .., ..]).reshape([n, d])))
            .collect()
    }

    /// Number of tokens `N`.
    pub fn len(&self) -> usize {
        self.tokens.dims()[0]
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width `D`.
    pub fn width(&self) -> usize {
        self.tokens.dims()[1]
    }

    /// The tensor `[N, D]`.
    pub fn tensor(&self) -> &Tensor<2> {
        &self.tokens
    }

    /// Consumes into the tensor `[N, D]`.
    pub fn into_tensor(self) -> Tensor<2> {
        self.tokens
    }
}
