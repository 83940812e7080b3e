//! `glaze-serve` over real sockets: the server is started on a free port with the fetched
//! SmolLM2, DINOv2 and Whisper tiny.en, and an untrained vision adapter and speech adapter
//! written for them; requests go through a plain HTTP/1.1 client. Answers are compared with
//! what the library computes for the same inputs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use burn::prelude::*;
use glaze::core::{FrozenBackbone, export_params};
use glaze::speech::SpeechAdapterConfig;
use glaze::train::{AdapterConfig, Checkpoint, adapter_identity};
use glaze::vision::{VisionAdapterConfig, VisionEncoder};
use glaze::whisper::AudioEncoder;
use glaze_serve::{AdapterSpec, ServeConfig, Server};
use glaze_tests::{shared_dir, smollm2};
use serde_json::{Value, json};

const QUESTION: &str = "What does the picture show?";

/// An untrained adapter of `config` for `backbone`, saved where a run would put it.
fn write_adapter<C: AdapterConfig>(
    config: &C,
    encoder: Option<&glaze::core::EncoderSpec>,
    backbone: &dyn FrozenBackbone,
    path: &Path,
) where
    C::Error: std::fmt::Debug,
{
    let adapter = config
        .build(encoder, backbone, backbone.device())
        .expect("builds");
    Checkpoint {
        identity: adapter_identity(config, encoder, backbone).expect("identity"),
        weights: export_params(&adapter),
        state: None,
        optimizer: Vec::new(),
    }
    .save(path)
    .expect("saves");
}

pub(crate) struct Fixture {
    pub(crate) addr: SocketAddr,
    vision: PathBuf,
    speech: PathBuf,
    forecast: PathBuf,
}

pub(crate) fn fixture_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glaze-serve-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The adapter files, written once.
fn adapters() -> &'static (PathBuf, PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let lm = smollm2();
        let device = Device::flex();
        let dir = fixture_dir();
        let vision = dir.join("vision.safetensors");
        let encoder = VisionEncoder::load_default(&device).expect("DINOv2 (cargo xtask fetch)");
        write_adapter(
            &VisionAdapterConfig::Mlp { pool: 4 },
            Some(glaze::Encoder::spec(&encoder)),
            &lm.llama,
            &vision,
        );
        let speech = dir.join("speech.safetensors");
        let audio = AudioEncoder::load_default(&device).expect("Whisper (cargo xtask fetch)");
        write_adapter(
            &SpeechAdapterConfig::FrameStack {
                stride: 4,
                hidden: 64,
            },
            Some(glaze::Encoder::spec(&audio)),
            &lm.llama,
            &speech,
        );
        let forecast = dir.join("forecast.safetensors");
        write_adapter(&forecaster(), None, &lm.llama, &forecast);
        (vision, speech, forecast)
    })
}

/// An (untrained) Time-LLM on 2 blocks of SmolLM2: 32 values in, 8 out, in units of mean 10
/// and deviation 2.
fn forecaster() -> glaze::timeseries::StoredConfig {
    use glaze::timeseries::{Channels, ModelKind, Scaler, SplitScheme, StoredConfig, WindowSpec};
    StoredConfig {
        model: glaze_tests::tiny_forecaster(ModelKind::TimeLlm, &smollm2().llama, 2),
        window: WindowSpec {
            input_len: 32,
            horizon: 8,
            scheme: SplitScheme::EttHourly,
            channels: Channels::Univariate,
            train_stride: 1,
            eval_stride: 1,
        },
        columns: vec!["OT".into()],
        scaler: Scaler {
            mean: vec![10.0],
            std: vec![2.0],
        },
        description: "A test series.".into(),
    }
}

pub(crate) fn start(config: ServeConfig) -> Server {
    let server = Server::start(ServeConfig { port: 0, ..config }).expect("starts");
    server.wait_ready().expect("loads");
    server
}

/// The shared server: both adapters, default limits.
pub(crate) fn fixture() -> &'static Fixture {
    static SERVER: OnceLock<Fixture> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (vision, speech, forecast) = adapters().clone();
        let server = start(ServeConfig {
            adapters: vec![
                AdapterSpec {
                    name: "vision".into(),
                    path: vision.clone(),
                },
                AdapterSpec {
                    name: "speech".into(),
                    path: speech.clone(),
                },
                AdapterSpec {
                    name: "forecast".into(),
                    path: forecast.clone(),
                },
            ],
            ..ServeConfig::default()
        });
        let addr = server.addr();
        // Serves for the rest of the test binary.
        std::mem::forget(server);
        Fixture {
            addr,
            vision,
            speech,
            forecast,
        }
    })
}

