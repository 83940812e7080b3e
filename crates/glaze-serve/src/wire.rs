//! The OpenAI chat wire format: the request as clients send it, checked field by field into a
//! [`Chat`] (and the completion and forecast requests); the response bodies are in `body.rs`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

pub use crate::body::{Usage, chunk, completion, text_completion};

/// Limits on what one request may carry (checked before anything is decoded).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest decoded image or audio part, bytes.
    pub max_part_bytes: usize,
    /// Most non-text parts in one request.
    pub max_parts: usize,
    /// Most values in one series part.
    pub max_series_len: usize,
    /// Local image files may be named (`file://` or a plain path) only under this directory.
    pub allow_dir: Option<std::path::PathBuf>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_part_bytes: 16 << 20,
            max_parts: 8,
            max_series_len: 10_000,
            allow_dir: None,
        }
    }
}

/// The fields of a chat request Glaze reads; others (`user`, `stream_options`, …) are ignored
/// as OpenAI's optional extras.
#[derive(Debug, Deserialize)]
struct RawChat {
    model: Option<String>,
    messages: Vec<RawMessage>,
    #[serde(flatten)]
    sampling: RawSampling,
}

/// The generation settings both endpoints share.
#[derive(Debug, Deserialize)]
struct RawSampling {
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<i64>,
    stop: Option<Value>,
    n: Option<u64>,
    #[serde(default)]
    stream: bool,
}

/// A `/v1/completions` request: text and/or precomputed input embeddings.
#[derive(Debug, Deserialize)]
struct RawCompletion {
    model: Option<String>,
    prompt: Option<Value>,
    prompt_embeds: Option<Value>,
    #[serde(default)]
    echo: bool,
    suffix: Option<String>,
    #[serde(flatten)]
    sampling: RawSampling,
}

#[derive(Debug, Deserialize)]
struct RawMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// What a non-text part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKind {
    /// `image_url`.
    Image,
    /// `input_audio`.
    Audio,
    /// Glaze's `series` extension part.
    Series,
}

impl PartKind {
    /// The placeholder that positions this part in a message's text.
    pub fn marker(self) -> &'static str {
        match self {
            PartKind::Image => "<image>",
            PartKind::Audio => "<audio>",
            PartKind::Series => "<series>",
        }
    }

    /// The part's `type` on the wire.
    pub fn wire_name(self) -> &'static str {
        match self {
            PartKind::Image => "image_url",
            PartKind::Audio => "input_audio",
            PartKind::Series => "series",
        }
    }
}

/// One non-text part, its bytes decoded from base64 but not yet decoded as media.
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    /// Encoded image bytes (PNG, JPEG, …).
    Image(Vec<u8>),
    /// Encoded audio bytes and their format (`wav`, `mp3`, `flac`, `ogg`).
    Audio {
        /// The file bytes.
        bytes: Vec<u8>,
        /// The container format.
        format: String,
    },
    /// Series values (finite), oldest first.
    Series(Vec<f32>),
}

impl Media {
    /// Its kind.
    pub fn kind(&self) -> PartKind {
        match self {
            Media::Image(_) => PartKind::Image,
            Media::Audio { .. } => PartKind::Audio,
            Media::Series(_) => PartKind::Series,
        }
    }
}

/// A part together with the request field it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The decoded part.
    pub media: Media,
    /// Where it is in the request, e.g. `messages[0].content[1]`.
    pub param: String,
}

/// One message: its text with a marker where each part goes, and the parts in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text; markers (`<image>`, `<audio>`, `<series>`) place the parts.
    pub text: String,
    /// The message's parts, in the order of their markers.
    pub parts: Vec<Part>,
}

/// A checked chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    /// The `model` asked for (None: the server's default).
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// How to generate.
    pub sampling: Sampling,
}

