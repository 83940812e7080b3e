//! Training a soft prompt against a frozen backbone.
//!
//! Only the soft prompt's vectors are optimised (AdamW); the backbone holds no gradient and no
//! optimizer state. The loss is cross-entropy on the target tokens only.

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;

use glaze_core::backbone::{FrozenBackbone, TextCodec};
use glaze_core::error::{Error, Result};
use glaze_core::loss::masked_cross_entropy;
use glaze_core::prompt::{Prompt, embed_prompt, pad_left};
use glaze_core::soft_prompt::{SoftPrompt, SoftPromptConfig};

/// One training example: a context prompt (the soft prompt is prepended to it) and the text
/// the model should produce after it.
#[derive(Debug, Clone)]
pub struct TuningExample {
    /// The context, e.g. a chat rendered up to the assistant turn.
    pub context: Prompt,
    /// The text to learn, including any end-of-turn token.
    pub target: String,
}

/// Settings of [`tune_soft_prompt`].
#[derive(Config, Debug)]
pub struct PromptTuningConfig {
    /// Number of soft-prompt vectors. Default: 8.
    #[config(default = 8)]
    pub n_tokens: usize,
    /// Optimizer steps (each over all examples). Default: 100.
    #[config(default = 100)]
    pub steps: usize,
    /// AdamW learning rate. Default: 0.05.
    #[config(default = 0.05)]
    pub lr: f64,
    /// Seed of the initialisation. Default: 0.
    #[config(default = 0)]
    pub seed: u64,
    /// Stop early once the loss falls below this value. Default: 0.01.
    #[config(default = 0.01)]
    pub target_loss: f32,
}

/// What a tuning run did.
#[derive(Debug, Clone)]
pub struct TuningReport {
    /// Loss after every step.
    pub losses: Vec<f32>,
}

/// Trains a soft prompt so that the frozen backbone produces each example's target after
/// `soft prompt + context`. `on_step(step, loss)` is called after every step.
pub fn tune_soft_prompt(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    examples: &[TuningExample],
    config: &PromptTuningConfig,
    mut on_step: impl FnMut(usize, f32),
) -> Result<(SoftPrompt, TuningReport)> {
    glaze_kernels::alloc::keep_freed_memory();
    if examples.is_empty() {
        return Err(Error::InvalidConfig {
            field: "examples",
            problem: "no training example".into(),
        });
    }
    if config.n_tokens == 0 {
        return Err(Error::InvalidConfig {
            field: "n_tokens",
            problem: "must be at least 1".into(),
        });
    }
    let device = backbone.device().clone().autodiff();
    let d = backbone.spec().d_model;
    let mut soft = glaze_core::rng::seeded_module(&device, config.seed, |dev| {
        SoftPromptConfig::new(config.n_tokens, d).init(dev)
    });

    // Tokenize the targets once.
    let targets: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| {
            let ids = codec.encode(&e.target)?;
            backbone.check_ids(&ids)?;
            if ids.is_empty() {
                return Err(Error::InvalidConfig {
                    field: "target",
                    problem: "target text has no tokens".into(),
                });
            }
            Ok(ids)
        })
        .collect::<Result<_>>()?;
    let max_target = targets.iter().map(Vec::len).max().unwrap_or(0);
    let b = examples.len();
    let mut target_ids = vec![0i64; b * max_target];
    let mut weights = vec![0f32; b * max_target];
    for (row, ids) in targets.iter().enumerate() {
        let offset = max_target - ids.len();
        for (j, &id) in ids.iter().enumerate() {
            target_ids[row * max_target + offset + j] = id as i64;
            weights[row * max_target + offset + j] = 1.0;
        }
    }
    let target_t =
        Tensor::<2, Int>::from_data(TensorData::new(target_ids, [b, max_target]), &device);
    let weight_t = Tensor::<2>::from_data(TensorData::new(weights, [b, max_target]), &device);

    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut losses = Vec::with_capacity(config.steps);
    for step in 0..config.steps {
        let rows = examples
            .iter()
            .zip(&targets)
            .map(|(e, ids)| {
                let prompt = e
                    .context
                    .clone()
                    .prepend_soft(soft.tokens())
                    .ids(ids.clone());
                embed_prompt(backbone, codec, &prompt).map(|emb| emb.embeds)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = pad_left(rows);
        let t = batch.embeds.dims()[1];
        let hidden = backbone.forward(
            batch.embeds,
            glaze_core::backbone::ForwardOptions::masked(batch.mask),
        );
        // Positions t-L-1 .. t-1 predict the last L tokens of every (left-padded) row.
        let window = hidden.slice(s![.., t - max_target - 1..t - 1, ..]);
        let logits = backbone.lm_head(window);
        let loss = masked_cross_entropy(logits, target_t.clone(), weight_t.clone());
        let value = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { step, value });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &soft);
        if grads.is_empty() {
            return Err(Error::NothingToTrain);
        }
        soft = optim.step(config.lr, soft, grads);
        losses.push(value);
        on_step(step, value);
        if value < config.target_loss {
            break;
        }
    }
    Ok((soft, TuningReport { losses }))
}
