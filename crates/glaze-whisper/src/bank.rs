//! Clip features for the shared feature bank (`glaze_train::FeatureBank`): audio files and
//! generated clips decoded, resampled and encoded through the `Encoder` trait and the feature
//! cache, one clip per encoder pass (clips differ in length).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use glaze_train::{FeatureBank, FeatureCache, encode_bank};

use crate::decode::{Audio, AudioLimits, decode_bytes};
use crate::encoder::AudioEncoder;
use crate::error::Result;
use crate::resample::{WHISPER_RATE, resample};

/// The feature cache of `encoder` under `root`.
pub fn open_cache(root: &Path, encoder: &AudioEncoder) -> Result<FeatureCache> {
    Ok(glaze_train::open_cache(root, "audio", encoder)?)
}

/// Decodes, resamples and encodes every file (reading the cache first when given; the file's
/// bytes, read once, are both the cache key and the decoder's input).
pub fn encode_files(
    encoder: &AudioEncoder,
    cache: Option<&FeatureCache>,
    files: &[PathBuf],
    limits: &AudioLimits,
    device: &Device,
) -> Result<FeatureBank> {
    let read = |i: usize| {
        std::fs::read(&files[i]).map_err(|source| crate::error::Error::Io {
            path: files[i].clone(),
            source,
        })
    };
    let decode =
        |i: usize, bytes: &[u8]| resample(&decode_bytes(bytes, &files[i], limits)?, WHISPER_RATE);
    encode_bank(encoder, cache, files.len(), 1, read, decode, device)
}

/// Encodes in-memory clips (generated sounds), cached under their keys when a cache is given.
pub fn encode_clips(
    encoder: &AudioEncoder,
    cache: Option<&FeatureCache>,
    clips: &[(Vec<u8>, Audio)],
    device: &Device,
) -> Result<FeatureBank> {
    encode_bank(
        encoder,
        cache,
        clips.len(),
        1,
        |i| Ok(clips[i].0.clone()),
        |i, _| Ok(clips[i].1.clone()),
        device,
    )
}
