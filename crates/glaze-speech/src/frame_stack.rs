//! Frame stacking + projection (Fathullah et al., "Prompting Large Language Models with Speech
//! Recognition Abilities"; SLAM-ASR trains only such a projector): every `stride` consecutive
//! encoder frames are concatenated into one vector of width `stride · F`, then projected to the
//! LLM width by one linear layer, or by Linear-ReLU-Linear when `hidden > 0` (SLAM-ASR).
//! A clip of `N` frames gives `ceil(N / stride)` soft tokens; the last group is zero-filled.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Configuration of a [`FrameStack`].
#[derive(Config, Debug)]
pub struct FrameStackConfig {
    /// Encoder feature width `F`.
    pub d_feature: usize,
    /// LLM width `D`.
    pub d_model: usize,
    /// Frames per soft token.
    pub stride: usize,
    /// Hidden width of a two-layer projector; 0 = one linear layer.
    #[config(default = 0)]
    pub hidden: usize,
}

impl FrameStackConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> FrameStack {
        let d_in = self.d_feature * self.stride;
        let (first, second) = if self.hidden == 0 {
            (LinearConfig::new(d_in, self.d_model).init(device), None)
        } else {
            (
                LinearConfig::new(d_in, self.hidden).init(device),
                Some(LinearConfig::new(self.hidden, self.d_model).init(device)),
            )
        };
        FrameStack {
            first,
            second,
            stride: self.stride,
        }
    }
}

/// Stacks frames and projects them.
#[derive(Module, Debug)]
pub struct FrameStack {
    /// First (or only) projection, `stride·F → hidden or D`.
    pub first: Linear,
    /// Second projection after ReLU, when two-layer.
    pub second: Option<Linear>,
    /// Frames per token.
    pub stride: usize,
}

/// `[B, N, F]` → `[B, ceil(N/k), k·F]`, zero-filling the last group.
pub fn stack_frames(x: Tensor<3>, k: usize) -> Tensor<3> {
    let [b, n, f] = x.dims();
    let groups = n.div_ceil(k);
    let x = if groups * k == n {
        x
    } else {
        let pad = Tensor::zeros([b, groups * k - n, f], &x.device());
        Tensor::cat(vec![x, pad], 1)
    };
    x.reshape([b, groups, k * f])
}

impl FrameStack {
    /// Soft tokens for `n` frames.
    pub fn num_tokens(&self, n: usize) -> usize {
        n.div_ceil(self.stride)
    }

    /// # Shapes
    /// `[B, N, F]` → `[B, ceil(N/stride), D]`.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        let h = self.first.forward(stack_frames(features, self.stride));
        match &self.second {
            Some(l) => l.forward(relu(h)),
            None => h,
        }
    }
}
