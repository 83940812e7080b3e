//! What `glaze speech bench` measures: audio files to Whisper features (both windows), and the
//! first-token latency of streaming recognition against the offline path. `cargo xtask bench`
//! sets them beside faster-whisper.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use glaze_core::{FrozenBackbone, TextCodec};
use glaze_train::FeatureBank;
use glaze_train::metrics::median;
use glaze_whisper::{AudioEncoder, AudioLimits, WHISPER_RATE, Window, decode_file, resample};

use crate::adapter::SpeechAdapterConfig;
use crate::asr::SpeechPipeline;
use crate::error::{Error, Result};
use crate::stream::StreamingRecognizer;

/// Seconds to decode, resample and encode `files` (the median of `reps` timed passes each,
/// after a warm-up), with the trim and the full window: one JSON row per window.
pub fn encoder_speed(
    encoder: &AudioEncoder,
    files: &[PathBuf],
    reps: usize,
    device: &Device,
) -> Result<Vec<serde_json::Value>> {
    let mut rows = Vec::new();
    for window in [Window::Trim, Window::Full] {
        let enc = encoder.clone().with_window(window);
        let mut total = 0.0;
        let mut audio_secs = 0.0;
        for f in files {
            let mut times = Vec::new();
            for rep in 0..=reps {
                let t0 = Instant::now();
                let audio = resample(&decode_file(f, &AudioLimits::default())?, WHISPER_RATE)?;
                let feats = enc.encode_clip(&audio, device)?;
                let _ = feats.into_data();
                if rep > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                } else {
                    audio_secs += audio.seconds();
                }
            }
            total += median(times);
        }
        rows.push(serde_json::json!({
            "engine": "glaze",
            "mode": format!("decode + log-mel + tiny.en encoder, {} window (flex)", window.as_str()),
            "window": window.as_str(), "audio_secs": audio_secs, "secs": total,
            "x_realtime": audio_secs / total,
        }));
    }
    Ok(rows)
}

/// First-token latency after the end of the longest of `files`: streamed in 1 s chunks
/// arriving in real time (encoded and prefilled as they come) against encoding and prefilling
/// everything after the end; an untrained frame-stacking adapter (the latency does not depend
/// on its weights). Medians of `reps` runs, as one JSON row.
pub fn first_token_latency(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    encoder: &AudioEncoder,
    files: &[PathBuf],
    reps: usize,
) -> Result<serde_json::Value> {
    let device = backbone.device().clone();
    let longest = files
        .iter()
        .max_by_key(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .ok_or_else(|| Error::config("files", "no audio file to stream"))?;
    let audio = resample(
        &decode_file(longest, &AudioLimits::default())?,
        WHISPER_RATE,
    )?;
    let d_feature = glaze_core::Encoder::spec(encoder).feature_dim;
    let config = SpeechAdapterConfig::preset("frame-stack")?;
    let adapter = glaze_core::rng::seeded(&device, 0, |d| {
        config
            .init(d_feature, backbone.spec().d_model, d)
            .inspect(glaze_core::params::materialize)
    })?;
    let (mut stream_first, mut offline_first) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let mut s = StreamingRecognizer::new(backbone, codec, encoder, &adapter, 1.0)?;
        for piece in audio.samples.chunks(16_000) {
            s.push(piece);
        }
        stream_first.push(s.finish(1)?.first_token_secs);
        // Offline: everything happens after the end of the audio.
        let t0 = Instant::now();
        let feats = encoder.encode_clip(&audio, &device)?;
        let f = feats.dims()[2];
        let bank = FeatureBank {
            f,
            rows: vec![
                feats
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("invariant: the encoder computes in f32"),
            ],
        };
        let pipeline = SpeechPipeline { backbone, codec };
        let _ = pipeline.transcribe(&adapter, &bank, &[0], 1, 1)?;
        offline_first.push(t0.elapsed().as_secs_f64());
    }
    Ok(serde_json::json!({
        "engine": "glaze", "mode": "first-token latency after the end of the audio",
        "file": longest.file_name().map(|n| n.to_string_lossy().into_owned()),
        "audio_secs": audio.seconds(),
        "stream_first_token_ms": median(stream_first) * 1e3,
        "offline_first_token_ms": median(offline_first) * 1e3,
        "chunk_secs": 1.0,
    }))
}
