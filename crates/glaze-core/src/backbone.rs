//! The frozen-backbone seam: what every plugin and app may ask of a frozen LLM.
//!
//! A backbone maps token ids to input embeddings, runs its transformer blocks over **input
//! embeddings** (so soft tokens can stand anywhere in a prompt) and returns **hidden states**;
//! the LM head is a separate step. Its parameters never require gradients, yet gradients flow
//! through it to the embeddings it was given.

use burn::prelude::*;

use crate::error::{Error, Result};
pub use crate::kv_cache::KvCache;

/// Identity and shape of a frozen backbone, recorded in adapter checkpoints so an adapter is
/// never loaded onto a backbone it was not trained for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackboneSpec {
    /// Architecture name, e.g. `llama`.
    pub architecture: String,
    /// Human-readable model name, e.g. `SmolLM2-135M-Instruct`.
    pub name: String,
    /// Embedding width `D` (soft tokens must have this width).
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum context length in positions.
    pub context_length: usize,
    /// A 64-bit FNV-1a hash of the weights file(s), hex; `random` for randomly initialised models.
    pub weights_hash: String,
    /// A hash of the tokenizer's vocabulary (every token's text, in id order), hex; empty when
    /// unknown. Two quantizations or copies of one model share it.
    pub vocab_digest: String,
    /// A small fingerprint of the embedding table ([`embedding_sketch`]); empty when unknown.
    /// Two quantizations of one model give nearby sketches, two models distant ones.
    pub embedding_sketch: Vec<f32>,
}

/// Token rows a sketch reads, and the random ±1 projections of each row it keeps.
const SKETCH_ROWS: usize = 64;
const SKETCH_PROJECTIONS: usize = 8;

/// A fingerprint of `backbone`'s embedding table: 64 token rows spread over the vocabulary,
/// each projected on 8 seeded random ±1 directions (512 values). Quantization noise moves it
/// by the table's relative error (a few percent); another model's table by about √2.
pub fn embedding_sketch(backbone: &dyn FrozenBackbone) -> Vec<f32> {
    let (v, d) = (backbone.spec().vocab_size, backbone.spec().d_model);
    let ids: Vec<i64> = (0..SKETCH_ROWS)
        .map(|i| (i * v / SKETCH_ROWS) as i64)
        .collect();
    let rows: Vec<f32> = backbone
        .embed(Tensor::from_data(
            TensorData::new(ids, [1, SKETCH_ROWS]),
            backbone.device(),
        ))
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap_or_default();
    let mut rng = crate::SplitMix64::new(0x5EED_5CE7);
    let signs: Vec<f32> = (0..SKETCH_PROJECTIONS * d)
        .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
        .collect();
    rows.chunks_exact(d)
        .flat_map(|row| {
            signs.chunks_exact(d).map(move |s| {
                let dot: f64 = row.iter().zip(s).map(|(a, b)| (a * b) as f64).sum();
                (dot / (d as f64).sqrt()) as f32
            })
        })
        .collect()
}

/// The relative distance `‖a − b‖ / ‖a‖` of two sketches; `None` when either is unknown or
/// they have different lengths.
pub fn sketch_distance(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (norm > 0.0).then(|| (diff / norm).sqrt())
}

/// Options of one forward pass.
#[derive(Debug, Default)]
pub struct ForwardOptions<'a> {
    /// Padding mask `[B, T]`, `true` for real positions. Padding goes on the left.
    /// With a cache, this covers only the new positions; the cache keeps the old ones.
    pub mask: Option<Tensor<2, Bool>>,
    /// Run only the first `K` blocks (Time-LLM and GPT4TS use a truncated backbone).
    pub layers: Option<usize>,
    /// Skip the final normalisation (hidden states straight out of the last block run).
    pub skip_final_norm: bool,
    /// A key/value cache for incremental decoding; it is extended with the new positions.
    pub cache: Option<&'a mut KvCache>,
    /// The backbone may trade exactness for speed, as inference engines do (Glaze's Llama:
    /// 8-bit activations in its quantized-weight kernels, like llama.cpp). Generation sets
    /// it; training, feature caches and reference tests leave it off and get the exact path.
    pub approximate: bool,
}

impl<'a> ForwardOptions<'a> {
    /// Forward with a cache.
    pub fn cached(cache: &'a mut KvCache) -> Self {
        ForwardOptions {
            cache: Some(cache),
            ..Default::default()
        }
    }

