//! The training engine shared by every plugin: an adapter is trained against a frozen
//! backbone with AdamW, a learning-rate schedule, gradient clipping and accumulation,
//! validation with early stopping, atomic resumable checkpoints, a progress bar, a JSONL
//! metrics log and a PNG curve.
//!
//! A plugin describes its task with [`TrainTask`] (a loss over a batch of example indices and
//! a validation value); the engine owns everything else. Only the adapter module passed to
//! [`train`] is optimized; the backbone, held by the task, has no parameter, gradient or
//! optimizer state to give.
//!
//! Determinism: the data order of epoch `e` is a permutation drawn from the run's seed and
//! `e`; the optimizer runs on host vectors; a checkpoint stores weights, both moments, the
//! step and the early-stopping state. A run killed at any point and restarted with the same
//! directory resumes from its last checkpoint and ends with the same weights as a run that
//! was never interrupted.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use glaze_kernels::product_grad::ProductSink;

use crate::checkpoint::{AdapterIdentity, Checkpoint, TrainState};
use crate::metrics::{MetricRecord, MetricsLog, plot_curve};
use crate::optim::{AdamW, AdamWSettings};
use crate::schedule::LrSchedule;
use glaze_core::error::{Error, Result};
use glaze_core::params::{HostGrads, count_params, export_params, import_params};
use glaze_core::rng::SplitMix64;

/// What the engine needs from a plugin to train one adapter.
pub trait TrainTask {
    /// The trainable adapter (a burn module on an autodiff device).
    type Model: Module;

    /// Number of training examples.
    fn train_len(&self) -> usize;

    /// Mean loss over the training examples `batch` (indices into `0..train_len()`),
    /// as a tracked scalar `[1]`.
    fn loss(&self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<1>>;

    /// [`TrainTask::loss`] for a training step. A task whose loss multiplies a parameter by
    /// a constant 8-bit matrix (Time-LLM's prototype map) may defer that parameter's gradient
    /// into `products` ([`glaze_kernels::product_grad::matmul_q8_t_param`]): the engine then
    /// takes it as a product after the backward pass and the optimizer forms it block by
    /// block inside its update. Validation and inference call [`TrainTask::loss`], where
    /// nothing is deferred. The default defers nothing.
    fn step_loss(
        &self,
        model: &Self::Model,
        batch: &[usize],
        products: &ProductSink,
    ) -> Result<Tensor<1>> {
        let _ = products;
        self.loss(model, batch)
    }

    /// The validation value (lower is better), or `None` when there is no validation split.
    fn validate(&self, model: &Self::Model) -> Result<Option<f64>>;
}

/// Settings of a training run (serialisable, so runs can record them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training examples. Default 1.
    pub epochs: usize,
    /// Examples per micro-batch. Default 32.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation). Default 1.
    pub accumulation: usize,
    /// Peak learning rate. Default 1e-3.
    pub lr: f64,
    /// AdamW settings.
    pub optimizer: AdamWSettings,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Global gradient-norm clipping. Default `Some(1.0)`.
    pub clip_norm: Option<f64>,
    /// Seed of the data order. Default 0.
    pub seed: u64,
    /// Stop after this many validations without improvement. Default `None` (never).
    pub patience: Option<usize>,
    /// Validate every this many steps as well as at the end of each epoch. Default `None`.
    pub eval_every: Option<usize>,
    /// Write a resumable checkpoint every this many steps (and after every validation).
    /// Default 50.
    pub checkpoint_every: usize,
    /// Stop after this many optimizer steps in all. Default `None`.
    pub max_steps: Option<usize>,
    /// Recompute memory-bound activations during the backward pass instead of keeping them
    /// (burn's balanced gradient checkpointing): less memory for long soft-token sequences,
    /// more time. The adapter must be created on [`TrainConfig::device`]. Default false.
    pub gradient_checkpointing: bool,
    /// Let a task keep the gradients of parameters multiplied by a constant 8-bit matrix as
    /// products, formed by AdamW's update a block at a time ([`TrainTask::step_loss`]:
    /// Time-LLM's prototype map on the CPU). The same update; false calls
    /// [`TrainTask::loss`] and forms them in the backward pass. Default true.
    pub defer_products: bool,
}

