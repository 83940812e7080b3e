//! Losses for adapters trained against a frozen backbone.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean cross-entropy of next-token predictions over the positions where `weights` is non-zero.
///
/// `logits[b, t]` predicts `targets[b, t]`; prompt and soft-token positions carry weight 0 so
/// that only target text tokens are learned.
///
/// # Shapes
/// `logits [B, T, V]`, `targets [B, T]`, `weights [B, T]` → scalar `[1]`.
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Tensor<2>,
) -> Tensor<1> {
    let [b, t, _] = logits.dims();
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, targets.reshape([b, t, 1])).reshape([b, t]);
    let total = weights.clone().sum().clamp_min(1e-9);
    (picked * weights).sum().neg() / total
}

/// A regression loss for heads that read hidden states (forecasting, scores).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionLoss {
    /// Mean squared error.
    #[default]
    Mse,
    /// Mean absolute error.
    Mae,
}

impl RegressionLoss {
    /// The mean loss over all elements.
    ///
    /// # Shapes
    /// `pred [B, H]`, `target [B, H]` → scalar `[1]`.
    pub fn apply(self, pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
        let diff = pred - target;
        match self {
            RegressionLoss::Mse => (diff.clone() * diff).mean(),
            RegressionLoss::Mae => diff.abs().mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let device = Device::flex();
        // One row, two positions, vocabulary of 3; only the second position is weighted.
        let logits = Tensor::<3>::from_data([[[1.0f32, 2.0, 3.0], [0.5, 0.5, 2.0]]], &device);
        let targets = Tensor::<2, Int>::from_data([[0i64, 2]], &device);
        let weights = Tensor::<2>::from_data([[0.0f32, 1.0]], &device);
        let loss = masked_cross_entropy(logits, targets, weights).into_scalar::<f32>();
        let expected = -(2.0f32 - (0.5f32.exp() * 2.0 + 2.0f32.exp()).ln());
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn regression_losses_by_hand() {
        let device = Device::flex();
        let p = Tensor::<2>::from_data([[1.0f32, 2.0], [0.0, -1.0]], &device);
        let t = Tensor::<2>::from_data([[0.0f32, 2.0], [2.0, -1.0]], &device);
        let mse = RegressionLoss::Mse
            .apply(p.clone(), t.clone())
            .into_scalar::<f32>();
        let mae = RegressionLoss::Mae.apply(p, t).into_scalar::<f32>();
        assert!((mse - 5.0 / 4.0).abs() < 1e-6, "{mse}");
        assert!((mae - 3.0 / 4.0).abs() < 1e-6, "{mae}");
    }
}
