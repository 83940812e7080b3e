//! The GPU code path: a small generation on burn's wgpu backend (CI: Mesa lavapipe, a Vulkan
//! driver on the CPU), compared with the same model on flex.

use burn::prelude::*;
use glaze::core::DeviceChoice;
use glaze::core::harness::ByteCodec;
use glaze::llm::{GenerationConfig, Llama, LlamaConfig, generate};
use glaze::{FrozenBackbone, Prompt};

fn wgpu_device() -> Device {
    let choice = match std::env::var("GLAZE_WGPU_DEVICE").as_deref() {
        Ok("gpu") => DeviceChoice::Wgpu,
        _ => DeviceChoice::WgpuCpu,
    };
    choice.device().expect("built with the wgpu feature")
}

#[test]
fn wgpu_generation_matches_flex() {
    let flex = Device::flex();
    flex.seed(11);
    let config = LlamaConfig::tiny(ByteCodec::VOCAB);
    let on_flex = Llama::init(&config, &flex);
    let on_gpu = on_flex.to_device(&wgpu_device());
    let prompt = Prompt::new().text("soft tokens");
    let sampling = GenerationConfig::new()
        .with_max_new_tokens(6)
        .with_stop_at_eos(false);
    let a = generate(&on_flex, &ByteCodec, &prompt, &sampling, |_| {}).expect("flex generates");
    let b = generate(&on_gpu, &ByteCodec, &prompt, &sampling, |_| {}).expect("wgpu generates");
    assert_eq!(a.ids, b.ids, "greedy tokens on wgpu equal flex");
    let ids = Tensor::<2, Int>::from_data([[10i64, 20, 30, 40]], on_gpu.device());
    let la = on_flex.logits(ids.clone().to_device(&flex), Default::default());
    let lb = on_gpu.logits(ids, Default::default()).to_device(&flex);
    let diff = (la - lb).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-3, "logits differ by {diff}");
}
