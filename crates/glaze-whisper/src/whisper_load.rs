//! Puts Whisper encoder weights into a [`WhisperEncoder`], from a CTranslate2 `model.bin` or an
//! HF Whisper safetensors directory. Both are first read into a [`TensorStore`] under the file's
//! own names; one table maps them to fields (linear weights are transposed into burn's
//! `[in, out]`; HF's separate q/k/v are concatenated into the fused projection, the key's absent
//! bias as zeros — what CTranslate2's converter stores).
//!
//! | field (layer i) | CTranslate2 `encoder/layer_i/` | HF `…encoder.layers.i.` |
//! |---|---|---|
//! | `attn_norm` | `self_attention/layer_norm/{gamma,beta}` | `self_attn_layer_norm.{weight,bias}` |
//! | `qkv` | `self_attention/linear_0` | `self_attn.{q,k,v}_proj` |
//! | `out` | `self_attention/linear_1` | `self_attn.out_proj` |
//! | `mlp_norm` | `ffn/layer_norm` | `final_layer_norm` |
//! | `fc1`, `fc2` | `ffn/linear_0`, `ffn/linear_1` | `fc1`, `fc2` |
//!
//! and `conv1`, `conv2` (`encoder/conv{1,2}/{weight,bias}` | `conv{1,2}.{weight,bias}`),
//! positions (`encoder/position_encodings/encodings` | `embed_positions.weight`), final norm
//! (`encoder/layer_norm` | `layer_norm`).

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::Conv1d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use glaze_core::{StoredTensor, TensorStore};

use crate::ct2::read_ct2;
use crate::error::{Error, Result};
use crate::whisper::{WhisperEncoder, WhisperEncoderConfig};

fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn take(store: &TensorStore, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    Ok(store.get(name, shape)?.data.clone())
}

/// The names of one format.
struct Names {
    /// CTranslate2 names (fused q/k/v, `/`-separated) rather than HF's.
    ct2: bool,
    prefix: String,
    conv: fn(usize, &str) -> String,
    positions: &'static str,
    norm: fn(&str, bool) -> String,
    layer: fn(usize) -> String,
    attn_norm: &'static str,
    mlp_norm: &'static str,
    out: &'static str,
    fc1: &'static str,
    fc2: &'static str,
    weight: &'static str,
    bias: &'static str,
}

const CT2: Names = Names {
    ct2: true,
    prefix: String::new(),
    conv: |k, p| format!("encoder/conv{k}/{p}"),
    positions: "encoder/position_encodings/encodings",
    norm: |base, gamma| format!("{base}/{}", if gamma { "gamma" } else { "beta" }),
    layer: |i| format!("encoder/layer_{i}/"),
    attn_norm: "self_attention/layer_norm",
    mlp_norm: "ffn/layer_norm",
    out: "self_attention/linear_1",
    fc1: "ffn/linear_0",
    fc2: "ffn/linear_1",
    weight: "/weight",
    bias: "/bias",
};

fn hf_names(prefix: String) -> Names {
    Names {
        ct2: false,
        prefix,
        conv: |k, p| format!("conv{k}.{p}"),
        positions: "embed_positions.weight",
        norm: |base, gamma| format!("{base}.{}", if gamma { "weight" } else { "bias" }),
        layer: |i| format!("layers.{i}."),
        attn_norm: "self_attn_layer_norm",
        mlp_norm: "final_layer_norm",
        out: "self_attn.out_proj",
        fc1: "fc1",
        fc2: "fc2",
        weight: ".weight",
        bias: ".bias",
    }
}

fn set_norm(
    n: &mut LayerNorm,
    store: &TensorStore,
    names: &Names,
    base: &str,
    d: usize,
    dev: &Device,
) -> Result<()> {
    let p = &names.prefix;
    n.gamma = Param::from_tensor(tensor(
        take(store, &format!("{p}{}", (names.norm)(base, true)), &[d])?,
        [d],
        dev,
    ));
    n.beta = Some(Param::from_tensor(tensor(
        take(store, &format!("{p}{}", (names.norm)(base, false)), &[d])?,
        [d],
        dev,
    )));
    Ok(())
}

