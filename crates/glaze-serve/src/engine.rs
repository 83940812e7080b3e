//! The engine thread: it owns the frozen backbone and the adapters, takes jobs from the
//! bounded queue one at a time, turns each part into soft tokens through its adapter, splices
//! them into the rendered chat and generates, sending events back to the HTTP handler.
//!
//! Burn tensors never leave this thread; handlers only see [`Event`]s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::prelude::Device;
use glaze::audio::tasks::{AudioItem, AudioPipeline};
use glaze::audio::{AptAligner, AudioEncoder, AudioLimits};
use glaze::core::generate_until;
use glaze::core::{ChatMessage, FinishReason, GenerationConfig, PromptTemplate, SoftTokens};
use glaze::llm::LanguageModel;
use glaze::speech::{SpeechAdapter, SpeechPipeline};
use glaze::timeseries::{Forecaster, StoredConfig};
use glaze::train::{Checkpoint, FeatureBank, Modality, encode_bank};
use glaze::vision::{DecodeLimits, VisionAdapter, VisionEncoder, VisionPipeline, VqaItem};
use glaze::{FrozenBackbone, TextCodec};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{ApiError, ServeError};
use crate::metrics::Metrics;
use crate::stop::StopFilter;
use crate::wire::{Chat, Completion, ForecastRequest, Media, PartKind, Usage};

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

enum Loaded {
    Vision(VisionAdapter, VisionEncoder),
    Speech(SpeechAdapter, AudioEncoder),
    Audio(AptAligner, AudioEncoder),
    Forecast(Box<Forecaster>, Box<StoredConfig>),
}

