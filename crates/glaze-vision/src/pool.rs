//! Average pooling of patch features on their square grid (LLaVA-style token reduction):
//! `g × g` patches become `⌊g/k⌋ × ⌊g/k⌋` tokens; a leading CLS token (when the count is
//! `1 + g²`) is kept as is.

use burn::prelude::*;

/// Integer square root when `n` is a perfect square.
fn square_side(n: usize) -> Option<usize> {
    let g = (n as f64).sqrt().round() as usize;
    (g * g == n).then_some(g)
}

/// Splits a feature count into (has CLS, grid side). Counts that are neither `g²` nor `1 + g²`
/// are treated as a flat sequence (no pooling possible).
pub fn layout(n: usize) -> Option<(bool, usize)> {
    square_side(n)
        .map(|g| (false, g))
        .or_else(|| n.checked_sub(1).and_then(square_side).map(|g| (true, g)))
}

/// Tokens after pooling `n` features by `k`.
pub fn pooled_count(n: usize, k: usize) -> usize {
    if k <= 1 {
        return n;
    }
    match layout(n) {
        Some((cls, g)) => usize::from(cls) + (g / k) * (g / k),
        None => n,
    }
}

/// # Shapes
/// `[B, N, F]` → `[B, pooled_count(N, k), F]`.
pub fn pool_grid(x: Tensor<3>, k: usize) -> Tensor<3> {
    let [b, n, f] = x.dims();
    if k <= 1 {
        return x;
    }
    let Some((cls, g)) = layout(n) else {
        return x;
    };
    let start = usize::from(cls);
    let m = g / k;
    let grid = x
        .clone()
        .slice([0..b, start..n, 0..f])
        .reshape([b, g, g, f])
        .slice([0..b, 0..m * k, 0..m * k, 0..f])
        .reshape([b, m, k, m, k, f]);
    let pooled = grid.mean_dim(4).mean_dim(2).reshape([b, m * m, f]);
    if cls {
        Tensor::cat(vec![x.slice([0..b, 0..1, 0..f]), pooled], 1)
    } else {
        pooled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_values() {
        assert_eq!(pooled_count(257, 2), 65);
        assert_eq!(pooled_count(256, 4), 16);
        assert_eq!(pooled_count(10, 2), 2); // CLS + 3×3 → CLS + 1×1
        assert_eq!(pooled_count(11, 2), 11); // not a grid: unpooled
        let device = Device::flex();
        // 1 CLS + 4×4 grid of value = index, one channel.
        let v: Vec<f32> = (0..17).map(|i| i as f32).collect();
        let x = Tensor::<3>::from_data(TensorData::new(v, [1, 17, 1]), &device);
        let got: Vec<f32> = pool_grid(x, 2)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        // Grid values are 1..=16 laid out row-major; top-left 2×2 = 1,2,5,6 → 3.5.
        assert_eq!(got, vec![0.0, 3.5, 5.5, 11.5, 13.5]);
    }
}
