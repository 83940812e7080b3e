//! Weights in HF names, and the one loader that puts them into a [`ViT`].
//!
//! Both file formats (the ONNX export, HF safetensors directories) are first read into a
//! [`TensorStore`] keyed by HF `Dinov2Model` / `ViTModel` parameter names, with HF's layouts
//! (`Linear.weight [out, in]`, patch convolution `[D, 3, p, p]`). [`load_vit`] then maps names to
//! fields through the table below, transposing linear weights into burn's `[in, out]`.
//!
//! | burn field | Dinov2 name (per layer `encoder.layer.{i}.`) | ViT name |
//! |---|---|---|
//! | `norm1` | `norm1` | `layernorm_before` |
//! | `attn.{query,key,value}` | `attention.attention.{query,key,value}` | same |
//! | `attn.out` | `attention.output.dense` | same |
//! | `scale1`, `scale2` | `layer_scale{1,2}.lambda1` | — |
//! | `norm2` | `norm2` | `layernorm_after` |
//! | `fc1`, `fc2` | `mlp.fc1`, `mlp.fc2` | `intermediate.dense`, `output.dense` |
//!
//! and, outside the layers: `embeddings.cls_token`, `embeddings.position_embeddings`,
//! `embeddings.patch_embeddings.projection.{weight,bias}`, `layernorm.{weight,bias}`.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::vit::{ViT, ViTConfig};

/// Which HF naming the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// HF `Dinov2Model` (layer scale, `mlp.fc1/fc2`).
    Dinov2,
    /// HF `ViTModel` (`layernorm_before/after`, `intermediate/output.dense`).
    Vit,
}

pub use glaze_core::{StoredTensor, TensorStore};

/// The prefix before `embeddings.cls_token` (`""`, `"backbone."`, `"dinov2."`, `"vit."`).
pub fn prefix(store: &TensorStore) -> Result<String> {
    store.prefix_of("embeddings.cls_token").ok_or_else(|| {
        Error::weights(
            &store.path,
            "no `embeddings.cls_token`: not a ViT/DINOv2 checkpoint",
        )
    })
}

/// Number of `encoder.layer.{i}.` blocks under `prefix`.
pub fn depth(store: &TensorStore, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            let head = format!("{prefix}encoder.layer.{i}.");
            store.tensors.keys().any(|k| k.starts_with(&head))
        })
        .count()
}

fn tensor<const D: usize>(t: &StoredTensor, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), shape), device)
}

fn set_linear(
    l: &mut Linear,
    store: &TensorStore,
    name: &str,
    (d_in, d_out): (usize, usize),
    device: &Device,
) -> Result<()> {
    let w = store.get(&format!("{name}.weight"), &[d_out, d_in])?;
    let b = store.get(&format!("{name}.bias"), &[d_out])?;
    l.weight = Param::from_tensor(tensor(w, [d_out, d_in], device).transpose());
    l.bias = Some(Param::from_tensor(tensor(b, [d_out], device)));
    Ok(())
}

fn set_norm(
    n: &mut LayerNorm,
    store: &TensorStore,
    name: &str,
    d: usize,
    device: &Device,
) -> Result<()> {
    let w = store.get(&format!("{name}.weight"), &[d])?;
    let b = store.get(&format!("{name}.bias"), &[d])?;
    n.gamma = Param::from_tensor(tensor(w, [d], device));
    n.beta = Some(Param::from_tensor(tensor(b, [d], device)));
    Ok(())
}

/// Builds a [`ViT`] from `config` and fills it from the store.
pub fn load_vit(
    config: &ViTConfig,
    flavour: Flavour,
    store: &TensorStore,
    device: &Device,
) -> Result<ViT> {
    let prefix = prefix(store)?;
    let depth = depth(store, &prefix);
    if depth != config.depth {
        return Err(Error::weights(
            &store.path,
            format!(
                "{depth} encoder layers, the configuration says {}",
                config.depth
            ),
        ));
    }
    let (d, p, g, m) = (
        config.dim,
        config.patch_size,
        config.pos_grid,
        config.mlp_dim,
    );
    let mut vit = config.init(device);
    let e = format!("{prefix}embeddings.");
    vit.cls_token = Param::from_tensor(tensor(
        store.get(&format!("{e}cls_token"), &[1, 1, d])?,
        [1, 1, d],
        device,
    ));
    vit.pos_embed = Param::from_tensor(tensor(
        store.get(&format!("{e}position_embeddings"), &[1, 1 + g * g, d])?,
        [1, 1 + g * g, d],
        device,
    ));
    let pw = store.get(
        &format!("{e}patch_embeddings.projection.weight"),
        &[d, 3, p, p],
    )?;
    let pb = store.get(&format!("{e}patch_embeddings.projection.bias"), &[d])?;
    vit.patch.weight = Param::from_tensor(tensor(pw, [d, 3 * p * p], device).transpose());
    vit.patch.bias = Some(Param::from_tensor(tensor(pb, [d], device)));
    for (i, layer) in vit.layers.iter_mut().enumerate() {
        let l = format!("{prefix}encoder.layer.{i}.");
        let (n1, n2, f1, f2) = match flavour {
            Flavour::Dinov2 => ("norm1", "norm2", "mlp.fc1", "mlp.fc2"),
            Flavour::Vit => (
                "layernorm_before",
                "layernorm_after",
                "intermediate.dense",
                "output.dense",
            ),
        };
        set_norm(&mut layer.norm1, store, &format!("{l}{n1}"), d, device)?;
        set_norm(&mut layer.norm2, store, &format!("{l}{n2}"), d, device)?;
        let a = format!("{l}attention.attention.");
        set_linear(
            &mut layer.attn.query,
            store,
            &format!("{a}query"),
            (d, d),
            device,
        )?;
        set_linear(
            &mut layer.attn.key,
            store,
            &format!("{a}key"),
            (d, d),
            device,
        )?;
        set_linear(
            &mut layer.attn.value,
            store,
            &format!("{a}value"),
            (d, d),
            device,
        )?;
        set_linear(
            &mut layer.attn.out,
            store,
            &format!("{l}attention.output.dense"),
            (d, d),
            device,
        )?;
        set_linear(&mut layer.fc1, store, &format!("{l}{f1}"), (d, m), device)?;
        set_linear(&mut layer.fc2, store, &format!("{l}{f2}"), (m, d), device)?;
        if flavour == Flavour::Dinov2 {
            for (slot, k) in [(&mut layer.scale1, 1), (&mut layer.scale2, 2)] {
                let s = store.get(&format!("{l}layer_scale{k}.lambda1"), &[d])?;
                *slot = Some(Param::from_tensor(tensor(s, [d], device)));
            }
        }
    }
    set_norm(
        &mut vit.norm,
        store,
        &format!("{prefix}layernorm"),
        d,
        device,
    )?;
    Ok(vit.freeze())
}
