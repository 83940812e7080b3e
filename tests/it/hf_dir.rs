//! The Hugging Face directory loader: SmolLM2 exported from its GGUF to an HF layout
//! (rotate-half q/k rows, two safetensors shards with an index, tokenizer.json), loaded back.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use glaze::llm::rope::unpermute_rows;
use glaze::llm::{GgufFile, LanguageModel, LlamaConfig, default_model_path};
use glaze::{FrozenBackbone, TextCodec};
use glaze_tests::{read_npy_f32, reference, smollm2};
use safetensors::{Dtype, tensor::TensorView};

/// The HF name of a GGUF tensor (Gemma's block norms have their own names).
fn hf_name(gguf: &str, gemma: bool) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let hf = match part {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" if gemma => "pre_feedforward_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "post_attention_norm.weight" => "post_attention_layernorm.weight",
        "post_ffw_norm.weight" => "post_feedforward_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// A tensor for a shard: HF name, shape, little-endian f32 bytes.
type Entry = (String, Vec<usize>, Vec<u8>);

/// Writes the model of the GGUF file `gguf` (SmolLM2 or Gemma 3) to `dir` in HF layout:
/// `config.json`, two safetensors shards with an index, `tokenizer.json`,
/// `tokenizer_config.json`. Llama q/k rows become rotate-half rows; Gemma's norm gains are
/// stored as HF stores them (`w` where the norm multiplies by `1 + w`).
fn export(gguf: &Path, tok: &glaze::llm::Tokenizer, dir: &Path) {
    let file = GgufFile::open(gguf).expect("fetched model");
    let cfg = LlamaConfig::from_gguf(&file).expect("config");
    let gemma = cfg.architecture == "gemma3";
    let hd = cfg.head_dim();
    let mut config = serde_json::json!({
        "model_type": if gemma { "gemma3_text" } else { "llama" },
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "intermediate_size": cfg.ffn_dim,
        "vocab_size": cfg.vocab_size,
        "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.norm_eps,
        "max_position_embeddings": cfg.context_length,
        "tie_word_embeddings": true,
    });
    if gemma {
        let layer_types: Vec<&str> = (0..cfg.n_layers)
            .map(|i| {
                if cfg.is_local(i) {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        let extra = serde_json::json!({
            "head_dim": hd,
            "query_pre_attn_scalar": hd,
            "hidden_activation": "gelu_pytorch_tanh",
            "sliding_window": cfg.sliding_window,
            "layer_types": layer_types,
            "rope_local_base_freq": cfg.rope_theta_local,
            "final_logit_softcapping": null,
            "attn_logit_softcapping": null,
            "rope_scaling": null,
        });
        config
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
    }
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    std::fs::write(dir.join("tokenizer.json"), tok.to_json().expect("json")).expect("write");
    let bos = tok
        .bos_id()
        .map(|i| tok.decode(&[i], true).expect("decodes"));
    let tok_cfg = serde_json::json!({
        "chat_template": tok.chat_template(),
        "eos_token": tok.eos_token(),
        "pad_token": tok.eos_token(),
        "bos_token": bos,
        "add_bos_token": bos.is_some(),
    });
    std::fs::write(dir.join("tokenizer_config.json"), tok_cfg.to_string()).expect("write");

    // Two shards: the first half of the layers and the embedding, then the rest.
    let mut shards: [Vec<Entry>; 2] = [Vec::new(), Vec::new()];
    for info in &file.tensors {
        let Some(name) = hf_name(&info.name, gemma) else {
            continue;
        };
        let shape = info.shape();
        let mut data = file.dequantize(&info.name).expect("dequantizes");
        if gemma {
            if info.name.ends_with("norm.weight") {
                data.iter_mut().for_each(|v| *v -= 1.0);
            }
        } else if info.name.ends_with("attn_q.weight") {
            data = unpermute_rows(&data, cfg.n_heads, hd, shape[1]);
        } else if info.name.ends_with("attn_k.weight") {
            data = unpermute_rows(&data, cfg.n_kv_heads, hd, shape[1]);
        }
        let layer: usize = info
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        shards[usize::from(layer >= cfg.n_layers / 2)].push((name, shape, bytes));
    }
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let file_name = format!("model-{:05}-of-00002.safetensors", i + 1);
        let views: Vec<(String, TensorView<'_>)> = shard
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
                )
            })
            .collect();
        for (n, _) in &views {
            weight_map.insert(n.clone(), serde_json::Value::String(file_name.clone()));
        }
        let meta: Option<HashMap<String, String>> = None;
        safetensors::serialize_to_file(views, meta, &dir.join(&file_name)).expect("write shard");
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("write");
}

/// A fresh temporary directory for one export.
fn export_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("glaze-hf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An adapter identity on `spec`'s backbone.
fn identity(spec: &glaze::core::BackboneSpec) -> glaze::train::AdapterIdentity {
    glaze::train::AdapterIdentity {
        kind: "vision/mlp".into(),
        config: serde_json::Value::Null,
        encoder: None,
        backbone: glaze::train::BackboneIdentity::of(spec, spec.n_layers),
    }
}

/// An adapter trained on `gguf` loads on `copy` of the same model with a warning: other
/// weights hash, same vocabulary, the embedding table's sketch within rounding.
fn loads_on_the_copy(gguf: &glaze::core::BackboneSpec, copy: &glaze::core::BackboneSpec) {
    use glaze::train::BackboneMatch;
    let (trained, copy) = (identity(gguf), identity(copy));
    assert_ne!(trained.backbone.weights_hash, copy.backbone.weights_hash);
    assert_eq!(trained.backbone.vocab_digest, copy.backbone.vocab_digest);
    match trained.backbone.compare(&copy.backbone) {
        BackboneMatch::Compatible { distance } => assert!(distance < 1e-6, "{distance}"),
        other => panic!("the HF copy is the same model: {other:?}"),
    }
    trained
        .check_compatible(&copy, Path::new("adapter.safetensors"))
        .expect("loads on the HF copy");
}

#[test]
fn hf_directory_loads_and_matches_the_reference() {
    let dir = export_dir("smollm2");
    export(&default_model_path(), &smollm2().tokenizer, &dir);
    let lm = LanguageModel::load(&dir, &Device::flex()).expect("HF directory loads");
    std::fs::remove_dir_all(&dir).ok();
    let ids = lm
        .tokenizer
        .encode("The capital of France is")
        .expect("encodes");
    assert_eq!(ids, vec![504, 3575, 282, 4649, 314]);
    let t = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, 5]),
        lm.llama.device(),
    );
    let got: Vec<f32> = lm
        .llama
        .logits(t, Default::default())
        .into_data()
        .try_into_vec()
        .expect("f32");
    let (_, want) = read_npy_f32(&reference("smollm2/smollm2_ref_prompt_logits.npy"));
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max <= 1e-3,
        "HF-loaded logits differ from the reference by {max}"
    );
    let chat = lm
        .tokenizer
        .render_chat(&[glaze::ChatMessage::user("hi")], true)
        .expect("renders");
    assert!(chat.ends_with("<|im_start|>assistant\n"), "{chat}");

    // An adapter trained on the GGUF file loads on this HF copy.
    loads_on_the_copy(smollm2().llama.spec(), lm.llama.spec());
}

