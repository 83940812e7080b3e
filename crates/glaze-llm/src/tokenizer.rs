//! Byte-level BPE tokenizer (via the `tokenizers` crate) and the chat template (via
//! `minijinja`), from GGUF metadata or an HF `tokenizer.json`. From GGUF, the BPE model is
//! [`CompactBpe`] (the same tokens in a quarter of the memory); special tokens, pre-tokenizer
//! and decoder are the `tokenizers` crate's.

use std::path::{Path, PathBuf};

use glaze_core::{ChatMessage, TextCodec};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, TokenizerImpl,
};

use crate::bpe::CompactBpe;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// Qwen2's pre-tokenizer pattern (its tokenizer.json).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Gemma's turns, for Gemma files that carry no chat template (the base models): a system
/// message goes before the first user turn's text, the assistant is `model`.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% if messages and messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}{% set messages = messages[1:] %}{% else %}{% set first = '' %}{% endif %}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n{{ (first if loop.first else '') + message['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

/// End-of-turn tokens that stop generation besides the end of sequence (ChatML, Llama 3,
/// GPT-2 style, SentencePiece, Gemma), where the vocabulary has them as special tokens.
const END_OF_TURN: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "</s>",
    "<end_of_turn>",
];

/// ChatML, used when a model file carries no chat template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The tokenizer pipeline around a [`CompactBpe`] model.
type CompactPipeline = TokenizerImpl<
    CompactBpe,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The tokenizer proper, by where it came from.
#[derive(Debug, Clone)]
enum Inner {
    /// GGUF metadata: byte-level BPE in the compact model.
    Compact(Box<CompactPipeline>),
    /// A `tokenizer.json`: whatever model it names.
    Full(Box<tokenizers::Tokenizer>),
}

/// Runs `$body` with `$t` bound to the pipeline, whichever it is.
macro_rules! with_pipeline {
    ($inner:expr, $t:ident => $body:expr) => {
        match $inner {
            Inner::Compact($t) => $body,
            Inner::Full($t) => $body,
        }
    };
}

/// A model's tokenizer and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: Inner,
    chat_template: String,
    bos_token: String,
    eos_token: String,
    stop_ids: Vec<u32>,
    pad_id: u32,
    /// The id prepended to every input (`tokenizer.ggml.add_bos_token`).
    bos_id: Option<u32>,
    path: PathBuf,
}

