//! The page for people at `/` (one self-contained HTML file compiled into the binary: chat
//! with image and audio parts, recording, a forecast plotted beside its history, the loaded
//! adapters with their training curves), and `GET /v1/adapters`, which it reads the curves
//! from.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use glaze::train::metrics::MetricRecord;
use serde_json::{Value, json};

use crate::AppState;

/// The page.
const PAGE: &str = include_str!("ui.html");

pub(crate) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// The training curve of an adapter: the `metrics.jsonl` its run wrote beside it, if any
/// (lines that do not parse are skipped; a missing file is an empty curve).
fn curve(adapter: &Path) -> Vec<Value> {
    let Some(text) = adapter
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("metrics.jsonl")).ok())
    else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<MetricRecord>(l).ok())
        .map(|r| json!({"step": r.step, "split": r.split, "value": r.value}))
        .collect()
}

/// `GET /v1/adapters`: each loaded adapter, what it serves, its file and its curve.
pub(crate) async fn adapters(State(st): State<Arc<AppState>>) -> Response {
    let info = match st.info() {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let mut data = crate::adapter_entries(info);
    for (entry, (_, _, path)) in data.iter_mut().zip(&info.adapters) {
        entry["curve"] = Value::Array(curve(path));
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
