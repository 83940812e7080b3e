//! Multi-head attention with separate query and context widths: self-attention in the ViT,
//! cross-attention from Q-Former queries or Perceiver latents onto image features.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use glaze_kernels::matmul::linear;

/// Configuration of an [`Attention`] layer.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Width of the query stream (and of the output).
    pub d_query: usize,
    /// Width of the keys/values stream.
    pub d_context: usize,
    /// Inner width, split into heads.
    pub d_inner: usize,
    /// Number of heads; must divide `d_inner`.
    pub n_heads: usize,
}

impl AttentionConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Attention {
        assert!(
            self.n_heads > 0 && self.d_inner.is_multiple_of(self.n_heads),
            "invariant: heads divide the inner width (validated by the owning config)"
        );
        Attention {
            query: LinearConfig::new(self.d_query, self.d_inner).init(device),
            key: LinearConfig::new(self.d_context, self.d_inner).init(device),
            value: LinearConfig::new(self.d_context, self.d_inner).init(device),
            out: LinearConfig::new(self.d_inner, self.d_query).init(device),
            n_heads: self.n_heads,
        }
    }
}

/// Scaled dot-product multi-head attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection back to the query width.
    pub out: Linear,
    /// Heads.
    pub n_heads: usize,
}

impl Attention {
    /// # Shapes
    /// `x [B, Nq, d_query]`, `context [B, Nk, d_context]`, optional `key_mask [B, Nk]`
    /// (`true` = attend) → `[B, Nq, d_query]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        context: Tensor<3>,
        key_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let [b, nq, _] = x.dims();
        let nk = context.dims()[1];
        let h = self.n_heads;
        let inner = self.query.weight.dims()[1];
        let dh = inner / h;
        let split = |t: Tensor<3>, n: usize| t.reshape([b, n, h, dh]).swap_dims(1, 2);
        let q = split(linear(&self.query, x), nq);
        let k = split(linear(&self.key, context.clone()), nk);
        let v = split(linear(&self.value, context), nk);
        let mut scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
        if let Some(mask) = key_mask {
            let blocked = mask
                .bool_not()
                .reshape([b, 1, 1, nk])
                .expand([b, h, nq, nk]);
            scores = scores.mask_fill(blocked, -1.0e9);
        }
        let att = glaze_kernels::softmax::softmax(scores).matmul(v);
        linear(&self.out, att.swap_dims(1, 2).reshape([b, nq, inner]))
    }
}

/// `[1, n, width]` learned tokens (queries, latents, CLS), initialised N(0, 0.02) as BLIP-2 and
/// Flamingo do.
pub fn learned_tokens(n: usize, width: usize, device: &Device) -> Param<Tensor<3>> {
    Param::from_tensor(Tensor::random(
        [1, n, width],
        burn::tensor::Distribution::Normal(0.0, 0.02),
        device,
    ))
}

/// A key mask over `[extra; keys]` (`extra_first`) or `[keys; extra]`, where the `n_extra`
/// positions are always attended. `None` stays `None` (no padding anywhere).
pub fn with_always_attended(
    mask: Option<Tensor<2, Bool>>,
    n_extra: usize,
    extra_first: bool,
) -> Option<Tensor<2, Bool>> {
    mask.map(|m| {
        let b = m.dims()[0];
        let ones = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true; b * n_extra], [b, n_extra]),
            &m.device(),
        );
        if extra_first {
            Tensor::cat(vec![ones, m], 1)
        } else {
            Tensor::cat(vec![m, ones], 1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked key gets no weight: the output equals attention over the unmasked keys only.
    #[test]
    fn masked_keys_are_ignored() {
        let device = Device::flex();
        device.seed(3);
        let att = AttentionConfig::new(8, 6, 8, 2).init(&device);
        let x = Tensor::<3>::random([1, 3, 8], burn::tensor::Distribution::Default, &device);
        let ctx = Tensor::<3>::random([1, 5, 6], burn::tensor::Distribution::Default, &device);
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, true, false, true, false], [1, 5]),
            &device,
        );
        let masked = att.forward(x.clone(), ctx.clone(), Some(mask));
        let kept = Tensor::cat(
            vec![ctx.clone().slice([0..1, 0..2]), ctx.slice([0..1, 3..4])],
            1,
        );
        let direct = att.forward(x, kept, None);
        let diff = (masked - direct).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }
}
