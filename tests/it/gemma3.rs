//! The Gemma 3 backbone on the real Gemma 3 270M Q4_K_M file (`cargo xtask fetch gemma3-270m`)
//! against HF transformers in float32 on the same file's weights
//! (`tests/fixtures/make_backbone_ref.py gemma3`): logits, greedy continuations, tokenizer ids, and the
//! gradient to soft tokens against finite differences.

use std::sync::OnceLock;

use burn::prelude::*;
use glaze::llm::LanguageModel;

use crate::parity;

/// The fetched Gemma 3 270M file.
pub(crate) fn gemma3_path() -> std::path::PathBuf {
    glaze::llm::cache_dir()
        .join("gemma3-270m")
        .join("gemma-3-270m-q4_k_m.gguf")
}

pub(crate) fn gemma3() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| parity::load_exact(&gemma3_path(), "gemma3-270m"))
}

fn fixture() -> &'static serde_json::Value {
    static REF: OnceLock<serde_json::Value> = OnceLock::new();
    REF.get_or_init(|| parity::read_fixture("gemma3_ref.json"))
}

/// Every position of every prompt within 1e-3 of the reference (see `parity::logits_match`).
#[test]
fn gemma3_logits_match_transformers_within_1e3() {
    parity::logits_match(gemma3(), fixture());
}

/// Greedy continuations of 32 tokens equal the reference's, on the exact path.
#[test]
fn gemma3_greedy_continuations_match_transformers() {
    parity::greedy_matches(gemma3(), fixture());
}

/// The SentencePiece vocabulary read from the GGUF gives transformers' ids on code, Unicode,
/// whitespace runs, numbers and turn markers.
#[test]
fn gemma3_tokenizer_matches_transformers() {
    parity::tokenizer_matches(gemma3(), fixture());
}

/// The gradient of a next-token loss to soft tokens spliced before a text, through the real
/// frozen Gemma 3 blocks (local and global), against central finite differences.
#[test]
fn gemma3_soft_token_gradient_matches_finite_differences() {
    let parity::SoftTokenGradient {
        soft,
        grad: g,
        value,
    } = parity::soft_token_gradient(gemma3());
    // Directional derivatives: along the gradient itself, where the difference quotient is
    // |g| (a single coordinate's is ~0.05 here, too close to the loss's f32 rounding), and
    // along two seeded random directions, where it is g·r.
    let norm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let mut rng = glaze::core::SplitMix64::new(7);
    let mut directions = vec![g.iter().map(|v| *v as f64 / norm).collect::<Vec<f64>>()];
    for _ in 0..2 {
        let r: Vec<f64> = (0..g.len()).map(|_| rng.next_f64() - 0.5).collect();
        let n = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        directions.push(r.into_iter().map(|v| v / n).collect());
    }
    let h = 1e-2;
    for (k, u) in directions.iter().enumerate() {
        let step = |sign: f64| -> Vec<f32> {
            soft.iter()
                .zip(u)
                .map(|(s, u)| s + (sign * h * u) as f32)
                .collect()
        };
        let fd = (value(step(1.0)) - value(step(-1.0))) / (2.0 * h);
        let exact: f64 = g.iter().zip(u).map(|(g, u)| *g as f64 * u).sum();
        eprintln!("direction {k}: autodiff {exact:.5}, finite difference {fd:.5} (|g| {norm:.4})");
        assert!(
            (fd - exact).abs() < 5e-3 * norm,
            "direction {k}: autodiff {exact} vs finite difference {fd}"
        );
    }
}

/// The backbone contract (frozen weights, gradients to soft tokens, cache equivalence) on the
/// real Gemma 3 weights.
#[test]
fn real_gemma3_keeps_the_contract() {
    let model = gemma3();
    glaze::core::harness::check_backbone(
        &model.llama,
        &model.tokenizer,
        "Soft tokens flow through all eighteen frozen layers.",
        1e-3,
    );
}

/// Generation with 8-bit activations runs on the file's Q5_0/Q4_K/Q6_K/Q8_0 bytes alone, and
/// its prefill stays near the exact path (bound and measurements at `INT8_MAX`).
#[test]
fn gemma3_generates_on_its_quantized_blocks() {
    let mut fresh = LanguageModel::load(&gemma3_path(), &Device::flex()).expect("loads");
    let (worst, flips) = crate::quantized::int8_generation_on_the_blocks(
        &mut fresh,
        &gemma3().llama,
        crate::quantized::INT8_MAX,
    );
    eprintln!("Gemma 3 int8 prefill: max |Δ| {worst:.4}, {flips} top-1 flips at near ties");
}
