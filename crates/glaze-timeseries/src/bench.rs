//! The Time-LLM training-step benchmark behind `glaze timeseries bench-step` (and so
//! `cargo xtask bench`): steps of the real trainer on a file's training windows, timed after a
//! warm-up step, with the prompt prefixes the steps read computed before the clock starts.

use std::ops::ControlFlow;
use std::path::Path;

use glaze_core::{FrozenBackbone, TextCodec};
use glaze_train::{LrSchedule, RunOptions, StepInfo, train};

use crate::error::{Error, Result};
use crate::experiment::{RunSpec, StoredConfig, data_and_pipeline, identity};
use crate::task::ForecastTask;

/// Medians of the timed steps (`glaze_train::metrics::median`) and what they ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTiming {
    /// Where the prompt prefixes came from.
    pub mode: String,
    /// Examples per step.
    pub batch: usize,
    /// Frozen blocks run.
    pub layers: usize,
    /// Text prototypes.
    pub prototypes: usize,
    /// Patches per window.
    pub patches: usize,
    /// Mean prompt length in tokens (NaN without a prefix cache).
    pub mean_prompt_tokens: f64,
    /// Seconds per step, and its forward, backward and update phases.
    pub step_s: f64,
    /// Forward phase.
    pub forward_s: f64,
    /// Backward phase.
    pub backward_s: f64,
    /// Optimizer update.
    pub update_s: f64,
    /// Steps timed.
    pub steps: usize,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// Floats of optimizer state.
    pub optimizer_state_floats: usize,
}

/// Times `steps` training steps of `spec` (after one warm-up step) at a constant learning
/// rate, without checkpoints. With a `cache_root`, the prompt prefixes of every example the
/// steps will see are computed first, so that the timed steps read them from disk as epochs
/// after the first do.
pub fn train_step_timing(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    spec: &RunSpec,
    steps: usize,
    cache_root: Option<&Path>,
) -> Result<StepTiming> {
    let mut spec = spec.clone();
    spec.train.max_steps = Some(steps + 1);
    spec.train.schedule = LrSchedule::Constant;
    spec.train.checkpoint_every = 0;
    let (set, pipeline) = data_and_pipeline(backbone, codec, &spec, cache_root)?;
    let batch = spec.train.batch_size;
    let mut prompt_tokens = Vec::new();
    if cache_root.is_some() {
        let prefix = pipeline
            .prefix()
            .ok_or_else(|| Error::config("model", "the step benchmark runs Time-LLM"))?;
        let (_, order) = glaze_train::trainer::epoch_order(spec.train.seed, 0, set.train.len());
        for &i in order.iter().take((steps + 1) * batch) {
            let (x, _, _) = set.train.get(i);
            let (n, _) = glaze_patch::revin::normalize(&[x]);
            prompt_tokens.push(prefix.encode(&pipeline.prompt(&n[0]))?.shape[3]);
        }
    }
    let task = ForecastTask {
        pipeline: &pipeline,
        train: &set.train,
        val: None,
        eval_batch: spec.eval_batch,
        loss: spec.loss,
    };
    let identity = identity(
        backbone,
        &StoredConfig {
            model: spec.model.clone(),
            window: spec.window,
            columns: set.columns.clone(),
            scaler: set.scaler.clone(),
            description: spec.description.clone(),
        },
    )?;
    let device = spec.train.device(backbone.device());
    let forecaster =
        glaze_core::rng::seeded_module(&device, spec.train.seed, |d| spec.model.init(backbone, d));
    let mut times = Vec::new();
    let mut phases: [Vec<f64>; 3] = Default::default();
    let mut record = |s: &StepInfo| {
        if s.step > 1 {
            times.push(batch as f64 / s.examples_per_s);
            for (p, v) in phases.iter_mut().zip(s.phases) {
                p.push(v);
            }
        }
        ControlFlow::Continue(())
    };
    let (_, report) = train(
        &task,
        forecaster,
        &spec.train,
        RunOptions {
            dir: None,
            identity,
            progress: false,
            resume: false,
            on_step: Some(&mut record),
        },
    )?;
    let median = glaze_train::metrics::median;
    let timed = times.len();
    let [forward_s, backward_s, update_s] = phases.map(median);
    let mean_prompt_tokens = if prompt_tokens.is_empty() {
        f64::NAN
    } else {
        prompt_tokens.iter().sum::<usize>() as f64 / prompt_tokens.len() as f64
    };
    Ok(StepTiming {
        mode: format!(
            "{}{}",
            if cache_root.is_some() {
                "prefix cached on disk"
            } else {
                "prefix computed every step"
            },
            if spec.train.gradient_checkpointing {
                ", gradient checkpointing"
            } else {
                ""
            }
        ),
        batch,
        layers: spec.model.llm_layers,
        prototypes: spec.model.num_prototypes,
        patches: spec.model.num_patches(),
        mean_prompt_tokens,
        step_s: median(times),
        forward_s,
        backward_s,
        update_s,
        steps: timed,
        trainable_params: report.trainable_params,
        optimizer_state_floats: report.optimizer_state,
    })
}
