//! The server's continuous batching and prefix cache, on a server of its own (no other test's
//! requests in its batches): concurrent requests share decode steps and answer as the library
//! does for each alone; a long system prompt shared by requests is prefilled once.

use std::thread;

use glaze::core::{GenerationConfig, Prompt, generate};
use glaze::{ChatMessage, TextCodec};
use glaze_serve::ServeConfig;
use glaze_tests::smollm2;
use serde_json::json;

use crate::batching::SYSTEM;
use crate::serve::{answer, metric, post, start};

const QUESTIONS: [&str; 4] = [
    "Name three colours.",
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Do you sell rye bread?",
];

#[test]
fn concurrent_requests_share_decode_steps_and_answer_as_alone() {
    let server = start(ServeConfig::default());
    let addr = server.addr();
    let lm = smollm2();
    let expected: Vec<String> = QUESTIONS
        .iter()
        .map(|q| {
            let messages = [ChatMessage::new("system", SYSTEM), ChatMessage::user(*q)];
            let text = lm.tokenizer.render_chat(&messages, true).expect("renders");
            let config = GenerationConfig::new().with_max_new_tokens(24);
            generate(
                &lm.llama,
                &lm.tokenizer,
                &Prompt::new().text(text),
                &config,
                |_| {},
            )
            .expect("generates")
            .text
        })
        .collect();
    let ask = |q: &'static str| {
        thread::spawn(move || {
            let body = json!({"messages": [{"role": "system", "content": SYSTEM},
                                           {"role": "user", "content": q}],
                              "max_tokens": 24});
            answer(&post(addr, &body))
        })
    };
    // One request first: its prompt fills the prefix cache.
    assert_eq!(ask(QUESTIONS[0]).join().expect("joins"), expected[0]);
    let reused_before = metric(addr, "glaze_prefix_cache_tokens_total");
    let steps_before = metric(addr, "glaze_decode_steps_total");
    let rows_before = metric(addr, "glaze_decode_rows_total");
    let answers: Vec<String> = QUESTIONS[1..]
        .iter()
        .map(|q| ask(q))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("joins"))
        .collect();
    assert_eq!(answers, expected[1..]);
    // The three later requests were decoded together for at least part of the time ...
    let steps = metric(addr, "glaze_decode_steps_total") - steps_before;
    let rows = metric(addr, "glaze_decode_rows_total") - rows_before;
    assert!(rows / steps > 1.2, "{rows} rows in {steps} steps");
    // ... and each took the system prompt's whole prefill pieces from the prefix cache.
    let reused = metric(addr, "glaze_prefix_cache_tokens_total") - reused_before;
    match glaze::FrozenBackbone::prefill_chunk(&lm.llama) {
        Some(piece) => assert!(reused >= 3.0 * piece as f64, "{reused} positions reused"),
        None => assert_eq!(reused, 0.0),
    }
}
