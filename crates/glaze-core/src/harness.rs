//! The contract-test harness every plugin runs with its `tiny()` configurations.
//!
//! Each function checks one part of the seam's contract and panics with a clear message when
//! it is broken, so call them from tests. A new plugin adds one line per adapter/encoder:
//! `harness::check_adapter(&backbone, &codec, |d| MyAdapterConfig::tiny().init(d), features)`.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;

use crate::adapter::{Adapter, Features};
use crate::backbone::{ForwardOptions, FrozenBackbone, TextCodec};
use crate::error::Error;
use crate::prompt::{Prompt, PromptTemplate, embed_prompt, pad_left};
use crate::soft::SoftTokens;
use crate::soft_prompt::SoftPromptConfig;

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// Checks the backbone side of the seam on a text prompt:
/// - the embedding path equals the id path,
/// - a left-padded batch gives the same hidden states as each row alone,
/// - incremental decoding with a cache equals one full forward,
/// - a truncated forward (first K layers) keeps the shape,
/// - gradients reach the input embeddings, finite and non-zero,
/// - a soft-prompt optimizer step leaves every backbone weight bit-identical,
/// - a placeholder without soft tokens is an error.
pub fn check_backbone(backbone: &dyn FrozenBackbone, codec: &dyn TextCodec, text: &str, tol: f32) {
    let device = backbone.device().clone();
    let d = backbone.spec().d_model;
    let mut ids = codec.encode(text).expect("text encodes");
    // The splice puts the model's beginning-of-sequence token first (`TextCodec::bos_id`).
    if let Some(b) = codec.bos_id()
        && ids.first() != Some(&b)
    {
        ids.insert(0, b);
    }
    assert!(ids.len() >= 3, "contract text must give at least 3 tokens");
    let n = ids.len();
    let id_t = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, n]),
        &device,
    );

    // Id path vs embedding path (through the splice).
    let by_ids = backbone.logits(id_t.clone(), ForwardOptions::default());
    let emb = embed_prompt(backbone, codec, &Prompt::new().text(text)).expect("prompt embeds");
    let by_embeds = backbone.lm_head(backbone.forward(emb.embeds.clone(), Default::default()));
    let diff = max_abs_diff(by_ids.clone(), by_embeds);
    assert!(diff <= tol, "embedding path differs from id path by {diff}");

    // Padded batch vs single rows.
    let short = emb.embeds.clone().slice(s![.., 0..n - 1, ..]);
    let batch = pad_left(vec![emb.embeds.clone(), short.clone()]);
    let hb = backbone.forward(batch.embeds, ForwardOptions::masked(batch.mask));
    let h0 = backbone.forward(emb.embeds.clone(), Default::default());
    let h1 = backbone.forward(short, Default::default());
    let diff0 = max_abs_diff(hb.clone().slice(s![0..1, .., ..]), h0.clone());
    let diff1 = max_abs_diff(hb.slice(s![1..2, 1..n, ..]), h1);
    assert!(
        diff0 <= tol && diff1 <= tol,
        "padded batch differs from single rows by {diff0} / {diff1}"
    );

    // Cache: prefill n-1 positions, then one step.
    let mut cache = backbone.new_cache();
    let _ = backbone.forward(
        emb.embeds.clone().slice(s![.., 0..n - 1, ..]),
        ForwardOptions::cached(&mut cache),
    );
    let step = backbone.forward(
        emb.embeds.clone().slice(s![.., n - 1..n, ..]),
        ForwardOptions::cached(&mut cache),
    );
    assert_eq!(cache.len(), n, "cache holds every position");
    let diff = max_abs_diff(step, h0.clone().slice(s![.., n - 1..n, ..]));
    assert!(
        diff <= tol,
        "cached decoding differs from full forward by {diff}"
    );

    // Truncated backbone.
    let k = backbone.spec().n_layers.div_ceil(2);
    let ht = backbone.forward(
        emb.embeds.clone(),
        ForwardOptions {
            layers: Some(k),
            ..Default::default()
        },
    );
    assert_eq!(ht.dims(), [1, n, d], "truncated forward keeps the shape");

    // Gradients to the input embeddings.
    let ad = device.clone().autodiff();
    let x = Tensor::<3>::from_data(emb.embeds.clone().into_data(), &ad).require_grad();
    let loss = backbone
        .lm_head(backbone.forward(x.clone(), Default::default()))
        .slice(s![.., n - 1..n, ..])
        .max()
        .sum();
    let grads = loss.backward();
    let g = x
        .grad(&grads)
        .expect("gradient reaches the input embeddings");
    let data: Vec<f32> = g
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("f32 data");
    assert!(data.iter().all(|v| v.is_finite()), "gradient is finite");
    let first = &data[..d];
    assert!(
        first.iter().any(|v| *v != 0.0),
        "gradient reaches the first position (through all layers)"
    );

    // A soft-prompt step leaves the backbone bit-identical.
    let before = backbone.weights_digest();
    let mut soft = SoftPromptConfig::new(2, d).init(&ad);
    let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
    let prompt = Prompt::new().soft(soft.tokens()).ids(ids.clone());
    let emb = embed_prompt(backbone, codec, &prompt).expect("prompt embeds");
    let loss = backbone
        .lm_head(backbone.forward(emb.embeds, Default::default()))
        .powf_scalar(2.0)
        .mean();
    let grads = GradientsParams::from_grads(loss.backward(), &soft);
    assert_eq!(grads.len(), 1, "only the soft prompt receives a gradient");
    let old = soft.embeddings.val().into_data();
    soft = optim.step(1e-2, soft, grads);
    assert_ne!(
        soft.embeddings.val().into_data(),
        old,
        "the soft prompt was updated"
    );
    assert_eq!(
        backbone.weights_digest(),
        before,
        "backbone weights changed during training"
    );

    // A placeholder without soft tokens.
    let err = PromptTemplate::new("look: <image> and <image>")
        .fill(vec![(
            "<image>",
            SoftTokens::new(Tensor::zeros([2, d], &device)),
        )])
        .expect_err("a placeholder without soft tokens is an error");
    assert!(matches!(err, Error::PlaceholderMismatch { .. }), "{err}");
}