/// Gemma 3 270M exported from its GGUF to HF layout (`gemma3_text` config with its layer
/// kinds, HF norm names and `w` gains, `add_bos_token`) loads back as the same model: the
/// same tokens and `<bos>`, logits of the exact path equal to the GGUF-loaded model's (which
/// `gemma3.rs` checks against transformers), and adapters portable between the two.
#[test]
fn gemma3_hf_directory_loads_as_the_same_model() {
    let gguf = crate::gemma3::gemma3();
    let dir = export_dir("gemma3");
    export(&crate::gemma3::gemma3_path(), &gguf.tokenizer, &dir);
    let mut lm = LanguageModel::load(&dir, &Device::flex()).expect("HF directory loads");
    std::fs::remove_dir_all(&dir).ok();
    lm.llama
        .set_generation_activations(glaze::llm::Activations::F32);
    assert_eq!(lm.llama.config().architecture, "gemma3");
    assert_eq!(lm.tokenizer.bos_id(), gguf.tokenizer.bos_id());
    assert!(lm.tokenizer.bos_id().is_some(), "Gemma adds <bos>");
    let text = "def área(r):\n    return 3.14159 * r ** 2  # ünïcode, 12345 spaces   end";
    let ids = lm.tokenizer.encode(text).expect("encodes");
    assert_eq!(ids, gguf.tokenizer.encode(text).expect("encodes"));
    let chat = lm
        .tokenizer
        .render_chat(&[glaze::ChatMessage::user("hi")], true)
        .expect("renders");
    assert!(chat.ends_with("<start_of_turn>model\n"), "{chat}");

    // Past the quantized kernels' row limit, so both run the f32 product.
    let mut prompt = vec![lm.tokenizer.bos_id().expect("bos")];
    prompt.extend(&ids);
    let t = Tensor::<2, Int>::from_data(
        TensorData::new(
            prompt.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
            [1, prompt.len()],
        ),
        lm.llama.device(),
    );
    let logits = |m: &glaze::llm::Llama| -> Vec<f32> {
        m.logits(t.clone(), Default::default())
            .into_data()
            .try_into_vec()
            .expect("f32")
    };
    let (got, want) = (logits(&lm.llama), logits(&gguf.llama));
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("Gemma 3 from HF layout against GGUF: max |Δ| {max:e}");
    assert!(
        max <= 1e-3,
        "HF-loaded Gemma's logits differ from the GGUF-loaded by {max}"
    );
    loads_on_the_copy(gguf.llama.spec(), lm.llama.spec());
}
