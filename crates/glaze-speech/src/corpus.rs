//! Transcribed speech: the Free Spoken Digit Dataset (`../shared/data/fsdd`) and the synthetic
//! sentences `cargo xtask speech-data` renders with espeak-ng (a folder of WAVs plus
//! `manifest.jsonl`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
    let entries = std::fs::read_dir(&rec).map_err(|e| Error::data(&rec, format!("cannot list: {e}")))?;
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
            [d, s, i] => d.parse::<usize>().ok().zip(i.parse::<usize>().ok()).map(|(d, i)| (d, *s, i)),
            _ => None,
        };
        let Some((digit, speaker, index)) = parsed.filter(|(d, _, _)| *d < 10) else {
            return Err(Error::data(&path, "not an FSDD name `{digit}_{speaker}_{index}.wav`"));
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
        return Err(Error::data(&rec, "no FSDD recordings"));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// One line of a synthetic corpus manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestLine {
    /// WAV file, relative to the manifest.
    pub file: String,
    /// The sentence.
    pub text: String,
    /// espeak-ng voice.
    pub voice: String,
    /// Words per minute.
    pub speed: u32,
    /// Pitch (0–99).
    pub pitch: u32,
    /// Split.
    pub split: Split,
}

/// A synthetic corpus: `dir/manifest.jsonl`, one [`ManifestLine`] per clip.
pub fn synthetic(dir: &Path) -> Result<Vec<Utterance>> {
    let manifest = dir.join("manifest.jsonl");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        Error::data(
            &manifest,
            format!("cannot read ({e}); run `cargo xtask speech-data` to synthesise the corpus"),
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let line: ManifestLine = serde_json::from_str(l)
                .map_err(|e| Error::data(&manifest, format!("line {}: {e}", n + 1)))?;
            Ok(Utterance {
                path: dir.join(&line.file),
                text: line.text,
                speaker: line.voice,
                split: line.split,
            })
        })
        .collect()
}

/// Where `cargo xtask speech-data` writes the synthetic corpus.
pub fn default_synthetic_dir() -> PathBuf {
    glaze_core::cache_dir().join("speech-synth")
}