/// Checks an adapter against the seam:
/// - soft-token width equals the backbone width and the token count follows `num_tokens`,
/// - the soft tokens splice into a template and a count mismatch is an error,
/// - one optimizer step updates the adapter, and only the adapter (backbone bit-identical),
/// - construction is deterministic for a seed.
///
/// `make` builds the adapter on a device; `features` builds a feature batch on a device.
pub fn check_adapter<A, M, F>(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    make: M,
    features: F,
) where
    A: Adapter + Module,
    M: Fn(&Device) -> A,
    F: Fn(&Device) -> Features,
{
    let d = backbone.spec().d_model;
    let ad = backbone.device().clone().autodiff();
    // burn's generator is process-wide: the construction runs under Glaze's lock on it
    // (`rng::seeded`), but a bare random draw in a test running beside this one can still land
    // between the seed and the last parameter. A probe drawn after the parameters tells: two
    // runs nothing disturbed end on the same generator state, so equal probes with different
    // outputs are a real nondeterminism, different probes a disturbed run (repeated).
    let seeded = || {
        crate::rng::seeded(&ad, 7, |d| {
            let adapter = make(d);
            crate::params::materialize(&adapter);
            let probe =
                Tensor::<1>::random([8], burn::tensor::Distribution::Default, d).into_data();
            (adapter, probe)
        })
    };
    let mut disturbed = 0;
    let (adapter, again) = loop {
        let (a, probe_a) = seeded();
        let (b, probe_b) = seeded();
        if probe_a == probe_b {
            break (a, b);
        }
        disturbed += 1;
        assert!(
            disturbed < 8,
            "eight seeded constructions in a row were disturbed by other RNG users"
        );
    };
    let feats = features(&ad);
    let n_features = feats.tokens.dims()[1];
    let out = adapter.adapt(&feats, None);
    let [b, n, w] = out.dims();
    assert_eq!(b, feats.batch(), "one soft-token run per example");
    assert_eq!(w, d, "soft-token width equals the backbone width");
    assert_eq!(
        adapter.output_width(),
        d,
        "output_width() equals the backbone width"
    );
    assert_eq!(
        n,
        adapter.num_tokens(n_features),
        "token count follows num_tokens()"
    );

    // Determinism.
    let again = again.adapt(&feats, None);
    assert_eq!(
        out.clone().into_data(),
        again.into_data(),
        "same seed, same adapter output"
    );

    // Splice into a template; mismatch is an error.
    let runs = SoftTokens::from_batch(out);
    let template = PromptTemplate::new("Describe <series> briefly.");
    let prompt = template
        .fill(vec![("<series>", runs[0].clone())])
        .expect("one placeholder, one input");
    let err = template
        .fill(vec![
            ("<series>", runs[0].clone()),
            ("<series>", runs[0].clone()),
        ])
        .expect_err("two inputs for one placeholder is an error");
    assert!(matches!(err, Error::PlaceholderMismatch { .. }), "{err}");

    // One optimizer step through the frozen backbone.
    let before = backbone.weights_digest();
    let emb = embed_prompt(backbone, codec, &prompt).expect("prompt embeds");
    let loss = backbone
        .lm_head(backbone.forward(emb.embeds, Default::default()))
        .powf_scalar(2.0)
        .mean();
    let grads = GradientsParams::from_grads(loss.backward(), &adapter);
    assert!(!grads.is_empty(), "the adapter receives gradients");
    let mut optim = AdamWConfig::new().init();
    let old = adapter.adapt(&feats, None).into_data();
    let adapter = optim.step(1e-2, adapter, grads);
    assert_ne!(
        adapter.adapt(&feats, None).into_data(),
        old,
        "the adapter was updated"
    );
    assert_eq!(
        backbone.weights_digest(),
        before,
        "backbone weights changed during adapter training"
    );
}

/// A byte-level [`TextCodec`] for tiny test backbones: id = byte value + 3; ids 0..3 are
/// `<pad>`, `<bos>` and `<eos>`. Vocabulary size 259.
#[derive(Debug, Clone, Default)]
pub struct ByteCodec;

impl ByteCodec {
    /// Vocabulary size.
    pub const VOCAB: usize = 259;
}

impl TextCodec for ByteCodec {
    fn encode(&self, text: &str) -> crate::Result<Vec<u32>> {
        Ok(text.bytes().map(|b| b as u32 + 3).collect())
    }

    fn decode(&self, ids: &[u32], _keep_special: bool) -> crate::Result<String> {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&i| i >= 3)
            .map(|&i| (i - 3).min(255) as u8)
            .collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn render_chat(
        &self,
        messages: &[crate::ChatMessage],
        add_generation_prompt: bool,
    ) -> crate::Result<String> {
        let mut s: String = messages
            .iter()
            .map(|m| format!("{}: {}\n", m.role, m.content))
            .collect();
        if add_generation_prompt {
            s.push_str("assistant: ");
        }
        Ok(s)
    }

    fn stop_ids(&self) -> &[u32] {
        &[2]
    }

    fn pad_id(&self) -> u32 {
        0
    }
}