fn set_linear(
    l: &mut Linear,
    store: &TensorStore,
    names: &Names,
    base: &str,
    (d_in, d_out): (usize, usize),
    dev: &Device,
) -> Result<()> {
    let p = &names.prefix;
    let w = take(store, &format!("{p}{base}{}", names.weight), &[d_out, d_in])?;
    let b = take(store, &format!("{p}{base}{}", names.bias), &[d_out])?;
    l.weight = Param::from_tensor(tensor(w, [d_out, d_in], dev).transpose());
    l.bias = Some(Param::from_tensor(tensor(b, [d_out], dev)));
    Ok(())
}

fn set_conv(
    c: &mut Conv1d,
    store: &TensorStore,
    names: &Names,
    k: usize,
    (c_in, d): (usize, usize),
    dev: &Device,
) -> Result<()> {
    let p = &names.prefix;
    let w = take(
        store,
        &format!("{p}{}", (names.conv)(k, "weight")),
        &[d, c_in, 3],
    )?;
    let b = take(store, &format!("{p}{}", (names.conv)(k, "bias")), &[d])?;
    c.weight = Param::from_tensor(tensor(w, [d, c_in, 3], dev));
    c.bias = Some(Param::from_tensor(tensor(b, [d], dev)));
    Ok(())
}

/// The fused `[3d, d]` q/k/v weight and `[3d]` bias of layer `i`.
fn fused_qkv(
    store: &TensorStore,
    names: &Names,
    layer: &str,
    d: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let p = &names.prefix;
    if names.ct2 {
        let base = format!("{p}{layer}self_attention/linear_0");
        return Ok((
            take(store, &format!("{base}/weight"), &[3 * d, d])?,
            take(store, &format!("{base}/bias"), &[3 * d])?,
        ));
    }
    let mut w = Vec::with_capacity(3 * d * d);
    let mut b = Vec::with_capacity(3 * d);
    for part in ["q", "k", "v"] {
        let base = format!("{p}{layer}self_attn.{part}_proj");
        w.extend(take(store, &format!("{base}.weight"), &[d, d])?);
        match store.tensors.get(&format!("{base}.bias")) {
            Some(StoredTensor { shape, data }) if shape == &[d] => b.extend_from_slice(data),
            Some(t) => {
                return Err(Error::weights(
                    &store.path,
                    format!(
                        "tensor `{base}.bias` has shape {:?}, expected [{d}]",
                        t.shape
                    ),
                ));
            }
            None if part == "k" => b.extend(std::iter::repeat_n(0.0, d)),
            None => {
                return Err(Error::weights(
                    &store.path,
                    format!("missing tensor `{base}.bias`"),
                ));
            }
        }
    }
    Ok((w, b))
}

fn fill(
    config: &WhisperEncoderConfig,
    store: &TensorStore,
    names: &Names,
    device: &Device,
) -> Result<WhisperEncoder> {
    let (d, m) = (config.d_model, config.n_mels);
    let mut enc = config.init(device);
    set_conv(&mut enc.conv1, store, names, 1, (m, d), device)?;
    set_conv(&mut enc.conv2, store, names, 2, (d, d), device)?;
    let pos = take(
        store,
        &format!("{}{}", names.prefix, names.positions),
        &[config.n_ctx, d],
    )?;
    enc.positions = Param::from_tensor(tensor(pos, [config.n_ctx, d], device));
    for (i, layer) in enc.layers.iter_mut().enumerate() {
        let l = (names.layer)(i);
        set_norm(
            &mut layer.attn_norm,
            store,
            names,
            &format!("{l}{}", names.attn_norm),
            d,
            device,
        )?;
        set_norm(
            &mut layer.mlp_norm,
            store,
            names,
            &format!("{l}{}", names.mlp_norm),
            d,
            device,
        )?;
        let (w, b) = fused_qkv(store, names, &l, d)?;
        layer.qkv.weight = Param::from_tensor(tensor(w, [3 * d, d], device).transpose());
        layer.qkv.bias = Some(Param::from_tensor(tensor(b, [3 * d], device)));
        set_linear(
            &mut layer.out,
            store,
            names,
            &format!("{l}{}", names.out),
            (d, d),
            device,
        )?;
        set_linear(
            &mut layer.fc1,
            store,
            names,
            &format!("{l}{}", names.fc1),
            (d, 4 * d),
            device,
        )?;
        set_linear(
            &mut layer.fc2,
            store,
            names,
            &format!("{l}{}", names.fc2),
            (4 * d, d),
            device,
        )?;
    }
    let final_norm = if names.ct2 {
        "encoder/layer_norm"
    } else {
        "layer_norm"
    };
    set_norm(&mut enc.norm, store, names, final_norm, d, device)?;
    Ok(enc.freeze())
}

