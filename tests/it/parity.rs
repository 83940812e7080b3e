//! What the parity tests of every backbone against HF transformers share
//! (`qwen2.rs`, `gemma3.rs`): the model on its exact path, the compact fixtures written by
//! `tests/fixtures/make_*_ref.py`, and the checks of logits, greedy continuations, tokenizer
//! ids and the soft-token gradient's setup.

use std::path::Path;

use burn::prelude::*;
use glaze::llm::{Activations, GenerationConfig, LanguageModel, generate};
use glaze::{FrozenBackbone, Prompt, TextCodec};

/// The GGUF `path` that `cargo xtask fetch <asset>` fetches, with f32 activations in every
/// product (the exact path).
pub(crate) fn load_exact(path: &Path, asset: &str) -> LanguageModel {
    let mut model = LanguageModel::load(path, &Device::flex())
        .unwrap_or_else(|e| panic!("needs `cargo xtask fetch {asset}`: {e}"));
    model.llama.set_generation_activations(Activations::F32);
    model
}

/// A reference fixture of `tests/fixtures`.
pub(crate) fn read_fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

pub(crate) fn ints(v: &serde_json::Value) -> Vec<u32> {
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

pub(crate) fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [1, ids.len()]),
        device,
    )
}

/// Every position of every prompt: the logsumexp over the whole vocabulary, the reference's
/// top 8 logits and 128 fixed columns within 1e-3.
pub(crate) fn logits_match(model: &LanguageModel, reference: &serde_json::Value) {
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

/// Greedy continuations of 32 tokens equal the reference's.
pub(crate) fn greedy_matches(model: &LanguageModel, reference: &serde_json::Value) {
    let config = GenerationConfig::new()
        .with_max_new_tokens(32)
        .with_min_new_tokens(32);
    for prompt in reference["prompts"].as_array().expect("prompts") {
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

/// The tokenizer read from the GGUF gives the reference's ids on its texts, and decodes them
/// back.
pub(crate) fn tokenizer_matches(model: &LanguageModel, reference: &serde_json::Value) {
    for case in reference["tokenizer"].as_array().expect("texts") {
        let text = case["text"].as_str().expect("text");
        let ids = model.tokenizer.encode(text).expect("encodes");
        assert_eq!(ids, ints(&case["ids"]), "{text:?}");
        assert_eq!(model.tokenizer.decode(&ids, true).expect("decodes"), text);
    }
}

/// A next-token loss (`" yes"` after "The answer is") of three soft tokens spliced after the
/// tokenizer's `<bos>` (where it adds one) and before the text, through the real frozen
/// blocks; the soft tokens start at the embeddings of three words (the scale of real ones).
pub(crate) struct SoftTokenGradient {
    /// The soft tokens, `[3, D]` flattened.
    pub soft: Vec<f32>,
    /// The autodiff gradient of the loss to them.
    pub grad: Vec<f32>,
    /// The loss at other soft tokens (same shape), for difference quotients.
    pub value: Box<dyn Fn(Vec<f32>) -> f64>,
}

pub(crate) fn soft_token_gradient(model: &'static LanguageModel) -> SoftTokenGradient {
    let llama = &model.llama;
    let device = llama.device().clone();
    let ad = device.clone().autodiff();
    let mut ids = model.tokenizer.encode("The answer is").expect("ids");
    let bos = usize::from(model.tokenizer.bos_id().is_some());
    if let Some(b) = model.tokenizer.bos_id() {
        ids.insert(0, b);
    }
    let target = model.tokenizer.encode(" yes").expect("target")[0] as usize;
    let text = llama.embed(ids_tensor(&ids, &device));
    let d = llama.spec().d_model;
    let words = model.tokenizer.encode(" cat dog bird").expect("words");
    let soft: Vec<f32> = llama
        .embed(ids_tensor(&words[..3], &device))
        .into_data()
        .try_into_vec()
        .expect("f32");
    let loss = move |soft: Tensor<3>| -> Tensor<1> {
        let text = text.clone().to_device(&ad);
        let n = text.dims()[1];
        let parts = if bos == 1 {
            vec![
                text.clone().slice(s![.., 0..1, ..]),
                soft,
                text.slice(s![.., 1..n, ..]),
            ]
        } else {
            vec![soft, text]
        };
        let x = Tensor::cat(parts, 1);
        let logits = llama.lm_head(llama.forward(x, Default::default()));
        let t = logits.dims()[1];
        let last = logits.slice(s![.., t - 1..t, ..]).reshape([-1]);
        let lse = last.clone().exp().sum().log();
        lse - last.slice(s![target..target + 1])
    };
    let ad = device.autodiff();
    let s = Tensor::<3>::from_data(TensorData::new(soft.clone(), [1, 3, d]), &ad).require_grad();
    let grads = loss(s.clone()).backward();
    let grad: Vec<f32> = s
        .grad(&grads)
        .expect("grad")
        .into_data()
        .try_into_vec()
        .expect("f32");
    let value = Box::new(move |v: Vec<f32>| -> f64 {
        let t = Tensor::<3>::from_data(TensorData::new(v, [1, 3, d]), &ad);
        loss(t).into_scalar::<f32>() as f64
    });
    SoftTokenGradient { soft, grad, value }
}
