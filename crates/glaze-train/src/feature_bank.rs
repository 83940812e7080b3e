//! Frozen features of many inputs, computed once through an [`Encoder`] and the feature cache
//! (FLAME's offline embeddings) and kept on the host: one `[n_i, F]` array per input, `n_i`
//! fixed (an image's patches) or varying (a clip's frames).

use burn::prelude::*;
use glaze_core::{Encoder, Features};

use crate::feature_cache::{CachedArray, FeatureCache};

/// Per-input features on the host.
#[derive(Debug, Clone, Default)]
pub struct FeatureBank {
    /// Feature width `F`.
    pub f: usize,
    /// Row-major `[n_i, F]` per input.
    pub rows: Vec<Vec<f32>>,
}

impl FeatureBank {
    /// Feature vectors of input `i`.
    pub fn len_of(&self, i: usize) -> usize {
        self.rows[i].len() / self.f.max(1)
    }

    /// Inputs held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no input is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends another bank's inputs (same width); returns the index of the first.
    pub fn extend(&mut self, other: FeatureBank) -> usize {
        let first = self.rows.len();
        if self.rows.is_empty() {
            self.f = other.f;
        }
        self.rows.extend(other.rows);
        first
    }

    /// `[B, max n, F]` for `inputs`, right-padded with zeros, with a mask `[B, max n]` when the
    /// lengths differ.
    pub fn batch(&self, inputs: &[usize], device: &Device) -> Features {
        let f = self.f;
        let max = inputs.iter().map(|&i| self.len_of(i)).max().unwrap_or(0);
        let mut data = vec![0f32; inputs.len() * max * f];
        let mut mask = vec![false; inputs.len() * max];
        for (r, &i) in inputs.iter().enumerate() {
            let n = self.len_of(i);
            data[r * max * f..r * max * f + n * f].copy_from_slice(&self.rows[i]);
            mask[r * max..r * max + n]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        let tokens = Tensor::from_data(TensorData::new(data, [inputs.len(), max, f]), device);
        let same = inputs.iter().all(|&i| self.len_of(i) == max);
        Features {
            tokens,
            mask: (!same)
                .then(|| Tensor::from_data(TensorData::new(mask, [inputs.len(), max]), device)),
        }
    }
}

/// The feature cache of `encoder` under `root`, in the directory of its identity (the spec's
/// name and weights hash, prefixed by `modality`).
pub fn open_cache<E: Encoder>(
    root: &std::path::Path,
    modality: &str,
    encoder: &E,
) -> glaze_core::Result<FeatureCache> {
    let spec = encoder.spec();
    FeatureCache::open(
        root,
        &format!(
            "{modality}-{}-{}",
            spec.name.replace(['/', '@', '+'], "_"),
            spec.weights_hash
        ),
    )
}

/// The bank of `count` inputs through `encoder`: an input whose cache entry (under `key(i)`,
/// the input's bytes) holds `[n, F]` is read from `cache`; the others are loaded
/// (`load(i, key)`), encoded [`Encoder::encode`] `chunk` at a time in input order, and stored.
/// One pass: at most `chunk` keys (a file's bytes, say) are held at once. A masked row keeps
/// only its real feature vectors.
pub fn encode_bank<E, Err>(
    encoder: &E,
    cache: Option<&FeatureCache>,
    count: usize,
    chunk: usize,
    key: impl Fn(usize) -> Result<Vec<u8>, Err>,
    load: impl Fn(usize, &[u8]) -> Result<E::Input, Err>,
    device: &Device,
) -> Result<FeatureBank, Err>
where
    E: Encoder,
    Err: From<glaze_core::Error>,
{
    let f = encoder.spec().feature_dim;
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; count];
    let mut pending: Vec<(usize, Vec<u8>)> = Vec::with_capacity(chunk.max(1));
    let mut encoded = 0;
    let mut flush = |pending: &mut Vec<(usize, Vec<u8>)>,
                     rows: &mut Vec<Option<Vec<f32>>>|
     -> Result<(), Err> {
        if pending.is_empty() {
            return Ok(());
        }
        let inputs = pending
            .iter()
            .map(|(i, k)| load(*i, k))
            .collect::<Result<Vec<_>, Err>>()?;
        let features = encoder.encode(&inputs, device)?;
        let [b, n, _] = features.tokens.dims();
        let lens: Vec<usize> = match features.mask {
            Some(m) => {
                let m: Vec<bool> = m
                    .into_data()
                    .try_to_vec::<bool>()
                    .expect("invariant: a mask holds bools");
                m.chunks(n.max(1))
                    .map(|r| r.iter().filter(|&&x| x).count())
                    .collect()
            }
            None => vec![n; b],
        };
        let out: Vec<f32> = features
            .tokens
            .into_data()
            .try_to_vec::<f32>()
            .expect("invariant: encoders compute in f32");
        for (j, (i, k)) in pending.drain(..).enumerate() {
            let data = out[j * n * f..(j * n + lens[j]) * f].to_vec();
            if let Some(c) = cache {
                c.put(
                    &k,
                    &CachedArray {
                        shape: vec![lens[j], f],
                        data: data.clone(),
                    },
                )?;
            }
            rows[i] = Some(data);
            encoded += 1;
        }
        Ok(())
    };
    for i in 0..count {
        let k = key(i)?;
        match cache.and_then(|c| c.get(&k)) {
            Some(a) if a.shape.len() == 2 && a.shape[1] == f => rows[i] = Some(a.data),
            _ => {
                pending.push((i, k));
                if pending.len() >= chunk.max(1) {
                    flush(&mut pending, &mut rows)?;
                }
            }
        }
    }
    flush(&mut pending, &mut rows)?;
    if encoded > 0 && cache.is_some() {
        tracing::info!(
            "encoded {encoded} inputs with {} ({} from the cache)",
            encoder.spec().name,
            count - encoded
        );
    }
    Ok(FeatureBank {
        f,
        rows: rows
            .into_iter()
            .map(|r| r.expect("invariant: every input encoded"))
            .collect(),
    })
}