/// A response: status, headers (lower-case names), body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `error` object, checked for OpenAI's shape.
    fn error(&self) -> Value {
        let e = self.json()["error"].clone();
        assert!(e["message"].is_string() && e["type"].is_string(), "{e}");
        e
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("writes");
    // The server may answer (413) before reading all of a large body.
    let _ = s.write_all(body);
    s
}

/// Status line and headers of a response being read.
fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// The next piece of a chunked body (None at its end).
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut buf = vec![0; size + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(size);
    Some(buf)
}

pub(crate) fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut r = BufReader::new(send(addr, method, path, body));
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(&mut r) {
            body.extend(c);
        }
    } else {
        r.read_to_end(&mut body).expect("body");
    }
    Reply {
        status,
        headers,
        body,
    }
}

pub(crate) fn post_to(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    request(addr, "POST", path, body.to_string().as_bytes())
}

pub(crate) fn post(addr: SocketAddr, body: &Value) -> Reply {
    post_to(addr, "/v1/chat/completions", body)
}

/// The JSON body of a 200 answer (the body is shown when the status is another).
pub(crate) fn ok_json(reply: &Reply) -> Value {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// The `data:` payloads of an event stream.
fn events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A small PNG: a colour gradient.
pub(crate) fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(96, 80, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encodes");
    out.into_inner()
}

fn jfk() -> Vec<u8> {
    std::fs::read(shared_dir().join("data/speech/jfk.wav")).expect("jfk.wav in ../shared/data")
}

fn image_part(bytes: &[u8]) -> Value {
    json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(bytes))}})
}

fn audio_part(bytes: &[u8]) -> Value {
    json!({"type": "input_audio", "input_audio": {"data": b64(bytes), "format": "wav"}})
}

