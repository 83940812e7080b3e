//! Frozen encoder features of many clips, computed once (FLAME's offline embeddings) and kept
//! on the host: one `[n_i, F]` array per clip, `n_i` varying with the clip's length.

use std::path::{Path, PathBuf};

use crate::decode::{Audio, AudioLimits, decode_bytes};
use crate::encoder::AudioEncoder;
use crate::resample::{WHISPER_RATE, resample};
use burn::prelude::*;
use glaze_core::{Encoder, Features};
use glaze_train::{CachedArray, FeatureCache};

use crate::error::Result;

/// Per-clip features.
#[derive(Debug, Clone, Default)]
pub struct ClipBank {
    /// Feature width.
    pub f: usize,
    /// Row-major `[n_i, F]` per clip.
    pub rows: Vec<Vec<f32>>,
}

impl ClipBank {
    /// Frames of clip `i`.
    pub fn len_of(&self, i: usize) -> usize {
        self.rows[i].len() / self.f.max(1)
    }

    /// Clips held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no clip is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends another bank's clips (same width); returns the index of the first.
    pub fn extend(&mut self, other: ClipBank) -> usize {
        let first = self.rows.len();
        if self.rows.is_empty() {
            self.f = other.f;
        }
        self.rows.extend(other.rows);
        first
    }

    /// `[B, max n, F]` for `clips`, right-padded with zeros, with a mask when lengths differ.
    pub fn batch(&self, clips: &[usize], device: &Device) -> Features {
        let max = clips.iter().map(|&i| self.len_of(i)).max().unwrap_or(0);
        let mut data = vec![0f32; clips.len() * max * self.f];
        let mut mask = vec![false; clips.len() * max];
        for (r, &i) in clips.iter().enumerate() {
            let n = self.len_of(i);
            data[r * max * self.f..r * max * self.f + n * self.f].copy_from_slice(&self.rows[i]);
            mask[r * max..r * max + n]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        let tokens = Tensor::from_data(TensorData::new(data, [clips.len(), max, self.f]), device);
        let same = clips.iter().all(|&i| self.len_of(i) == max);
        Features {
            tokens,
            mask: (!same)
                .then(|| Tensor::from_data(TensorData::new(mask, [clips.len(), max]), device)),
        }
    }
}

/// The feature cache of `encoder` under `root`.
pub fn open_cache(root: &Path, encoder: &AudioEncoder) -> Result<FeatureCache> {
    let spec = encoder.spec();
    Ok(FeatureCache::open(
        root,
        &format!(
            "audio-{}-{}",
            spec.name.replace(['/', '@', '+'], "_"),
            spec.weights_hash
        ),
    )?)
}

/// The features of one clip: from the cache under `key` when present, else `audio()` encoded
/// (and stored under `key`).
fn encode_cached(
    encoder: &AudioEncoder,
    cache: Option<&FeatureCache>,
    key: &[u8],
    audio: impl FnOnce() -> Result<Audio>,
    device: &Device,
) -> Result<Vec<f32>> {
    let f = encoder.spec().feature_dim;
    if let Some(c) = cache
        && let Some(hit) = c.get(key)
        && hit.shape.len() == 2
        && hit.shape[1] == f
    {
        return Ok(hit.data);
    }
    let t = encoder.encode_clip(&audio()?, device)?;
    let n = t.dims()[1];
    let data = t
        .into_data()
        .try_to_vec::<f32>()
        .expect("invariant: the encoder computes in f32");
    if let Some(c) = cache {
        c.put(
            key,
            &CachedArray {
                shape: vec![n, f],
                data: data.clone(),
            },
        )?;
    }
    Ok(data)
}

/// Decodes, resamples and encodes every file (reading the cache first when given; the file's
/// bytes, read once, are both the cache key and the decoder's input).
pub fn encode_files(
    encoder: &AudioEncoder,
    cache: Option<&FeatureCache>,
    files: &[PathBuf],
    limits: &AudioLimits,
    device: &Device,
) -> Result<ClipBank> {
    let mut rows = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| crate::error::Error::Io {
            path: path.clone(),
            source,
        })?;
        let decode = || resample(&decode_bytes(&bytes, path, limits)?, WHISPER_RATE);
        rows.push(encode_cached(encoder, cache, &bytes, decode, device)?);
    }
    Ok(ClipBank {
        f: encoder.spec().feature_dim,
        rows,
    })
}

/// Encodes in-memory clips (generated sounds), cached under their keys when a cache is given.
pub fn encode_clips(
    encoder: &AudioEncoder,
    cache: Option<&FeatureCache>,
    clips: &[(Vec<u8>, Audio)],
    device: &Device,
) -> Result<ClipBank> {
    let mut rows = Vec::with_capacity(clips.len());
    for (key, audio) in clips {
        rows.push(encode_cached(
            encoder,
            cache,
            key,
            || Ok(audio.clone()),
            device,
        )?);
    }
    Ok(ClipBank {
        f: encoder.spec().feature_dim,
        rows,
    })
}