/// A checked `/v1/completions` request: `prompt_embeds` rows first, then the prompt text, with
/// no chat template (as OpenAI's completions API).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The `model` asked for.
    pub model: Option<String>,
    /// Input embeddings `[rows, d_model]`, row-major, finite.
    pub embeds: Option<(Vec<f32>, usize)>,
    /// Text after the embeddings.
    pub prompt: Option<String>,
    /// How to generate.
    pub sampling: Sampling,
}

/// A checked `/v1/forecast` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRequest {
    /// The `model` asked for.
    pub model: Option<String>,
    /// The history, oldest first, in the series' own units.
    pub values: Vec<f32>,
    /// Steps to return (None: the checkpoint's horizon).
    pub horizon: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct RawForecast {
    model: Option<String>,
    values: Value,
    horizon: Option<u64>,
}

/// Parses and checks a `/v1/forecast` body: `{"values": [...], "horizon": H}`.
pub fn parse_forecast(body: &[u8], limits: &Limits) -> Result<ForecastRequest, ApiError> {
    let raw: RawForecast = serde_json::from_slice(body).map_err(body_error("forecast request"))?;
    let values = finite_values(&raw.values, "values", limits)?;
    if raw.horizon == Some(0) {
        return Err(ApiError::invalid(
            "invalid_field",
            "horizon",
            "horizon must be at least 1".into(),
        ));
    }
    Ok(ForecastRequest {
        model: raw.model,
        values,
        horizon: raw
            .horizon
            .map(|h| usize::try_from(h).unwrap_or(usize::MAX)),
    })
}

/// Generation settings of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// `max_completion_tokens` or `max_tokens`.
    pub max_tokens: Option<usize>,
    /// Sampling temperature (None: the server's default).
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Sampler seed.
    pub seed: Option<u64>,
    /// Stop strings (at most 4, as OpenAI).
    pub stop: Vec<String>,
    /// Stream server-sent events.
    pub stream: bool,
}

impl Chat {
    /// Parts of all messages.
    pub fn parts(&self) -> impl Iterator<Item = &Part> {
        self.messages.iter().flat_map(|m| m.parts.iter())
    }
}

fn body_error(what: &str) -> impl Fn(serde_json::Error) -> ApiError + '_ {
    move |e| {
        let code = if e.is_data() {
            "invalid_field"
        } else {
            "invalid_json"
        };
        ApiError::invalid(
            code,
            "body",
            format!("the request body is not a valid {what}: {e}"),
        )
    }
}

/// Parses and checks a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8], limits: &Limits) -> Result<Chat, ApiError> {
    let raw: RawChat = serde_json::from_slice(body).map_err(body_error("chat request"))?;
    let sampling = parse_sampling(raw.sampling)?;
    if raw.messages.is_empty() {
        return Err(ApiError::invalid(
            "invalid_field",
            "messages",
            "messages is empty: send at least one message".into(),
        ));
    }
    let mut parts_seen = 0;
    let messages = raw
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m, limits, &mut parts_seen))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Chat {
        model: raw.model,
        messages,
        sampling,
    })
}

