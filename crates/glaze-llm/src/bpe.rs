//! A byte-level BPE model kept in a few flat arrays: the `tokenizers` model the GGUF tokenizer
//! runs (special tokens, pre-tokenizer and decoder stay the `tokenizers` crate's own).
//!
//! `tokenizers::models::bpe::BPE` keeps its vocabulary twice as hash maps of owned strings plus a
//! hash map of merges: 6.3 MB for SmolLM2's 49,152 tokens and 48,900 merges, measured with
//! heaptrack. That is 5 % of the generation's peak memory (docs/benchmarks.md, "Memory"). Here
//! the token texts are one string, looked up through a sorted index, and the merges a sorted
//! array: 1.7 MB with the lookup indexes. Tokenizing gives the same ids as `BPE` built from the
//! same vocabulary and merges with the builder's defaults (no dropout, unknown token, prefix,
//! suffix or byte fallback; merges applied): same rules for duplicated vocabulary entries and
//! merges, same merge order. `tests/it/tokenizer.rs` compares the two on varied and random text.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::{Model, Token};

/// One merge rule: `(left, right)` becomes `id`; lower `rank`s apply first.
#[derive(Debug, Clone, Copy)]
struct Merge {
    left: u32,
    right: u32,
    rank: u32,
    id: u32,
}

/// A byte-level BPE vocabulary and its merges, stored flat (see the module docs).
#[derive(Debug, Clone)]
pub struct CompactBpe {
    /// Every token's text, one after the other.
    text: String,
    /// `ends[i]`: where token `i`'s text ends in `text` (it starts at `ends[i - 1]`, or 0).
    ends: Vec<u32>,
    /// The ids that a text maps to, sorted by text. A text given to several ids maps to the
    /// last of them, as in a hash map filled in id order; the others have no text.
    by_text: Vec<u32>,
    /// The merges, sorted by `(left, right)`; a pair given twice keeps its last rule.
    merges: Vec<Merge>,
    /// `merges[first[t]..first[t + 1]]`: the merges whose left token is `t`.
    first: Vec<u32>,
    /// The id of each one-character token below U+0400 (byte-level BPE's alphabet is
    /// U+0021–U+0143), indexed by code point; `u32::MAX`: none.
    char_ids: Vec<u32>,
}

/// Code points covered by [`CompactBpe::char_ids`].
const CHAR_TABLE: usize = 0x400;

/// Why a vocabulary and merge list do not make a BPE model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpeError {
    /// A merge names a token, or makes one, that is not in the vocabulary.
    #[error("merge `{merge}`: token `{token}` is not in the vocabulary")]
    MergeOutOfVocabulary {
        /// The merge, as written.
        merge: String,
        /// The token missing from the vocabulary.
        token: String,
    },
    /// A merge is not two tokens separated by one space.
    #[error("merge `{0}` has no space")]
    MergeWithoutSpace(String),
    /// The token texts do not fit 32-bit offsets.
    #[error("the vocabulary's texts exceed 4 GiB")]
    TooLarge,
}

/// A symbol of a word being merged: a linked list over the word's characters.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: isize,
    next: isize,
    len: usize,
}

