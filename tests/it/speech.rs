//! The speech plugin: adapters, recognition through the frozen LLM, streaming, bad input.

use std::path::PathBuf;

use burn::prelude::*;
use glaze::audio::{AudioEncoder, AudioLimits, WhisperEncoderConfig, Window, decode_file};
use glaze::core::harness::ByteCodec;
use glaze::core::{Adapter, Features};
use glaze::speech::experiment::{self as ex, SpeechData, SplitLimits};
use glaze::speech::{SpeechAdapterConfig, SpeechItem, SpeechPipeline, StreamingRecognizer};
use glaze::train::{LrSchedule, TrainConfig};
use glaze_tests::{shared_dir, smollm2, tiny_llama_long};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glaze-speech-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn tiny_encoder(seed: u64) -> AudioEncoder {
    let whisper = glaze::core::rng::seeded_module(&Device::flex(), seed, |d| {
        WhisperEncoderConfig::new(80, 24, 2, 1).init(d)
    });
    AudioEncoder::new(whisper, "tiny-random", &format!("seed{seed}"))
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// Frame stacking puts frames `jk..jk+k` into token `j`; a padded batch row gives the same
/// tokens as the clip alone (the mask zeroes the padding); counts follow `num_tokens`.
#[test]
fn frame_stacking_groups_frames_and_ignores_padding() {
    let device = Device::flex();
    device.seed(5);
    let cfg = SpeechAdapterConfig::FrameStack {
        stride: 3,
        hidden: 0,
    };
    let model = cfg.init(4, 6, &device).expect("init");
    let long: Vec<f32> = (0..8 * 4).map(|i| (i as f32 * 0.3).sin()).collect();
    let short = long[..5 * 4].to_vec();
    let alone = model.adapt(
        &Features::new(Tensor::from_data(
            TensorData::new(short.clone(), [1, 5, 4]),
            &device,
        )),
        None,
    );
    assert_eq!(alone.dims(), [1, 2, 6]);
    let bank = glaze::train::FeatureBank {
        f: 4,
        rows: vec![long, short],
    };
    let batch = model.adapt(&bank.batch(&[0, 1], &device), None);
    assert_eq!(batch.dims(), [2, 3, 6]);
    let row = values(batch.slice([1..2, 0..2, 0..6]));
    let a = values(alone.clone());
    let diff = row
        .iter()
        .zip(&a)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-6, "padded row differs by {diff}");
    // Changing frame 4 (token 1) leaves token 0 alone.
    let mut changed = bank.rows[1].clone();
    changed[4 * 4] += 1.0;
    let other = model.adapt(
        &Features::new(Tensor::from_data(
            TensorData::new(changed, [1, 5, 4]),
            &device,
        )),
        None,
    );
    let t0 = |t: Tensor<3>| values(t.slice([0..1, 0..1, 0..6]));
    assert_eq!(t0(other.clone()), t0(alone.clone()));
    assert_ne!(values(other), values(alone));
    for (n, want) in [(1, 1), (3, 1), (4, 2), (50, 17)] {
        assert_eq!(cfg.num_tokens(n), want);
    }
    let conv = SpeechAdapterConfig::Conv {
        stride: 2,
        layers: 2,
        hidden: 8,
    };
    assert_eq!(conv.num_tokens(50), 13);
    let conv_model = conv.init(4, 6, &device).expect("init");
    let out = conv_model.adapt(&Features::new(Tensor::zeros([1, 50, 4], &device)), None);
    assert_eq!(out.dims(), [1, 13, 6]);
    assert!(
        SpeechAdapterConfig::FrameStack {
            stride: 0,
            hidden: 0
        }
        .init(4, 6, &device)
        .is_err()
    );
}

fn fsdd_data(encoder: &AudioEncoder, limits: SplitLimits) -> SpeechData {
    let utts = glaze::speech::fsdd(&shared_dir().join("data/fsdd")).expect("FSDD");
    assert_eq!(utts.len(), 3000);
    assert_eq!(
        utts.iter()
            .filter(|u| u.split == glaze::speech::Split::Test)
            .count(),
        300
    );
    let mut data = SpeechData::default();
    data.add_corpus("fsdd", &utts, limits, encoder, None, &Device::flex())
        .expect("encodes");
    data
}