impl TrainConfig {
    /// A budget of `steps` AdamW steps of `batch` over `n_train` items (as many epochs as that
    /// takes): learning-rate warmup over the fraction `warmup` of the steps, then a cosine to
    /// 10 % of `lr`; `validations` evenly spaced validations; a checkpoint every 25 steps.
    pub fn step_budget(
        steps: usize,
        batch: usize,
        lr: f64,
        seed: u64,
        n_train: usize,
        warmup: f64,
        validations: usize,
    ) -> Self {
        TrainConfig {
            batch_size: batch,
            lr,
            max_steps: Some(steps),
            epochs: (steps * batch).div_ceil(n_train.max(1)).max(1),
            schedule: LrSchedule::WarmupCosine {
                warmup,
                min_ratio: 0.1,
            },
            seed,
            eval_every: Some((steps / validations.max(1)).max(1)),
            checkpoint_every: 25,
            ..TrainConfig::default()
        }
    }

    /// The autodiff device an adapter trained with this configuration lives on (inputs built
    /// in a task's loss go to the adapter's device: tensors of one operation must share the
    /// checkpointing strategy).
    pub fn device(&self, base: &Device) -> Device {
        let device = base.clone().autodiff();
        if self.gradient_checkpointing {
            device.gradient_checkpointing()
        } else {
            device
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 32,
            accumulation: 1,
            lr: 1e-3,
            optimizer: AdamWSettings::default(),
            schedule: LrSchedule::default(),
            clip_norm: Some(1.0),
            seed: 0,
            patience: None,
            eval_every: None,
            checkpoint_every: 50,
            max_steps: None,
            gradient_checkpointing: false,
            defer_products: true,
        }
    }
}

/// Progress of one optimizer step, given to [`RunOptions::on_step`].
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Optimizer steps done (this one included).
    pub step: usize,
    /// Steps the run will take.
    pub total: usize,
    /// Epoch of the step.
    pub epoch: usize,
    /// Mean training loss of the step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Examples per second.
    pub examples_per_s: f64,
    /// Seconds of the step in the forward passes (loss included), the backward passes
    /// (gradients gathered to the host included) and the optimizer update.
    pub phases: [f64; 3],
}

/// A callback after every optimizer step (see [`RunOptions::on_step`]).
pub type StepHook<'a> = &'a mut dyn FnMut(&StepInfo) -> ControlFlow<()>;

/// Where and how a run writes, and who watches it.
pub struct RunOptions<'a> {
    /// Directory for `last.safetensors` (resumable), `best.safetensors`,
    /// `adapter.safetensors` (the result), `metrics.jsonl` and `curve.png`. `None` keeps
    /// everything in memory (no checkpoint, no resume).
    pub dir: Option<PathBuf>,
    /// Identity recorded in checkpoints and checked on resume.
    pub identity: AdapterIdentity,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Resume from `dir/last.safetensors` when it exists.
    pub resume: bool,
    /// Called after every optimizer step; `Break` stops the run at once, as a kill would
    /// (nothing more is written), and `train` returns [`Error::Interrupted`].
    pub on_step: Option<StepHook<'a>>,
}

