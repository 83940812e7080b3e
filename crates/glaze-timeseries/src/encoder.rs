//! The series "encoder": RevIN and patching, with no weights — what turns a window of values
//! into features `[N, patch_len]` for the adapter. It lets a series enter any prompt through
//! the core interfaces, beside other modalities.

use burn::prelude::*;
use glaze_core::{Encoder, EncoderSpec, Features};

use crate::patch::{num_patches, patchify};
use crate::revin;

/// RevIN + patching of equal-length windows.
#[derive(Debug, Clone)]
pub struct PatchEncoder {
    spec: EncoderSpec,
    /// Values per patch.
    pub patch_len: usize,
    /// Patch stride.
    pub stride: usize,
}

impl PatchEncoder {
    /// An encoder for patches of `patch_len` values every `stride` values.
    pub fn new(patch_len: usize, stride: usize) -> Self {
        PatchEncoder {
            spec: EncoderSpec {
                name: format!("revin-patch-{patch_len}-{stride}"),
                feature_dim: patch_len,
                weights_hash: "none".into(),
            },
            patch_len,
            stride,
        }
    }
}

impl PatchEncoder {
    /// The identity recorded in checkpoints.
    pub fn spec_owned(&self) -> EncoderSpec {
        self.spec.clone()
    }
}

impl Encoder for PatchEncoder {
    type Input = Vec<f32>;

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    /// Windows must share one length of at least `patch_len` values and hold finite values.
    fn encode(&self, inputs: &[Vec<f32>], device: &Device) -> glaze_core::Result<Features> {
        let bad = |problem: String| glaze_core::Error::InvalidConfig {
            field: "series",
            problem,
        };
        let len = inputs
            .first()
            .map(Vec::len)
            .ok_or_else(|| bad("no window".into()))?;
        if len < self.patch_len {
            return Err(bad(format!(
                "a window of {len} values is shorter than one patch ({})",
                self.patch_len
            )));
        }
        if inputs.iter().any(|x| x.len() != len) {
            return Err(bad("windows of different lengths in one batch".into()));
        }
        if inputs.iter().flatten().any(|v| !v.is_finite()) {
            return Err(bad("a window holds NaN or infinite values".into()));
        }
        let rows: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let (normed, _) = revin::normalize(&rows);
        let n = num_patches(len, self.patch_len, self.stride);
        let data: Vec<f32> = normed
            .iter()
            .flat_map(|x| patchify(x, self.patch_len, self.stride))
            .collect();
        Ok(Features::new(Tensor::from_data(
            TensorData::new(data, [inputs.len(), n, self.patch_len]),
            device,
        )))
    }

    fn num_features(&self, input: &Vec<f32>) -> usize {
        num_patches(input.len(), self.patch_len, self.stride)
    }
}
