//! The contract harness on tiny random backbones of each architecture (Llama, Qwen2, Gemma 3)
//! and on the real SmolLM2 (the real Qwen2 and Gemma 3 in `qwen2.rs` and `gemma3.rs`).

use burn::prelude::*;
use glaze::core::harness::{self, ByteCodec};
use glaze::core::{Features, SoftPromptConfig};
use glaze::llm::{Llama, LlamaConfig, RopeLayout};
use glaze_tests::smollm2;

fn tiny(layout: RopeLayout, tie: bool) -> Llama {
    glaze::core::rng::seeded(&Device::flex(), 3, |device| {
        Llama::init(
            &LlamaConfig::tiny(ByteCodec::VOCAB)
                .with_rope_layout(layout)
                .with_tie_embeddings(tie),
            device,
        )
    })
}

/// A tiny Qwen2-shaped backbone: biases on q/k/v, an untied head.
fn tiny_qwen2() -> Llama {
    glaze::core::rng::seeded(&Device::flex(), 5, |device| {
        Llama::init(&LlamaConfig::tiny_qwen2(ByteCodec::VOCAB), device)
    })
}

/// A tiny Gemma-3-shaped backbone: q/k and post norms, GeGLU, scaled embeddings, a window of
/// 4 positions on two of its three layers (the contract's prompts are longer than that).
fn tiny_gemma3() -> Llama {
    glaze::core::rng::seeded(&Device::flex(), 7, |device| {
        Llama::init(&LlamaConfig::tiny_gemma3(ByteCodec::VOCAB), device)
    })
}

/// One tiny backbone of each architecture.
pub(crate) fn tiny_backbones() -> [Llama; 3] {
    [tiny(RopeLayout::Half, true), tiny_qwen2(), tiny_gemma3()]
}

#[test]
fn tiny_backbone_keeps_the_contract() {
    for (layout, tie) in [(RopeLayout::Half, true), (RopeLayout::Interleaved, false)] {
        harness::check_backbone(&tiny(layout, tie), &ByteCodec, "frozen backbone", 1e-4);
    }
    harness::check_backbone(&tiny_qwen2(), &ByteCodec, "frozen backbone", 1e-4);
    // Longer than the window: the local layers' bias hides the oldest keys, in the full
    // forward, the padded batch and the cached steps alike.
    harness::check_backbone(&tiny_gemma3(), &ByteCodec, "a sliding window", 1e-4);
}

#[test]
fn soft_prompt_adapter_keeps_the_contract() {
    for backbone in tiny_backbones() {
        harness::check_adapter(
            &backbone,
            &ByteCodec,
            |d| SoftPromptConfig::new(4, 32).init(d),
            |d| Features::new(Tensor::zeros([2, 3, 8], d)),
        );
    }
}

#[test]
fn imu_adapter_keeps_the_contract() {
    let features = |d: &Device| Features::new(Tensor::zeros([2, 3, glaze_imu::FEATURES], d));
    for backbone in tiny_backbones() {
        harness::check_adapter(
            &backbone,
            &ByteCodec,
            |d| glaze_imu::ImuAdapterConfig::new(32).init(d),
            features,
        );
    }
}

#[test]
fn real_backbone_keeps_the_contract() {
    let model = smollm2();
    harness::check_backbone(
        &model.llama,
        &model.tokenizer,
        "Soft tokens flow through all thirty frozen layers.",
        2e-4,
    );
}

#[test]
fn cache_grows_past_its_capacity() {
    // 120 positions (the tiny context is 128): the buffers grow from 64 to 128 positions.
    use glaze::{ForwardOptions, FrozenBackbone};
    let model = tiny(RopeLayout::Half, true);
    let device = model.device().clone();
    let n = 120;
    let ids: Vec<i64> = (0..n).map(|i| (i * 7 % 250 + 3) as i64).collect();
    let all = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, n]), &device);
    let full = model.forward(model.embed(all), ForwardOptions::default());
    let mut cache = model.new_cache();
    let mut last = None;
    for (i, &id) in ids.iter().enumerate() {
        let t = Tensor::<2, Int>::from_data(TensorData::new(vec![id], [1, 1]), &device);
        let h = model.forward(model.embed(t), ForwardOptions::cached(&mut cache));
        assert_eq!(cache.len(), i + 1);
        last = Some(h);
    }
    let last = last.expect("steps ran");
    let want = full.slice(s![.., n - 1..n, ..]);
    let diff = (last - want).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-4, "step-by-step decoding differs by {diff}");
}

#[test]
fn a_reserved_cache_is_allocated_once() {
    // 10 prompt positions and 70 decode steps: unreserved, the buffers start at 64 positions
    // and grow to 128; reserved for 100, they hold 128 from the prompt on. Same outputs.
    use glaze::core::KvCache;
    use glaze::{ForwardOptions, FrozenBackbone};
    let model = tiny(RopeLayout::Half, true);
    let device = model.device().clone();
    let ids = |v: Vec<i64>| {
        let n = v.len();
        Tensor::<2, Int>::from_data(TensorData::new(v, [1, n]), &device)
    };
    let capacity = |c: &KvCache| c.layer(0).expect("layer 0 is cached").0.dims()[2];
    let mut outputs = Vec::new();
    for (reserve, first, last) in [(0, 64, 128), (100, 128, 128)] {
        let mut cache = model.new_cache();
        cache.reserve(reserve);
        let prompt = ids((0..10).map(|i| i * 7 % 250 + 3).collect());
        let mut h = model.forward(model.embed(prompt), ForwardOptions::cached(&mut cache));
        assert_eq!(
            capacity(&cache),
            first,
            "reserve {reserve}: after the prompt"
        );
        for step in 0..70 {
            let t = ids(vec![(step * 13 % 250 + 3) as i64]);
            h = model.forward(model.embed(t), ForwardOptions::cached(&mut cache));
        }
        assert_eq!(cache.len(), 80);
        assert_eq!(capacity(&cache), last, "reserve {reserve}: after 70 steps");
        outputs.push(h);
    }
    let diff = (outputs[0].clone() - outputs[1].clone())
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff < 1e-5, "reserved and grown caches differ by {diff}");
}

