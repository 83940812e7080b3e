//! The prompt prefix through the frozen backbone, computed once and cached on disk.
//!
//! The prompt comes before the patches and attention is causal, so its keys and values in
//! every layer depend on the prompt text alone — not on the adapter being trained. They are
//! a frozen computation: [`PrefixKvCache`] runs the prompt through the first `K` blocks once,
//! stores the per-layer keys and values in the offline [`FeatureCache`] (keyed by the prompt
//! text, inside a directory keyed by the backbone's identity and `K`), and each training step
//! runs only the patch positions, attending to the cached prefix. Gradients reach the patches
//! exactly as in a full forward pass of prompt + patches.

use burn::prelude::*;
use rayon::prelude::*;

use glaze_core::{ForwardOptions, FrozenBackbone, KvCache, TextCodec};
use glaze_train::{CachedArray, FeatureCache};

use crate::error::{Error, Result};

/// Keys and values of one prompt: `[K, 2, kv_heads, P, head_dim]`.
pub type PrefixKv = CachedArray;

/// Prompts run through the blocks together when their prefixes are computed.
pub const PREFIX_BATCH: usize = 32;

/// Computes (or reads from the cache) the prefix keys and values of prompts.
pub struct PrefixKvCache<'a> {
    backbone: &'a dyn FrozenBackbone,
    codec: &'a dyn TextCodec,
    layers: usize,
    cache: Option<FeatureCache>,
}

impl<'a> PrefixKvCache<'a> {
    /// An encoder for the first `layers` blocks; `cache_root` enables the disk cache.
    pub fn new(
        backbone: &'a dyn FrozenBackbone,
        codec: &'a dyn TextCodec,
        layers: usize,
        cache_root: Option<&std::path::Path>,
    ) -> Result<Self> {
        let cache = match cache_root {
            Some(root) => {
                let s = backbone.spec();
                let id = format!(
                    "prompt-prefix-kv v1 | {} | {} | {} | layers {layers}",
                    s.architecture, s.name, s.weights_hash
                );
                Some(FeatureCache::open(root, &id)?)
            }
            None => None,
        };
        Ok(PrefixKvCache {
            backbone,
            codec,
            layers,
            cache,
        })
    }

    /// The disk cache, when enabled.
    pub fn cache(&self) -> Option<&FeatureCache> {
        self.cache.as_ref()
    }

    /// Prefix keys and values of one prompt.
    pub fn encode(&self, text: &str) -> Result<PrefixKv> {
        let compute = || -> glaze_core::Result<CachedArray> { self.compute(text) };
        Ok(match &self.cache {
            Some(c) => c.get_or_compute(text.as_bytes(), compute)?,
            None => compute()?,
        })
    }

    /// [`PrefixKvCache::encode`] for a batch of prompts: cached entries are read in parallel,
    /// missing ones computed together in one right-padded batch (and stored).
    pub fn encode_many(&self, texts: &[String]) -> Result<Vec<PrefixKv>> {
        let found = match &self.cache {
            Some(c) => {
                let keys: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
                c.get_many(&keys)
            }
            None => vec![None; texts.len()],
        };
        let missing: Vec<&str> = texts
            .iter()
            .zip(&found)
            .filter(|(_, hit)| hit.is_none())
            .map(|(t, _)| t.as_str())
            .collect();
        let mut computed = self.compute_many(&missing)?.into_iter();
        let mut out = Vec::with_capacity(texts.len());
        for (text, hit) in texts.iter().zip(found) {
            out.push(match hit {
                Some(kv) => kv,
                None => {
                    let kv = computed
                        .next()
                        .expect("invariant: one computed entry per missing prompt");
                    if let Some(c) = &self.cache {
                        c.put(text.as_bytes(), &kv)?;
                    }
                    kv
                }
            });
        }
        Ok(out)
    }

    fn compute(&self, text: &str) -> glaze_core::Result<CachedArray> {
        let mut one = self.compute_many(&[text])?;
        Ok(one.pop().expect("invariant: one prompt, one entry"))
    }

    /// The prefix keys and values of `texts`, computed in batches of up to
    /// [`PREFIX_BATCH`] prompts: each batch right-padded to its longest prompt, so that under
    /// the causal mask a prompt's positions never see the padding and keep their own
    /// positions (one prompt at a time, a Time-LLM step spent 0.37 s on 32 prompts).
    fn compute_many(&self, texts: &[&str]) -> glaze_core::Result<Vec<CachedArray>> {
        let max = self.backbone.spec().context_length;
        let mut all = Vec::with_capacity(texts.len());
        for text in texts {
            let ids = self.codec.encode(text)?;
            self.backbone.check_ids(&ids)?;
            if ids.is_empty() {
                return Err(glaze_core::Error::EmptyPrompt);
            }
            if ids.len() >= max {
                return Err(glaze_core::Error::ContextOverflow {
                    len: ids.len(),
                    max,
                });
            }
            all.push(ids);
        }
        let mut out = Vec::with_capacity(texts.len());
        for batch in all.chunks(PREFIX_BATCH) {
            out.extend(self.compute_batch(batch)?);
        }
        Ok(out)
    }

