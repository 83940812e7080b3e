//! Splits, scaling and sliding windows.
//!
//! The standard ETT protocol (Zhou et al. 2021, used by Time-LLM, GPT4TS and DLinear): for the
//! hourly sets, 12 months train, 4 validation, 4 test (30-day months), each later split
//! starting `input_len` rows early so its first window has a full input; every column is
//! standardised with the mean and standard deviation of the training rows; metrics are
//! reported on the standardised values. Windows are `input_len` rows of input and `horizon`
//! rows of target. Multivariate series are handled channel-independently: one example per
//! (window, column).

use std::sync::Arc;

use crate::csv::Frame;
use crate::error::{Error, Result};

/// How rows are divided into train / validation / test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitScheme {
    /// ETTh1/ETTh2: 12/4/4 months of hourly rows (8640/2880/2880).
    EttHourly,
    /// ETTm1/ETTm2: 12/4/4 months of 15-minute rows.
    EttMinute,
    /// Fractions of the rows for train and test; validation gets the rest (Time-LLM's custom
    /// datasets use 0.7 / 0.2).
    Ratio {
        /// Fraction for training.
        train: f64,
        /// Fraction for testing.
        test: f64,
    },
}

/// Which columns become examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channels {
    /// Every selected column, each an independent example (the papers' `M` setting).
    Multivariate,
    /// The target column only (`S`).
    Univariate,
}

/// Window sizes and sampling.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    /// Input rows `L`.
    pub input_len: usize,
    /// Forecast rows `H`.
    pub horizon: usize,
    /// Split scheme.
    pub scheme: SplitScheme,
    /// Channels.
    pub channels: Channels,
    /// Distance between training window starts (1 = every window).
    pub train_stride: usize,
    /// Distance between validation/test window starts (1 = every window, the papers' protocol).
    pub eval_stride: usize,
}

/// Per-column standardisation fitted on the training rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaler {
    /// Column means.
    pub mean: Vec<f32>,
    /// Column standard deviations (population).
    pub std: Vec<f32>,
}

impl Scaler {
    /// Fits on rows `0..rows` of every column.
    pub fn fit(values: &[Vec<f32>], rows: usize) -> Self {
        let mut mean = Vec::new();
        let mut std = Vec::new();
        for col in values {
            let x = &col[..rows.min(col.len())];
            let n = x.len().max(1) as f64;
            let m = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
            mean.push(m as f32);
            std.push((var.sqrt() as f32).max(1e-8));
        }
        Scaler { mean, std }
    }

    /// Standardises column `c`.
    pub fn transform(&self, c: usize, x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| (v - self.mean[c]) / self.std[c]).collect()
    }

    /// Undoes [`Scaler::transform`] for column `c`.
    pub fn inverse(&self, c: usize, x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v * self.std[c] + self.mean[c]).collect()
    }
}

/// The examples of one split: windows × channels over the standardised series.
#[derive(Debug, Clone)]
pub struct WindowSet {
    data: Arc<Vec<Vec<f32>>>,
    /// First input row of each window (row index in the whole series).
    pub starts: Vec<usize>,
    /// Column indices that are examples.
    pub channels: Vec<usize>,
    /// Input rows.
    pub input_len: usize,
    /// Forecast rows.
    pub horizon: usize,
}

