//! A SentencePiece vocabulary from GGUF (`tokenizer.ggml.model = llama`, scores and byte
//! tokens, no merges) as a BPE model with byte fallback, built the way transformers builds it
//! from the same file (`integrations/gguf`, Gemma's builder), so both give the same ids.
//!
//! - Tokens that are runs of spaces are stored as real spaces; they are respelled `▁…▁`, the
//!   spelling the text has after its spaces become `▁`.
//! - The merges come from the vocabulary: every token cut into two tokens, best first. Gemma's
//!   scores do not follow its merge order, the order of the tokens in the file does; ties go to
//!   the longer left piece, then the longer right one.
//! - Control tokens (type 3) are special added tokens, user-defined ones (type 4) plain added
//!   tokens: both are matched whole in the text before the BPE.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};

/// GGUF token types.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

fn build_err(path: &Path, message: impl ToString) -> Error {
    Error::TokenizerBuild {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The respelling of a token made only of spaces.
fn respell(token: &str) -> String {
    if token.contains(' ') && token.trim().is_empty() {
        "\u{2581}".repeat(token.chars().count())
    } else {
        token.to_string()
    }
}

/// Merges implied by the vocabulary (transformers' `generate_merges` with position scores).
fn merges(order: &[String], vocab: &HashMap<String, u32>) -> Vec<(String, String)> {
    // (score: higher first, left length, right length; left id, right id within a token).
    let mut all: Vec<(i64, usize, usize, String, String)> = Vec::new();
    for token in order {
        let score = -i64::from(vocab[token]);
        let chars: Vec<(usize, char)> = token.char_indices().collect();
        let mut local = Vec::new();
        for &(at, _) in chars.iter().skip(1) {
            let (l, r) = token.split_at(at);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                local.push((li, ri, l, r));
            }
        }
        local.sort_by_key(|&(li, ri, _, _)| (li, ri));
        for (_, _, l, r) in local {
            all.push((
                score,
                l.chars().count(),
                r.chars().count(),
                l.to_string(),
                r.to_string(),
            ));
        }
    }
    // Stable, descending on the key: equal keys keep their order.
    all.sort_by_key(|a| std::cmp::Reverse((a.0, a.1, a.2)));
    all.into_iter().map(|(_, _, _, l, r)| (l, r)).collect()
}

/// The tokenizer of a GGUF SentencePiece vocabulary.
pub(crate) fn sentencepiece_bpe(
    tokens: &[&str],
    types: &[i64],
    path: &Path,
) -> Result<tokenizers::Tokenizer> {
    let respelled: Vec<String> = tokens.iter().map(|t| respell(t)).collect();
    // As a Python dict built in order: a repeated spelling keeps its first place in the
    // iteration order and its last id.
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(respelled.len());
    let mut order: Vec<String> = Vec::with_capacity(respelled.len());
    for (i, t) in respelled.iter().enumerate() {
        if vocab.insert(t.clone(), i as u32).is_none() {
            order.push(t.clone());
        }
    }
    let merges = merges(&order, &vocab);
    let model_vocab: Vocab = vocab.iter().map(|(k, &v)| (k.clone(), v)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(model_vocab, merges)
        .unk_token("<unk>".into())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| build_err(path, e))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_normalizer(Some(
        Replace::new(" ", "\u{2581}").map_err(|e| build_err(path, e))?,
    ));
    tok.with_pre_tokenizer(Some(
        Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(|e| build_err(path, e))?,
    ));
    tok.with_decoder(Some(DecoderSequence::new(vec![
        Replace::new("\u{2581}", " ")
            .map_err(|e| build_err(path, e))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ])));
    let added = |kind: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types)
            .filter(|&(t, &ty)| ty == kind && (special || vocab.contains_key(*t)))
            .map(|(t, _)| AddedToken::from(t.to_string(), special).normalized(false))
            .collect()
    };
    tok.add_special_tokens(&added(CONTROL, true));
    tok.add_tokens(&added(USER_DEFINED, false));
    Ok(tok)
}