impl CompactBpe {
    /// Builds the model from the token texts (the id is the position) and the merges, each
    /// `"left right"` in rank order.
    pub fn new<T: AsRef<str>, M: AsRef<str>>(tokens: &[T], merges: &[M]) -> Result<Self, BpeError> {
        let total: usize = tokens.iter().map(|t| t.as_ref().len()).sum();
        if total > u32::MAX as usize || tokens.len() > u32::MAX as usize {
            return Err(BpeError::TooLarge);
        }
        let mut text = String::with_capacity(total);
        let mut ends = Vec::with_capacity(tokens.len());
        for t in tokens {
            text.push_str(t.as_ref());
            ends.push(text.len() as u32);
        }
        let mut model = CompactBpe {
            text,
            ends,
            by_text: Vec::new(),
            merges: Vec::new(),
            first: Vec::new(),
            char_ids: Vec::new(),
        };
        let mut by_text: Vec<u32> = (0..tokens.len() as u32).collect();
        // Same text: the later id first, so that `dedup` keeps it.
        by_text.sort_unstable_by(|&a, &b| model.text_of(a).cmp(model.text_of(b)).then(b.cmp(&a)));
        by_text.dedup_by(|b, a| model.text_of(*a) == model.text_of(*b));
        model.by_text = by_text;

        let mut rules = Vec::with_capacity(merges.len());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            let m = m.as_ref();
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| BpeError::MergeWithoutSpace(m.to_string()))?;
            let missing = |token: &str| BpeError::MergeOutOfVocabulary {
                merge: m.to_string(),
                token: token.to_string(),
            };
            let left = model.token_to_id(a).ok_or_else(|| missing(a))?;
            let right = model.token_to_id(b).ok_or_else(|| missing(b))?;
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let id = model.token_to_id(&joined).ok_or_else(|| missing(&joined))?;
            rules.push(Merge {
                left,
                right,
                rank: rank as u32,
                id,
            });
        }
        // Same pair: the later rule first, so that `dedup` keeps it.
        rules.sort_unstable_by_key(|r| (r.left, r.right, Reverse(r.rank)));
        rules.dedup_by_key(|r| (r.left, r.right));
        let mut first = vec![0u32; tokens.len() + 1];
        for r in &rules {
            first[r.left as usize + 1] += 1;
        }
        for t in 0..tokens.len() {
            first[t + 1] += first[t];
        }
        model.merges = rules;
        model.first = first;
        model.char_ids = (0..CHAR_TABLE as u32)
            .map(|cp| {
                char::from_u32(cp)
                    .and_then(|c| model.token_to_id(c.encode_utf8(&mut [0; 4])))
                    .unwrap_or(u32::MAX)
            })
            .collect();
        Ok(model)
    }

    /// The text stored at position `id` (whether or not the text maps back to `id`).
    fn text_of(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// The rule merging `(left, right)`, if any.
    fn merge(&self, left: u32, right: u32) -> Option<&Merge> {
        let l = left as usize;
        let run = &self.merges[self.first[l] as usize..self.first[l + 1] as usize];
        run.binary_search_by_key(&right, |r| r.right)
            .ok()
            .map(|i| &run[i])
    }

    /// The id of the one-character token `c` (a slice of a word being merged).
    fn char_id(&self, c: char, text: &str) -> Option<u32> {
        match self.char_ids.get(c as usize) {
            Some(&id) => (id != u32::MAX).then_some(id),
            None => self.token_to_id(text),
        }
    }

    /// The merges in rank order, as `"left right"` texts.
    fn merge_texts(&self) -> Vec<(String, String)> {
        let mut rules = self.merges.clone();
        rules.sort_unstable_by_key(|r| r.rank);
        rules
            .iter()
            .map(|r| {
                (
                    self.text_of(r.left).to_string(),
                    self.text_of(r.right).to_string(),
                )
            })
            .collect()
    }

    /// The same model as `tokenizers`' hash-map BPE (for export: `tokenizer.json`, `save`).
    pub fn to_bpe(&self) -> tokenizers::Result<BPE> {
        let vocab: tokenizers::models::bpe::Vocab = self.get_vocab().into_iter().collect();
        BPE::builder()
            .vocab_and_merges(vocab, self.merge_texts())
            .build()
    }

    /// Applies the merges to one pre-tokenized word, as `tokenizers`' `Word::merge_all` does:
    /// the lowest rank first, then the leftmost position.
    fn merge_word(&self, word: &str) -> Vec<Symbol> {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        for (i, c) in word.char_indices() {
            // A character outside the vocabulary is dropped (no unknown token).
            let Some(id) = self.char_id(c, &word[i..i + c.len_utf8()]) else {
                continue;
            };
            let n = symbols.len() as isize;
            if let Some(last) = symbols.last_mut() {
                last.next = n;
            }
            symbols.push(Symbol {
                id,
                prev: n - 1,
                next: -1,
                len: c.len_utf8(),
            });
        }
        let mut queue: BinaryHeap<Reverse<(u32, usize, u32)>> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| {
                self.merge(w[0].id, w[1].id)
                    .map(|r| Reverse((r.rank, pos, r.id)))
            })
            .collect();
        while let Some(Reverse((_, pos, new_id))) = queue.pop() {
            let here = symbols[pos];
            if here.len == 0 || here.next < 0 {
                continue;
            }
            let next_pos = here.next as usize;
            let right = symbols[next_pos];
            // An entry made stale by an earlier merge.
            if self.merge(here.id, right.id).map(|r| r.id) != Some(new_id) {
                continue;
            }
            symbols[pos].id = new_id;
            symbols[pos].len += right.len;
            symbols[pos].next = right.next;
            symbols[next_pos].len = 0;
            if right.next >= 0 {
                symbols[right.next as usize].prev = pos as isize;
            }
            let current = symbols[pos];
            if current.prev >= 0 {
                let prev = current.prev as usize;
                if let Some(r) = self.merge(symbols[prev].id, current.id) {
                    queue.push(Reverse((r.rank, prev, r.id)));
                }
            }
            if current.next >= 0 {
                let next = current.next as usize;
                if let Some(r) = self.merge(current.id, symbols[next].id) {
                    queue.push(Reverse((r.rank, pos, r.id)));
                }
            }
        }
        symbols.retain(|s| s.len != 0);
        symbols
    }

    /// Bytes held by the model's arrays.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + 4 * (self.ends.capacity()
                + self.by_text.capacity()
                + self.first.capacity()
                + self.char_ids.capacity())
            + std::mem::size_of::<Merge>() * self.merges.capacity()
    }
}