/// Parses and checks a `/v1/completions` body; `prompt_embeds` (base64 of little-endian f32)
/// must hold whole rows of `d_model` finite values.
pub fn parse_completion(
    body: &[u8],
    limits: &Limits,
    d_model: usize,
) -> Result<Completion, ApiError> {
    let raw: RawCompletion =
        serde_json::from_slice(body).map_err(body_error("completion request"))?;
    let sampling = parse_sampling(raw.sampling)?;
    let unsupported = |field: &str, why: &str| {
        ApiError::invalid("unsupported_value", field, format!("{field}: {why}"))
    };
    if raw.echo {
        return Err(unsupported("echo", "echoing the prompt is not supported"));
    }
    if raw.suffix.is_some() {
        return Err(unsupported(
            "suffix",
            "insertion after a suffix is not supported",
        ));
    }
    let prompt = match raw.prompt {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().map(str::to_string)
        }
        Some(_) => {
            return Err(unsupported(
                "prompt",
                "one string per request (token-id and batched prompts are not supported)",
            ));
        }
    };
    let embeds = match raw.prompt_embeds {
        None | Some(Value::Null) => None,
        Some(Value::String(data)) => {
            let bytes = decode_base64(&data, "prompt_embeds", limits.max_part_bytes)?;
            Some(embedding_rows(&bytes, d_model)?)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_field",
                "prompt_embeds",
                "prompt_embeds must be base64 text of little-endian f32 values".into(),
            ));
        }
    };
    if prompt.as_deref().is_none_or(str::is_empty) && embeds.is_none() {
        return Err(ApiError::invalid(
            "invalid_field",
            "prompt",
            "send a prompt, prompt_embeds, or both".into(),
        ));
    }
    Ok(Completion {
        model: raw.model,
        embeds,
        prompt,
        sampling,
    })
}

/// Little-endian f32 bytes as `[rows, d_model]`, checked.
fn embedding_rows(bytes: &[u8], d_model: usize) -> Result<(Vec<f32>, usize), ApiError> {
    let bad = |why: String| ApiError::invalid("invalid_shape", "prompt_embeds", why);
    if !bytes.len().is_multiple_of(4) {
        return Err(bad(format!(
            "{} bytes is not a whole number of f32 values",
            bytes.len()
        )));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if values.is_empty() || !values.len().is_multiple_of(d_model) {
        return Err(bad(format!(
            "{} values are not whole rows of the model's width {d_model}",
            values.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!(
            "value {i} (row {}, column {}) is not finite",
            i / d_model,
            i % d_model
        )));
    }
    let rows = values.len() / d_model;
    Ok((values, rows))
}

fn parse_sampling(raw: RawSampling) -> Result<Sampling, ApiError> {
    if let Some(n) = raw.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid(
            "unsupported_value",
            "n",
            format!("n = {n}: this server returns one choice per request (n = 1)"),
        ));
    }
    let max_tokens = match (raw.max_completion_tokens, raw.max_tokens) {
        (Some(m), _) => Some(("max_completion_tokens", m)),
        (None, Some(m)) => Some(("max_tokens", m)),
        (None, None) => None,
    };
    if let Some((field, 0)) = max_tokens {
        return Err(ApiError::invalid(
            "invalid_field",
            field,
            format!("{field} must be at least 1"),
        ));
    }
    if let Some(t) = raw.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        return Err(ApiError::invalid(
            "invalid_field",
            "temperature",
            format!("temperature {t} is outside 0–2"),
        ));
    }
    if let Some(p) = raw.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        return Err(ApiError::invalid(
            "invalid_field",
            "top_p",
            format!("top_p {p} is outside (0, 1]"),
        ));
    }
    let stop = parse_stop(raw.stop)?;
    Ok(Sampling {
        max_tokens: max_tokens.map(|(_, m)| usize::try_from(m).unwrap_or(usize::MAX)),
        temperature: raw.temperature,
        top_p: raw.top_p,
        // OpenAI seeds are signed; the sampler takes the bits.
        seed: raw.seed.map(|s| s as u64),
        stop,
        stream: raw.stream,
    })
}

fn parse_stop(stop: Option<Value>) -> Result<Vec<String>, ApiError> {
    let bad = |why: &str| ApiError::invalid("invalid_field", "stop", format!("stop {why}"));
    let list = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad("must be a string or a list of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("must be a string or a list of strings")),
    };
    if list.len() > 4 {
        return Err(bad("holds more than 4 strings"));
    }
    if list.iter().any(String::is_empty) {
        return Err(bad("holds an empty string"));
    }
    Ok(list)
}

