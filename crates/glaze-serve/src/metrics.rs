//! Counters behind `GET /metrics`, in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Upper bounds (seconds) of the request-latency histogram.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// Server counters; shared by the handlers and the engine thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by status code.
    responses: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Requests waiting in the queue.
    pub queued: AtomicUsize,
    /// Requests being generated (the rows of the decode batch).
    pub running: AtomicUsize,
    /// Prompt positions taken from the prefix cache instead of being prefilled.
    pub prefix_reused: AtomicU64,
    /// Decode steps run (each decodes one token for every live request).
    pub decode_steps: AtomicU64,
    /// Rows decoded, summed over the steps (over `decode_steps`: the mean batch).
    pub decode_rows: AtomicU64,
    /// Requests whose client went away before the answer was complete.
    pub cancelled: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    generation_micros: AtomicU64,
    latency: Mutex<([u64; BUCKETS.len()], u64, f64)>,
}

impl Metrics {
    /// One answered request: its status and wall time.
    pub fn record_response(&self, status: u16, seconds: f64) {
        if let Ok(mut r) = self.responses.lock() {
            *r.entry(status).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            for (count, bound) in l.0.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *count += 1;
                }
            }
            l.1 += 1;
            l.2 += seconds;
        }
    }

    /// One generation's token counts and time.
    pub fn record_generation(&self, prompt: usize, completion: usize, seconds: f64) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion as u64, Ordering::Relaxed);
        self.generation_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let seconds = self.generation_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let rows = [
            (
                "glaze_queue_depth",
                "Requests waiting for the engine.",
                "gauge",
                self.queued.load(Ordering::Relaxed).to_string(),
            ),
            (
                "glaze_running_requests",
                "Requests being generated.",
                "gauge",
                self.running.load(Ordering::Relaxed).to_string(),
            ),
            (
                "glaze_cancelled_requests_total",
                "Requests whose client went away before the answer was complete.",
                "counter",
                load(&self.cancelled),
            ),
            (
                "glaze_prompt_tokens_total",
                "Prompt positions (text and soft tokens), reused ones included.",
                "counter",
                load(&self.prompt_tokens),
            ),
            (
                "glaze_prefix_cache_tokens_total",
                "Prompt positions taken from the prefix cache instead of being prefilled.",
                "counter",
                load(&self.prefix_reused),
            ),
            (
                "glaze_decode_steps_total",
                "Decode steps (one token for every live request).",
                "counter",
                load(&self.decode_steps),
            ),
            (
                "glaze_decode_rows_total",
                "Requests decoded, summed over the steps (over the steps: the mean batch).",
                "counter",
                load(&self.decode_rows),
            ),
            (
                "glaze_completion_tokens_total",
                "Tokens generated.",
                "counter",
                load(&self.completion_tokens),
            ),
            (
                "glaze_generation_seconds_total",
                "Time spent generating.",
                "counter",
                format!("{seconds:.6}"),
            ),
        ];
        for (name, help, kind, value) in rows {
            gauge(name, help, kind, value);
        }
        let _ = writeln!(
            s,
            "# HELP glaze_requests_total Requests answered, by status.\n# TYPE glaze_requests_total counter"
        );
        if let Ok(r) = self.responses.lock() {
            for (status, n) in r.iter() {
                let _ = writeln!(s, "glaze_requests_total{{status=\"{status}\"}} {n}");
            }
        }
        let _ = writeln!(
            s,
            "# HELP glaze_request_seconds Time from request to complete answer.\n# TYPE glaze_request_seconds histogram"
        );
        if let Ok(l) = self.latency.lock() {
            for (count, bound) in l.0.iter().zip(BUCKETS) {
                let _ = writeln!(s, "glaze_request_seconds_bucket{{le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(s, "glaze_request_seconds_bucket{{le=\"+Inf\"}} {}", l.1);
            let _ = writeln!(s, "glaze_request_seconds_sum {:.6}", l.2);
            let _ = writeln!(s, "glaze_request_seconds_count {}", l.1);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_holds_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.record_response(200, 0.3);
        m.record_response(400, 0.01);
        m.record_generation(20, 5, 0.25);
        m.queued.store(2, Ordering::Relaxed);
        let t = m.render();
        assert!(t.contains("glaze_queue_depth 2\n"), "{t}");
        assert!(
            t.contains("glaze_requests_total{status=\"200\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("glaze_requests_total{status=\"400\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("glaze_request_seconds_bucket{le=\"0.05\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("glaze_request_seconds_bucket{le=\"0.5\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("glaze_request_seconds_count 2\n"), "{t}");
        assert!(t.contains("glaze_completion_tokens_total 5\n"), "{t}");
    }
}
