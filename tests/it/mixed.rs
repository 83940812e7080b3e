//! One prompt, soft tokens from two plugins: a spoken digit (speech adapter on a Whisper
//! encoder) and a load window (Time-LLM's adapter on patches), through the one frozen backbone.
//! The answer loss trains both adapters at once; the backbone does not change.

use burn::optim::GradientsParams;
use burn::prelude::*;
use glaze::FrozenBackbone;
use glaze::audio::{AudioLimits, WhisperEncoderConfig, decode_file, resample};
use glaze::core::answer::{answer_loss, answer_target};
use glaze::core::harness::ByteCodec;
use glaze::core::{Adapter, Encoder, Features, PromptTemplate, SoftTokens};
use glaze::speech::SpeechAdapterConfig;
use glaze::timeseries::{ModelKind, PatchEncoder, SeriesAdapter};
use glaze_tests::{shared_dir, tiny_forecaster, tiny_llama_long};

#[test]
fn speech_and_series_soft_tokens_share_one_prompt() {
    let backbone = tiny_llama_long();
    let device = Device::flex();
    device.seed(21);
    let whisper = glaze::audio::AudioEncoder::new(
        WhisperEncoderConfig::new(80, 24, 2, 1).init(&device),
        "tiny-random",
        "mixed",
    );
    let audio = resample(
        &decode_file(
            &shared_dir().join("data/fsdd/recordings/2_theo_7.wav"),
            &AudioLimits::default(),
        )
        .expect("decodes"),
        16_000,
    )
    .expect("resamples");
    let speech_features = Features::new(whisper.encode_clip(&audio, &device).expect("encodes"));

    let cfg = tiny_forecaster(ModelKind::TimeLlm, &backbone, 2);
    let window: Vec<f32> = (0..32).map(|t| (t as f32 * 0.4).sin()).collect();
    let series_features = PatchEncoder::new(8, 4)
        .encode(&[window], &device)
        .expect("patches");

    let ad = device.clone().autodiff();
    let speech = SpeechAdapterConfig::FrameStack {
        stride: 4,
        hidden: 0,
    }
    .init(24, 32, &ad)
    .expect("speech adapter");
    let series: SeriesAdapter = cfg.init(&backbone, &ad).adapter.expect("series adapter");
    let lift = |f: &Features| Features::new(Tensor::from_data(f.tokens.clone().into_data(), &ad));
    let s_tokens = speech.adapt(&lift(&speech_features), None);
    let t_tokens = series.adapt(&lift(&series_features), None);
    let (ns, nt) = (s_tokens.dims()[1], t_tokens.dims()[1]);
    assert_eq!(ns, speech.num_tokens(speech_features.tokens.dims()[1]));
    let template = PromptTemplate::new(
        "The speaker said <speech> while the meter read <series>. Which digit?",
    )
    .with_placeholder("<speech>")
    .with_placeholder("<series>");
    let target = answer_target(&ByteCodec, "two").expect("target");
    let prompt = template
        .fill(vec![
            ("<speech>", SoftTokens::from_batch(s_tokens)[0].clone()),
            ("<series>", SoftTokens::from_batch(t_tokens)[0].clone()),
        ])
        .expect("two placeholders, two inputs")
        .ids(target.clone());
    let before = backbone.weights_digest();
    let loss = answer_loss(&backbone, &ByteCodec, &[prompt], &[target], &ad).expect("loss");
    assert!(loss.clone().into_scalar::<f32>().is_finite());
    let mut grads = loss.backward();
    let g_speech = GradientsParams::from_module(&mut grads, &speech);
    let g_series = GradientsParams::from_module(&mut grads, &series);
    assert!(
        !g_speech.is_empty(),
        "the speech adapter receives gradients"
    );
    assert!(
        !g_series.is_empty(),
        "the series adapter receives gradients"
    );
    assert_eq!(backbone.weights_digest(), before, "the backbone is frozen");
    assert!(ns > 0 && nt > 0);
}
