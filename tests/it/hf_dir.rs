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

fn hf_name(gguf: &str) -> Option<String> {
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
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// A tensor for a shard: HF name, shape, little-endian f32 bytes.
type Entry = (String, Vec<usize>, Vec<u8>);

fn export(dir: &Path) {
    let file = GgufFile::open(default_model_path()).expect("fetched model");
    let cfg = LlamaConfig::from_gguf(&file).expect("config");
    let hd = cfg.head_dim();
    let config = serde_json::json!({
        "model_type": "llama",
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
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let tok = &smollm2().tokenizer;
    std::fs::write(dir.join("tokenizer.json"), tok.to_json().expect("json")).expect("write");
    let tok_cfg = serde_json::json!({
        "chat_template": tok.chat_template(),
        "eos_token": tok.eos_token(),
        "pad_token": tok.eos_token(),
    });
    std::fs::write(dir.join("tokenizer_config.json"), tok_cfg.to_string()).expect("write");

    // Two shards: the first half of the layers and the embedding, then the rest.
    let mut shards: [Vec<Entry>; 2] = [Vec::new(), Vec::new()];
    for info in &file.tensors {
        let Some(name) = hf_name(&info.name) else {
            continue;
        };
        let shape = info.shape();
        let mut data = file.dequantize(&info.name).expect("dequantizes");
        if info.name.ends_with("attn_q.weight") {
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

#[test]
fn hf_directory_loads_and_matches_the_reference() {
    let dir = std::env::temp_dir().join(format!("glaze-hf-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    export(&dir);
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

    // An adapter trained on the GGUF file loads on this HF copy (other weights hash, same
    // vocabulary and table: a warning), and not on another model (Qwen2: another width).
    use glaze::train::{AdapterIdentity, BackboneIdentity, BackboneMatch};
    let gguf = &glaze_tests::smollm2().llama;
    let identity = |spec: &glaze::core::BackboneSpec| AdapterIdentity {
        kind: "vision/mlp".into(),
        config: serde_json::Value::Null,
        encoder: None,
        backbone: BackboneIdentity::of(spec, spec.n_layers),
    };
    let trained = identity(gguf.spec());
    let copy = identity(lm.llama.spec());
    assert_ne!(trained.backbone.weights_hash, copy.backbone.weights_hash);
    assert_eq!(trained.backbone.vocab_digest, copy.backbone.vocab_digest);
    match trained.backbone.compare(&copy.backbone) {
        BackboneMatch::Compatible { distance } => assert!(distance < 1e-6, "{distance}"),
        other => panic!("the HF copy is the same model: {other:?}"),
    }
    let path = std::path::Path::new("adapter.safetensors");
    trained
        .check_compatible(&copy, path)
        .expect("loads on the HF copy");
}