fn parse_message(
    i: usize,
    m: RawMessage,
    limits: &Limits,
    parts_seen: &mut usize,
) -> Result<Message, ApiError> {
    let param = format!("messages[{i}]");
    if !matches!(
        m.role.as_str(),
        "system" | "developer" | "user" | "assistant"
    ) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("{param}.role"),
            format!(
                "role `{}` is not one of system, developer, user, assistant",
                m.role
            ),
        ));
    }
    // OpenAI's `developer` role is the system role of newer models.
    let role = if m.role == "developer" {
        "system".to_string()
    } else {
        m.role
    };
    let items = match m.content {
        Value::String(text) => {
            return Ok(Message {
                role,
                text,
                parts: Vec::new(),
            });
        }
        Value::Null if role == "assistant" => Vec::new(),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid(
                "invalid_field",
                format!("{param}.content"),
                "content must be a string or a list of parts".into(),
            ));
        }
    };
    let mut texts: Vec<String> = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    // Each part's place in the text, in case the text does not place them itself.
    let mut auto: Vec<String> = Vec::new();
    for (j, item) in items.into_iter().enumerate() {
        let param = format!("{param}.content[{j}]");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind == "text" {
            let text = item.get("text").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_field",
                    format!("{param}.text"),
                    "a text part needs a string `text`".into(),
                )
            })?;
            texts.push(text.to_string());
            auto.push(text.to_string());
            continue;
        }
        let media = match kind {
            "image_url" => parse_image(&item, &param, limits)?,
            "input_audio" => parse_audio(&item, &param, limits)?,
            "series" => parse_series(&item, &param, limits)?,
            "" => {
                return Err(ApiError::invalid(
                    "invalid_field",
                    format!("{param}.type"),
                    "a content part needs a `type`".into(),
                ));
            }
            other => {
                return Err(ApiError::invalid(
                    "unsupported_part",
                    format!("{param}.type"),
                    format!(
                        "part type `{other}` is not supported (text, image_url, input_audio, series)"
                    ),
                ));
            }
        };
        *parts_seen += 1;
        if *parts_seen > limits.max_parts {
            return Err(ApiError::invalid(
                "too_many_parts",
                param,
                format!(
                    "the request has more than {} image, audio or series parts",
                    limits.max_parts
                ),
            ));
        }
        auto.push(media.kind().marker().to_string());
        parts.push(Part { media, param });
    }
    let joined = texts.join("\n");
    let placed = [PartKind::Image, PartKind::Audio, PartKind::Series]
        .iter()
        .any(|k| joined.contains(k.marker()));
    // Markers in the text place the parts (their counts are checked when the prompt is
    // built); otherwise each part goes where it stands among the text parts.
    let text = if placed { joined } else { auto.join("\n") };
    Ok(Message { role, text, parts })
}

/// Base64 text decoded, refusing more than `max` bytes before decoding.
fn decode_base64(data: &str, param: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    let data = data.trim();
    if data.len() / 4 * 3 > max {
        return Err(ApiError::too_large(
            param,
            format!(
                "the part decodes to about {} bytes; the limit is {max}",
                data.len() / 4 * 3
            ),
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::invalid("invalid_base64", param, format!("invalid base64: {e}")))
}

fn parse_image(item: &Value, param: &str, limits: &Limits) -> Result<Media, ApiError> {
    let url_param = format!("{param}.image_url.url");
    // Clients send `{"image_url": {"url": …}}`; some send the URL string itself.
    let url = item
        .get("image_url")
        .and_then(|v| v.get("url").or(Some(v)))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_field",
                url_param.clone(),
                "an image_url part needs `image_url.url`".into(),
            )
        })?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest.split_once(',').ok_or_else(|| {
            ApiError::invalid(
                "invalid_data_url",
                url_param.clone(),
                "a data URL needs a `,` before its data".into(),
            )
        })?;
        if !header.ends_with(";base64") {
            return Err(ApiError::invalid(
                "invalid_data_url",
                url_param,
                "only base64 data URLs are accepted (data:image/…;base64,…)".into(),
            ));
        }
        return Ok(Media::Image(decode_base64(
            data,
            &url_param,
            limits.max_part_bytes,
        )?));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::invalid(
            "remote_url",
            url_param,
            "this server does not fetch remote URLs; send the image as a data URL".into(),
        ));
    }
    let path = std::path::Path::new(url.strip_prefix("file://").unwrap_or(url));
    read_local(path, &url_param, limits).map(Media::Image)
}