pub(crate) fn answer(reply: &Reply) -> String {
    ok_json(reply)["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

#[test]
fn serve_answers_text_as_the_library_does() {
    let f = fixture();
    let health = request(f.addr, "GET", "/health", b"");
    assert_eq!(health.status, 200);
    let models = request(f.addr, "GET", "/v1/models", b"").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "SmolLM2-135M-Instruct",
            "SmolLM2-135M-Instruct+vision",
            "SmolLM2-135M-Instruct+speech",
            "SmolLM2-135M-Instruct+forecast"
        ]
    );
    let question = "Name three colours.";
    let reply = post(
        f.addr,
        &json!({"model": ids[0], "messages": [{"role": "user", "content": question}], "max_tokens": 16}),
    );
    let text = answer(&reply);
    let lm = smollm2();
    let rendered =
        glaze::TextCodec::render_chat(&lm.tokenizer, &[glaze::ChatMessage::user(question)], true)
            .expect("renders");
    let prompt = glaze::Prompt::new().text(rendered);
    let config = glaze::core::GenerationConfig::new().with_max_new_tokens(16);
    let expected =
        glaze::core::generate(&lm.llama, &lm.tokenizer, &prompt, &config, |_| {}).expect("runs");
    assert_eq!(text, expected.text);
    let usage = &reply.json()["usage"];
    assert_eq!(usage["prompt_tokens"], expected.prompt_len);
    assert_eq!(usage["completion_tokens"], expected.ids.len());
    assert_eq!(usage["prompt_tokens_details"]["soft_tokens"], 0);
    assert_eq!(reply.json()["choices"][0]["finish_reason"], "length");

    // Streamed, the same text arrives in pieces, then the finish reason, then [DONE].
    let streamed = post(
        f.addr,
        &json!({"messages": [{"role": "user", "content": question}], "max_tokens": 16, "stream": true}),
    );
    assert_eq!(streamed.status, 200);
    assert!(
        streamed
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    );
    let data = events(&streamed.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, expected.text);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], expected.ids.len());

    // A stop string ends the answer before it, with finish reason `stop`.
    let cut = expected.text.chars().skip(3).take(2).collect::<String>();
    let stopped = post(
        f.addr,
        &json!({"messages": [{"role": "user", "content": question}], "max_tokens": 16, "stop": [cut]}),
    );
    let before = &expected.text[..expected.text.find(&cut).expect("in the text")];
    assert_eq!(answer(&stopped), before);
    assert_eq!(stopped.json()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn serve_splices_an_image_and_a_clip_as_the_plugins_do() {
    let f = fixture();
    let lm = smollm2();
    let device = Device::flex();
    // The image alone: the answer of the vision plugin's own pipeline.
    let image = png();
    let reply = post(
        f.addr,
        &json!({"messages": [{"role": "user", "content": [image_part(&image), {"type": "text", "text": QUESTION}]}],
                "max_tokens": 12}),
    );
    let served = answer(&reply);
    let encoder = VisionEncoder::load_default(&device).expect("DINOv2");
    let (adapter, _) =
        glaze::vision::experiment::load_adapter(&lm.llama, &encoder, &f.vision).expect("loads");
    let decoded = glaze::vision::decode_bytes(
        &image,
        Path::new("a.png"),
        &glaze::vision::DecodeLimits::default(),
    )
    .expect("decodes");
    let pipeline = glaze::vision::VisionPipeline {
        backbone: &lm.llama,
        codec: &lm.tokenizer,
    };
    let expected = pipeline
        .ask(&adapter, &encoder, decoded, QUESTION, 12)
        .expect("asks");
    assert_eq!(served.trim(), expected.trim());
    let image_soft = reply.json()["usage"]["prompt_tokens_details"]["soft_tokens"].clone();
    assert_eq!(image_soft, 17, "CLS + 4×4 pooled patches");

    // The clip alone: the speech plugin's answer.
    let clip = jfk();
    let question = "Transcribe the audio.";
    let reply = post(
        f.addr,
        &json!({"messages": [{"role": "user", "content": [audio_part(&clip), {"type": "text", "text": question}]}],
                "max_tokens": 12}),
    );
    let served = answer(&reply);
    let (adapter, audio_encoder) =
        glaze::speech::experiment::load_with_default_encoder(&lm.llama, &f.speech).expect("loads");
    let pipeline = glaze::speech::SpeechPipeline {
        backbone: &lm.llama,
        codec: &lm.tokenizer,
    };
    let expected = pipeline
        .ask_file(
            &adapter,
            &audio_encoder,
            &shared_dir().join("data/speech/jfk.wav"),
            question,
            12,
        )
        .expect("asks");
    assert_eq!(served.trim(), expected.trim());
    let clip_soft = reply.json()["usage"]["prompt_tokens_details"]["soft_tokens"]
        .as_u64()
        .expect("count");
    assert!(clip_soft > 100, "11 s at 80 ms per token: {clip_soft}");

    // Both in one message, placed by the text's markers: every soft token is counted.
    let reply = post(
        f.addr,
        &json!({"messages": [
            {"role": "system", "content": "You answer questions about images and sounds."},
            {"role": "user", "content": [
                {"type": "text", "text": "Here is a picture: <image> and a clip: <audio> What do they have in common?"},
                image_part(&image), audio_part(&clip)]}],
            "max_tokens": 8}),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json()["usage"]["prompt_tokens_details"]["soft_tokens"],
        17 + clip_soft
    );
}

#[test]
fn serve_refuses_bad_requests_with_openai_errors_and_stays_up() {
    let f = fixture();
    let user = |content: Value| json!({"messages": [{"role": "user", "content": content}], "max_tokens": 4});
    let check = |reply: Reply, status: u16, param: Option<&str>, words: &str| {
        assert_eq!(
            reply.status,
            status,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let e = reply.error();
        assert_eq!(e["param"].as_str(), param, "{e}");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains(words)),
            "{e}"
        );
    };
    let raw = |body: &[u8]| request(f.addr, "POST", "/v1/chat/completions", body);
    check(
        raw(b"{\"messages\": [}"),
        400,
        Some("body"),
        "not a valid chat request",
    );
    check(
        post(
            f.addr,
            &user(json!([{"type": "video_url", "video_url": {}}])),
        ),
        400,
        Some("messages[0].content[0].type"),
        "video_url",
    );
    check(
        post(
            f.addr,
            &user(
                json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]),
            ),
        ),
        400,
        Some("messages[0].content[0].image_url.url"),
        "invalid base64",
    );
    // Valid base64, but not an image / not audio: the decoders' messages, naming the part.
    check(
        post(f.addr, &user(json!([image_part(b"GIF89a but not really")]))),
        422,
        Some("messages[0].content[0]"),
        "messages[0].content[0]",
    );
    check(
        post(
            f.addr,
            &user(json!([audio_part(b"RIFF\x10\0\0\0WAVEjunkjunk")])),
        ),
        422,
        Some("messages[0].content[0]"),
        "messages[0].content[0]",
    );
    let too_big = vec![b' '; (32 << 20) + 1];
    let reply = raw(&too_big);
    assert_eq!(
        reply.status,
        413,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let nine: Vec<Value> = (0..9).map(|_| image_part(b"x")).collect();
    check(
        post(f.addr, &user(json!(nine))),
        400,
        Some("messages[0].content[8]"),
        "more than 8",
    );
    check(
        post(
            f.addr,
            &user(json!([{"type": "text", "text": "<image> or <image>?"}, image_part(&png())])),
        ),
        422,
        Some("messages"),
        "2 `<image>` placeholder(s) but the request sends 1",
    );
    check(
        post(
            f.addr,
            &user(json!([{"type": "series", "series": {"values": [1.0, null]}}])),
        ),
        400,
        Some("messages[0].content[0].series.values[1]"),
        "not a finite number",
    );
    check(
        post(
            f.addr,
            &user(json!([{"type": "series", "series": {"values": [1.0, 2.0]}}])),
        ),
        400,
        Some("messages[0].content[0]"),
        "no adapter serves series parts",
    );
    check(
        post(
            f.addr,
            &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}),
        ),
        400,
        Some("max_tokens"),
        "context",
    );
    check(
        post(
            f.addr,
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        404,
        Some("model"),
        "gpt-4o",
    );
    check(
        post(
            f.addr,
            &json!({"messages": [{"role": "user", "content": "hi"}], "n": 3}),
        ),
        400,
        Some("n"),
        "n = 3",
    );
    check(
        request(f.addr, "GET", "/v2/nothing", b""),
        404,
        None,
        "/v2/nothing",
    );
    // Still serving.
    let ok = post(f.addr, &user(json!("Say yes.")));
    assert_eq!(ok.status, 200);
    let metrics = String::from_utf8(request(f.addr, "GET", "/metrics", b"").body).expect("text");
    assert!(
        metrics.contains("glaze_requests_total{status=\"422\"}"),
        "{metrics}"
    );
}

