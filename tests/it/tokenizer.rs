//! The SmolLM2 tokenizer (from GGUF metadata) and chat template.

use glaze::TextCodec;
use glaze::core::ChatMessage;
use glaze::llm::{GgufFile, default_model_path};
use glaze_tests::{smollm2, smollm2_reference};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

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

/// `tokenizers`' own hash-map BPE built from the GGUF metadata, independently of Glaze's
/// loader: the reference the compact model must agree with.
fn reference_tokenizer() -> tokenizers::Tokenizer {
    let file = GgufFile::open(default_model_path()).expect("fetched model");
    let tokens = file.strings("tokenizer.ggml.tokens").expect("tokens");
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges = file
        .strings("tokenizer.ggml.merges")
        .expect("merges")
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').expect("space");
            (a.to_string(), b.to_string())
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .expect("builds");
    let mut t = tokenizers::Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre: PreTokenizerWrapper =
        Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into();
    t.with_pre_tokenizer(Some(pre));
    t.with_decoder(Some(ByteLevel::default()));
    let types = file
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .expect("token types");
    let special: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v.as_u64(), Some(3 | 4)))
        .map(|(i, _)| AddedToken::from(tokens[i].to_string(), true))
        .collect();
    assert!(
        special.len() > 10,
        "SmolLM2 has {} special tokens",
        special.len()
    );
    t.add_special_tokens(&special);
    t
}

/// Text from many scripts and character classes, with the pre-tokenizer's edge cases
/// (contractions, digit runs, whitespace before words, special tokens and their fragments).
fn random_texts(count: usize, seed: u64) -> Vec<String> {
    const PIECES: &[&str] = &[
        "a",
        "e",
        "t",
        "the",
        "The",
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        "0",
        "7",
        "42",
        "2026",
        "٣",
        "½",
        "²",
        "Ⅻ",
        "'s",
        "'ll",
        "'re",
        "'d",
        "'",
        "\"",
        ".",
        ",",
        "!?",
        "...",
        "-",
        "_",
        "(",
        ")",
        "{",
        "}",
        "<",
        ">",
        "|",
        "/",
        "\\",
        "#",
        "$",
        "%",
        "@",
        "é",
        "naïve",
        "Ελληνικά",
        "Привет",
        "日本語",
        "中文",
        "한국어",
        "عربى",
        "עברית",
        "हिन्दी",
        "e\u{301}",
        "ß",
        "İ",
        "🦀",
        "🔥",
        "👩\u{200d}💻",
        "\u{fe0f}",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|im",
        "_start|>",
        "<repo_name>",
        "fn",
        "let",
        "::",
        "->",
        "=>",
        "==",
        "!=",
        "//",
        "/*",
        "*/",
        "http://",
        ".rs",
        "tokenizer",
        "\u{0}",
        "\u{7f}",
        "\u{ad}",
        "\u{200b}",
        "\u{feff}",
    ];
    let mut state = seed;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    (0..count)
        .map(|_| {
            let len = 1 + next(40);
            (0..len).map(|_| PIECES[next(PIECES.len())]).collect()
        })
        .collect()
}

#[test]
fn the_compact_bpe_matches_tokenizers_own_bpe() {
    let ours = &smollm2().tokenizer;
    let reference = reference_tokenizer();
    assert_eq!(ours.vocab_size(), reference.get_vocab_size(true));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut texts: Vec<String> = ["README.md", "docs/ARCHITECTURE.md", "docs/benchmarks.md"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).expect("repository text"))
        .collect();
    texts.push(
        std::fs::read_to_string(root.join("crates/glaze-llm/src/tokenizer.rs")).expect("source"),
    );
    texts.extend(random_texts(3000, 7));
    // Long words: thousands of merges in one pre-tokenized piece.
    texts.push("a".repeat(5000));
    texts.push("ab".repeat(3000));
    texts.push("1234567890".repeat(100));
    texts.push("=".repeat(4000));
    let mut tokens = 0;
    for text in &texts {
        let got = ours.encode(text).expect("encodes");
        let want = reference.encode(text.as_str(), false).expect("encodes");
        assert_eq!(got, want.get_ids(), "ids of {text:?}");
        for keep_special in [false, true] {
            assert_eq!(
                ours.decode(&got, keep_special).expect("decodes"),
                reference.decode(&got, !keep_special).expect("decodes"),
                "decoding {got:?}"
            );
        }
        tokens += got.len();
    }
    assert!(tokens > 50_000, "{tokens} tokens compared");
    for probe in ["<|im_end|>", "Ġthe", "hello", "ĠĠĠ", "not-a-token-at-all"] {
        assert_eq!(
            ours.token_id(probe),
            reference.token_to_id(probe),
            "{probe}"
        );
    }
}
