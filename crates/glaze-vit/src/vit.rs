//! A ViT image encoder matching DINOv2 (Oquab et al. 2023; HF `Dinov2Model`) and plain ViT
//! (HF `ViTModel`): patch embedding, CLS token, position embeddings interpolated to the patch
//! grid, pre-norm blocks with optional layer scale, final LayerNorm.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::pos_embed::resize_grid;
use crate::vit_layer::{ViTLayer, ViTLayerConfig};
use glaze_core::layers::attention::learned_tokens;

/// Configuration of a [`ViT`].
#[derive(Config, Debug, PartialEq)]
pub struct ViTConfig {
    /// Token width `D`.
    pub dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// MLP hidden width.
    pub mlp_dim: usize,
    /// Patch side in pixels. Default 14.
    #[config(default = 14)]
    pub patch_size: usize,
    /// Side of the learned position-embedding grid (37 for DINOv2: 518 px / 14). Default 37.
    #[config(default = 37)]
    pub pos_grid: usize,
    /// LayerNorm epsilon. Default 1e-6.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Layer scale in every block. Default true.
    #[config(default = true)]
    pub layer_scale: bool,
}

impl ViTConfig {
    /// DINOv2 ViT-S/14: 384 wide, 12 blocks, 6 heads, MLP 1536.
    pub fn dinov2_small() -> Self {
        ViTConfig::new(384, 12, 6, 1536)
    }

    /// A tiny random configuration for tests: 32 wide, 2 blocks, patch 4, grid 4.
    pub fn tiny() -> Self {
        ViTConfig::new(32, 2, 2, 64)
            .with_patch_size(4)
            .with_pos_grid(4)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> ViT {
        let layer = ViTLayerConfig::new(self.dim, self.n_heads, self.mlp_dim)
            .with_eps(self.eps)
            .with_layer_scale(self.layer_scale);
        let p = self.patch_size;
        ViT {
            patch: LinearConfig::new(3 * p * p, self.dim).init(device),
            cls_token: learned_tokens(1, self.dim, device),
            pos_embed: learned_tokens(1 + self.pos_grid * self.pos_grid, self.dim, device),
            layers: (0..self.depth).map(|_| layer.init(device)).collect(),
            norm: LayerNormConfig::new(self.dim)
                .with_epsilon(self.eps)
                .init(device),
            patch_size: p,
            pos_grid: self.pos_grid,
        }
    }
}

/// Which hidden state the encoder returns.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct FeatureSelect {
    /// Blocks to run: `None` = all; `Some(k)` = the output of block `k` (1-based; LLaVA takes the
    /// penultimate, `depth - 1`). Default all.
    #[config(default = "None")]
    pub layer: Option<usize>,
    /// Apply the final LayerNorm. Default true (the model's own output).
    #[config(default = true)]
    pub final_norm: bool,
    /// Keep the CLS token in front of the patches. Default true.
    #[config(default = true)]
    pub cls: bool,
}

/// The ViT encoder.
#[derive(Module, Debug)]
pub struct ViT {
    /// Patch embedding as a linear map of flattened `3 × p × p` patches (a stride-`p` convolution).
    pub patch: Linear,
    /// `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// `[1, 1 + G², D]`: CLS position, then the learned `G × G` grid.
    pub pos_embed: Param<Tensor<3>>,
    /// The blocks.
    pub layers: Vec<ViTLayer>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Patch side.
    pub patch_size: usize,
    /// Side of the learned grid.
    pub pos_grid: usize,
}

impl ViT {
    /// Token width.
    pub fn dim(&self) -> usize {
        self.cls_token.dims()[2]
    }

    /// Position embeddings for a `gh × gw` grid, interpolated on the host when it differs from
    /// the learned one. `[1, 1 + gh·gw, D]`.
    fn positions(&self, gh: usize, gw: usize) -> Tensor<3> {
        let pos = self.pos_embed.val();
        let g = self.pos_grid;
        if (gh, gw) == (g, g) {
            return pos;
        }
        let d = self.dim();
        let device = pos.device();
        let cls = pos.clone().slice([0..1, 0..1]);
        let grid: Vec<f32> = pos
            .slice([0..1, 1..1 + g * g])
            .into_data()
            .try_to_vec::<f32>()
            .expect("invariant: f32 position table");
        let resized = resize_grid(&grid, (g, g), (gh, gw), d);
        let patches = Tensor::<3>::from_data(TensorData::new(resized, [1, gh * gw, d]), &device);
        Tensor::cat(vec![cls, patches], 1)
    }

