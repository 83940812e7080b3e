//! The synthetic sentences `cargo xtask speech-data` renders with espeak-ng (a folder of WAVs
//! plus `manifest.jsonl`); FSDD comes from `glaze-whisper`.

use std::path::{Path, PathBuf};

pub use glaze_whisper::corpus::{DIGIT_WORDS, Split, Utterance, fsdd};

use crate::error::{Error, Result};

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

/// The transcript of `jfk.wav` (`../shared/ASSETS.md`), the real voice every run is tested on.
pub const JFK_TEXT: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";