impl Model for CompactBpe {
    // `BPE`'s trainer: training builds a hash-map `BPE` (this model is only loaded).
    type Trainer = BpeTrainer;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        let mut start = 0;
        Ok(self
            .merge_word(sequence)
            .into_iter()
            .map(|s| {
                let offsets = (start, start + s.len);
                start += s.len;
                Token::new(s.id, self.text_of(s.id).to_string(), offsets)
            })
            .collect())
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.by_text
            .binary_search_by(|&id| self.text_of(id).cmp(token))
            .ok()
            .map(|i| self.by_text[i])
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        if id as usize >= self.ends.len() {
            return None;
        }
        let text = self.text_of(id);
        (self.token_to_id(text) == Some(id)).then(|| text.to_string())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.by_text
            .iter()
            .map(|&id| (self.text_of(id).to_string(), id))
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.by_text.len()
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        self.to_bpe()?.save(folder, prefix)
    }

    fn get_trainer(&self) -> BpeTrainer {
        BpeTrainer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpe(tokens: &[&str], merges: &[&str]) -> (CompactBpe, BPE) {
        let compact = CompactBpe::new(tokens, merges).expect("builds");
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                let (a, b) = m.split_once(' ').expect("space");
                (a.to_string(), b.to_string())
            })
            .collect();
        let full = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .expect("builds");
        (compact, full)
    }

    fn ids(model: &impl Model, text: &str) -> Vec<u32> {
        model
            .tokenize(text)
            .expect("tokenizes")
            .iter()
            .map(|t| t.id)
            .collect()
    }

    #[test]
    fn merges_by_rank_then_position_like_tokenizers() {
        let tokens = [
            "a", "b", "c", "ab", "bc", "abc", "aa", "aaa", "aaaa", "ca", "x", "日", "本", "日本",
        ];
        // "b c" outranks "a b": "abc" → a + bc, never ab + c; "a a" chains leftmost first.
        // "日" and "本" are beyond the one-character table.
        let merges = ["b c", "a b", "a bc", "a a", "aa a", "aa aa", "c a", "日 本"];
        let (compact, full) = bpe(&tokens, &merges);
        for text in [
            "abc",
            "ab",
            "abcabc",
            "aaaaa",
            "aaaaaaa",
            "cabca",
            "xax",
            "a",
            "qaq",
            "",
            "ababab",
            "日本日",
            "a日本",
            "本日",
        ] {
            assert_eq!(ids(&compact, text), ids(&full, text), "{text:?}");
            let offsets = |m: &dyn Fn(&str) -> tokenizers::Result<Vec<Token>>| {
                m(text)
                    .expect("tokenizes")
                    .into_iter()
                    .map(|t| (t.value, t.offsets))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                offsets(&|s| compact.tokenize(s)),
                offsets(&|s| full.tokenize(s)),
                "{text:?}"
            );
        }
        // "b c" (rank 0) first, then "a bc": one token; nothing merges "abc" with "a".
        assert_eq!(ids(&compact, "abca"), vec![5, 0]);
        assert_eq!(compact.get_vocab_size(), full.get_vocab_size());
        assert_eq!(compact.get_vocab(), full.get_vocab());
    }

    #[test]
    fn duplicated_tokens_and_merges_resolve_like_hash_maps() {
        // "b" twice (ids 1 and 3): the text maps to 3, id 1 has no text; the pair "a b" twice:
        // the later rule (rank 2) wins, and "a" + "b" joins to "ab" either way.
        let tokens = ["a", "b", "ab", "b", "c", "bc"];
        let merges = ["a b", "b c", "a b"];
        let (compact, full) = bpe(&tokens, &merges);
        for id in 0..7 {
            assert_eq!(compact.id_to_token(id), full.id_to_token(id), "id {id}");
        }
        assert_eq!(compact.token_to_id("b"), Some(3));
        for text in ["abc", "ab", "bcab", "abab"] {
            assert_eq!(ids(&compact, text), ids(&full, text), "{text:?}");
        }
        assert_eq!(compact.get_vocab_size(), 5);
        assert_eq!(compact.get_vocab(), full.get_vocab());
    }

    #[test]
    fn bad_merges_are_typed_errors() {
        let err = CompactBpe::new(&["a", "b"], &["a b"]).expect_err("no ab");
        assert_eq!(
            err,
            BpeError::MergeOutOfVocabulary {
                merge: "a b".into(),
                token: "ab".into()
            }
        );
        let err = CompactBpe::new(&["a", "b", "ab"], &["ab"]).expect_err("no space");
        assert_eq!(err, BpeError::MergeWithoutSpace("ab".into()));
        let err = CompactBpe::new(&["a"], &["a z"]).expect_err("no z");
        assert!(err.to_string().contains("`z`"), "{err}");
    }

    #[test]
    fn exports_the_same_model() {
        let tokens = ["h", "e", "l", "o", "he", "ll", "hell", "hello"];
        let merges = ["h e", "l l", "he ll", "hell o"];
        let (compact, _) = bpe(&tokens, &merges);
        let back = compact.to_bpe().expect("exports");
        for text in ["hello", "hell", "olleh", "hehello"] {
            assert_eq!(ids(&compact, text), ids(&back, text), "{text:?}");
        }
        assert_eq!(ids(&compact, "hello"), vec![7]);
        assert!(compact.heap_bytes() > 0);
    }
}
