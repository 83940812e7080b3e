//! The Qwen2 backbone on the real Qwen2.5-Coder-0.5B-Instruct Q4_K_M file (`cargo xtask fetch
//! qwen2.5-0.5b`) against HF transformers in float32 on the same file's weights
//! (`tests/fixtures/make_backbone_ref.py qwen2`): logits, greedy continuations, tokenizer ids, and the
//! gradient to soft tokens against finite differences.

use std::sync::OnceLock;

use burn::prelude::*;
use glaze::llm::LanguageModel;

use crate::parity;

/// The fetched Qwen2.5-Coder-0.5B-Instruct file.
fn qwen2_path() -> std::path::PathBuf {
    glaze::llm::cache_dir()
        .join("qwen2.5-0.5b")
        .join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}

fn qwen2() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| parity::load_exact(&qwen2_path(), "qwen2.5-0.5b"))
}

fn fixture() -> &'static serde_json::Value {
    static REF: OnceLock<serde_json::Value> = OnceLock::new();
    REF.get_or_init(|| parity::read_fixture("qwen2_ref.json"))
}

/// Every position of every prompt within 1e-3 of the reference (see `parity::logits_match`).
#[test]
fn qwen2_logits_match_transformers_within_1e3() {
    parity::logits_match(qwen2(), fixture());
}

/// Greedy continuations of 32 tokens equal the reference's, on the exact path.
#[test]
fn qwen2_greedy_continuations_match_transformers() {
    parity::greedy_matches(qwen2(), fixture());
}

/// The tokenizer read from the GGUF gives transformers' ids on code, Unicode, whitespace runs,
/// numbers and chat markers.
#[test]
fn qwen2_tokenizer_matches_transformers() {
    parity::tokenizer_matches(qwen2(), fixture());
}

/// The gradient of a next-token loss to soft tokens spliced before a text, through the real
/// frozen Qwen2 blocks, against central finite differences.
#[test]
fn qwen2_soft_token_gradient_matches_finite_differences() {
    let parity::SoftTokenGradient {
        soft,
        grad: g,
        value,
    } = parity::soft_token_gradient(qwen2());
    let eps = 1e-3f32;
    // The coordinates with the largest gradients, where a difference quotient is well above
    // the f32 noise of the loss.
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    for &i in order.iter().take(6) {
        let (mut up, mut down) = (soft.clone(), soft.clone());
        up[i] += eps;
        down[i] -= eps;
        let fd = (value(up) - value(down)) / (2.0 * eps as f64);
        let rel = (fd - g[i] as f64).abs() / fd.abs().max(1e-3);
        eprintln!(
            "coordinate {i}: autodiff {:.5}, finite difference {fd:.5}",
            g[i]
        );
        assert!(
            rel < 5e-3,
            "coordinate {i}: autodiff {} vs finite difference {fd}",
            g[i]
        );
    }
}

/// The backbone contract (frozen weights, gradients to soft tokens, cache equivalence) on the
/// real Qwen2 weights. Tolerance 1e-3: Qwen2's hidden states reach magnitudes in the thousands
/// in a few channels, where 2e-4 is below f32's resolution (measured: 3.7e-4 between the
/// cached step and the full forward).
#[test]
fn real_qwen2_keeps_the_contract() {
    let model = qwen2();
    glaze::core::harness::check_backbone(
        &model.llama,
        &model.tokenizer,
        "Soft tokens flow through all twenty-four frozen layers.",
        1e-3,
    );
}

/// Generation with 8-bit activations runs on the file's Q5_0/Q4_K/Q6_K/Q8_0 bytes alone, and
/// its prefill stays near the exact path (bound and measurements at `INT8_MAX`).
#[test]
fn qwen2_generates_on_its_quantized_blocks() {
    let mut fresh = LanguageModel::load(&qwen2_path(), &Device::flex()).expect("loads");
    let (worst, flips) = crate::quantized::int8_generation_on_the_blocks(
        &mut fresh,
        &qwen2().llama,
        crate::quantized::INT8_MAX,
    );
    eprintln!("Qwen2 int8 prefill: max |Δ| {worst:.4}, {flips} top-1 flips at near ties");
}