/// A loaded adapter and what it serves.
pub struct Served {
    name: String,
    /// The chat part type it turns into soft tokens (None: a forecaster).
    kind: Option<PartKind>,
    loaded: Loaded,
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
    lm: LanguageModel,
    served: Vec<Served>,
    info: ModelInfo,
    default_temperature: f64,
    default_max_tokens: usize,
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
    pub fn load(
        model: Option<&Path>,
        model_id: Option<String>,
        adapters: &[AdapterSpec],
        default_temperature: f64,
        default_max_tokens: usize,
    ) -> Result<Engine, ServeError> {
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
            default_temperature,
            default_max_tokens,
        })
    }

    /// What is loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Runs jobs until the queue's senders are gone.
    pub fn run(self, jobs: std::sync::mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
        for job in jobs {
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            metrics.running.store(1, Ordering::Relaxed);
            self.answer(job, &metrics);
            metrics.running.store(0, Ordering::Relaxed);
        }
    }

    fn answer(&self, job: Job, metrics: &Metrics) {
        let Job {
            input,
            events,
            deadline,
            timeout_secs,
        } = job;
        if Instant::now() > deadline {
            let _ = events.send(Event::Failed(ApiError::timeout(timeout_secs)));
            return;
        }
        let built = match &input {
            Input::Chat(chat) => self.prompt(chat),
            Input::Completion(c) => self.completion_prompt(c),
            Input::Forecast(f) => {
                let _ = events.send(match self.forecast(f) {
                    Ok((values, input_len)) => Event::Forecast { values, input_len },
                    Err(e) => Event::Failed(e),
                });
                return;
            }
        };
        let Some(sampling) = input.sampling() else {
            return;
        };
        let (prompt, soft_tokens) = match built {
            Ok(p) => p,
            Err(e) => {
                let _ = events.send(Event::Failed(e));
                return;
            }
        };
        let context = self.info.context_length;
        let prompt_len =
            match glaze::core::embed_prompt(&self.lm.llama, &self.lm.tokenizer, &prompt) {
                Ok(e) => e.len(),
                Err(e) => {
                    let _ = events.send(Event::Failed(core_error(e)));
                    return;
                }
            };
        let room = context.saturating_sub(prompt_len);
        let max_new = match sampling.max_tokens {
            Some(m) if m > room => {
                let _ = events.send(Event::Failed(ApiError::invalid(
                    "context_length_exceeded",
                    "max_tokens",
                    format!(
                        "the prompt takes {prompt_len} positions ({soft_tokens} soft tokens) and \
                         max_tokens asks for {m} more; the context holds {context}"
                    ),
                )));
                return;
            }
            Some(m) => m,
            None => self.default_max_tokens.min(room),
        };
        if max_new == 0 {
            let _ = events.send(Event::Failed(ApiError::invalid(
                "context_length_exceeded",
                "messages",
                format!("the prompt takes {prompt_len} positions; the context holds {context}"),
            )));
            return;
        }
        let config = GenerationConfig::new()
            .with_max_new_tokens(max_new)
            .with_temperature(sampling.temperature.unwrap_or(self.default_temperature))
            .with_top_p(sampling.top_p.unwrap_or(1.0))
            .with_seed(sampling.seed.unwrap_or(0));
        let _ = events.send(Event::Started);
        let mut stop = StopFilter::new(sampling.stop.clone());
        let mut seen = 0usize;
        let mut timed_out = false;
        let started = Instant::now();
        let result = generate_until(
            &self.lm.llama,
            &self.lm.tokenizer,
            &prompt,
            &config,
            |text| {
                seen += text.len();
                if events.is_closed() {
                    return false;
                }
                if Instant::now() > deadline {
                    timed_out = true;
                    return false;
                }
                let (out, hit) = stop.push(text);
                if !out.is_empty() {
                    let _ = events.send(Event::Text(out));
                }
                !hit
            },
        );
        let g = match result {
            Ok(g) => g,
            Err(e) => {
                let _ = events.send(Event::Failed(core_error(e)));
                return;
            }
        };
        metrics.record_generation(prompt_len, g.ids.len(), started.elapsed().as_secs_f64());
        if events.is_closed() {
            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if timed_out {
            let _ = events.send(Event::Failed(ApiError::timeout(timeout_secs)));
            return;
        }
        // Text the callback did not see (the end of a multi-byte character).
        if g.text.len() > seen {
            let (out, _) = stop.push(&g.text[seen..]);
            if !out.is_empty() {
                let _ = events.send(Event::Text(out));
            }
        }
        let rest = stop.finish();
        if !rest.is_empty() {
            let _ = events.send(Event::Text(rest));
        }
        let finish = match g.finish {
            FinishReason::Length if !stop.hit() => "length",
            _ => "stop",
        };
        let _ = events.send(Event::Done {
            finish,
            usage: Usage {
                prompt_tokens: prompt_len,
                soft_tokens,
                completion_tokens: g.ids.len(),
            },
        });
    }

    /// The adapter that serves `kind` for this request: the one the model name picks
    /// (`<id>+<name>` or `<name>`), else the first loaded for the kind.
    fn adapter_for(&self, kind: PartKind, model: Option<&str>) -> Option<&Served> {
        let picked = model.and_then(|m| {
            let name = m.rsplit_once('+').map_or(m, |(_, n)| n);
            self.served
                .iter()
                .find(|s| s.name == name && s.kind == Some(kind))
        });
        picked.or_else(|| self.served.iter().find(|s| s.kind == Some(kind)))
    }

    /// A forecast from the last `L` values of the history, in the series' units, cut to the
    /// requested horizon.
    fn forecast(&self, f: &ForecastRequest) -> Result<(Vec<f32>, usize), ApiError> {
        let picked = f
            .model
            .as_deref()
            .map(|m| m.rsplit_once('+').map_or(m, |(_, n)| n));
        let forecasters = self.served.iter().filter_map(|s| match &s.loaded {
            Loaded::Forecast(model, stored) => Some((s.name.as_str(), model, stored)),
            _ => None,
        });
        let mut forecasters = forecasters.peekable();
        let (_, model, stored) = forecasters
            .clone()
            .find(|(name, _, _)| Some(*name) == picked)
            .or_else(|| forecasters.next())
            .ok_or_else(|| {
                ApiError::invalid(
                    "no_adapter",
                    "model",
                    "no forecaster is loaded (start the server with --adapter forecast=FILE)"
                        .into(),
                )
            })?;
        let (l, h) = (stored.window.input_len, stored.window.horizon);
        if f.values.len() < l {
            return Err(ApiError::unprocessable(
                "series_too_short",
                "values",
                format!(
                    "the forecaster reads {l} values; the request sends {}",
                    f.values.len()
                ),
            ));
        }
        let horizon = f.horizon.unwrap_or(h);
        if horizon > h {
            return Err(ApiError::invalid(
                "invalid_field",
                "horizon",
                format!("the forecaster predicts {h} steps; the request asks for {horizon}"),
            ));
        }
        let c = stored.columns.len().saturating_sub(1);
        let input = stored.scaler.transform(c, &f.values[f.values.len() - l..]);
        let pipeline = glaze::timeseries::Pipeline::new(
            &self.lm.llama,
            &self.lm.tokenizer,
            stored.model.clone(),
            stored.description.clone(),
            None,
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let predicted: Vec<f32> = pipeline
            .predict(model, &[&input], self.lm.llama.device())
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ApiError::internal(format!("{e:?}")))?;
        let mut values = stored.scaler.inverse(c, &predicted);
        values.truncate(horizon);
        Ok((values, l))
    }

    /// The prompt of a completion request: its embedding rows, then its text (no template).
    fn completion_prompt(&self, c: &Completion) -> Result<(glaze::core::Prompt, usize), ApiError> {
        let mut prompt = glaze::core::Prompt::new();
        let mut soft = 0;
        if let Some((values, rows)) = &c.embeds {
            let d = values.len() / rows;
            let t = burn::Tensor::<2>::from_data(
                burn::tensor::TensorData::new(values.clone(), [*rows, d]),
                self.lm.llama.device(),
            );
            prompt = prompt.soft(SoftTokens::new(t));
            soft = *rows;
        }
        if let Some(text) = c.prompt.as_deref().filter(|t| !t.is_empty()) {
            prompt = prompt.text(text);
        }
        Ok((prompt, soft))
    }

    /// The prompt of a chat, and how many soft tokens it holds.
    fn prompt(&self, chat: &Chat) -> Result<(glaze::core::Prompt, usize), ApiError> {
        let device = self.lm.llama.device().clone();
        let mut bindings: Vec<(&'static str, SoftTokens)> = Vec::new();
        let mut systems: BTreeMap<&str, ()> = BTreeMap::new();
        for m in &chat.messages {
            // The message's text without its markers: the instruction an adapter may condition
            // on (APT, InstructBLIP).
            let question = [PartKind::Image, PartKind::Audio, PartKind::Series]
                .iter()
                .fold(m.text.clone(), |t, k| t.replace(k.marker(), ""))
                .trim()
                .to_string();
            for part in &m.parts {
                let kind = part.media.kind();
                let served = self.adapter_for(kind, chat.model.as_deref()).ok_or_else(|| {
                    ApiError::invalid(
                        "no_adapter",
                        part.param.clone(),
                        format!(
                            "no adapter serves {} parts on this server (start it with --adapter {}=FILE)",
                            kind.wire_name(),
                            match kind {
                                PartKind::Image => "vision",
                                PartKind::Audio => "speech",
                                PartKind::Series => "series",
                            }
                        ),
                    )
                })?;
                systems.insert(system_line(&served.loaded), ());
                let soft =
                    self.soft_tokens(served, &part.media, &part.param, &question, &device)?;
                bindings.push((kind.marker(), soft));
            }
        }
        let soft_tokens = bindings.iter().map(|(_, s)| s.len()).sum();
        let mut messages: Vec<ChatMessage> = chat
            .messages
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.text.clone()))
            .collect();
        // Without a system message, the one the (single) adapter family was trained under.
        if !messages.iter().any(|m| m.role == "system")
            && let [(line, ())] = systems.into_iter().collect::<Vec<_>>()[..]
        {
            messages.insert(0, ChatMessage::new("system", line));
        }
        let text = self
            .lm
            .tokenizer
            .render_chat(&messages, true)
            .map_err(core_error)?;
        let template = PromptTemplate::new(text);
        let prompt = template.fill(bindings).map_err(|e| match e {
            glaze::core::Error::PlaceholderMismatch {
                placeholder,
                placeholders,
                provided,
            } => ApiError::unprocessable(
                "placeholder_mismatch",
                "messages",
                format!(
                    "the text holds {placeholders} `{placeholder}` placeholder(s) but the \
                     request sends {provided} such part(s)"
                ),
            ),
            other => core_error(other),
        })?;
        Ok((prompt, soft_tokens))
    }

    fn soft_tokens(
        &self,
        served: &Served,
        media: &Media,
        param: &str,
        question: &str,
        device: &Device,
    ) -> Result<SoftTokens, ApiError> {
        let backbone = &self.lm.llama;
        let codec = &self.lm.tokenizer;
        let corrupt = |e: &dyn std::fmt::Display| {
            ApiError::unprocessable("invalid_media", param.to_string(), e.to_string())
        };
        let name = Path::new(param);
        let run = match (&served.loaded, media) {
            (Loaded::Vision(adapter, encoder), Media::Image(bytes)) => {
                let image = glaze::vision::decode_bytes(bytes, name, &DecodeLimits::default())
                    .map_err(|e| corrupt(&e))?;
                let bank = one_input_bank(encoder, image, device)?;
                let item = VqaItem {
                    image: 0,
                    question: question.to_string(),
                    answer: String::new(),
                };
                let pipeline = VisionPipeline { backbone, codec };
                let t = pipeline
                    .soft_tokens(adapter, &bank, &[&item], device)
                    .map_err(core_error)?;
                SoftTokens::from_batch(t).into_iter().next()
            }
            (Loaded::Speech(adapter, encoder), Media::Audio { bytes, format }) => {
                let bank = audio_bank(encoder, bytes, format, name, device, &corrupt)?;
                let pipeline = SpeechPipeline { backbone, codec };
                pipeline
                    .soft_tokens(adapter, &bank, &[0], device)
                    .into_iter()
                    .next()
            }
            (Loaded::Audio(aligner, encoder), Media::Audio { bytes, format }) => {
                let bank = audio_bank(encoder, bytes, format, name, device, &corrupt)?;
                let item = AudioItem {
                    task: "serve".into(),
                    clips: vec![0],
                    question: format!("{}\n{question}", glaze::audio::tasks::MARKER),
                    answer: String::new(),
                };
                let pipeline = AudioPipeline { backbone, codec };
                pipeline
                    .soft_tokens(aligner, &bank, &[&item], device)
                    .map_err(core_error)?
                    .into_iter()
                    .flatten()
                    .next()
            }
            _ => None,
        };
        run.filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_media",
                param.to_string(),
                "the part gave no soft tokens (too short?)".into(),
            )
        })
    }
}

