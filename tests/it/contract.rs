//! The contract harness on tiny random backbones and on the real SmolLM2.

use burn::prelude::*;
use glaze::core::harness::{self, ByteCodec};
use glaze::core::{Features, SoftPromptConfig};
use glaze::llm::{Llama, LlamaConfig, RopeLayout};
use glaze_tests::smollm2;

fn tiny(layout: RopeLayout, tie: bool) -> Llama {
    let device = Device::flex();
    device.seed(3);
    Llama::init(
        &LlamaConfig::tiny(ByteCodec::VOCAB)
            .with_rope_layout(layout)
            .with_tie_embeddings(tie),
        &device,
    )
}

#[test]
fn tiny_backbone_keeps_the_contract() {
    for (layout, tie) in [(RopeLayout::Half, true), (RopeLayout::Interleaved, false)] {
        harness::check_backbone(&tiny(layout, tie), &ByteCodec, "frozen backbone", 1e-4);
    }
}

#[test]
fn soft_prompt_adapter_keeps_the_contract() {
    let backbone = tiny(RopeLayout::Half, true);
    harness::check_adapter(
        &backbone,
        &ByteCodec,
        |d| SoftPromptConfig::new(4, 32).init(d),
        |d| Features::new(Tensor::zeros([2, 3, 8], d)),
    );
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
