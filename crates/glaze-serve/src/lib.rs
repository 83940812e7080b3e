#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod body;
pub mod engine;
pub mod error;
pub mod metrics;
mod prompts;
mod scheduler;
pub mod stop;
mod ui;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

pub use engine::{AdapterSpec, ModelInfo};
pub use error::{ApiError, ServeError};
pub use wire::Limits;

use engine::{Engine, Event, Input, Job};
use metrics::Metrics;

/// Everything `glaze serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub host: String,
    /// Port (0: any free one; [`Server::addr`] tells which).
    pub port: u16,
    /// GGUF file or HF directory of the backbone (None: the fetched SmolLM2).
    pub model: Option<PathBuf>,
    /// The backbone's id in requests and `/v1/models` (default: the file's stem).
    pub model_id: Option<String>,
    /// Adapters, each serving the part type it is named after.
    pub adapters: Vec<AdapterSpec>,
    /// Request limits.
    pub limits: Limits,
    /// Requests that may wait for the engine; one more is refused with 429.
    pub queue: usize,
    /// Requests decoded together (continuous batching); more wait in the queue.
    pub batch: usize,
    /// Recent prompts whose caches are kept, so that a prompt beginning the same way (a
    /// shared system prompt) is not prefilled again (0: off).
    pub prefix_cache: usize,
    /// Seconds a request may take from arrival to its last token.
    pub timeout_secs: f64,
    /// Temperature of requests that do not set one (0: greedy).
    pub temperature: f64,
    /// `max_tokens` of requests that do not set one (capped by the context).
    pub max_tokens: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            model: None,
            model_id: None,
            adapters: Vec::new(),
            limits: Limits::default(),
            queue: 16,
            batch: 16,
            prefix_cache: 4,
            timeout_secs: 300.0,
            temperature: 0.0,
            max_tokens: 256,
        }
    }
}

/// Why the model did not load, as `/health` tells it.
struct LoadFailure(String);

struct AppState {
    jobs: SyncSender<Job>,
    /// The loaded model, or the load error's message.
    ready: OnceLock<Result<ModelInfo, LoadFailure>>,
    metrics: Arc<Metrics>,
    config: ServeConfig,
    created: u64,
    next_id: AtomicU64,
}

impl AppState {
    fn info(&self) -> Result<&ModelInfo, ApiError> {
        match self.ready.get() {
            None => Err(ApiError::unavailable(
                "loading",
                "the model is still loading".into(),
            )),
            Some(Err(LoadFailure(e))) => Err(ApiError::unavailable(
                "load_failed",
                format!("the model failed to load: {e}"),
            )),
            Some(Ok(info)) => Ok(info),
        }
    }
}

