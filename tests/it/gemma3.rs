//! The Gemma 3 backbone on the real Gemma 3 270M Q4_K_M file (`cargo xtask fetch gemma3-270m`)
//! against HF transformers in float32 on the same file's weights
//! (`tests/fixtures/make_gemma3_ref.py`): logits, greedy continuations, tokenizer ids, and the
//! gradient to soft tokens against finite differences.

use std::sync::OnceLock;

use burn::prelude::*;
use glaze::llm::{Activations, GenerationConfig, LanguageModel, generate};
use glaze::{FrozenBackbone, Prompt, TextCodec};

/// The fetched Gemma 3 270M file.
pub(crate) fn gemma3_path() -> std::path::PathBuf {
    glaze::llm::cache_dir()
        .join("gemma3-270m")
        .join("gemma-3-270m-q4_k_m.gguf")
}

pub(crate) fn gemma3() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut model = LanguageModel::load(&gemma3_path(), &Device::flex())
            .unwrap_or_else(|e| panic!("needs `cargo xtask fetch gemma3-270m`: {e}"));
        // The exact path: f32 activations in every product.
        model.llama.set_generation_activations(Activations::F32);
        model
    })
}

fn fixture() -> &'static serde_json::Value {
    static REF: OnceLock<serde_json::Value> = OnceLock::new();
    REF.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gemma3_ref.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    })
}

fn ints(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [1, ids.len()]),
        device,
    )
}

/// Every position of every prompt: the logsumexp over the whole vocabulary, the reference's
/// top 8 logits and 128 fixed columns within 1e-3.
#[test]
fn gemma3_logits_match_transformers_within_1e3() {
    let model = gemma3();
    let reference = fixture();
    let columns: Vec<usize> = ints(&reference["columns"])
        .iter()
        .map(|&c| c as usize)
        .collect();
    let vocab = model.llama.spec().vocab_size;
    let mut worst = 0f32;
    let mut positions = 0;
    for (p, prompt) in reference["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .enumerate()
    {
        let ids = ints(&prompt["ids"]);
        let logits: Vec<f32> = model
            .llama
            .logits(ids_tensor(&ids, model.llama.device()), Default::default())
            .into_data()
            .try_into_vec()
            .expect("f32");
        assert_eq!(logits.len(), ids.len() * vocab);
        let lse = floats(&prompt["logsumexp"]);
        let tops = prompt["top_ids"].as_array().expect("top ids");
        let top_values = prompt["top_values"].as_array().expect("top values");
        let cols = prompt["columns"].as_array().expect("columns");
        for (t, row) in logits.chunks_exact(vocab).enumerate() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            let mut d = ((max + sum.ln()) as f32 - lse[t]).abs();
            for (&i, &want) in ints(&tops[t]).iter().zip(&floats(&top_values[t])) {
                d = d.max((row[i as usize] - want).abs());
            }
            for (&c, &want) in columns.iter().zip(&floats(&cols[t])) {
                d = d.max((row[c] - want).abs());
            }
            assert!(d <= 1e-3, "prompt {p} position {t}: |Δ| = {d}");
            worst = worst.max(d);
            positions += 1;
        }
    }
    eprintln!("{positions} positions: max |Δ| {worst:e}");
}

/// Greedy continuations of 32 tokens equal the reference's, on the exact path.
#[test]
fn gemma3_greedy_continuations_match_transformers() {
    let model = gemma3();
    let config = GenerationConfig::new()
        .with_max_new_tokens(32)
        .with_min_new_tokens(32);
    for prompt in fixture()["prompts"].as_array().expect("prompts") {
        let text = prompt["text"].as_str().expect("text");
        let out = generate(
            &model.llama,
            &model.tokenizer,
            &Prompt::new().text(text),
            &config,
            |_| {},
        )
        .expect("generates");
        assert_eq!(out.ids, ints(&prompt["greedy"]), "continuation of {text:?}");
    }
}

/// The SentencePiece vocabulary read from the GGUF gives transformers' ids on code, Unicode,
/// whitespace runs, numbers and turn markers.
#[test]
fn gemma3_tokenizer_matches_transformers() {
    let model = gemma3();
    for case in fixture()["tokenizer"].as_array().expect("texts") {
        let text = case["text"].as_str().expect("text");
        let ids = model.tokenizer.encode(text).expect("encodes");
        assert_eq!(ids, ints(&case["ids"]), "{text:?}");
        assert_eq!(model.tokenizer.decode(&ids, true).expect("decodes"), text);
    }
}

/// The gradient of a next-token loss to soft tokens spliced before a text, through the real
/// frozen Gemma 3 blocks (local and global), against central finite differences.
#[test]
fn gemma3_soft_token_gradient_matches_finite_differences() {
    let model = &gemma3().llama;
    let device = model.device().clone();
    let ad = device.clone().autodiff();
    let mut ids = gemma3().tokenizer.encode("The answer is").expect("ids");
    ids.insert(0, gemma3().tokenizer.bos_id().expect("Gemma adds <bos>"));
    let target = gemma3().tokenizer.encode(" yes").expect("target")[0] as usize;
    let text = model.embed(ids_tensor(&ids, &device));
    let d = model.spec().d_model;
    // Soft tokens at the scale of real ones: the embeddings of three words.
    let words = gemma3().tokenizer.encode(" cat dog bird").expect("words");
    let soft: Vec<f32> = model
        .embed(ids_tensor(&words[..3], &device))
        .into_data()
        .try_into_vec()
        .expect("f32");
    let loss = |soft: Tensor<3>| -> Tensor<1> {
        // `<bos>`, the soft tokens, then the text.
        let text = text.clone().to_device(&ad);
        let n = text.dims()[1];
        let x = Tensor::cat(
            vec![
                text.clone().slice(s![.., 0..1, ..]),
                soft,
                text.slice(s![.., 1..n, ..]),
            ],
            1,
        );
        let logits = model.lm_head(model.forward(x, Default::default()));
        let t = logits.dims()[1];
        let last = logits.slice(s![.., t - 1..t, ..]).reshape([-1]);
        let lse = last.clone().exp().sum().log();
        lse - last.slice(s![target..target + 1])
    };
    let s = Tensor::<3>::from_data(TensorData::new(soft.clone(), [1, 3, d]), &ad).require_grad();
    let grads = loss(s.clone()).backward();
    let g: Vec<f32> = s
        .grad(&grads)
        .expect("grad")
        .into_data()
        .try_into_vec()
        .expect("f32");
    let value = |v: Vec<f32>| -> f64 {
        let t = Tensor::<3>::from_data(TensorData::new(v, [1, 3, d]), &ad);
        loss(t).into_scalar::<f32>() as f64
    };
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
