//! The SmolLM2 tokenizer (from GGUF metadata) and chat template.

use glaze::TextCodec;
use glaze::core::ChatMessage;
use glaze_tests::{smollm2, smollm2_reference};

#[test]
fn reproduces_reference_ids() {
    let model = smollm2();
    let r = smollm2_reference();
    let want: Vec<u32> = r["prompt_token_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    let got = model
        .tokenizer
        .encode(r["prompt"].as_str().expect("prompt"))
        .expect("encodes");
    assert_eq!(got, want);
    // Digits are split one by one (SmolLM's pre-tokenizer): "2018" → 4 tokens.
    assert_eq!(model.tokenizer.encode("2018").expect("encodes").len(), 4);
}

#[test]
fn round_trips_varied_text() {
    let model = smollm2();
    let texts = [
        "plain ASCII sentence.",
        "Unicode: naïve café, Ελληνικά, 日本語, emoji 🦀🔥, RTL עברית",
        "  leading and   inner spaces\ttabs\n\nnewlines\r\n  ",
        "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3]; // code\n}\n",
        "numbers 3.14159 and 1,000,000 and 2026-11-26",
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
        "",
    ];
    for text in texts {
        let ids = model.tokenizer.encode(text).expect("encodes");
        let back = model.tokenizer.decode(&ids, true).expect("decodes");
        assert_eq!(back, text, "round trip of {text:?} via {ids:?}");
    }
    // Special tokens are single ids and are dropped when decoding without them.
    let ids = model
        .tokenizer
        .encode("<|im_start|>hi<|im_end|>")
        .expect("encodes");
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(model.tokenizer.decode(&ids, false).expect("decodes"), "hi");
}

#[test]
fn chat_template_renders_chatml_with_default_system_prompt() {
    let model = smollm2();
    let text = model
        .tokenizer
        .render_chat(&[ChatMessage::user("Hi <image>")], true)
        .expect("renders");
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi <image><|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(model.tokenizer.stop_ids().contains(&2));
}