/// Tiny random Whisper + tiny Llama on real FSDD clips: training writes checkpoints, the adapter
/// reloads equal, and an adapter trained for another encoder is refused naming both.
#[test]
fn tiny_recognition_run_checkpoints_and_checks_identity() {
    let encoder = tiny_encoder(1);
    let backbone = tiny_llama_long();
    let data = fsdd_data(
        &encoder,
        SplitLimits {
            train: 12,
            val: 4,
            test: 4,
        },
    );
    assert_eq!((data.train.len(), data.val.len()), (12, 4));
    let dir = scratch("tiny");
    let spec = ex::RunSpec {
        adapter: SpeechAdapterConfig::FrameStack {
            stride: 4,
            hidden: 0,
        },
        train: TrainConfig {
            batch_size: 4,
            lr: 1e-3,
            max_steps: Some(3),
            epochs: 1,
            schedule: LrSchedule::Constant,
            seed: 2,
            eval_every: Some(3),
            checkpoint_every: 1,
            ..TrainConfig::default()
        },
        dir: Some(dir.clone()),
        eval_batch: 4,
        progress: false,
    };
    let (trained, steps, params, _) =
        ex::train_adapter(&backbone, &ByteCodec, &encoder, &data, &spec).expect("trains");
    assert_eq!(steps, 3);
    assert_eq!(params, 4 * 24 * 32 + 32);
    let path = dir.join("adapter.safetensors");
    let (loaded, _) = ex::load_adapter(&backbone, &encoder, &path).expect("reloads");
    let probe = data.bank.batch(&[0, 1], &Device::flex());
    assert_eq!(
        values(trained.adapt(&probe, None)),
        values(loaded.adapt(&probe, None))
    );
    let other = tiny_encoder(1).with_window(Window::Full);
    let err = ex::load_adapter(&backbone, &other, &path).expect_err("other window");
    let msg = err.to_string();
    assert!(
        msg.contains("tiny-random/trim") && msg.contains("tiny-random/full"),
        "{msg}"
    );
    let (hyps, counts) = ex::evaluate(
        &backbone,
        &ByteCodec,
        &loaded,
        &data.bank,
        &data.tests[0].1,
        4,
        4,
    )
    .expect("transcribes");
    assert_eq!(hyps.len(), 4);
    assert_eq!(counts.words, 4, "one digit word per clip");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Streaming prefills chunk by chunk through the KV cache; the result equals one offline
/// prompt holding the same chunks' soft tokens.
#[test]
fn streaming_matches_the_offline_prompt_over_the_same_chunks() {
    let encoder = tiny_encoder(4);
    let backbone = tiny_llama_long();
    let device = Device::flex();
    device.seed(6);
    let adapter = SpeechAdapterConfig::FrameStack {
        stride: 4,
        hidden: 0,
    }
    .init(24, 32, &device)
    .expect("init");
    let audio = glaze::audio::resample(
        &decode_file(
            &shared_dir().join("data/fsdd/recordings/5_george_3.wav"),
            &AudioLimits::default(),
        )
        .expect("decodes"),
        16_000,
    )
    .expect("resamples");
    let chunk = 8000; // 0.5 s
    let mut stream =
        StreamingRecognizer::new(&backbone, &ByteCodec, &encoder, &adapter, 0.5).expect("starts");
    let mut processed = 0;
    for piece in audio.samples.chunks(3000) {
        processed += stream.push(piece);
    }
    assert_eq!(processed, audio.samples.len() / chunk);
    let streamed = stream.finish(6).expect("finishes");
    assert!(streamed.first_token_secs <= streamed.total_secs);
    // Offline: the same chunks' soft tokens in one prompt.
    let mut runs = Vec::new();
    for piece in audio.samples.chunks(chunk) {
        if piece.len() < 320 {
            continue;
        }
        let mel = glaze::audio::log_mel(piece, encoder.mel_config(), None);
        let soft = adapter.adapt(&Features::new(encoder.encode_mel(&mel, &device)), None);
        let n = soft.dims()[1];
        runs.push(glaze::SoftTokens::new(soft.reshape([n, 32])));
    }
    assert_eq!(runs.len(), streamed.chunks);
    let pipeline = SpeechPipeline {
        backbone: &backbone,
        codec: &ByteCodec,
    };
    let segments = pipeline.segments().expect("segments");
    let mut prompt = glaze::Prompt::new().ids(segments[0].clone());
    for r in runs {
        prompt = prompt.soft(r);
    }
    prompt = prompt.ids(segments[1].clone());
    let offline = glaze::core::generate(
        &backbone,
        &ByteCodec,
        &prompt,
        &glaze::core::GenerationConfig::new().with_max_new_tokens(6),
        |_| {},
    )
    .expect("generates");
    assert_eq!(streamed.text, offline.text.trim());
    let too_small = StreamingRecognizer::new(&backbone, &ByteCodec, &encoder, &adapter, 0.001);
    assert!(too_small.is_err());
}

/// The real pipeline: Whisper tiny.en + SmolLM2 on FSDD. Ten steps of frame stacking cut the
/// held-out transcript loss; a clip over 30 s and a corrupt file are typed errors.
#[test]
fn real_speech_adapter_learns_digits() {
    let model = smollm2();
    let device = Device::flex();
    let encoder = AudioEncoder::load_default(&device).expect("tiny.en (cargo xtask fetch)");
    let data = fsdd_data(
        &encoder,
        SplitLimits {
            train: 80,
            val: 0,
            test: 16,
        },
    );
    let test: Vec<&SpeechItem> = data.tests[0].1.iter().collect();
    let pipeline = SpeechPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    let cfg = SpeechAdapterConfig::FrameStack {
        stride: 4,
        hidden: 0,
    };
    let spec = ex::RunSpec {
        adapter: cfg.clone(),
        train: TrainConfig {
            batch_size: 8,
            lr: 2e-3,
            max_steps: Some(10),
            epochs: 1,
            schedule: LrSchedule::Constant,
            seed: 1,
            ..TrainConfig::default()
        },
        dir: None,
        eval_batch: 8,
        progress: false,
    };
    device.seed(1);
    let untrained = cfg.init(384, 576, &device).expect("init");
    let before = pipeline
        .loss(&untrained, &data.bank, &test, &device)
        .expect("loss")
        .into_scalar::<f32>();
    let (trained, ..) =
        ex::train_adapter(&model.llama, &model.tokenizer, &encoder, &data, &spec).expect("trains");
    let after = pipeline
        .loss(&trained, &data.bank, &test, &device)
        .expect("loss")
        .into_scalar::<f32>();
    eprintln!("held-out transcript loss {before:.3} → {after:.3}");
    assert!(after < 0.6 * before, "{before} → {after}");

    let long = glaze::audio::Audio {
        samples: vec![0.0; 16_000 * 31],
        sample_rate: 16_000,
    };
    assert!(encoder.encode_clip(&long, &device).is_err());
    let dir = scratch("bad");
    let bad = dir.join("broken.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEfmt garbage").expect("write");
    let err = glaze::speech::encode_files(&encoder, None, &[bad], &AudioLimits::default(), &device)
        .expect_err("corrupt");
    assert!(err.to_string().contains("broken.wav"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// General audio on tiny models: the three tasks are built over real FSDD clips and generated
/// sounds (pairs hold two clips, never the same digit), the aligner trains and reloads, and
/// the no-audio baseline prompt carries no soft tokens, and files can be asked about.
#[test]
fn tiny_audio_tasks_train_and_reload() {
    use glaze::audio::experiment::{self as aex, TaskSizes};
    use glaze::audio::{AptConfig, AudioPipeline};
    let encoder = tiny_encoder(9);
    let backbone = tiny_llama_long();
    let fsdd = glaze::audio::corpus::fsdd(&shared_dir().join("data/fsdd")).expect("FSDD");
    let data = aex::build(
        &encoder,
        None,
        &fsdd,
        TaskSizes {
            speaker: (6, 2, 3),
            compare: (4, 0, 2),
            sound: (6, 2, 3),
        },
        &Device::flex(),
    )
    .expect("builds");
    let count = |task: &str| data.train.iter().filter(|i| i.task == task).count();
    assert_eq!(
        (count("speaker"), count("compare"), count("sound")),
        (6, 4, 6)
    );
    for pair in data.train.iter().filter(|i| i.task == "compare") {
        assert_eq!(pair.clips.len(), 2);
        assert_eq!(pair.question.matches("<audio>").count(), 2);
    }
    let speakers: std::collections::BTreeSet<&str> =
        fsdd.iter().map(|u| u.speaker.as_str()).collect();
    assert_eq!(speakers.len(), 6);
    let config = AptConfig {
        queries: 3,
        width: 16,
        layers: 1,
        heads: 2,
        instruction: true,
    };
    let dir = scratch("audio");
    let train = TrainConfig {
        batch_size: 4,
        lr: 1e-3,
        max_steps: Some(2),
        epochs: 1,
        schedule: LrSchedule::Constant,
        seed: 3,
        checkpoint_every: 1,
        ..TrainConfig::default()
    };
    let (trained, steps, _, _) = aex::train_aligner(
        &backbone,
        &ByteCodec,
        &encoder,
        &data,
        &config,
        &train,
        Some(&dir),
        false,
    )
    .expect("trains");
    assert_eq!(steps, 2);
    let (loaded, _) =
        aex::load_aligner(&backbone, &encoder, &dir.join("adapter.safetensors")).expect("reloads");
    let pipeline = AudioPipeline {
        backbone: &backbone,
        codec: &ByteCodec,
    };
    let items: Vec<_> = data.test.iter().collect();
    let a = pipeline
        .soft_tokens(&trained, &data.bank, &items, &Device::flex())
        .expect("soft");
    let b = pipeline
        .soft_tokens(&loaded, &data.bank, &items, &Device::flex())
        .expect("soft");
    let compare = items
        .iter()
        .position(|i| i.task == "compare")
        .expect("a pair");
    assert_eq!(a[compare].len(), 2, "two clips, two runs of soft tokens");
    assert_eq!(
        a[0][0].tensor().clone().into_data(),
        b[0][0].tensor().clone().into_data()
    );
    let answers = pipeline
        .answer(None, &data.bank, &data.test, 4, 3)
        .expect("baseline");
    assert_eq!(answers.len(), data.test.len());
    // A free question about files (`glaze ask --audio`), and one that holds the marker.
    let files = [shared_dir().join("data/fsdd/recordings/0_jackson_0.wav")];
    let asked = pipeline
        .ask_files(&loaded, &encoder, &files, "Who is speaking?", 3)
        .expect("asks");
    assert_eq!(asked.len(), 1);
    let err = pipeline
        .ask_files(&loaded, &encoder, &files, "Is <audio> a voice?", 3)
        .expect_err("the marker in the question");
    assert!(
        matches!(
            err,
            glaze::audio::Error::Core(glaze::core::Error::PlaceholderInText { .. })
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The WER table in docs/results/speech.md is what the library's renderer makes of the
/// committed docs/results/speech.jsonl.
#[test]
fn the_wer_table_renders_from_the_committed_rows() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results");
    let rows = std::fs::read_to_string(docs.join("speech.jsonl")).expect("speech.jsonl");
    let md = std::fs::read_to_string(docs.join("speech.md")).expect("speech.md");
    let (begin, end) = ("<!-- sweep:begin -->\n", "<!-- sweep:end -->");
    let a = md.find(begin).expect("begin marker") + begin.len();
    let b = md.find(end).expect("end marker");
    let table = glaze::speech::report::wer_table(&rows).expect("renders");
    assert_eq!(table, md[a..b]);
}
