//! The engine thread: it owns the frozen backbone and the adapters, takes jobs from the
//! bounded queue, turns each part into soft tokens through its adapter (`prompts`), splices
//! them into the rendered chat and generates in one batch with the other live requests
//! (`scheduler`), sending events back to the HTTP handler.
//!
//! Burn tensors never leave this thread; handlers only see [`Event`]s.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::Device;
use glaze::FrozenBackbone;
use glaze::audio::{AptAligner, AudioEncoder};
use glaze::llm::LanguageModel;
use glaze::speech::SpeechAdapter;
use glaze::timeseries::{Forecaster, StoredConfig};
use glaze::train::{Checkpoint, Modality};
use glaze::vision::{VisionAdapter, VisionEncoder};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{ApiError, ServeError};
use crate::wire::{Chat, Completion, ForecastRequest, PartKind, Usage};

/// What the engine tells the handler of one request.
#[derive(Debug)]
pub enum Event {
    /// The prompt was built; generation starts.
    Started,
    /// New answer text.
    Text(String),
    /// The answer is complete.
    Done {
        /// OpenAI's finish reason: `stop` or `length`.
        finish: &'static str,
        /// Token counts.
        usage: Usage,
    },
    /// The request failed (before or during generation).
    Failed(ApiError),
    /// A forecast: the values, and how many input values it read.
    Forecast {
        /// Forecast values, in the series' units.
        values: Vec<f32>,
        /// The input length the checkpoint reads (the last values of the history).
        input_len: usize,
    },
}

/// What a request asks for.
pub enum Input {
    /// `/v1/chat/completions`.
    Chat(Chat),
    /// `/v1/completions`.
    Completion(Completion),
    /// `/v1/forecast`.
    Forecast(ForecastRequest),
}

impl Input {
    /// The `model` the request names.
    pub(crate) fn model(&self) -> Option<&str> {
        match self {
            Input::Chat(c) => c.model.as_deref(),
            Input::Completion(c) => c.model.as_deref(),
            Input::Forecast(f) => f.model.as_deref(),
        }
    }

    /// Its generation settings (none for a forecast).
    pub(crate) fn sampling(&self) -> Option<&crate::wire::Sampling> {
        match self {
            Input::Chat(c) => Some(&c.sampling),
            Input::Completion(c) => Some(&c.sampling),
            Input::Forecast(_) => None,
        }
    }
}

/// One queued request.
pub struct Job {
    /// The checked request.
    pub input: Input,
    /// Where the events go; closed when the client went away.
    pub events: UnboundedSender<Event>,
    /// Past this instant the request is abandoned.
    pub deadline: Instant,
    /// The time limit the deadline came from (for the error message).
    pub timeout_secs: f64,
}

/// An adapter named on the command line (`NAME=FILE`).
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    /// `vision`, `speech` or `audio`: what the file must be, and the name requests use.
    pub name: String,
    /// Its `adapter.safetensors`.
    pub path: PathBuf,
}

impl std::str::FromStr for AdapterSpec {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Self, ServeError> {
        let (name, path) = s.split_once('=').ok_or_else(|| {
            ServeError::AdapterSpec(format!(
                "`{s}`: an adapter is NAME=FILE, e.g. vision=adapter.safetensors"
            ))
        })?;
        if !matches!(name, "vision" | "speech" | "audio" | "forecast") {
            return Err(ServeError::AdapterSpec(format!(
                "`{name}`: the adapter name says what it serves: vision, speech or audio \
                 (chat parts) or forecast (/v1/forecast)"
            )));
        }
        Ok(AdapterSpec {
            name: name.into(),
            path: path.into(),
        })
    }
}

pub(crate) enum Loaded {
    Vision(VisionAdapter, VisionEncoder),
    Speech(SpeechAdapter, AudioEncoder),
    Audio(AptAligner, AudioEncoder),
    Forecast(Box<Forecaster>, Box<StoredConfig>),
}

/// A loaded adapter and what it serves.
pub struct Served {
    pub(crate) name: String,
    /// The chat part type it turns into soft tokens (None: a forecaster).
    pub(crate) kind: Option<PartKind>,
    pub(crate) loaded: Loaded,
}

impl Served {
    /// What it serves, as `/v1/models` says it.
    fn serves(&self) -> &'static str {
        self.kind.map_or("/v1/forecast", PartKind::wire_name)
    }
}

/// The public description of the loaded model and adapters (for `/v1/models`).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The backbone's id in requests.
    pub id: String,
    /// Its context length.
    pub context_length: usize,
    /// Its embedding width (the width of `prompt_embeds` rows).
    pub d_model: usize,
    /// Adapter names, what they serve (`image_url`, `input_audio`, `/v1/forecast`) and their
    /// files, in load order.
    pub adapters: Vec<(String, &'static str, PathBuf)>,
}

