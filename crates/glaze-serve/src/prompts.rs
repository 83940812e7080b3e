//! Requests into prompts: the chat rendered with the model's template, each media part turned
//! into soft tokens by the adapter that serves it; completions' text and embedding rows; and
//! forecasts, which need no generation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use glaze::audio::AudioEncoder;
use glaze::audio::AudioLimits;
use glaze::audio::tasks::{AudioItem, AudioPipeline};
use glaze::core::{ChatMessage, PromptTemplate, SoftTokens};
use glaze::speech::SpeechPipeline;
use glaze::train::{FeatureBank, encode_bank};
use glaze::vision::{DecodeLimits, VisionPipeline, VqaItem};
use glaze::{FrozenBackbone, TextCodec};

use crate::engine::{Engine, Loaded, Served};
use crate::error::ApiError;
use crate::wire::{Chat, Completion, ForecastRequest, Media, PartKind};

impl Engine {
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
    pub(crate) fn forecast(&self, f: &ForecastRequest) -> Result<(Vec<f32>, usize), ApiError> {
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
    pub(crate) fn completion_prompt(
        &self,
        c: &Completion,
    ) -> Result<(glaze::core::Prompt, usize), ApiError> {
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
    pub(crate) fn prompt(&self, chat: &Chat) -> Result<(glaze::core::Prompt, usize), ApiError> {
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
pub(crate) fn core_error(e: glaze::core::Error) -> ApiError {
    match e {
        glaze::core::Error::ContextOverflow { len, max } => ApiError::invalid(
            "context_length_exceeded",
            "messages",
            format!("the prompt takes {len} positions; the context holds {max}"),
        ),
        other => ApiError::internal(other.to_string()),
    }
}