    /// Forward with a cache, for generation (prompt prefill and decode steps): `approximate`.
    pub fn generating(cache: &'a mut KvCache) -> Self {
        ForwardOptions {
            cache: Some(cache),
            approximate: true,
            ..Default::default()
        }
    }

    /// Forward with a padding mask.
    pub fn masked(mask: Tensor<2, Bool>) -> Self {
        ForwardOptions {
            mask: Some(mask),
            ..Default::default()
        }
    }
}

/// A frozen LLM seen through the operations plugins need.
///
/// Implementations hold their weights as plain (non-autodiff) tensors: nothing here can be
/// trained, and no method hands out a trainable handle. Inputs may be autodiff tensors; the
/// gradient then flows through the frozen computation back to them.
pub trait FrozenBackbone {
    /// Identity and shape.
    fn spec(&self) -> &BackboneSpec;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// Token embedding lookup.
    ///
    /// # Shapes
    /// `ids [B, T]` → `[B, T, D]`.
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3>;

    /// The whole token-embedding table `[V, D]`, for adapters that read every row at once.
    /// By default every row through [`embed`]; a backbone that holds the table as 8-bit rows
    /// hands those out instead (exactly the values [`embed`] returns, in a quarter of the
    /// bytes).
    ///
    /// [`embed`]: FrozenBackbone::embed
    fn word_embeddings(&self) -> crate::WordEmbeddings {
        crate::WordEmbeddings::through_embed(self)
    }

    /// Runs the transformer blocks over input embeddings and returns hidden states.
    ///
    /// Cached plus new positions must stay within `spec().context_length` (the splice and
    /// generation check this and return [`Error::ContextOverflow`]); beyond it this panics.
    ///
    /// # Shapes
    /// `embeds [B, T, D]` → `[B, T, D]`.
    fn forward(&self, embeds: Tensor<3>, options: ForwardOptions<'_>) -> Tensor<3>;

    /// The language-model head.
    ///
    /// # Shapes
    /// `hidden [B, T, D]` → logits `[B, T, V]`.
    fn lm_head(&self, hidden: Tensor<3>) -> Tensor<3>;

    /// The LM head during generation, where it may be approximate like
    /// [`ForwardOptions::approximate`]; by default [`FrozenBackbone::lm_head`].
    fn generation_head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head(hidden)
    }

    /// Prompt positions per piece that generation prefills at a time (each piece attending
    /// to the cache of those before; `None`: the whole prompt at once, the default). A
    /// backbone whose prefill kernels stream the weights per row chooses pieces to bound
    /// the activations held; one that multiplies dense copies with a packed GEMM prefers
    /// whole prompts. [`crate::generate::GenerationConfig::prefill_chunk`] overrides it.
    fn prefill_chunk(&self) -> Option<usize> {
        None
    }

    /// A fresh key/value cache for incremental decoding.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.spec().n_layers)
    }

    /// Logits for token ids: `lm_head(forward(embed(ids)))`.
    fn logits(&self, ids: Tensor<2, Int>, options: ForwardOptions<'_>) -> Tensor<3> {
        let embeds = self.embed(ids);
        self.lm_head(self.forward(embeds, options))
    }

    /// A digest of every weight's bits (FNV-1a over the raw data). Tests use it to prove the
    /// backbone is bit-identical after training; it reads all weights, so it is not free.
    fn weights_digest(&self) -> u64;

    /// Checks that token ids are inside the vocabulary.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.spec().vocab_size;
        match ids.iter().find(|&&id| id as usize >= vocab) {
            Some(&id) => Err(Error::TokenOutOfRange { id, vocab }),
            None => Ok(()),
        }
    }
}

/// One turn of a chat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text; it may contain placeholders such as `<image>`.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

/// Text side of a backbone: tokenizer and chat template.
pub trait TextCodec {
    /// Encodes text; special tokens written in the text (e.g. `<|im_start|>`) are recognised.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Decodes ids; special tokens are kept when `keep_special` is true.
    fn decode(&self, ids: &[u32], keep_special: bool) -> Result<String>;

    /// Renders a chat through the model's chat template.
    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String>;

    /// Ids that end generation (EOS, end-of-turn).
    fn stop_ids(&self) -> &[u32];

    /// Id used to pad batches.
    fn pad_id(&self) -> u32;

    /// The beginning-of-sequence id, when the model expects one at the start of every input
    /// (Gemma; a prompt that does not start with it gets it prepended once). Default: none.
    fn bos_id(&self) -> Option<u32> {
        None
    }
}