/// The configuration a store implies: mel bins and width from `conv1`, blocks counted, heads
/// given by the caller (CTranslate2 stores them as `encoder/num_heads`, HF in `config.json`).
fn infer_config(
    store: &TensorStore,
    names: &Names,
    n_heads: usize,
) -> Result<WhisperEncoderConfig> {
    let conv1 = format!("{}{}", names.prefix, (names.conv)(1, "weight"));
    let Some(&[d, m, 3]) = store.shape(&conv1) else {
        return Err(Error::weights(
            &store.path,
            format!("no `{conv1}` of shape [d, mel bins, 3]: not a Whisper encoder"),
        ));
    };
    let (head, tail) = if names.ct2 {
        ("encoder/layer_".to_string(), "/ffn/linear_0/weight")
    } else {
        (format!("{}layers.", names.prefix), ".fc1.weight")
    };
    let n_layers = store.count(&head, tail);
    let n_ctx = store
        .shape(&format!("{}{}", names.prefix, names.positions))
        .map_or(1500, |s| s[0]);
    if n_layers == 0 || n_heads == 0 || !d.is_multiple_of(n_heads) {
        return Err(Error::weights(
            &store.path,
            format!(
                "{n_layers} encoder blocks of width {d} with {n_heads} heads cannot be a Whisper encoder"
            ),
        ));
    }
    Ok(WhisperEncoderConfig::new(m, d, n_heads, n_layers).with_n_ctx(n_ctx))
}

/// Loads the encoder of a CTranslate2 Whisper `model.bin` (faster-whisper's format).
pub fn load_ct2(path: &Path, device: &Device) -> Result<(WhisperEncoderConfig, WhisperEncoder)> {
    let (header, store) = read_ct2(path, "encoder/")?;
    if header.spec != "WhisperSpec" {
        return Err(Error::weights(
            path,
            format!("spec `{}` is not a Whisper model", header.spec),
        ));
    }
    let heads = store
        .get("encoder/num_heads", &[])
        .map(|t| t.data[0] as usize)?;
    let config = infer_config(&store, &CT2, heads)?;
    let enc = fill(&config, &store, &CT2, device)?;
    Ok((config, enc))
}

/// The fields of an HF Whisper `config.json` the loader reads.
#[derive(Debug, Clone, serde::Deserialize)]
struct HfWhisperConfig {
    model_type: String,
    encoder_attention_heads: usize,
}

/// Loads the encoder of an HF Whisper safetensors directory (`config.json` + `*.safetensors`;
/// `WhisperModel`, `WhisperForConditionalGeneration` or a bare encoder).
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(WhisperEncoderConfig, WhisperEncoder)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| Error::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let hf: HfWhisperConfig = serde_json::from_str(&text)
        .map_err(|e| Error::weights(&cfg_path, format!("not a Whisper config: {e}")))?;
    if hf.model_type != "whisper" {
        return Err(Error::weights(
            &cfg_path,
            format!("model_type `{}` is not `whisper`", hf.model_type),
        ));
    }
    let mut store = TensorStore::new(dir);
    store.read_safetensors(&glaze_core::tensor_store::safetensors_files(dir)?)?;
    let prefix = store
        .prefix_of("conv1.weight")
        .ok_or_else(|| Error::weights(dir, "no `conv1.weight`: not a Whisper encoder"))?;
    let names = hf_names(prefix);
    let config = infer_config(&store, &names, hf.encoder_attention_heads)?;
    let enc = fill(&config, &store, &names, device)?;
    Ok((config, enc))
}