/// The value of an unlabelled metric.
pub(crate) fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = String::from_utf8(request(addr, "GET", "/metrics", b"").body).expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

#[test]
fn a_client_that_disconnects_mid_stream_ends_its_generation() {
    let f = fixture();
    let before = metric(f.addr, "glaze_cancelled_requests_total");
    let body = json!({"messages": [{"role": "user", "content": "Write a long story about a ship."}],
                      "max_tokens": 2000, "stream": true, "temperature": 0.9, "seed": 5});
    let mut r = BufReader::new(send(
        f.addr,
        "POST",
        "/v1/chat/completions",
        body.to_string().as_bytes(),
    ));
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    // The role chunk and a few text chunks, then the client goes away.
    for _ in 0..4 {
        assert!(read_chunk(&mut r).is_some());
    }
    drop(r);
    let start = Instant::now();
    while metric(f.addr, "glaze_cancelled_requests_total") <= before {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the generation was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The engine is free again: a short request is answered.
    let ok = post(
        f.addr,
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn a_full_queue_answers_429_and_slow_requests_time_out() {
    // One request generated at a time, one waiting at most, and 4 s per request.
    let server = start(ServeConfig {
        queue: 1,
        batch: 1,
        timeout_secs: 4.0,
        ..ServeConfig::default()
    });
    let addr = server.addr();
    let long = json!({"messages": [{"role": "user", "content": "Write a long story about a ship."}],
                      "max_tokens": 4000, "stream": true, "temperature": 0.9});
    // A runs (its first chunk means the engine took it) ...
    let mut a = BufReader::new(send(
        addr,
        "POST",
        "/v1/chat/completions",
        long.to_string().as_bytes(),
    ));
    assert_eq!(read_head(&mut a).0, 200);
    assert!(read_chunk(&mut a).is_some());
    // ... B waits in the queue ...
    let b = std::thread::spawn(move || post(addr, &long));
    let start = Instant::now();
    while metric(addr, "glaze_queue_depth") < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(30), "B never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... so C is refused at once.
    let c = post(
        addr,
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
    );
    assert_eq!(c.status, 429);
    assert_eq!(c.header("retry-after"), Some("1"));
    assert_eq!(c.error()["code"], "queue_full");
    // A runs into its time limit: the stream ends with an error event, then [DONE].
    let mut rest = Vec::new();
    while let Some(chunk) = read_chunk(&mut a) {
        rest.extend(chunk);
    }
    let data = events(&rest);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let err: Value = serde_json::from_str(&data[data.len() - 2]).expect("JSON");
    assert_eq!(err["error"]["code"], "timeout", "{err}");
    // B's time ran out too: in the queue (504), or, when the engine took it in the moment
    // between A's end and B's own deadline, in its stream (the same error event).
    let b = b.join().expect("joins");
    match b.status {
        504 => assert_eq!(b.error()["code"], "timeout"),
        200 => {
            let data = events(&b.body);
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
            let err: Value = serde_json::from_str(&data[data.len() - 2]).expect("JSON");
            assert_eq!(err["error"]["code"], "timeout", "{err}");
        }
        other => panic!("B: {other} {}", String::from_utf8_lossy(&b.body)),
    }
}

#[test]
fn an_adapter_of_another_backbone_or_modality_stops_the_server_naming_both() {
    let (vision, speech, _) = adapters().clone();
    // A speech adapter named as the vision adapter.
    let err = Server::start(ServeConfig {
        port: 0,
        adapters: vec![AdapterSpec {
            name: "vision".into(),
            path: speech,
        }],
        ..ServeConfig::default()
    })
    .expect("binds")
    .wait_ready()
    .expect_err("refused")
    .to_string();
    assert!(
        err.contains("needs a vision adapter") && err.contains("speech"),
        "{err}"
    );
    // A vision adapter trained for a tiny random Llama.
    let other = fixture_dir().join("other-backbone.safetensors");
    let tiny = glaze_tests::tiny_llama_long();
    let encoder = VisionEncoder::load_default(&Device::flex()).expect("DINOv2");
    write_adapter(
        &VisionAdapterConfig::Mlp { pool: 4 },
        Some(glaze::Encoder::spec(&encoder)),
        &tiny,
        &other,
    );
    let err = Server::start(ServeConfig {
        port: 0,
        adapters: vec![AdapterSpec {
            name: "vision".into(),
            path: other,
        }],
        ..ServeConfig::default()
    })
    .expect("binds")
    .wait_ready()
    .expect_err("refused")
    .to_string();
    let ours = smollm2().llama.spec().name.clone();
    let theirs = tiny.spec().name.clone();
    assert!(err.contains(&ours) && err.contains(&theirs), "{err}");
    assert!(vision.exists());
}

/// The official `openai` package (installed from PyPI by `cargo xtask ci`, which names its
/// Python in `GLAZE_OPENAI_PYTHON`) against the server: an image and a clip in one message,
/// complete and streamed, and a bad part raised as `BadRequestError` with its field.
/// Runs a client script that prints one JSON line of what it saw; a failure shows its output.
pub(crate) fn client_script(cmd: &mut std::process::Command) -> Value {
    let out = cmd.output().expect("runs the client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

#[test]
fn the_official_openai_client_talks_to_the_server() {
    let Some(python) = std::env::var_os("GLAZE_OPENAI_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!("GLAZE_OPENAI_PYTHON is not set (cargo xtask ci sets it): not run");
        return;
    };
    let f = fixture();
    let image = fixture_dir().join("client.png");
    std::fs::write(&image, png()).expect("writes");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/openai_client.py");
    let seen = client_script(
        std::process::Command::new(python)
            .arg(script)
            .arg(format!("http://{}/v1", f.addr))
            .arg(&image)
            .arg(shared_dir().join("data/speech/jfk.wav")),
    );
    assert_eq!(seen["model"], "SmolLM2-135M-Instruct");
    assert!(seen["finish"].is_string(), "{seen}");
    let soft = seen["usage"]["prompt_tokens_details"]["soft_tokens"]
        .as_u64()
        .expect("soft tokens reported");
    assert!(soft > 17, "image and clip: {seen}");
    assert_eq!(seen["error"]["status"], 400, "{seen}");
    assert_eq!(
        seen["error"]["param"], "messages[0].content[0].input_audio.data",
        "{seen}"
    );
}

/// `/v1/completions` with `prompt_embeds` (vLLM's way for apps that compute their own soft
/// tokens): the embeddings of a text continue exactly as the text itself; a row of another
/// width is refused naming the field.
#[test]
fn prompt_embeds_continue_as_the_text_they_embed() {
    let f = fixture();
    let lm = smollm2();
    let text = "The capital of France is";
    let ids: Vec<i64> = glaze::TextCodec::encode(&lm.tokenizer, text)
        .expect("encodes")
        .into_iter()
        .map(i64::from)
        .collect();
    let n = ids.len();
    let embeds = lm.llama.embed(Tensor::<2, Int>::from_data(
        TensorData::new(ids, [1, n]),
        &Device::flex(),
    ));
    let values: Vec<f32> = embeds
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let reply = post_to(
        f.addr,
        "/v1/completions",
        &json!({"prompt_embeds": b64(&bytes), "max_tokens": 8}),
    );
    let body = ok_json(&reply);
    assert_eq!(body["object"], "text_completion");
    let config = glaze::core::GenerationConfig::new().with_max_new_tokens(8);
    let expected = glaze::core::generate(
        &lm.llama,
        &lm.tokenizer,
        &glaze::Prompt::new().text(text),
        &config,
        |_| {},
    )
    .expect("runs");
    assert_eq!(body["choices"][0]["text"], expected.text.as_str());
    assert_eq!(body["usage"]["prompt_tokens_details"]["soft_tokens"], n);
    // Streamed: text chunks, the finish reason, [DONE].
    let streamed = post_to(
        f.addr,
        "/v1/completions",
        &json!({"prompt": text, "max_tokens": 8, "stream": true}),
    );
    let data = events(&streamed.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let joined: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).expect("JSON"))
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(joined, expected.text);
    let bad = post_to(
        f.addr,
        "/v1/completions",
        &json!({"prompt_embeds": b64(&bytes[..4 * 5])}),
    );
    assert_eq!(bad.status, 400);
    let e = bad.error();
    assert_eq!(e["param"], "prompt_embeds");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("576")),
        "{e}"
    );
}

/// `/v1/forecast` with a Time-LLM checkpoint: the forecast of the last 32 values equals the
/// library's, in the series' units and cut to the asked horizon; short or non-finite series
/// and a horizon past the checkpoint's are refused naming the field.
#[test]
fn forecast_returns_the_checkpoints_forecast_in_the_series_units() {
    let f = fixture();
    let lm = smollm2();
    let values: Vec<f32> = (0..40)
        .map(|i| 10.0 + 3.0 * (i as f32 * 0.4).sin())
        .collect();
    let reply = post_to(
        f.addr,
        "/v1/forecast",
        &json!({"values": values, "horizon": 5}),
    );
    let body = ok_json(&reply);
    assert_eq!(
        (body["input_len"].clone(), body["horizon"].clone()),
        (json!(32), json!(5))
    );
    let served: Vec<f32> = body["forecast"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let (model, stored) =
        glaze::timeseries::load_checkpoint(&lm.llama, &f.forecast).expect("loads");
    let input = stored.scaler.transform(0, &values[8..]);
    let pipeline = glaze::timeseries::Pipeline::new(
        &lm.llama,
        &lm.tokenizer,
        stored.model.clone(),
        stored.description.clone(),
        None,
    )
    .expect("pipeline");
    let scaled: Vec<f32> = pipeline
        .predict(&model, &[&input], &Device::flex())
        .expect("predicts")
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    let expected = stored.scaler.inverse(0, &scaled);
    assert_eq!(served.len(), 5);
    for (a, b) in served.iter().zip(&expected) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{served:?} vs {expected:?}"
        );
    }
    let refused = |body: Value, status: u16, param: &str| {
        let r = post_to(f.addr, "/v1/forecast", &body);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error()["param"], param);
    };
    refused(json!({"values": values[..20]}), 422, "values");
    refused(json!({"values": values, "horizon": 9}), 400, "horizon");
    refused(json!({"values": [1.0, null, 2.0]}), 400, "values[1]");
    refused(json!({"values": "1,2,3"}), 400, "values");
}