    fn compute_batch(&self, batch: &[Vec<u32>]) -> glaze_core::Result<Vec<CachedArray>> {
        let (n, longest) = (batch.len(), batch.iter().map(Vec::len).max().unwrap_or(0));
        let pad = i64::from(self.codec.pad_id());
        let mut flat = Vec::with_capacity(n * longest);
        for ids in batch {
            flat.extend(ids.iter().map(|&i| i64::from(i)));
            flat.resize(flat.len() + longest - ids.len(), pad);
        }
        let device = self.backbone.device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [n, longest]), device);
        let mut cache = self.backbone.new_cache();
        let embeds = self.backbone.embed(ids);
        let _ = self.backbone.forward(
            embeds,
            ForwardOptions {
                cache: Some(&mut cache),
                layers: Some(self.layers),
                ..Default::default()
            },
        );
        // Per layer, keys then values, `[n, kv, ≥ longest, hd]` on the host.
        let mut layers = Vec::with_capacity(self.layers);
        let mut dims = [0usize; 3];
        for i in 0..self.layers {
            let (k, v) = cache
                .layer(i)
                .cloned()
                .ok_or(glaze_core::Error::InvalidConfig {
                    field: "llm_layers",
                    problem: format!("the backbone has no layer {i}"),
                })?;
            let pair = [k, v].map(|t| {
                let [_, kv, cap, hd] = t.dims();
                dims = [kv, cap, hd];
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("invariant: float cache converts to f32")
            });
            layers.push(pair);
        }
        let [kv, cap, hd] = dims;
        Ok(batch
            .iter()
            .enumerate()
            .map(|(r, ids)| {
                let p = ids.len();
                let mut data = Vec::with_capacity(self.layers * 2 * kv * p * hd);
                for pair in &layers {
                    for t in pair {
                        for h in 0..kv {
                            let at = ((r * kv + h) * cap) * hd;
                            data.extend_from_slice(&t[at..at + p * hd]);
                        }
                    }
                }
                CachedArray {
                    shape: vec![self.layers, 2, kv, p, hd],
                    data,
                }
            })
            .collect())
    }
}

/// Builds a key/value cache for a batch of prefixes (left-padded to the longest, padding
/// masked) on `device`, ready for `backbone.forward(patches, cached)`.
pub fn batch_cache(prefixes: &[PrefixKv], n_layers: usize, device: &Device) -> Result<KvCache> {
    let b = prefixes.len();
    let first = prefixes
        .first()
        .ok_or_else(|| Error::config("batch", "empty batch"))?;
    let [k_layers, _, kvh, _, hd] = <[usize; 5]>::try_from(first.shape.as_slice())
        .map_err(|_| Error::config("prefix", "cached prefix has the wrong rank"))?;
    let pmax = prefixes.iter().map(|p| p.shape[3]).max().unwrap_or(0);
    if prefixes
        .iter()
        .any(|pre| pre.shape[..3] != first.shape[..3] || pre.shape[4] != hd)
    {
        return Err(Error::config(
            "prefix",
            "cached prefixes of different shapes",
        ));
    }
    // One buffer per (layer, keys|values), built front to back: each row's left padding as
    // zeros, then its prefix (no zero-filled buffer overwritten afterwards), the buffers in
    // parallel.
    let buffers: Vec<Vec<f32>> = (0..k_layers * 2)
        .into_par_iter()
        .map(|lw| {
            let (layer, which) = (lw / 2, lw % 2);
            let mut out = Vec::with_capacity(b * kvh * pmax * hd);
            for pre in prefixes {
                let p = pre.shape[3];
                let base = ((layer * 2 + which) * kvh) * p * hd;
                for h in 0..kvh {
                    out.resize(out.len() + (pmax - p) * hd, 0.0);
                    out.extend_from_slice(&pre.data[base + h * p * hd..base + (h + 1) * p * hd]);
                }
            }
            out
        })
        .collect();
    let mut cache = KvCache::new(n_layers);
    let shape = [b, kvh, pmax, hd];
    let mut buffers = buffers.into_iter();
    for layer in 0..k_layers {
        let (Some(kk), Some(vv)) = (buffers.next(), buffers.next()) else {
            break;
        };
        cache.set_layer(
            layer,
            Tensor::from_data(TensorData::new(kk, shape), device),
            Tensor::from_data(TensorData::new(vv, shape), device),
        );
    }
    let mut mask = Vec::with_capacity(b * pmax);
    let mut next = Vec::with_capacity(b);
    for pre in prefixes {
        let p = pre.shape[3];
        mask.extend((0..pmax).map(|j| j >= pmax - p));
        next.push(p as i64);
    }
    cache.set_len(pmax);
    // Rebuilt every step and dropped after the pass: the prefix is a constant of the graph.
    cache.set_constant(true);
    if prefixes.iter().any(|p| p.shape[3] != pmax) {
        cache.set_key_mask(Some(Tensor::from_data(
            TensorData::new(mask, [b, pmax]),
            device,
        )));
    }
    cache.set_next_positions(next);
    Ok(cache)
}
