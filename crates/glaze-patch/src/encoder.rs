//! The series encoder: RevIN and patching, with no weights — what turns windows of values into
//! features `[B, N, patch_len]` for an adapter, through the core [`Encoder`] interface.

use burn::prelude::*;
use glaze_core::{Encoder, EncoderSpec, Features};

use crate::patching::{num_patches, patchify};
use crate::revin::{self, RevinStats};

/// RevIN + patching of equal-length windows.
#[derive(Debug, Clone)]
pub struct PatchEncoder {
    spec: EncoderSpec,
    /// Values per patch.
    pub patch_len: usize,
    /// Patch stride.
    pub stride: usize,
}

/// A batch of windows through [`PatchEncoder::encode_windows`].
#[derive(Debug, Clone)]
pub struct PatchedWindows {
    /// Patches `[B, N, patch_len]`.
    pub features: Features,
    /// The RevIN-normalised windows, one per input.
    pub normalized: Vec<Vec<f32>>,
    /// The statistics that map an output in the normalised space back
    /// ([`revin::denormalize`]).
    pub stats: RevinStats,
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

    /// The identity recorded in checkpoints.
    pub fn spec_owned(&self) -> EncoderSpec {
        self.spec.clone()
    }

    /// Checks, normalises and patches a batch. Windows must share one length of at least
    /// `patch_len` values and hold finite values; anything else is a typed error.
    pub fn encode_windows(
        &self,
        inputs: &[&[f32]],
        device: &Device,
    ) -> glaze_core::Result<PatchedWindows> {
        let bad = |problem: String| glaze_core::Error::InvalidConfig {
            field: "series",
            problem,
        };
        let len = inputs
            .first()
            .map(|x| x.len())
            .ok_or_else(|| bad("no window".into()))?;
        if self.patch_len == 0 || self.stride == 0 {
            return Err(bad("patch length and stride must be at least 1".into()));
        }
        if len < self.patch_len {
            return Err(bad(format!(
                "a window of {len} values is shorter than one patch ({})",
                self.patch_len
            )));
        }
        if inputs.iter().any(|x| x.len() != len) {
            return Err(bad("windows of different lengths in one batch".into()));
        }
        if inputs.iter().any(|x| x.iter().any(|v| !v.is_finite())) {
            return Err(bad("a window holds NaN or infinite values".into()));
        }
        let (normalized, stats) = revin::normalize(inputs);
        let n = num_patches(len, self.patch_len, self.stride);
        let data: Vec<f32> = normalized
            .iter()
            .flat_map(|x| patchify(x, self.patch_len, self.stride))
            .collect();
        let features = Features::new(Tensor::from_data(
            TensorData::new(data, [inputs.len(), n, self.patch_len]),
            device,
        ));
        Ok(PatchedWindows {
            features,
            normalized,
            stats,
        })
    }
}

impl Encoder for PatchEncoder {
    type Input = Vec<f32>;

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    /// [`PatchEncoder::encode_windows`], features only.
    fn encode(&self, inputs: &[Vec<f32>], device: &Device) -> glaze_core::Result<Features> {
        let rows: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        Ok(self.encode_windows(&rows, device)?.features)
    }

    fn num_features(&self, input: &Vec<f32>) -> usize {
        num_patches(input.len(), self.patch_len, self.stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_batches_are_typed_errors() {
        let enc = PatchEncoder::new(4, 2);
        let d = Device::flex();
        let short: &[f32] = &[1.0, 2.0];
        let ok: &[f32] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let nan: &[f32] = &[1.0, f32::NAN, 3.0, 4.0, 5.0, 6.0];
        for (batch, want) in [
            (vec![], "no window"),
            (vec![short], "shorter than one patch"),
            (vec![ok, &ok[..5]], "different lengths"),
            (vec![ok, nan], "NaN"),
        ] {
            let err = enc.encode_windows(&batch, &d).expect_err(want);
            assert!(err.to_string().contains(want), "{err}");
        }
        let w = enc.encode_windows(&[ok, ok], &d).expect("encodes");
        assert_eq!(w.features.tokens.dims(), [2, 3, 4]);
        assert_eq!(w.normalized.len(), 2);
        assert_eq!(enc.num_features(&ok.to_vec()), 3);
    }
}
