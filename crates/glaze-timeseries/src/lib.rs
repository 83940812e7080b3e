#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod adapter;
pub mod baselines;
pub mod bench;
pub mod csv;
pub mod dataset;
pub mod dlinear;
pub mod error;
pub mod experiment;
pub mod model;
pub mod patch;
pub mod prefix;
pub mod prompt;
pub mod reprogramming;
pub mod task;

pub use adapter::SeriesAdapter;
pub use csv::{ColumnSelection, Frame, read_csv};
pub use dataset::{Channels, Scaler, SeriesData, SplitScheme, WindowSet, WindowSpec, prepare};
pub use error::{Error, Result};
pub use experiment::{RunOutcome, RunSpec, StoredConfig, load_checkpoint, run};
pub use glaze_patch::{PatchEncoder, PatchedWindows, revin};
pub use model::{Forecaster, ForecasterConfig, ModelKind, Pipeline};
pub use task::{ForecastTask, Metrics, evaluate, forecast};
