//! Word error rate: (substitutions + deletions + insertions) / reference words, after the same
//! normalisation on both sides — lower case, punctuation dropped (apostrophes inside words
//! kept), single digits spelled out ("7" → "seven"), whitespace collapsed.

const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// The word list compared by [`wer`].
pub fn normalise(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .flat_map(|w| {
            if w.chars().all(|c| c.is_ascii_digit()) {
                w.bytes()
                    .map(|b| DIGITS[usize::from(b - b'0')].to_string())
                    .collect::<Vec<_>>()
            } else {
                vec![w.to_string()]
            }
        })
        .collect()
}

/// Word-level edit distance between two word lists.
pub fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

/// Errors and reference words summed over pairs of (reference, hypothesis).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WerCount {
    /// Edit operations.
    pub errors: usize,
    /// Reference words.
    pub words: usize,
}

impl WerCount {
    /// `errors / words` (0 for no words).
    pub fn rate(&self) -> f64 {
        self.errors as f64 / self.words.max(1) as f64
    }
}

/// Corpus-level WER counts over `(reference, hypothesis)` pairs.
pub fn wer<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> WerCount {
    let mut c = WerCount::default();
    for (r, h) in pairs {
        let r = normalise(r);
        c.errors += edit_distance(&r, &normalise(h));
        c.words += r.len();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_substitutions_deletions_insertions() {
        let c = wer([("the cat sat", "the bat sat down")]);
        assert_eq!((c.errors, c.words), (2, 3));
        let c = wer([("ask not what", "")]);
        assert_eq!((c.errors, c.words), (3, 3));
        assert_eq!(wer([("Seven.", " 7 ")]).errors, 0);
        assert_eq!(normalise("Don't STOP, ok?"), ["don't", "stop", "ok"]);
    }
}