fn system_line(loaded: &Loaded) -> &'static str {
    match loaded {
        Loaded::Vision(..) => glaze::vision::task::SYSTEM,
        Loaded::Speech(..) => glaze::speech::asr::SYSTEM,
        Loaded::Audio(..) | Loaded::Forecast(..) => glaze::audio::tasks::SYSTEM,
    }
}

/// A one-input feature bank (no cache: request inputs are not kept).
fn one_input_bank<E: glaze::Encoder>(
    encoder: &E,
    input: E::Input,
    device: &Device,
) -> Result<FeatureBank, ApiError>
where
    E::Input: Clone,
{
    encode_bank(
        encoder,
        None,
        1,
        1,
        |_| Ok::<_, glaze::core::Error>(Vec::new()),
        |_, _| Ok(input.clone()),
        device,
    )
    .map_err(core_error)
}

/// One clip decoded (at most 30 s, Whisper's window) and encoded.
fn audio_bank(
    encoder: &AudioEncoder,
    bytes: &[u8],
    format: &str,
    name: &Path,
    device: &Device,
    corrupt: &dyn Fn(&dyn std::fmt::Display) -> ApiError,
) -> Result<FeatureBank, ApiError> {
    let limits = AudioLimits { max_seconds: 30.0 };
    // `name.with_extension` would replace `.content[0]`: the format is appended instead.
    let hinted = PathBuf::from(format!("{}.{format}", name.display()));
    let audio = glaze::whisper::decode_bytes(bytes, &hinted, &limits).map_err(|e| corrupt(&e))?;
    glaze::whisper::encode_clips(encoder, None, &[(Vec::new(), audio)], device)
        .map_err(|e| corrupt(&e))
}

/// A library error on a valid request.
fn core_error(e: glaze::core::Error) -> ApiError {
    match e {
        glaze::core::Error::ContextOverflow { len, max } => ApiError::invalid(
            "context_length_exceeded",
            "messages",
            format!("the prompt takes {len} positions; the context holds {max}"),
        ),
        other => ApiError::internal(other.to_string()),
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
