//! The key/value cache of incremental decoding, and the row operations a server's continuous
//! batching needs: rows leave ([`KvCache::select_rows`]), caches of separately prefilled
//! prompts join one batch ([`KvCache::stack`]), and a cached prompt's beginning is reused for
//! another prompt ([`KvCache::truncate`]).

use burn::prelude::*;

use crate::error::{Error, Result};

/// Key/value cache of a decoder: per layer, buffers `[B, kv_heads, capacity, head_dim]` whose
/// first [`KvCache::len`] positions are filled; the padding mask of every cached position and
/// the next position index of every row.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    key_mask: Option<Tensor<2, Bool>>,
    next_positions: Vec<i64>,
    constant: bool,
    reserved: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
            len: 0,
            key_mask: None,
            next_positions: Vec::new(),
            constant: false,
            reserved: 0,
        }
    }

    /// Announces that the cache will hold up to `positions` positions (a generation's prompt
    /// and token budget): the backbone then allocates its buffers once at that size instead
    /// of growing them by copying (each growth held the old and the new buffers at once).
    pub fn reserve(&mut self, positions: usize) {
        self.reserved = positions;
    }

    /// The positions announced by [`KvCache::reserve`] (0: none).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Marks the cached keys and values as constants of a training graph that the caller
    /// drops after one pass (a cached prompt, rebuilt every step): a training forward pass
    /// then attends to them in place — no concatenated copy, no gradient for them — and
    /// leaves the cache as it was. Inference passes extend it as usual.
    pub fn set_constant(&mut self, constant: bool) {
        self.constant = constant;
    }

    /// Whether [`KvCache::set_constant`] marked the cache.
    pub fn is_constant(&self) -> bool {
        self.constant
    }

    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sets the number of filled positions (the backbone does this after a forward pass).
    pub fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Key and value buffers of layer `i` (only the first `len()` positions are filled).
    pub fn layer(&self, i: usize) -> Option<&(Tensor<4>, Tensor<4>)> {
        self.layers.get(i).and_then(Option::as_ref)
    }

    /// Moves the buffers of layer `i` out (so they can be extended in place), leaving `None`.
    pub fn take_layer(&mut self, i: usize) -> Option<(Tensor<4>, Tensor<4>)> {
        self.layers.get_mut(i).and_then(Option::take)
    }

    /// Replaces the cached keys and values of layer `i`.
    pub fn set_layer(&mut self, i: usize, k: Tensor<4>, v: Tensor<4>) {
        if i >= self.layers.len() {
            self.layers.resize(i + 1, None);
        }
        self.layers[i] = Some((k, v));
    }

    /// Padding mask `[B, T_cached]` of the cached positions (`true` = real), if any were masked.
    pub fn key_mask(&self) -> Option<&Tensor<2, Bool>> {
        self.key_mask.as_ref()
    }

    /// Sets the padding mask of all cached positions.
    pub fn set_key_mask(&mut self, mask: Option<Tensor<2, Bool>>) {
        self.key_mask = mask;
    }

    /// Position index the next token of each row gets (empty before the first forward).
    pub fn next_positions(&self) -> &[i64] {
        &self.next_positions
    }

    /// Sets the next position of each row.
    pub fn set_next_positions(&mut self, positions: Vec<i64>) {
        self.next_positions = positions;
    }

    /// Rows in the cache (0 before the first forward pass).
    pub fn rows(&self) -> usize {
        match self.layers.iter().flatten().next() {
            Some((k, _)) => k.dims()[0],
            None => self.next_positions.len(),
        }
    }

    /// Whether each cached position of each row is real (`true`) or padding, row-major
    /// `[rows, len]`.
    fn valid(&self) -> Vec<bool> {
        match &self.key_mask {
            Some(m) => m
                .clone()
                .slice(s![.., 0..self.len])
                .into_data()
                .convert::<bool>()
                .try_into_vec::<bool>()
                .expect("invariant: bool tensor data converts to bool"),
            None => vec![true; self.rows() * self.len],
        }
    }

    /// The next position of each row: the recorded ones, else the count of real cached
    /// positions (a cache whose forward passes set none).
    fn positions_or_count(&self) -> Vec<i64> {
        let rows = self.rows();
        if self.next_positions.len() == rows {
            return self.next_positions.clone();
        }
        let valid = self.valid();
        (0..rows)
            .map(|r| {
                let row = &valid[r * self.len..(r + 1) * self.len];
                row.iter().filter(|&&v| v).count() as i64
            })
            .collect()
    }

    /// Keeps the rows `keep` (in that order) and drops the others, with their keys and values.
    /// An empty `keep` empties the cache.
    pub fn select_rows(&mut self, keep: &[usize]) {
        let rows = self.rows();
        assert!(
            keep.iter().all(|&r| r < rows),
            "invariant: kept rows {keep:?} lie inside the cache's {rows} rows"
        );
        if keep.is_empty() {
            *self = KvCache::new(self.layers.len());
            return;
        }
        if keep.iter().copied().eq(0..rows) {
            return;
        }
        let positions = self.positions_or_count();
        let pick = |t: Tensor<4>| {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(keep.iter().map(|&r| r as i64).collect(), [keep.len()]),
                &t.device(),
            );
            t.select(0, idx)
        };
        for layer in self.layers.iter_mut() {
            if let Some((k, v)) = layer.take() {
                *layer = Some((pick(k), pick(v)));
            }
        }
        if self.key_mask.is_some() {
            let valid = self.valid();
            let device = self.layers.iter().flatten().next().map(|(k, _)| k.device());
            self.key_mask = None;
            let kept: Vec<bool> = keep
                .iter()
                .flat_map(|&r| valid[r * self.len..(r + 1) * self.len].to_vec())
                .collect();
            // A mask whose rows are all real again is dropped (the unmasked fast path).
            if let Some(device) = device.filter(|_| kept.iter().any(|v| !v)) {
                self.key_mask = Some(Tensor::from_data(
                    TensorData::new(kept, [keep.len(), self.len]),
                    &device,
                ));
            }
        }
        self.next_positions = keep.iter().map(|&r| positions[r]).collect();
    }

    /// Forgets every cached position from `len` on, so that the cache holds a prompt's first
    /// `len` positions (a shared beginning reused for another prompt). The buffers keep their
    /// capacity; the next forward pass overwrites what lies beyond.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let mut valid = self.valid();
        let rows = self.rows();
        let old = self.len;
        valid = (0..rows)
            .flat_map(|r| valid[r * old..r * old + len].to_vec())
            .collect();
        self.next_positions = (0..rows)
            .map(|r| valid[r * len..(r + 1) * len].iter().filter(|&&v| v).count() as i64)
            .collect();
        self.key_mask = self.key_mask.take().and_then(|m| {
            valid
                .iter()
                .any(|v| !v)
                .then(|| Tensor::from_data(TensorData::new(valid, [rows, len]), &m.device()))
        });
        self.len = len;
    }

    /// A copy whose buffers hold just the filled positions (a cache kept for later reuse
    /// need not keep the room reserved for its generation).
    pub fn compacted(&self) -> KvCache {
        let len = self.len;
        let cut = |t: &Tensor<4>| t.clone().slice(s![.., .., 0..len, ..]);
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| l.as_ref().map(|(k, v)| (cut(k), cut(v))))
                .collect(),
            reserved: len,
            ..self.clone()
        }
    }

    /// One batch from the rows of `parts` (in order), each row's positions right-aligned:
    /// a row shorter than the longest is padded on the left with masked positions, so every
    /// row's next position lands at the same index, and real keys stay contiguous (the
    /// sliding-window layers rely on it). The buffers are allocated for `reserve` positions
    /// (at least the longest part). Empty parts are skipped.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the parts' layers, widths or element types differ.
    pub fn stack(parts: Vec<KvCache>, reserve: usize) -> Result<KvCache> {
        let parts: Vec<KvCache> = parts.into_iter().filter(|p| p.rows() > 0).collect();
        let Some(first) = parts.first() else {
            return Ok(KvCache::default());
        };
        let n_layers = first.layers.len();
        let len = parts.iter().map(KvCache::len).max().unwrap_or(0);
        let cap = reserve.max(len);
        let mismatch = |problem: String| Error::InvalidConfig {
            field: "parts",
            problem,
        };
        if let Some(p) = parts.iter().find(|p| p.layers.len() != n_layers) {
            return Err(mismatch(format!(
                "a part has {} layers, another {n_layers}",
                p.layers.len()
            )));
        }
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let mut ks = Vec::with_capacity(parts.len());
            let mut vs = Vec::with_capacity(parts.len());
            for p in &parts {
                let Some((k, v)) = p.layer(i) else {
                    return Err(mismatch(format!("layer {i} is empty in one part")));
                };
                ks.push(aligned(k.clone(), p.len, len, cap));
                vs.push(aligned(v.clone(), p.len, len, cap));
            }
            let shape = |t: &Tensor<4>| (t.dims()[1], t.dims()[3], t.dtype());
            if ks.iter().chain(&vs).any(|t| shape(t) != shape(&ks[0])) {
                return Err(mismatch(format!(
                    "layer {i}'s heads, widths or element types differ between parts"
                )));
            }
            layers.push(Some((Tensor::cat(ks, 0), Tensor::cat(vs, 0))));
        }
        let mut valid = Vec::new();
        let mut next_positions = Vec::new();
        for p in &parts {
            let own = p.valid();
            for r in 0..p.rows() {
                valid.extend(std::iter::repeat_n(false, len - p.len));
                valid.extend_from_slice(&own[r * p.len..(r + 1) * p.len]);
            }
            next_positions.extend(p.positions_or_count());
        }
        let rows = next_positions.len();
        let device = first
            .layer(0)
            .map(|(k, _)| k.device())
            .expect("invariant: every part has layer 0 (checked above)");
        Ok(KvCache {
            layers,
            len,
            key_mask: valid
                .iter()
                .any(|v| !v)
                .then(|| Tensor::from_data(TensorData::new(valid, [rows, len]), &device)),
            next_positions,
            constant: false,
            reserved: cap,
        })
    }
}

/// A buffer `[rows, kv, capacity, hd]` whose first `filled` positions are real, moved to end
/// at index `len` of a buffer of `cap` positions (zeros before and after).
fn aligned(t: Tensor<4>, filled: usize, len: usize, cap: usize) -> Tensor<4> {
    let [rows, kv, _, hd] = t.dims();
    let device = t.device();
    let zeros = |n: usize| {
        let options = burn::tensor::TensorCreationOptions::new(device.clone());
        Tensor::<4>::zeros([rows, kv, n, hd], options.with_dtype(t.dtype()))
    };
    let mut pieces = Vec::with_capacity(3);
    if len > filled {
        pieces.push(zeros(len - filled));
    }
    pieces.push(t.clone().slice(s![.., .., 0..filled, ..]));
    if cap > len {
        pieces.push(zeros(cap - len));
    }
    Tensor::cat(pieces, 2)
}