impl RunOptions<'_> {
    /// In-memory run with the given identity.
    pub fn in_memory(identity: AdapterIdentity) -> Self {
        RunOptions {
            dir: None,
            identity,
            progress: false,
            resume: false,
            on_step: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TrainReport {
    /// Optimizer steps done (in all, including those before a resume).
    pub steps: usize,
    /// Steps the configuration asked for.
    pub total_steps: usize,
    /// Step the run resumed from, if it did.
    pub resumed_from: Option<usize>,
    /// Training loss of every step run in this process.
    pub losses: Vec<f64>,
    /// `(step, value)` of every validation in this process.
    pub validations: Vec<(usize, f64)>,
    /// Best validation value and its step.
    pub best: Option<(f64, usize)>,
    /// True when early stopping ended the run.
    pub stopped_early: bool,
    /// Wall-clock seconds in this process.
    pub seconds: f64,
    /// Trainable scalars in the adapter.
    pub trainable_params: usize,
    /// Scalars of optimizer state (all of them the adapter's).
    pub optimizer_state: usize,
}

/// The data order of epoch `epoch` for a run seeded with `seed` (and the generator seed it
/// came from).
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> (u64, Vec<usize>) {
    let s = seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    (s, SplitMix64::new(s).permutation(n))
}

/// Trains `model` on `task`; returns the best model by validation (the last one when the
/// task has no validation split) and a report.
pub fn train<T: TrainTask>(
    task: &T,
    model: T::Model,
    config: &TrainConfig,
    mut run: RunOptions<'_>,
) -> Result<(T::Model, TrainReport)> {
    glaze_kernels::alloc::keep_freed_memory();
    let n = task.train_len();
    let invalid = |field: &'static str, problem: &str| Error::InvalidConfig {
        field,
        problem: problem.into(),
    };
    if n == 0 {
        return Err(invalid("train", "no training example"));
    }
    if config.batch_size == 0 || config.accumulation == 0 || config.epochs == 0 {
        return Err(invalid(
            "batch_size/accumulation/epochs",
            "must all be at least 1",
        ));
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(invalid("lr", "must be a positive number"));
    }
    let per_step = config.batch_size * config.accumulation;
    let steps_per_epoch = n.div_ceil(per_step);
    let total = (steps_per_epoch * config.epochs).min(config.max_steps.unwrap_or(usize::MAX));
    let started = Instant::now();
    let mut report = TrainReport {
        total_steps: total,
        trainable_params: count_params(&model),
        ..Default::default()
    };

    let mut model = model;
    let mut optim = AdamW::new(config.optimizer);
    let mut state = TrainState {
        step: 0,
        optimizer: config.optimizer,
        optimizer_t: 0,
        rng: config.seed,
        best: None,
        bad_evals: 0,
        stopped: false,
    };
    let mut best_model: Option<T::Model> = None;
    let dir = run.dir.clone();
    let last_path = dir.as_ref().map(|d| d.join("last.safetensors"));
    let best_path = dir.as_ref().map(|d| d.join("best.safetensors"));
    if let (true, Some(lp)) = (run.resume, &last_path)
        && lp.exists()
    {
        let ck = Checkpoint::load_for(lp, &run.identity)?;
        let st = ck.state.clone().ok_or_else(|| Error::Checkpoint {
            path: lp.clone(),
            problem: "no training state: not a resumable checkpoint".into(),
        })?;
        model = import_params(model, &ck.weight_map(), lp)?;
        optim = AdamW::import_state(st.optimizer, st.optimizer_t, ck.optimizer.clone())
            .ok_or_else(|| Error::Checkpoint {
                path: lp.clone(),
                problem: "optimizer state is incomplete".into(),
            })?;
        if let (Some(_), Some(bp)) = (st.best, &best_path) {
            let b = Checkpoint::load_for(bp, &run.identity)?;
            best_model = Some(import_params(model.clone(), &b.weight_map(), bp)?);
        }
        report.resumed_from = Some(st.step);
        tracing::info!(
            "resuming from step {} of {total} ({})",
            st.step,
            lp.display()
        );
        state = st;
    }
    let log = match &dir {
        Some(d) => Some(MetricsLog::open(
            &d.join("metrics.jsonl"),
            report.resumed_from,
        )?),
        None => None,
    };
    let bar = if run.progress {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(state.step as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    let save_last = |model: &T::Model, optim: &AdamW, state: &TrainState| -> Result<()> {
        if let Some(lp) = &last_path {
            Checkpoint {
                identity: run.identity.clone(),
                weights: export_params(model),
                state: Some(state.clone()),
                optimizer: optim.export_state(),
            }
            .save(lp)?;
        }
        Ok(())
    };

    let mut order: Option<(usize, Vec<usize>)> = None;
    while state.step < total && !state.stopped {
        let step = state.step;
        let epoch = step / steps_per_epoch;
        let k = step % steps_per_epoch;
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let (s, p) = epoch_order(config.seed, epoch, n);
            state.rng = s;
            order = Some((epoch, p));
        }
        let perm = &order
            .as_ref()
            .map(|(_, p)| p)
            .ok_or(Error::NothingToTrain)?;
        let lo = k * per_step;
        let hi = (lo + per_step).min(n);
        let t0 = Instant::now();
        let mut grads = HostGrads::default();
        let mut loss_sum = 0.0f64;
        let mut phases = [0f64; 3];
        for chunk in perm[lo..hi].chunks(config.batch_size) {
            let clock = Instant::now();
            // Products of parameters with constant matrices the task defers: their gradients
            // come back as factors, formed by the optimizer's update (`product_grad`).
            let products = ProductSink::new();
            let loss = if config.defer_products {
                task.step_loss(&model, chunk, &products)?
            } else {
                task.loss(&model, chunk)?
            };
            let deferred = products.take();
            let value = loss.clone().into_scalar::<f32>();
            phases[0] += clock.elapsed().as_secs_f64();
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss { step, value });
            }
            let w = chunk.len() as f32 / (hi - lo) as f32;
            loss_sum += value as f64 * w as f64;
            let clock = Instant::now();
            let mut grads_all = loss.backward();
            let products = deferred
                .into_iter()
                .filter_map(|d| d.take(&mut grads_all))
                .collect();
            let g = GradientsParams::from_grads(grads_all, &model);
            let mut hg = HostGrads::collect(&model, g, products);
            if hg.is_empty() {
                return Err(Error::NothingToTrain);
            }
            hg.scale(w);
            grads.add(hg);
            phases[1] += clock.elapsed().as_secs_f64();
        }
        let lr = config.schedule.lr(config.lr, step, total);
        let clock = Instant::now();
        let (m, stats) = optim.step(model, grads, lr, config.clip_norm);
        model = m;
        phases[2] = clock.elapsed().as_secs_f64();
        state.step += 1;
        state.optimizer_t = optim.t;
        let secs = t0.elapsed().as_secs_f64();
        let info = StepInfo {
            step: state.step,
            total,
            epoch,
            loss: loss_sum,
            lr,
            grad_norm: stats.grad_norm,
            examples_per_s: (hi - lo) as f64 / secs.max(1e-9),
            phases,
        };
        report.losses.push(loss_sum);
        if let Some(log) = &log {
            log.append(&MetricRecord {
                step: state.step,
                epoch,
                split: "train".into(),
                value: loss_sum,
                lr: Some(lr),
                grad_norm: Some(stats.grad_norm),
                examples_per_s: Some(info.examples_per_s),
            })?;
        }
        bar.set_position(state.step as u64);
        bar.set_message(format!(
            "loss {loss_sum:.4} · {:.0} ex/s · lr {lr:.1e}",
            info.examples_per_s
        ));
        if let Some(cb) = run.on_step.as_mut()
            && cb(&info).is_break()
        {
            bar.abandon();
            return Err(Error::Interrupted { step: state.step });
        }

        let end_of_epoch = state.step.is_multiple_of(steps_per_epoch) || state.step == total;
        let periodic = config
            .eval_every
            .is_some_and(|e| e > 0 && state.step.is_multiple_of(e));
        let mut checkpoint_due =
            config.checkpoint_every > 0 && state.step.is_multiple_of(config.checkpoint_every);
        if end_of_epoch || periodic {
            if let Some(v) = task.validate(&model)? {
                report.validations.push((state.step, v));
                if let Some(log) = &log {
                    log.append(&MetricRecord {
                        step: state.step,
                        epoch,
                        split: "val".into(),
                        value: v,
                        lr: None,
                        grad_norm: None,
                        examples_per_s: None,
                    })?;
                }
                bar.println(format!("step {} · validation {v:.5}", state.step));
                if state.best.is_none_or(|(b, _)| v < b) {
                    state.best = Some((v, state.step));
                    state.bad_evals = 0;
                    if let Some(bp) = &best_path {
                        save_weights(bp, &run.identity, &model)?;
                    }
                    best_model = Some(model.clone());
                } else {
                    state.bad_evals += 1;
                    if config.patience.is_some_and(|p| state.bad_evals >= p) {
                        state.stopped = true;
                        report.stopped_early = true;
                    }
                }
            }
            checkpoint_due = true;
        }
        if checkpoint_due || state.step == total || state.stopped {
            save_last(&model, &optim, &state)?;
        }
    }
    bar.finish_and_clear();
    report.steps = state.step;
    report.best = state.best;
    report.stopped_early |= state.stopped;
    report.optimizer_state = optim.state_len();
    report.seconds = started.elapsed().as_secs_f64();
    let result = best_model.unwrap_or(model);
    if let Some(d) = &dir {
        save_weights(&d.join("adapter.safetensors"), &run.identity, &result)?;
        let metrics = d.join("metrics.jsonl");
        plot_curve(
            &metrics,
            &d.join("curve.png"),
            &run.identity.kind.to_uppercase(),
        )?;
    }
    Ok((result, report))
}

/// Writes a weights-only checkpoint (no training state) of `model`.
fn save_weights<M: Module>(
    path: &std::path::Path,
    identity: &AdapterIdentity,
    model: &M,
) -> Result<()> {
    Checkpoint {
        identity: identity.clone(),
        weights: export_params(model),
        state: None,
        optimizer: Vec::new(),
    }
    .save(path)
}