    /// Patch + CLS + position embeddings.
    ///
    /// # Shapes
    /// `pixels [B, 3, H, W]` (H, W multiples of the patch) → `[B, 1 + (H/p)(W/p), D]`.
    pub fn embed(&self, pixels: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = pixels.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let patches = pixels
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, c * p * p]);
        let tokens = glaze_kernels::matmul::linear(&self.patch, patches);
        let cls = self.cls_token.val().expand([b, 1, self.dim()]);
        Tensor::cat(vec![cls, tokens], 1) + self.positions(gh, gw)
    }

    /// Runs the encoder and returns the selected hidden state.
    ///
    /// # Shapes
    /// `pixels [B, 3, H, W]` → `[B, N, D]` with `N = (H/p)(W/p) (+1 with CLS)`.
    pub fn forward(&self, pixels: Tensor<4>, select: &FeatureSelect) -> Tensor<3> {
        let blocks = select
            .layer
            .unwrap_or(self.layers.len())
            .min(self.layers.len());
        let mut x = self.embed(pixels);
        for layer in &self.layers[..blocks] {
            x = layer.forward(x);
        }
        if select.final_norm {
            x = self.norm.forward(x);
        }
        if select.cls {
            x
        } else {
            let [b, n, d] = x.dims();
            x.slice([0..b, 1..n, 0..d])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_layers_and_cls() {
        let device = Device::flex();
        device.seed(1);
        let vit = ViTConfig::tiny().init(&device);
        let px = Tensor::<4>::random([2, 3, 16, 16], burn::tensor::Distribution::Default, &device);
        let all = vit.forward(px.clone(), &FeatureSelect::new());
        assert_eq!(all.dims(), [2, 17, 32]);
        let no_cls = vit.forward(px.clone(), &FeatureSelect::new().with_cls(false));
        assert_eq!(no_cls.dims(), [2, 16, 32]);
        let diff = (all.clone().slice([0..2, 1..17]) - no_cls)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0);
        // A smaller input uses an interpolated grid.
        let small =
            Tensor::<4>::random([1, 3, 8, 12], burn::tensor::Distribution::Default, &device);
        assert_eq!(vit.forward(small, &FeatureSelect::new()).dims(), [1, 7, 32]);
        let first = vit.forward(
            px,
            &FeatureSelect::new()
                .with_layer(Some(1))
                .with_final_norm(false),
        );
        assert!((first - all).abs().max().into_scalar::<f32>() > 1e-3);
    }

    /// The patch embedding equals a stride-p convolution computed by hand for one output.
    #[test]
    fn patch_embedding_is_a_strided_convolution() {
        let device = Device::flex();
        device.seed(2);
        let vit = ViTConfig::tiny().init(&device);
        let px = Tensor::<4>::random([1, 3, 8, 8], burn::tensor::Distribution::Default, &device);
        let tokens = vit.patch.forward(
            px.clone()
                .reshape([1, 3, 2, 4, 2, 4])
                .permute([0, 2, 4, 1, 3, 5])
                .reshape([1, 4, 48]),
        );
        let pv: Vec<f32> = px.into_data().try_to_vec::<f32>().expect("f32");
        let w: Vec<f32> = vit
            .patch
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let bias: Vec<f32> = vit
            .patch
            .bias
            .as_ref()
            .expect("bias")
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        // Patch (row 1, col 0), output channel 5.
        let (py, pxi, o) = (1, 0, 5);
        let mut want = bias[o];
        for c in 0..3 {
            for ky in 0..4 {
                for kx in 0..4 {
                    let pixel = pv[c * 64 + (py * 4 + ky) * 8 + pxi * 4 + kx];
                    want += pixel * w[(c * 16 + ky * 4 + kx) * 32 + o];
                }
            }
        }
        let got: Vec<f32> = tokens.into_data().try_to_vec::<f32>().expect("f32");
        assert!((got[2 * 32 + o] - want).abs() < 1e-5);
    }
}