#[test]
fn vision_adapters_keep_the_contract() {
    use glaze::vision::VisionAdapterConfig;
    let kinds = [
        VisionAdapterConfig::Linear { pool: 1 },
        VisionAdapterConfig::Mlp { pool: 2 },
        VisionAdapterConfig::QFormer {
            queries: 4,
            width: 16,
            layers: 1,
            heads: 2,
            instruction: true,
        },
        VisionAdapterConfig::Perceiver {
            latents: 3,
            width: 16,
            layers: 1,
            heads: 2,
        },
    ];
    for (kind, backbone) in kinds
        .iter()
        .flat_map(|k| tiny_backbones().map(|b| (k.clone(), b)))
    {
        // 1 CLS + a 4×4 patch grid of width 24, into the tiny backbone's width 32.
        harness::check_adapter(
            &backbone,
            &ByteCodec,
            |d| kind.init(24, 32, d).expect("valid adapter config"),
            // Deterministic features: burn initialises parameters lazily from the device RNG, so
            // random features drawn between two inits would change the second adapter.
            |d| {
                let v: Vec<f32> = (0..2 * 17 * 24).map(|i| (i as f32 * 0.37).sin()).collect();
                Features::new(Tensor::from_data(TensorData::new(v, [2, 17, 24]), d))
            },
        );
        assert_eq!(
            kind.num_tokens(17),
            match kind {
                VisionAdapterConfig::Linear { .. } => 17,
                VisionAdapterConfig::Mlp { .. } => 5,
                VisionAdapterConfig::QFormer { .. } => 4,
                VisionAdapterConfig::Perceiver { .. } => 3,
            }
        );
    }
}

#[test]
fn speech_adapters_keep_the_contract() {
    use glaze::speech::SpeechAdapterConfig;
    let kinds = [
        SpeechAdapterConfig::FrameStack {
            stride: 3,
            hidden: 0,
        },
        SpeechAdapterConfig::FrameStack {
            stride: 2,
            hidden: 16,
        },
        SpeechAdapterConfig::Conv {
            stride: 2,
            layers: 2,
            hidden: 16,
        },
    ];
    for (kind, backbone) in kinds
        .iter()
        .flat_map(|k| tiny_backbones().map(|b| (k.clone(), b)))
    {
        // 11 encoder frames of width 24 (not a multiple of the strides), into width 32.
        harness::check_adapter(
            &backbone,
            &ByteCodec,
            |d| kind.init(24, 32, d).expect("valid adapter config"),
            |d| {
                let v: Vec<f32> = (0..2 * 11 * 24).map(|i| (i as f32 * 0.29).cos()).collect();
                Features::new(Tensor::from_data(TensorData::new(v, [2, 11, 24]), d))
            },
        );
    }
}

#[test]
fn audio_aligner_keeps_the_contract() {
    let config = glaze::audio::AptConfig {
        queries: 4,
        width: 16,
        layers: 1,
        heads: 2,
        instruction: false,
    };
    for backbone in tiny_backbones() {
        harness::check_adapter(
            &backbone,
            &ByteCodec,
            |d| config.init(24, 32, d).expect("valid aligner config"),
            |d| {
                let v: Vec<f32> = (0..2 * 9 * 24).map(|i| (i as f32 * 0.17).sin()).collect();
                Features::new(Tensor::from_data(TensorData::new(v, [2, 9, 24]), d))
            },
        );
    }
}

/// The sliding window, against its definition: with every layer local (window 4, three layers)
/// the last position sees at most 3·(4 − 1) + 1 = 10 tokens back. RoPE is relative, so its
/// hidden state equals that of the last 10 tokens alone, and changing an 11th token back
/// changes nothing, while changing the 10th does.
#[test]
fn a_sliding_window_hides_what_lies_beyond_it() {
    use glaze::{ForwardOptions, FrozenBackbone};
    let mut config = LlamaConfig::tiny_gemma3(ByteCodec::VOCAB);
    config.global_every = 0;
    let model = glaze::core::rng::seeded(&Device::flex(), 9, |d| Llama::init(&config, d));
    let device = model.device().clone();
    let last = |ids: &[i64]| {
        let n = ids.len();
        let t = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, n]), &device);
        model
            .forward(model.embed(t), ForwardOptions::default())
            .slice(s![.., n - 1..n, ..])
    };
    let ids: Vec<i64> = (0..20).map(|i| (i * 37 % 200 + 20) as i64).collect();
    let full = last(&ids);
    let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
    let tail = diff(full.clone(), last(&ids[10..]));
    assert!(tail < 1e-5, "the last 10 tokens alone differ by {tail}");
    let mut beyond = ids.clone();
    beyond[9] = 7;
    assert!(
        diff(full.clone(), last(&beyond)) < 1e-5,
        "a token 11 back is seen"
    );
    let mut within = ids.clone();
    within[10] = 7;
    assert!(
        diff(full, last(&within)) > 1e-4,
        "a token 10 back is not seen"
    );
}
