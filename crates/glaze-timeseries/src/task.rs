//! Forecasting as a task of the training engine: MSE on the horizon, validation MSE for early
//! stopping, and test metrics.

use burn::prelude::*;
use glaze_kernels::product_grad::ProductSink;
use glaze_train::TrainTask;

use crate::dataset::WindowSet;
use crate::error::Result;
use crate::model::{Forecaster, Pipeline};

/// Accumulated squared and absolute errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Sum of squared errors.
    pub sse: f64,
    /// Sum of absolute errors.
    pub sae: f64,
    /// Number of values.
    pub n: usize,
}

impl Metrics {
    /// Adds the errors of one forecast.
    pub fn add(&mut self, pred: &[f32], truth: &[f32]) {
        for (p, t) in pred.iter().zip(truth) {
            let e = (*p - *t) as f64;
            self.sse += e * e;
            self.sae += e.abs();
            self.n += 1;
        }
    }

    /// Mean squared error.
    pub fn mse(&self) -> f64 {
        self.sse / self.n.max(1) as f64
    }

    /// Mean absolute error.
    pub fn mae(&self) -> f64 {
        self.sae / self.n.max(1) as f64
    }
}

/// Training a [`Forecaster`] on windows.
pub struct ForecastTask<'p, 'a> {
    /// The frozen parts.
    pub pipeline: &'p Pipeline<'a>,
    /// Training examples.
    pub train: &'p WindowSet,
    /// Validation examples (early stopping), if any.
    pub val: Option<&'p WindowSet>,
    /// Batch size for validation.
    pub eval_batch: usize,
    /// Training loss (validation is always MSE, the papers' headline metric).
    pub loss: glaze_core::RegressionLoss,
}

fn to_tensor(rows: &[&[f32]], device: &Device) -> Tensor<2> {
    let h = rows.first().map_or(0, |r| r.len());
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), h]), device)
}

impl ForecastTask<'_, '_> {
    fn batch_loss(
        &self,
        model: &Forecaster,
        batch: &[usize],
        products: Option<&ProductSink>,
    ) -> glaze_core::Result<Tensor<1>> {
        // The adapter's device (its checkpointing strategy included).
        let device = model
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.pipeline.backbone.device().clone().autodiff());
        let (inputs, targets): (Vec<&[f32]>, Vec<&[f32]>) = batch
            .iter()
            .map(|&i| {
                let (x, y, _) = self.train.get(i);
                (x, y)
            })
            .unzip();
        let pred = self
            .pipeline
            .predict_deferring(model, &inputs, &device, products)
            .map_err(into_core)?;
        Ok(self.loss.apply(pred, to_tensor(&targets, &device)))
    }
}

impl TrainTask for ForecastTask<'_, '_> {
    type Model = Forecaster;

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn loss(&self, model: &Forecaster, batch: &[usize]) -> glaze_core::Result<Tensor<1>> {
        self.batch_loss(model, batch, None)
    }

    /// The prototype map's weight gradient deferred into the trainer's sink.
    fn step_loss(
        &self,
        model: &Forecaster,
        batch: &[usize],
        products: &ProductSink,
    ) -> glaze_core::Result<Tensor<1>> {
        self.batch_loss(model, batch, Some(products))
    }

    fn validate(&self, model: &Forecaster) -> glaze_core::Result<Option<f64>> {
        match self.val {
            Some(v) => Ok(Some(
                evaluate(self.pipeline, model, v, self.eval_batch)
                    .map_err(into_core)?
                    .mse(),
            )),
            None => Ok(None),
        }
    }
}

/// Plugin errors cross the engine's boundary as core errors; a plugin-specific one keeps its
/// message.
fn into_core(e: crate::error::Error) -> glaze_core::Error {
    match e {
        crate::error::Error::Core(c) => c,
        other => glaze_core::Error::InvalidConfig {
            field: "timeseries",
            problem: other.to_string(),
        },
    }
}

/// Forecasts of `model` for examples `range` of `set` (inference, no autodiff).
pub fn forecast(
    pipeline: &Pipeline<'_>,
    model: &Forecaster,
    set: &WindowSet,
    indices: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let device = pipeline.backbone.device().clone();
    let model = model.clone().valid();
    let inputs: Vec<&[f32]> = indices.iter().map(|&i| set.get(i).0).collect();
    let pred = pipeline.predict(&model, &inputs, &device)?;
    let h = set.horizon;
    let flat: Vec<f32> = pred
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("invariant: float predictions convert to f32");
    Ok(flat.chunks(h).map(<[f32]>::to_vec).collect())
}

/// Test metrics of `model` on every example of `set`.
pub fn evaluate(
    pipeline: &Pipeline<'_>,
    model: &Forecaster,
    set: &WindowSet,
    batch: usize,
) -> Result<Metrics> {
    let mut m = Metrics::default();
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let preds = forecast(pipeline, model, set, chunk)?;
        for (&i, p) in chunk.iter().zip(&preds) {
            m.add(p, set.get(i).1);
        }
    }
    Ok(m)
}