/// The backbone and the adapters, loaded.
pub struct Engine {
    pub(crate) lm: LanguageModel,
    pub(crate) served: Vec<Served>,
    info: ModelInfo,
    pub(crate) default_temperature: f64,
    pub(crate) default_max_tokens: usize,
    /// Rows decoded together.
    pub(crate) batch: usize,
    /// Prompts kept in the prefix cache.
    pub(crate) prefix_cache: usize,
}

fn load_error(path: Option<&Path>, e: impl std::fmt::Display) -> ServeError {
    ServeError::Load {
        path: path.map(Path::to_path_buf),
        problem: e.to_string(),
    }
}

impl Engine {
    /// Loads the backbone (`None`: the fetched SmolLM2) and each adapter, checking every
    /// adapter's identity against the backbone; a mismatch names both.
    pub fn load(config: &crate::ServeConfig) -> Result<Engine, ServeError> {
        let (model, model_id, adapters) = (
            config.model.as_deref(),
            config.model_id.clone(),
            &config.adapters,
        );
        let device = Device::flex();
        let lm = match model {
            Some(p) => LanguageModel::load(p, &device).map_err(|e| load_error(Some(p), e))?,
            None => LanguageModel::load_default(&device).map_err(|e| load_error(None, e))?,
        };
        let id = model_id.unwrap_or_else(|| match model {
            Some(p) => p
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
            None => "SmolLM2-135M-Instruct".into(),
        });
        let mut served = Vec::new();
        for spec in adapters {
            if served.iter().any(|s: &Served| s.name == spec.name) {
                return Err(ServeError::AdapterSpec(format!(
                    "adapter `{}` is named twice",
                    spec.name
                )));
            }
            served.push(load_adapter(&lm, spec, &device)?);
        }
        let info = ModelInfo {
            id,
            context_length: lm.llama.spec().context_length,
            d_model: lm.llama.spec().d_model,
            adapters: served
                .iter()
                .zip(adapters)
                .map(|(s, a)| (s.name.clone(), s.serves(), a.path.clone()))
                .collect(),
        };
        Ok(Engine {
            lm,
            served,
            info,
            default_temperature: config.temperature,
            default_max_tokens: config.max_tokens,
            batch: config.batch.max(1),
            prefix_cache: config.prefix_cache,
        })
    }

    /// What is loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }
}

fn load_adapter(
    lm: &LanguageModel,
    spec: &AdapterSpec,
    device: &Device,
) -> Result<Served, ServeError> {
    let path = &spec.path;
    let at = |e: &dyn std::fmt::Display| load_error(Some(path), e);
    let ck = Checkpoint::load(path).map_err(|e| at(&e))?;
    let modality = ck.identity.modality();
    let expected = match spec.name.as_str() {
        "vision" => Modality::Vision,
        "speech" => Modality::Speech,
        "forecast" => Modality::TimeSeries,
        _ => Modality::Audio,
    };
    if modality != expected {
        return Err(at(&format!(
            "`{}=` needs a {expected} adapter; this file holds a {modality} adapter ({})",
            spec.name, ck.identity.kind
        )));
    }
    let backbone = &lm.llama;
    let loaded = match modality {
        Modality::Vision => {
            let encoder = VisionEncoder::load_default(device).map_err(|e| at(&e))?;
            let (adapter, _) = glaze::vision::experiment::load_adapter(backbone, &encoder, path)
                .map_err(|e| at(&e))?;
            Loaded::Vision(adapter, encoder)
        }
        Modality::Speech => {
            let (adapter, encoder) =
                glaze::speech::experiment::load_with_default_encoder(backbone, path)
                    .map_err(|e| at(&e))?;
            Loaded::Speech(adapter, encoder)
        }
        Modality::TimeSeries => {
            let (forecaster, stored) =
                glaze::timeseries::experiment::load_checkpoint(backbone, path)
                    .map_err(|e| at(&e))?;
            Loaded::Forecast(Box::new(forecaster), Box::new(stored))
        }
        _ => {
            let encoder = AudioEncoder::load_default(device).map_err(|e| at(&e))?;
            let (aligner, _) = glaze::audio::experiment::load_aligner(backbone, &encoder, path)
                .map_err(|e| at(&e))?;
            Loaded::Audio(aligner, encoder)
        }
    };
    let kind = match loaded {
        Loaded::Vision(..) => Some(PartKind::Image),
        Loaded::Speech(..) | Loaded::Audio(..) => Some(PartKind::Audio),
        Loaded::Forecast(..) => None,
    };
    Ok(Served {
        name: spec.name.clone(),
        kind,
        loaded,
    })
}