impl WindowSet {
    /// Number of examples (windows × channels).
    pub fn len(&self) -> usize {
        self.starts.len() * self.channels.len()
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Example `i`: `(input, target, column)`.
    pub fn get(&self, i: usize) -> (&[f32], &[f32], usize) {
        let w = i / self.channels.len();
        let c = self.channels[i % self.channels.len()];
        let s = self.starts[w];
        let col = &self.data[c];
        (
            &col[s..s + self.input_len],
            &col[s + self.input_len..s + self.input_len + self.horizon],
            c,
        )
    }
}

/// A series split, scaled and cut into windows.
#[derive(Debug, Clone)]
pub struct SeriesData {
    /// Column names (target last).
    pub columns: Vec<String>,
    /// The scaler (fitted on the training rows).
    pub scaler: Scaler,
    /// Training examples.
    pub train: WindowSet,
    /// Validation examples.
    pub val: WindowSet,
    /// Test examples.
    pub test: WindowSet,
    /// The standardised series, column-major.
    pub scaled: Arc<Vec<Vec<f32>>>,
}

/// Why a series cannot be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitProblem(pub String);

/// Row borders `[start, end)` of train, validation and test (inputs included).
pub fn borders(
    scheme: SplitScheme,
    rows: usize,
    input_len: usize,
) -> std::result::Result<[(usize, usize); 3], SplitProblem> {
    let (tr, va, te) = match scheme {
        SplitScheme::EttHourly | SplitScheme::EttMinute => {
            let per_month = if scheme == SplitScheme::EttHourly {
                30 * 24
            } else {
                30 * 24 * 4
            };
            let need = 20 * per_month;
            if rows < need {
                return Err(SplitProblem(format!(
                    "the ETT split needs 20 months = {need} rows (12 train, 4 validation, 4 test)"
                )));
            }
            (12 * per_month, 4 * per_month, 4 * per_month)
        }
        SplitScheme::Ratio { train, test } => {
            if !(train > 0.0 && test > 0.0 && train + test < 1.0) {
                return Err(SplitProblem(
                    "train and test fractions must be positive and sum below 1".into(),
                ));
            }
            let tr = (rows as f64 * train) as usize;
            let te = (rows as f64 * test) as usize;
            (tr, rows - tr - te, te)
        }
    };
    if tr < input_len || va == 0 || te == 0 {
        return Err(SplitProblem(format!(
            "every split needs more than the input length {input_len}"
        )));
    }
    Ok([
        (0, tr),
        (tr - input_len, tr + va),
        (tr + va - input_len, tr + va + te),
    ])
}

/// Splits, scales and windows `frame`; the scaler is fitted on its training rows.
pub fn prepare(frame: &Frame, spec: &WindowSpec) -> Result<SeriesData> {
    prepare_scaled(frame, spec, None)
}

/// Like [`prepare`], with a given scaler (the one a model was trained with) instead of one
/// fitted on this frame.
pub fn prepare_scaled(
    frame: &Frame,
    spec: &WindowSpec,
    scaler: Option<&Scaler>,
) -> Result<SeriesData> {
    if spec.input_len == 0 || spec.horizon == 0 || spec.train_stride == 0 || spec.eval_stride == 0 {
        return Err(Error::config(
            "window",
            "input length, horizon and strides must be at least 1",
        ));
    }
    let too_short = |needed: String| Error::TooShort {
        path: frame.path.clone(),
        rows: frame.len(),
        needed,
    };
    let b = borders(spec.scheme, frame.len(), spec.input_len).map_err(|p| too_short(p.0))?;
    let scaler = match scaler {
        Some(s) if s.mean.len() == frame.columns.len() => s.clone(),
        Some(s) => {
            return Err(Error::config(
                "scaler",
                format!(
                    "the model was trained on {} columns, the file has {}",
                    s.mean.len(),
                    frame.columns.len()
                ),
            ));
        }
        None => Scaler::fit(&frame.values, b[0].1),
    };
    let scaled: Arc<Vec<Vec<f32>>> = Arc::new(
        frame
            .values
            .iter()
            .enumerate()
            .map(|(c, x)| scaler.transform(c, x))
            .collect(),
    );
    let channels: Vec<usize> = match spec.channels {
        Channels::Multivariate => (0..frame.columns.len()).collect(),
        Channels::Univariate => vec![frame.columns.len() - 1],
    };
    let window = spec.input_len + spec.horizon;
    let set = |(lo, hi): (usize, usize), stride: usize, name: &str| -> Result<WindowSet> {
        if hi - lo < window {
            return Err(too_short(format!(
                "the {name} split has {} rows, fewer than input {} + horizon {}",
                hi - lo,
                spec.input_len,
                spec.horizon
            )));
        }
        Ok(WindowSet {
            data: scaled.clone(),
            starts: (lo..=hi - window).step_by(stride).collect(),
            channels: channels.clone(),
            input_len: spec.input_len,
            horizon: spec.horizon,
        })
    };
    Ok(SeriesData {
        columns: frame.columns.clone(),
        train: set(b[0], spec.train_stride, "training")?,
        val: set(b[1], spec.eval_stride, "validation")?,
        test: set(b[2], spec.eval_stride, "test")?,
        scaler,
        scaled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ett_borders_match_the_papers() {
        let b = borders(SplitScheme::EttHourly, 17420, 96).expect("borders");
        assert_eq!(b, [(0, 8640), (8544, 11520), (11424, 14400)]);
        assert!(borders(SplitScheme::EttHourly, 14399, 96).is_err());
    }

    #[test]
    fn windows_index_window_then_channel() {
        let frame = Frame {
            path: "x".into(),
            dates: vec![String::new(); 100],
            columns: vec!["a".into(), "b".into()],
            values: vec![(0..100).map(|v| v as f32).collect(), vec![1.0; 100]],
        };
        let spec = WindowSpec {
            input_len: 4,
            horizon: 2,
            scheme: SplitScheme::Ratio {
                train: 0.6,
                test: 0.2,
            },
            channels: Channels::Multivariate,
            train_stride: 3,
            eval_stride: 1,
        };
        let d = prepare(&frame, &spec).expect("prepare");
        // Train rows 0..60: windows start at 0, 3, ..., 54.
        assert_eq!(d.train.starts.len(), 19);
        assert_eq!(d.train.len(), 38);
        let (x, y, c) = d.train.get(3);
        assert_eq!(c, 1);
        assert_eq!(x.len(), 4);
        assert_eq!(y.len(), 2);
        // Column a is standardised with the training mean 29.5.
        let (x, _, c) = d.train.get(0);
        assert_eq!(c, 0);
        assert!((x[0] * d.scaler.std[0] + d.scaler.mean[0]).abs() < 1e-4);
        // Validation starts input_len rows before row 60.
        assert_eq!(d.val.starts[0], 56);
    }
}
