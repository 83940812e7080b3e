//! Patching (PatchTST, Nie et al. ICLR 2023; Time-LLM and GPT4TS use it): a window of `L`
//! values is padded at the end by repeating its last value `stride` times, then cut into
//! overlapping patches of `patch_len` values every `stride` values:
//! `N = (L + stride − patch_len) / stride + 1` patches (12 for L = 96, 16 / 8).

/// Number of patches of a window of `len` values.
pub fn num_patches(len: usize, patch_len: usize, stride: usize) -> usize {
    (len + stride).saturating_sub(patch_len) / stride + 1
}

/// Cuts one window into patches (row-major `[N, patch_len]`).
pub fn patchify(x: &[f32], patch_len: usize, stride: usize) -> Vec<f32> {
    let last = x.last().copied().unwrap_or(0.0);
    let padded: Vec<f32> = x
        .iter()
        .copied()
        .chain(std::iter::repeat_n(last, stride))
        .collect();
    let n = num_patches(x.len(), patch_len, stride);
    let mut out = Vec::with_capacity(n * patch_len);
    for p in 0..n {
        out.extend_from_slice(&padded[p * stride..p * stride + patch_len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_by_hand() {
        // L = 6, patch 4, stride 2: padded [0 1 2 3 4 5 5 5] -> N = (6 + 2 - 4) / 2 + 1 = 3.
        let x = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(num_patches(6, 4, 2), 3);
        assert_eq!(
            patchify(&x, 4, 2),
            [0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 5.0, 4.0, 5.0, 5.0, 5.0]
        );
        assert_eq!(num_patches(96, 16, 8), 12);
        assert_eq!(num_patches(512, 16, 8), 64);
    }
}
