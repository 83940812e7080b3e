//! The bodies of answers: usage counts, complete answers and stream chunks, in OpenAI's shapes.

use serde_json::{Value, json};

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt positions: text tokens and soft tokens.
    pub prompt_tokens: usize,
    /// Of those, soft tokens (from image, audio or series parts).
    pub soft_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
}

impl Usage {
    /// The `usage` object; soft tokens are reported in `prompt_tokens_details.soft_tokens`.
    pub fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"soft_tokens": self.soft_tokens, "cached_tokens": 0},
        })
    }
}

/// A complete `chat.completion` body.
pub fn completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish: &str,
    usage: Usage,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }],
        "usage": usage.to_json(),
    })
}

/// A complete `text_completion` body (`/v1/completions`).
pub fn text_completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish: Option<&str>,
    usage: Option<Usage>,
) -> Value {
    let mut v = json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
    });
    if let Some(u) = usage {
        v["usage"] = u.to_json();
    }
    v
}

/// One `chat.completion.chunk` of a stream: a role, a piece of text, or the finish reason.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}