/// A running server: HTTP on its own thread (a tokio runtime), the model on the engine thread.
pub struct Server {
    addr: SocketAddr,
    ready: std::sync::mpsc::Receiver<Result<ModelInfo, ServeError>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the address and starts answering (`/health` says 503 until the model is loaded),
    /// while the engine thread loads the model and the adapters.
    pub fn start(config: ServeConfig) -> Result<Server, ServeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| ServeError::Start {
                what: "async runtime",
                source,
            })?;
        let where_ = format!("{}:{}", config.host, config.port);
        let bind_error = |source| ServeError::Bind {
            addr: where_.clone(),
            source,
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&where_))
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(config.queue);
        let metrics = Arc::new(Metrics::default());
        let state = Arc::new(AppState {
            jobs,
            ready: OnceLock::new(),
            metrics: metrics.clone(),
            config: config.clone(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            next_id: AtomicU64::new(1),
        });
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let engine_state = state.clone();
        std::thread::Builder::new()
            .name("glaze-engine".into())
            .spawn(move || {
                let loaded = Engine::load(&engine_state.config);
                let engine = match loaded {
                    Ok(engine) => engine,
                    Err(e) => {
                        let _ = engine_state.ready.set(Err(LoadFailure(e.to_string())));
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = engine_state.ready.set(Ok(engine.info().clone()));
                let _ = ready_tx.send(Ok(engine.info().clone()));
                drop(engine_state);
                engine.run(queue, metrics);
            })
            .map_err(|source| ServeError::Start {
                what: "engine thread",
                source,
            })?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(state);
        let http = std::thread::Builder::new()
            .name("glaze-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let stop = async {
                        tokio::select! {
                            _ = stopped => {}
                            _ = tokio::signal::ctrl_c() => {}
                        }
                    };
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                    {
                        tracing::error!("the HTTP server stopped: {e}");
                    }
                });
            })
            .map_err(|source| ServeError::Start {
                what: "HTTP thread",
                source,
            })?;
        Ok(Server {
            addr,
            ready,
            shutdown: Some(shutdown),
            http: Some(http),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the model and adapters are loaded (or failed to).
    pub fn wait_ready(&self) -> Result<ModelInfo, ServeError> {
        self.ready.recv().map_err(|_| ServeError::EngineGone)?
    }

    /// Blocks until the server stops (Ctrl-C).
    pub fn join(mut self) {
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
    }
}

/// Starts the server and blocks until Ctrl-C; a model or adapter that fails to load (an
/// adapter trained on another backbone, say) stops it with the loader's message.
pub fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let server = Server::start(config)?;
    let info = server.wait_ready()?;
    tracing::info!(
        "serving {} on http://{} ({} adapter(s))",
        info.id,
        server.addr(),
        info.adapters.len()
    );
    server.join();
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(ui::page))
        .route("/v1/adapters", get(ui::adapters))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/forecast", post(forecast))
        .fallback(|req: axum::extract::Request| async move {
            ApiError::not_found(
                "unknown_route",
                None,
                format!("no route for {} {}", req.method(), req.uri().path()),
            )
        })
        .with_state(state)
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    match st.info() {
        Ok(info) => axum::Json(json!({"status": "ok", "model": info.id})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

/// The model ids requests may name: the backbone (every adapter, by part type) and the
/// backbone with one adapter (`<id>+<name>`).
fn model_ids(info: &ModelInfo) -> Vec<String> {
    std::iter::once(info.id.clone())
        .chain(
            info.adapters
                .iter()
                .map(|(name, _, _)| format!("{}+{name}", info.id)),
        )
        .collect()
}

/// Each loaded adapter as `/v1/models` and `/v1/adapters` list it: name, what it serves, file.
fn adapter_entries(info: &ModelInfo) -> Vec<Value> {
    info.adapters
        .iter()
        .map(|(name, serves, path)| {
            json!({"name": name, "serves": serves, "file": path.display().to_string()})
        })
        .collect()
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    let info = match st.info() {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let adapters = adapter_entries(info);
    let data: Vec<Value> = model_ids(info)
        .into_iter()
        .map(|id| {
            json!({
                "id": id,
                "object": "model",
                "created": st.created,
                "owned_by": "glaze",
                "context_length": info.context_length,
                "adapters": adapters,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// Which API a request came through: it decides the response's shape.
#[derive(Debug, Clone, Copy)]
enum Api {
    Chat,
    Completion,
}

impl Api {
    /// The complete answer.
    fn complete(
        self,
        id: &str,
        created: u64,
        model: &str,
        text: &str,
        finish: &str,
        usage: wire::Usage,
    ) -> Value {
        match self {
            Api::Chat => wire::completion(id, created, model, text, finish, usage),
            Api::Completion => {
                wire::text_completion(id, created, model, text, Some(finish), Some(usage))
            }
        }
    }

    /// A stream chunk: the opening one (`None`), a piece of text, or the closing one.
    fn chunk(self, id: &str, created: u64, model: &str, piece: Piece<'_>) -> Value {
        match (self, piece) {
            (Api::Chat, Piece::Open) => wire::chunk(
                id,
                created,
                model,
                json!({"role": "assistant", "content": ""}),
                None,
            ),
            (Api::Chat, Piece::Text(t)) => {
                wire::chunk(id, created, model, json!({"content": t}), None)
            }
            (Api::Chat, Piece::Close(finish, usage)) => {
                let mut last = wire::chunk(id, created, model, json!({}), Some(finish));
                last["usage"] = usage.to_json();
                last
            }
            (Api::Completion, Piece::Open) => {
                wire::text_completion(id, created, model, "", None, None)
            }
            (Api::Completion, Piece::Text(t)) => {
                wire::text_completion(id, created, model, t, None, None)
            }
            (Api::Completion, Piece::Close(finish, usage)) => {
                wire::text_completion(id, created, model, "", Some(finish), Some(usage))
            }
        }
    }
}

/// Where a stream chunk stands.
enum Piece<'a> {
    Open,
    Text(&'a str),
    Close(&'a str, wire::Usage),
}

async fn chat(State(st): State<Arc<AppState>>, body: Body) -> Response {
    answer(&st, body, Api::Chat).await
}

async fn completions(State(st): State<Arc<AppState>>, body: Body) -> Response {
    answer(&st, body, Api::Completion).await
}

async fn forecast(State(st): State<Arc<AppState>>, body: Body) -> Response {
    timed(&st, forecast_response(&st, body)).await
}

/// The response of a handler (an error as its OpenAI body), counted in the metrics.
async fn timed(
    st: &AppState,
    handler: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Response {
    let start = Instant::now();
    let response = handler.await.unwrap_or_else(IntoResponse::into_response);
    st.metrics
        .record_response(response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

/// The model id a request is answered as: the one it names, when this server serves it
/// (`<id>`, `<id>+<adapter>` or a bare adapter name), else 404; the backbone's id by default.
fn resolve_model(info: &ModelInfo, requested: Option<&str>) -> Result<String, ApiError> {
    let Some(m) = requested else {
        return Ok(info.id.clone());
    };
    let ids = model_ids(info);
    let bare = info.adapters.iter().any(|(name, _, _)| name == m);
    if !ids.iter().any(|id| id == m) && !bare {
        return Err(ApiError::not_found(
            "model_not_found",
            Some("model".into()),
            format!(
                "model `{m}` is not served here (served: {})",
                ids.join(", ")
            ),
        ));
    }
    Ok(m.to_string())
}

/// The body of a request, refused with 413 past the limit.
async fn read_body(st: &AppState, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let limit = st.config.limits.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::too_large(
            "body",
            format!("the request body is over {limit} bytes (or was cut off)"),
        )
    })
}

/// Queues a job; a full queue is 429.
fn enqueue(
    st: &AppState,
    input: Input,
) -> Result<(UnboundedReceiver<Event>, tokio::time::Instant), ApiError> {
    let deadline = Instant::now() + Duration::from_secs_f64(st.config.timeout_secs);
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let job = Job {
        input,
        events,
        deadline,
        timeout_secs: st.config.timeout_secs,
    };
    st.metrics.queued.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = st.jobs.try_send(job) {
        st.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        return Err(match e {
            TrySendError::Full(_) => ApiError::queue_full(st.config.queue),
            TrySendError::Disconnected(_) => {
                ApiError::unavailable("engine_stopped", "the engine has stopped".into())
            }
        });
    }
    Ok((rx, tokio::time::Instant::from_std(deadline)))
}

async fn forecast_response(st: &Arc<AppState>, body: Body) -> Result<Response, ApiError> {
    let info = st.info()?;
    let bytes = read_body(st, body).await?;
    let request = wire::parse_forecast(&bytes, &st.config.limits)?;
    let model = resolve_model(info, request.model.as_deref())?;
    let (mut rx, deadline) = enqueue(st, Input::Forecast(request))?;
    let event = tokio::time::timeout_at(deadline, rx.recv())
        .await
        .map_err(|_| ApiError::timeout(st.config.timeout_secs))?;
    match event {
        Some(Event::Forecast { values, input_len }) => Ok(axum::Json(json!({
            "object": "forecast",
            "model": model,
            "input_len": input_len,
            "horizon": values.len(),
            "forecast": values,
        }))
        .into_response()),
        Some(Event::Failed(e)) => Err(e),
        _ => Err(ApiError::internal("the engine ended the request".into())),
    }
}

async fn answer(st: &Arc<AppState>, body: Body, api: Api) -> Response {
    timed(st, respond(st, body, api)).await
}

async fn respond(st: &Arc<AppState>, body: Body, api: Api) -> Result<Response, ApiError> {
    let info = st.info()?;
    let limits = &st.config.limits;
    let bytes = read_body(st, body).await?;
    let input = match api {
        Api::Chat => Input::Chat(wire::parse_chat(&bytes, limits)?),
        Api::Completion => Input::Completion(wire::parse_completion(&bytes, limits, info.d_model)?),
    };
    let model = resolve_model(info, input.model())?;
    let sampling = input
        .sampling()
        .ok_or_else(|| ApiError::internal("a forecast is not generated".into()))?;
    if let Some(m) = sampling.max_tokens.filter(|&m| m >= info.context_length) {
        return Err(ApiError::invalid(
            "context_length_exceeded",
            "max_tokens",
            format!(
                "max_tokens = {m} does not fit the context of {} positions",
                info.context_length
            ),
        ));
    }
    let stream = sampling.stream;
    let (mut rx, tokio_deadline) = enqueue(st, input)?;
    // The first event says whether the prompt could be built: an error is still a status code.
    let first = tokio::time::timeout_at(tokio_deadline, rx.recv())
        .await
        .map_err(|_| ApiError::timeout(st.config.timeout_secs))?;
    match first {
        Some(Event::Started) => {}
        Some(Event::Failed(e)) => return Err(e),
        _ => return Err(ApiError::internal("the engine ended the request".into())),
    }
    let id = format!(
        "{}-{:x}{:04x}",
        match api {
            Api::Chat => "chatcmpl",
            Api::Completion => "cmpl",
        },
        st.created,
        st.next_id.fetch_add(1, Ordering::Relaxed)
    );
    if stream {
        let timeout = st.config.timeout_secs;
        return Ok(stream_response(
            rx,
            api,
            (id, st.created, model),
            (tokio_deadline, timeout),
        ));
    }
    let mut text = String::new();
    loop {
        let event = tokio::time::timeout_at(tokio_deadline, rx.recv())
            .await
            .map_err(|_| ApiError::timeout(st.config.timeout_secs))?;
        match event {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done { finish, usage }) => {
                let body = api.complete(&id, st.created, &model, &text, finish, usage);
                return Ok((StatusCode::OK, axum::Json(body)).into_response());
            }
            Some(Event::Failed(e)) => return Err(e),
            Some(Event::Started) => {}
            Some(Event::Forecast { .. }) | None => {
                return Err(ApiError::internal("the engine ended the request".into()));
            }
        }
    }
}

/// Server-sent events: a role chunk, text chunks, a final chunk with the finish reason and
/// usage, then `[DONE]`. An error mid-stream is sent as an `{"error": …}` event before
/// `[DONE]`. Dropping the stream (the client went away) closes the engine's channel, which
/// ends the generation.
fn stream_response(
    rx: UnboundedReceiver<Event>,
    api: Api,
    (id, created, model): (String, u64, String),
    (deadline, timeout_secs): (tokio::time::Instant, f64),
) -> Response {
    enum Phase {
        Role,
        Body,
        Done,
        End,
    }
    let data =
        |v: Value| Ok::<_, std::convert::Infallible>(SseEvent::default().data(v.to_string()));
    let stream = futures_util::stream::unfold((rx, Phase::Role), move |(mut rx, phase)| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            let chunk = |piece: Piece<'_>| api.chunk(&id, created, &model, piece);
            match phase {
                Phase::Role => Some((data(chunk(Piece::Open)), (rx, Phase::Body))),
                Phase::Body => {
                    let event = tokio::time::timeout_at(deadline, rx.recv()).await;
                    let out = match event {
                        Ok(Some(Event::Text(t))) => {
                            return Some((data(chunk(Piece::Text(&t))), (rx, Phase::Body)));
                        }
                        Ok(Some(Event::Done { finish, usage })) => {
                            chunk(Piece::Close(finish, usage))
                        }
                        Ok(Some(Event::Failed(e))) => e.body(),
                        Ok(Some(Event::Started)) => {
                            return Some((
                                Ok(SseEvent::default().comment("started")),
                                (rx, Phase::Body),
                            ));
                        }
                        Ok(Some(Event::Forecast { .. }) | None) => {
                            ApiError::internal("the engine ended the request".into()).body()
                        }
                        Err(_) => ApiError::timeout(timeout_secs).body(),
                    };
                    Some((data(out), (rx, Phase::Done)))
                }
                Phase::Done => Some((Ok(SseEvent::default().data("[DONE]")), (rx, Phase::End))),
                Phase::End => None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