/// A local file under the operator's allowed directory.
fn read_local(path: &std::path::Path, param: &str, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    let Some(dir) = &limits.allow_dir else {
        return Err(ApiError::invalid(
            "local_path_refused",
            param,
            "local paths are refused (the server was not started with --allow-dir); send a data URL"
                .into(),
        ));
    };
    let refused = || {
        ApiError::invalid(
            "local_path_refused",
            param,
            format!(
                "{} is not a file under the allowed directory",
                path.display()
            ),
        )
    };
    let file = dir.join(path).canonicalize().map_err(|_| refused())?;
    let root = dir.canonicalize().map_err(|_| refused())?;
    if !file.starts_with(&root) || !file.is_file() {
        return Err(refused());
    }
    let size = std::fs::metadata(&file).map_err(|_| refused())?.len();
    if size > limits.max_part_bytes as u64 {
        return Err(ApiError::too_large(
            param,
            format!(
                "{} has {size} bytes; the limit is {}",
                path.display(),
                limits.max_part_bytes
            ),
        ));
    }
    std::fs::read(&file).map_err(|_| refused())
}

fn parse_audio(item: &Value, param: &str, limits: &Limits) -> Result<Media, ApiError> {
    let audio = item.get("input_audio").ok_or_else(|| {
        ApiError::invalid(
            "invalid_field",
            format!("{param}.input_audio"),
            "an input_audio part needs `input_audio: {data, format}`".into(),
        )
    })?;
    let format = audio
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(format.as_str(), "wav" | "mp3" | "flac" | "ogg") {
        return Err(ApiError::invalid(
            "unsupported_format",
            format!("{param}.input_audio.format"),
            format!("audio format `{format}` is not one of wav, mp3, flac, ogg"),
        ));
    }
    let data_param = format!("{param}.input_audio.data");
    let data = audio.get("data").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(
            "invalid_field",
            data_param.clone(),
            "input_audio.data must be base64 text".into(),
        )
    })?;
    let bytes = decode_base64(data, &data_param, limits.max_part_bytes)?;
    Ok(Media::Audio { bytes, format })
}

fn parse_series(item: &Value, param: &str, limits: &Limits) -> Result<Media, ApiError> {
    let values = item
        .get("series")
        .and_then(|s| s.get("values"))
        .unwrap_or(&Value::Null);
    finite_values(values, &format!("{param}.series.values"), limits).map(Media::Series)
}

/// A non-empty list of finite numbers, at most `limits.max_series_len` long.
fn finite_values(values: &Value, param: &str, limits: &Limits) -> Result<Vec<f32>, ApiError> {
    let values = values.as_array().ok_or_else(|| {
        ApiError::invalid(
            "invalid_field",
            param,
            format!("{param} must be a list of numbers"),
        )
    })?;
    if values.len() > limits.max_series_len {
        return Err(ApiError::too_large(
            param,
            format!(
                "the series has {} values; the limit is {}",
                values.len(),
                limits.max_series_len
            ),
        ));
    }
    let values = values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            // JSON has no NaN; clients that send one send `null` or a string.
            v.as_f64()
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_value",
                        format!("{param}[{k}]"),
                        format!("series value {v} is not a finite number"),
                    )
                })
        })
        .collect::<Result<Vec<f32>, _>>()?;
    if values.is_empty() {
        return Err(ApiError::invalid(
            "invalid_field",
            param,
            "the series is empty".into(),
        ));
    }
    Ok(values)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
