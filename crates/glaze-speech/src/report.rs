//! The results table of `docs/results/speech.md`, rendered from the runs' JSON lines.

use crate::error::{Error, Result};

/// The WER table of `docs/results/speech.md` from the results file's JSON lines (one row per
/// system; the last line of a system wins).
pub fn wer_table(results: &str) -> Result<String> {
    let text = results;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::config("results", format!("a line is not JSON: {e}")))?;
        let key = |r: &serde_json::Value| {
            (
                r["adapter"].clone(),
                r["encoder"].clone(),
                r["trained_on"].clone(),
            )
        };
        rows.retain(|r| key(r) != key(&v));
        rows.push(v);
    }
    let wer = |r: &serde_json::Value, set: &str| {
        let s = &r["scores"][set];
        match (s["wer"].as_f64(), s["errors"].as_u64(), s["words"].as_u64()) {
            (Some(w), Some(e), Some(n)) => format!("{:.1} % ({e}/{n})", 100.0 * w),
            _ => "–".into(),
        }
    };
    let mut t = String::from(
        "| system | encoder features | steps | trainable params | train s | FSDD test WER | synthetic test WER | jfk.wav WER |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let num = |k: &str| {
            r[k].as_f64()
                .map_or_else(|| "–".to_string(), |v| format!("{v:.0}"))
        };
        let enc = match (r["encoder"].as_str(), r["trained_on"].as_str()) {
            (Some(e), Some(t)) if e != t => format!("{e} (trained on {t})"),
            (Some(e), _) => e.to_string(),
            _ => "its own (30 s window)".into(),
        };
        t.push_str(&format!(
            "| {} | {enc} | {} | {} | {} | {} | {} | {} |\n",
            r["adapter"].as_str().unwrap_or("?"),
            num("steps"),
            num("params"),
            num("train_secs"),
            wer(r, "fsdd"),
            wer(r, "synthetic"),
            wer(r, "jfk"),
        ));
    }
    Ok(t)
}
