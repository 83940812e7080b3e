//! Why the server could not start ([`ServeError`]), and errors of requests as the OpenAI API
//! shapes them: `{"error": {"message", "type", "param", "code"}}`
//! with a status code, so that clients' own error handling works unchanged.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `host:port`.
        addr: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A runtime or thread could not be started.
    #[error("cannot start the server ({what}): {source}")]
    Start {
        /// Which part.
        what: &'static str,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The model or an adapter failed to load (another backbone, another modality, a bad
    /// file); the loader's message names the file.
    #[error("{}: {problem}", path.as_ref().map_or("the default model".into(), |p| p.display().to_string()))]
    Load {
        /// The file (None: the default model).
        path: Option<PathBuf>,
        /// The loader's message.
        problem: String,
    },
    /// An `--adapter` argument that is not `NAME=FILE` with a known name.
    #[error("{0}")]
    AdapterSpec(String),
    /// The engine thread ended before it reported.
    #[error("the engine thread ended while loading")]
    EngineGone,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `server_error`, …).
    pub kind: &'static str,
    /// The request field at fault (`messages[0].content[1].image_url.url`), if one is.
    pub param: Option<String>,
    /// A stable code for programs (`invalid_json`, `queue_full`, …).
    pub code: &'static str,
    /// Seconds after which a retry may succeed (429/503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            message,
            kind,
            param: None,
            code,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or asks for something unsupported.
    pub fn invalid(code: &'static str, param: impl Into<String>, message: String) -> Self {
        ApiError {
            param: Some(param.into()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    /// 413: a body or part over its size limit (checked before decoding).
    pub fn too_large(param: impl Into<String>, message: String) -> Self {
        ApiError {
            param: Some(param.into()),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "too_large",
                message,
            )
        }
    }

    /// 422: well-formed, but the content cannot be used (a corrupt image, a placeholder count
    /// that does not match the parts).
    pub fn unprocessable(code: &'static str, param: impl Into<String>, message: String) -> Self {
        ApiError {
            param: Some(param.into()),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    /// 429: the queue is full.
    pub fn queue_full(capacity: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
                format!("the server's queue is full ({capacity} requests waiting); retry later"),
            )
        }
    }

    /// 503: the model is still loading, or the engine stopped.
    pub fn unavailable(code: &'static str, message: String) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                code,
                message,
            )
        }
    }

    /// 504: the request ran past its time limit.
    pub fn timeout(seconds: f64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            format!("the request ran past the server's time limit of {seconds} s"),
        )
    }

    /// 404: no such route or model.
    pub fn not_found(code: &'static str, param: Option<String>, message: String) -> Self {
        ApiError {
            param,
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    /// 500: the engine failed on a valid request.
    pub fn internal(message: String) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal",
            message,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
