//! What `glaze vision bench` measures: one image at a time through decoding, preprocessing,
//! the frozen DINOv2 encoder and an MLP adapter, each stage timed (medians over repetitions,
//! the first of each image a warm-up). `cargo xtask bench` sets it beside onnxruntime.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use glaze_core::{Adapter, Features};
use glaze_train::metrics::median;

use crate::{DecodeLimits, Result, VisionAdapterConfig, VisionEncoder, decode_file};

/// Milliseconds per image and per stage for `images`, `reps` timed passes each, as the JSON
/// row of `docs/benchmarks.md`.
pub fn image_to_soft_tokens(
    images: &[PathBuf],
    reps: usize,
    device: &Device,
) -> Result<serde_json::Value> {
    let encoder = VisionEncoder::load_default(device)?;
    let adapter = VisionAdapterConfig::Mlp { pool: 4 }.init(384, 576, device)?;
    let limits = DecodeLimits::default();
    let (mut total, mut decode, mut prep, mut encode, mut adapt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for path in images {
        for rep in 0..=reps {
            let t0 = Instant::now();
            let img = decode_file(path, &limits)?;
            let t1 = Instant::now();
            let pixels = [encoder.preprocessor().prepare(&img)];
            let t2 = Instant::now();
            let feats = encoder.encode_pixels(&pixels, device);
            let _ = feats.clone().into_data();
            let t3 = Instant::now();
            let soft = adapter.adapt(&Features::new(feats), None);
            let _ = soft.into_data();
            let t4 = Instant::now();
            if rep > 0 {
                let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
                total.push(ms(t0, t4));
                decode.push(ms(t0, t1));
                prep.push(ms(t1, t2));
                encode.push(ms(t2, t3));
                adapt.push(ms(t3, t4));
            }
        }
    }
    Ok(serde_json::json!({
            "engine": "glaze",
            "mode": "decode + preprocess + DINOv2-S/14 encode + MLP adapter (flex)",
            "ms_per_image": median(total),
            "decode_ms": median(decode),
            "preprocess_ms": median(prep),
            "encode_ms": median(encode),
            "adapt_ms": median(adapt),
    }))
}
