//! Labelled clips: the Free Spoken Digit Dataset (`../shared/data/fsdd`) with its speakers and
//! its index split — shared by speaker identification here and recognition in `glaze-speech`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn data(path: &Path, problem: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Which split an utterance belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training.
    Train,
    /// Validation (early stopping, model choice).
    Val,
    /// Held out for the reported numbers.
    Test,
}

/// One transcribed clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// The audio file.
    pub path: PathBuf,
    /// What is said.
    pub text: String,
    /// Who says it (FSDD speaker, or the espeak-ng voice).
    pub speaker: String,
    /// Split.
    pub split: Split,
}

/// Digit words, indexed by digit.
pub const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// FSDD from `dir` (the folder holding `recordings/`): `{digit}_{speaker}_{index}.wav`, text =
/// the digit's word. Split: index 0–4 test (the dataset's own), 5–9 validation, rest train.
pub fn fsdd(dir: &Path) -> Result<Vec<Utterance>> {
    let rec = dir.join("recordings");
    let entries = std::fs::read_dir(&rec).map_err(|source| Error::Io {
        path: rec.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        let Some(stem) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "wav"))
        else {
            continue;
        };
        let parts: Vec<&str> = stem.split('_').collect();
        let parsed = match parts.as_slice() {
            [d, s, i] => d
                .parse::<usize>()
                .ok()
                .zip(i.parse::<usize>().ok())
                .map(|(d, i)| (d, *s, i)),
            _ => None,
        };
        let Some((digit, speaker, index)) = parsed.filter(|(d, _, _)| *d < 10) else {
            return Err(data(
                &path,
                "not an FSDD name `{digit}_{speaker}_{index}.wav`",
            ));
        };
        let split = match index {
            0..=4 => Split::Test,
            5..=9 => Split::Val,
            _ => Split::Train,
        };
        out.push(Utterance {
            text: DIGIT_WORDS[digit].to_string(),
            speaker: speaker.to_string(),
            split,
            path,
        });
    }
    if out.is_empty() {
        return Err(data(&rec, "no FSDD recordings"));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// FSDD utterances of a split, speakers and digits interleaved by a fixed stride walk.
pub fn spread(utts: &[Utterance], split: Split, n: usize) -> Vec<&Utterance> {
    let all: Vec<&Utterance> = utts.iter().filter(|u| u.split == split).collect();
    let len = all.len();
    if len == 0 {
        return Vec::new();
    }
    let step = (len / 3..len).find(|s| gcd(*s, len) == 1).unwrap_or(1);
    (0..len.min(n)).map(|i| all[(i * step) % len]).collect()
}

/// Greatest common divisor (for the stride walks).
pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
