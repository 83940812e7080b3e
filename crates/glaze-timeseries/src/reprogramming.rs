//! Time-LLM's reprogramming layer (Jin et al. ICLR 2024, `layers/... ReprogrammingLayer` in
//! KimMeen/Time-LLM): patch embeddings attend, with multi-head cross-attention, to `P` text
//! prototypes — a trainable linear map of the frozen LLM's whole word-embedding matrix
//! (`mapping_layer: Linear(vocab, P)` applied to `E^T`) — and come out in the LLM's width.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use glaze_core::WordEmbeddings;
use glaze_kernels::matmul::linear;
use glaze_kernels::product_grad::ProductSink;

/// Configuration of a [`Reprogramming`] layer.
#[derive(Config, Debug)]
pub struct ReprogrammingConfig {
    /// Width of the patch embeddings (Time-LLM's `d_model`). Default 32.
    #[config(default = 32)]
    pub d_patch: usize,
    /// Width of the LLM `D`.
    pub d_llm: usize,
    /// Vocabulary size `V` of the LLM.
    pub vocab: usize,
    /// Number of text prototypes `P` (Time-LLM: 1000). Default 1000.
    #[config(default = 1000)]
    pub num_prototypes: usize,
    /// Attention heads. Default 8.
    #[config(default = 8)]
    pub n_heads: usize,
    /// Key width per head (Time-LLM passes `d_ff`). Default 32.
    #[config(default = 32)]
    pub d_keys: usize,
}

impl ReprogrammingConfig {
    /// Random initialisation, reading the frozen LLM's word embeddings `words [V, D]`
    /// ([`glaze_core::FrozenBackbone::word_embeddings`]).
    pub fn init(&self, words: WordEmbeddings, device: &Device) -> Reprogramming {
        let hk = self.n_heads * self.d_keys;
        Reprogramming {
            mapping: LinearConfig::new(self.vocab, self.num_prototypes).init(device),
            query: LinearConfig::new(self.d_patch, hk).init(device),
            key: LinearConfig::new(self.d_llm, hk).init(device),
            value: LinearConfig::new(self.d_llm, hk).init(device),
            out: LinearConfig::new(hk, self.d_llm).init(device),
            n_heads: self.n_heads,
            d_keys: self.d_keys,
            words,
        }
    }
}

/// Cross-attention from patches to text prototypes.
#[derive(Module, Debug)]
pub struct Reprogramming {
    /// `V → P`: prototypes as combinations of word embeddings.
    pub mapping: Linear,
    /// Queries from patches.
    pub query: Linear,
    /// Keys from prototypes.
    pub key: Linear,
    /// Values from prototypes.
    pub value: Linear,
    /// Heads back to the LLM width.
    pub out: Linear,
    /// Heads.
    pub n_heads: usize,
    /// Key width per head.
    pub d_keys: usize,
    /// The frozen LLM's word embeddings `[V, D]` (not a parameter, not saved).
    #[module(skip)]
    pub words: WordEmbeddings,
}

impl Reprogramming {
    /// The prototypes `[P, D]` from the word-embedding matrix `E [V, D]`: each prototype is
    /// `Σ_v W[v, p] · E[v] + b[p]` (the `mapping` layer applied along the vocabulary). With a
    /// `products` sink (a training step), the map's weight gradient may be deferred into it
    /// ([`WordEmbeddings::left_product_t`]).
    pub fn prototypes(&self, products: Option<&ProductSink>) -> Tensor<2> {
        // `Wᵀ · E` as `[P, V] · [V, D]` (the transpose is a view): the result's D columns fill
        // the GEMM's register tiles, where `[D, V] · [V, P]` would pad 100 columns to 128.
        let p = self.words.left_product_t(&self.mapping.weight, products);
        match &self.mapping.bias {
            Some(b) => {
                let n = b.dims()[0];
                p + b.val().reshape([n, 1])
            }
            None => p,
        }
    }

    /// # Shapes
    /// `patches [B, N, d_patch]`, `prototypes [P, D]` → `[B, N, D]`.
    pub fn forward(&self, patches: Tensor<3>, prototypes: Tensor<2>) -> Tensor<3> {
        let [b, n, _] = patches.dims();
        let p = prototypes.dims()[0];
        let (h, dk) = (self.n_heads, self.d_keys);
        // Every patch of the batch attends to the same prototypes: one product per head
        // over all `B·N` patches (no copy of the keys and values per batch item).
        let q = linear(&self.query, patches)
            .reshape([b * n, h, dk])
            .swap_dims(0, 1); // [H, B·N, dk]
        let k = linear(&self.key, prototypes.clone())
            .reshape([p, h, dk])
            .swap_dims(0, 1); // [H, P, dk]
        let v = linear(&self.value, prototypes)
            .reshape([p, h, dk])
            .swap_dims(0, 1);
        let scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (dk as f64).sqrt());
        let att = glaze_kernels::softmax::softmax(scores).matmul(v); // [H, B·N, dk]
        let merged = att.swap_dims(0, 1).reshape([b, n, h * dk]);
        linear(&self.out, merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;

    fn set(l: &mut Linear, w: Vec<f32>, shape: [usize; 2], device: &Device) {
        l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, shape), device));
        l.bias = None;
    }

    /// Two heads of width 1 with identity projections: each head's attention is a softmax over
    /// the prototypes' coordinate, computed here by hand.
    #[test]
    fn attention_by_hand() {
        let device = Device::flex();
        let cfg = ReprogrammingConfig::new(2, 3)
            .with_d_patch(2)
            .with_num_prototypes(2)
            .with_n_heads(2)
            .with_d_keys(1);
        // Word embeddings E [V=3, D=2]; mapping picks prototypes E0 + E2 and E1.
        let e = [[1.0f32, 0.0], [0.0, 2.0], [0.5, -1.0]];
        let embed = Tensor::<2>::from_data(
            TensorData::new(e.iter().flatten().copied().collect::<Vec<f32>>(), [3, 2]),
            &device,
        );
        let mut r = cfg.init(WordEmbeddings::dense(embed), &device);
        set(&mut r.query, vec![1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        set(&mut r.key, vec![1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        set(&mut r.value, vec![1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        set(&mut r.out, vec![1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        set(
            &mut r.mapping,
            vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
            [3, 2],
            &device,
        );
        let protos = r.prototypes(None);
        let pv: Vec<f32> = protos.clone().into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(pv, [1.5, -1.0, 0.0, 2.0]);
        let patch = [0.3f32, -0.7];
        let x = Tensor::<3>::from_data(TensorData::new(patch.to_vec(), [1, 1, 2]), &device);
        let y: Vec<f32> = r
            .forward(x, protos)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let prot = [[1.5f32, -1.0], [0.0, 2.0]];
        for head in 0..2 {
            let s: Vec<f32> = prot.iter().map(|p| patch[head] * p[head]).collect();
            let z: f32 = s.iter().map(|v| v.exp()).sum();
            let want: f32 = s
                .iter()
                .zip(&prot)
                .map(|(v, p)| v.exp() / z * p[head])
                .sum();
            assert!(
                (y[head] - want).abs() < 1e-6,
                "head {head}: {} vs {want}",
                y[head]
            );
        }
    }
}
