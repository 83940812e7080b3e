//! Training metrics: one JSON object per line (`metrics.jsonl`), readable while a run goes on,
//! and the PNG curve drawn from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::plot::LinePlot;
use glaze_core::error::{Error, Result};

/// The median of `values` (the upper one of an even count; NaN for none): what the
/// benchmarks report of repeated timings.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricRecord {
    /// Optimizer steps done when the record was made.
    pub step: usize,
    /// Epoch (0-based) the step belongs to.
    pub epoch: usize,
    /// `train` (one optimizer step) or `val` (a validation pass).
    pub split: String,
    /// Training loss of the step, or the validation value.
    pub value: f64,
    /// Learning rate of the step (train records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Gradient norm before clipping (train records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Examples per second over the step (train records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples_per_s: Option<f64>,
}

/// Appends records to a JSONL file.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// A log at `path`; when resuming at `resume_step`, records after that step (written
    /// after the last checkpoint of an interrupted run) are dropped so no step is counted
    /// twice. `resume_step = None` starts a fresh file.
    pub fn open(path: &Path, resume_step: Option<usize>) -> Result<Self> {
        let kept = match resume_step {
            Some(step) => read_records(path)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.step <= step)
                .collect(),
            None => Vec::new(),
        };
        let mut text = String::new();
        for r in &kept {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        crate::atomic::write_atomic(path, text.as_bytes())?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
        })
    }

    /// Appends one record.
    pub fn append(&self, record: &MetricRecord) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e.to_string())))?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(f, "{line}").map_err(|e| Error::io(&self.path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a metrics file.
pub fn read_records(path: &Path) -> Result<Vec<MetricRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::io(path, std::io::Error::other(format!("line {}: {e}", i + 1))))
        })
        .collect()
}

/// Draws the training curve (train loss, smoothed, and validation values) of a metrics file.
pub fn plot_curve(metrics: &Path, png: &Path, title: &str) -> Result<()> {
    let records = read_records(metrics)?;
    let train: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.split == "train")
        .map(|r| (r.step as f64, r.value))
        .collect();
    // Exponential moving average, so the curve is readable with small batches.
    let mut ema = None;
    let smooth: Vec<(f64, f64)> = train
        .iter()
        .map(|&(x, y)| {
            let e = match ema {
                Some(e) => 0.9 * e + 0.1 * y,
                None => y,
            };
            ema = Some(e);
            (x, e)
        })
        .collect();
    let val: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.split == "val")
        .map(|r| (r.step as f64, r.value))
        .collect();
    LinePlot::new(title, "STEP")
        .line("train loss (EMA)", smooth)
        .line("validation", val)
        .save_png(png)
}