fn build_err(path: &Path, message: impl ToString) -> Error {
    Error::TokenizerBuild {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path();
        let model = file.str("tokenizer.ggml.model")?;
        let tokens = file.strings("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = file
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        crate::gguf::Value::I64(i) => *i,
                        crate::gguf::Value::U64(u) => *u as i64,
                        _ => 1,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let inner = match model {
            "gpt2" => Inner::Compact(Box::new(Self::byte_level(file, &tokens, &types)?)),
            "llama" => {
                if file
                    .get("tokenizer.ggml.add_space_prefix")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true)
                {
                    return Err(build_err(
                        path,
                        "a SentencePiece vocabulary with a space prefix (`tokenizer.ggml.add_space_prefix`) is not supported",
                    ));
                }
                Inner::Full(Box::new(crate::spm::sentencepiece_bpe(
                    &tokens, &types, path,
                )?))
            }
            other => {
                return Err(build_err(
                    path,
                    format!(
                        "tokenizer model `{other}` is not supported (byte-level BPE `gpt2`, SentencePiece `llama`)"
                    ),
                ));
            }
        };
        let special: Vec<&str> = types
            .iter()
            .enumerate()
            .filter(|&(_, &t)| t == 3 || t == 4)
            .filter_map(|(i, _)| tokens.get(i).copied())
            .collect();
        let id = |key: &str| file.get(key).and_then(|v| v.as_u64()).map(|v| v as u32);
        let token = |i: Option<u32>| {
            i.and_then(|i| tokens.get(i as usize))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        let eos = id("tokenizer.ggml.eos_token_id");
        let bos = id("tokenizer.ggml.bos_token_id");
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for name in END_OF_TURN {
            if let Some(i) = tokens.iter().position(|t| *t == name)
                && !stop_ids.contains(&(i as u32))
                && special.contains(&name)
            {
                stop_ids.push(i as u32);
            }
        }
        let arch = file.str("general.architecture").unwrap_or_default();
        let template = match file.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
            Some(t) => t,
            // Gemma files without a template (the base models): Gemma's turn format.
            None if arch.starts_with("gemma") => GEMMA_TEMPLATE,
            None => CHATML_TEMPLATE,
        };
        let add_bos = file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(Tokenizer {
            inner,
            chat_template: template.to_string(),
            bos_token: token(bos),
            eos_token: token(eos),
            pad_id: id("tokenizer.ggml.padding_token_id").or(eos).unwrap_or(0),
            stop_ids,
            bos_id: bos.filter(|_| add_bos),
            path: path.to_path_buf(),
        })
    }

    /// The byte-level BPE pipeline of a GGUF vocabulary with merges.
    fn byte_level(file: &GgufFile, tokens: &[&str], types: &[i64]) -> Result<CompactPipeline> {
        let path = file.path();
        let merges = file.strings("tokenizer.ggml.merges")?;
        let bpe = CompactBpe::new(tokens, &merges).map_err(|e| build_err(path, e))?;
        let mut inner = CompactPipeline::new(bpe);
        let pre = file
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            // SmolLM's tokenizer.json: digits split one by one, then GPT-2 byte-level.
            "smollm" | "starcoder" | "refact" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            "gpt2" | "default" => byte_level.into(),
            // Qwen2's tokenizer.json (and llama.cpp's `qwen2` regex): contractions, letters
            // with one leading non-letter, single digits, punctuation runs, newlines, spaces;
            // then byte-level without its own regex. (Its tokenizer.json also normalises to
            // NFC; llama.cpp, and so the GGUF, does not.)
            "qwen2" => {
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_PATTERN.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| build_err(path, e))?;
                let bytes = ByteLevel::new(false, false, false);
                Sequence::new(vec![split.into(), bytes.into()]).into()
            }
            other => {
                return Err(build_err(
                    path,
                    format!(
                        "pre-tokenizer `{other}` is not supported (smollm, qwen2, gpt2, default)"
                    ),
                ));
            }
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevel::default()));
        // Control (3) and user-defined (4) tokens are matched whole in text.
        let special: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|&(_, &t)| t == 3 || t == 4)
            .filter_map(|(i, _)| tokens.get(i))
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(&special);
        Ok(inner)
    }

    /// Loads `tokenizer.json` (and `tokenizer_config.json` for the chat template and special
    /// tokens, when present) from an HF model directory.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| build_err(&path, e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| Error::Json {
                path: cfg_path.clone(),
                source,
            })?,
            Err(_) => serde_json::Value::Null,
        };
        let text_of = |v: Option<&serde_json::Value>| -> Option<String> {
            match v? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let eos_token = text_of(cfg.get("eos_token")).unwrap_or_else(|| "<|endoftext|>".into());
        let bos_token = text_of(cfg.get("bos_token")).unwrap_or_default();
        let mut stop_ids: Vec<u32> = inner.token_to_id(&eos_token).into_iter().collect();
        let special: Vec<String> = inner
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special)
            .map(|t| t.content)
            .collect();
        for name in END_OF_TURN {
            if let Some(i) = inner.token_to_id(name)
                && !stop_ids.contains(&i)
                && special.iter().any(|t| t == name)
            {
                stop_ids.push(i);
            }
        }
        // `add_bos_token` (Gemma's, SentencePiece models'): the splice prepends it once.
        let add_bos = cfg
            .get("add_bos_token")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let bos_id = inner.token_to_id(&bos_token).filter(|_| add_bos);
        let pad_id = text_of(cfg.get("pad_token"))
            .and_then(|t| inner.token_to_id(&t))
            .or_else(|| stop_ids.first().copied())
            .unwrap_or(0);
        Ok(Tokenizer {
            chat_template: cfg
                .get("chat_template")
                .and_then(|v| v.as_str())
                .unwrap_or(CHATML_TEMPLATE)
                .to_string(),
            inner: Inner::Full(Box::new(inner)),
            bos_token,
            eos_token,
            stop_ids,
            pad_id,
            bos_id,
            path,
        })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        with_pipeline!(&self.inner, t => t.get_vocab_size(true))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        with_pipeline!(&self.inner, t => t.token_to_id(token))
    }

    /// The chat template source.
    pub fn chat_template(&self) -> &str {
        &self.chat_template
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text (for exporting a model directory).
    /// From GGUF, the model is written as `tokenizers`' BPE (the same vocabulary and merges).
    pub fn to_json(&self) -> Result<String> {
        let err = |e| build_err(&self.path, e);
        match &self.inner {
            Inner::Full(t) => t.to_string(true).map_err(err),
            Inner::Compact(t) => {
                let mut full = tokenizers::Tokenizer::new(t.get_model().to_bpe().map_err(err)?);
                full.with_pre_tokenizer(t.get_pre_tokenizer().cloned());
                full.with_decoder(t.get_decoder().cloned());
                let mut added: Vec<(u32, AddedToken)> =
                    t.get_added_tokens_decoder().into_iter().collect();
                added.sort_by_key(|(id, _)| *id);
                let added: Vec<AddedToken> = added.into_iter().map(|(_, a)| a).collect();
                full.add_special_tokens(&added);
                full.to_string(true).map_err(err)
            }
        }
    }

    /// End-of-sequence token text.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// A hash of the vocabulary: every token's text (added tokens included), in id order, hex.
    pub fn vocab_digest(&self) -> String {
        let mut vocab: Vec<(u32, String)> = with_pipeline!(&self.inner, t => t.get_vocab(true))
            .into_iter()
            .map(|(token, id)| (id, token))
            .collect();
        vocab.sort_unstable();
        let h = vocab
            .iter()
            .fold(glaze_core::fnv1a64(b"vocab", 0), |h, (id, token)| {
                glaze_core::fnv1a64(token.as_bytes(), glaze_core::fnv1a64(&id.to_le_bytes(), h))
            });
        format!("{h:016x}")
    }

    /// Where the tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        message,
    ))
}

impl TextCodec for Tokenizer {
    fn encode(&self, text: &str) -> glaze_core::Result<Vec<u32>> {
        with_pipeline!(&self.inner, t => t.encode(text, false))
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| glaze_core::Error::Tokenizer {
                message: e.to_string(),
            })
    }

    fn decode(&self, ids: &[u32], keep_special: bool) -> glaze_core::Result<String> {
        with_pipeline!(&self.inner, t => t.decode(ids, !keep_special)).map_err(|e| {
            glaze_core::Error::Tokenizer {
                message: e.to_string(),
            }
        })
    }

    fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> glaze_core::Result<String> {
        let err = |e: minijinja::Error| glaze_core::Error::Template {
            message: format!("{e:#}"),
        };
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template("chat", &self.chat_template).map_err(err)?;
        let template = env.get_template("chat").map_err(err)?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(err)
    }

    fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    fn pad_id(&self) -> u32 {
        self.pad_id
    }

    fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }
}
