//! Which corpora a recognition run reads, and word error rates per named test set — what
//! `glaze speech train|eval|list-tests|wer` load, score and print.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use glaze_core::{FrozenBackbone, TextCodec};
use glaze_train::FeatureCache;
use glaze_whisper::{AudioEncoder, AudioLimits};

use crate::adapter::SpeechAdapter;
use crate::asr::SpeechItem;
use crate::corpus::{JFK_TEXT, Split, Utterance, fsdd, synthetic};
use crate::error::{Error, Result};
use crate::experiment::{SpeechData, SplitLimits, evaluate};
use crate::wer::{WerCount, wer};

/// The corpora of a run: FSDD's spoken digits and the synthetic corpus when given, and always
/// `jfk.wav`, a real voice on a topic no training clip has.
#[derive(Debug, Clone)]
pub struct Corpora {
    /// The FSDD folder (holding `recordings/`).
    pub fsdd: Option<PathBuf>,
    /// The synthetic corpus folder (`cargo xtask speech-data`).
    pub synthetic: Option<PathBuf>,
    /// `jfk.wav`.
    pub jfk: PathBuf,
}

impl Corpora {
    /// Each corpus's utterances by name, jfk last.
    fn utterances(&self) -> Result<Vec<(&'static str, Vec<Utterance>)>> {
        let mut sets = Vec::new();
        if let Some(dir) = &self.fsdd {
            sets.push(("fsdd", fsdd(dir)?));
        }
        if let Some(dir) = &self.synthetic {
            sets.push(("synthetic", synthetic(dir)?));
        }
        Ok(sets)
    }

    fn jfk_utterance(&self) -> Utterance {
        Utterance {
            path: self.jfk.clone(),
            text: JFK_TEXT.into(),
            speaker: "jfk".into(),
            split: Split::Test,
        }
    }

    /// Encodes (through `cache`) and splits every corpus; jfk is a test set of its own.
    pub fn load(
        &self,
        limits: SplitLimits,
        encoder: &AudioEncoder,
        cache: &FeatureCache,
        device: &Device,
    ) -> Result<SpeechData> {
        let mut data = SpeechData::default();
        for (name, utts) in self.utterances()? {
            data.add_corpus(name, &utts, limits, encoder, Some(cache), device)?;
        }
        let bank = glaze_whisper::bank::encode_files(
            encoder,
            Some(cache),
            std::slice::from_ref(&self.jfk),
            &AudioLimits::default(),
            device,
        )?;
        let clip = data.bank.extend(bank);
        data.tests.push((
            "jfk".into(),
            vec![SpeechItem {
                clip,
                text: JFK_TEXT.into(),
            }],
        ));
        Ok(data)
    }

    /// The utterances of each test set, as [`Corpora::load`] picks them (at most `test` per
    /// corpus).
    pub fn test_sets(&self, test: usize) -> Result<Vec<(String, Vec<Utterance>)>> {
        let mut sets: Vec<(String, Vec<Utterance>)> = self
            .utterances()?
            .into_iter()
            .map(|(name, utts)| {
                // The same picks as `SpeechData::add_corpus`.
                let kept = glaze_whisper::corpus::spread(&utts, Split::Test, test)
                    .into_iter()
                    .cloned()
                    .collect();
                (name.to_string(), kept)
            })
            .collect();
        sets.push(("jfk".into(), vec![self.jfk_utterance()]));
        Ok(sets)
    }
}

/// Longest transcript generated for a test set (jfk's sentence is long).
pub fn max_transcript_tokens(set: &str) -> usize {
    if set == "jfk" { 48 } else { 24 }
}

/// Word error rate of one named test set.
#[derive(Debug, Clone)]
pub struct SetScore {
    /// The set.
    pub name: String,
    /// Errors and reference words.
    pub counts: WerCount,
    /// Clips.
    pub clips: usize,
    /// Seconds spent transcribing.
    pub secs: f64,
    /// The first few (reference, transcript) pairs.
    pub examples: Vec<(String, String)>,
}

impl SetScore {
    /// Report lines: the rate, then the examples.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{:>10}: WER {:.3} ({} errors / {} words, {} clips, {:.0} s)",
            self.name,
            self.counts.rate(),
            self.counts.errors,
            self.counts.words,
            self.clips,
            self.secs
        )];
        for (r, h) in &self.examples {
            lines.push(format!("            \"{r}\" → \"{h}\""));
        }
        lines
    }
}

/// Every test set's scores as a result row stores them, by set name.
pub fn scores_json(scores: &[SetScore]) -> serde_json::Value {
    let map = scores
        .iter()
        .map(|s| {
            let row = serde_json::json!({
                "wer": s.counts.rate(), "errors": s.counts.errors, "words": s.counts.words,
                "clips": s.clips, "secs": s.secs,
                "examples": s.examples.iter().map(|(r, h)| serde_json::json!([r, h])).collect::<Vec<_>>(),
            });
            (s.name.clone(), row)
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Transcribes and scores every test set of `data`, `batch` clips at a time.
pub fn evaluate_sets(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    adapter: &SpeechAdapter,
    data: &SpeechData,
    batch: usize,
) -> Result<Vec<SetScore>> {
    let mut out = Vec::new();
    for (name, items) in &data.tests {
        let start = Instant::now();
        let (hyps, counts) = evaluate(
            backbone,
            codec,
            adapter,
            &data.bank,
            items,
            batch,
            max_transcript_tokens(name),
        )?;
        out.push(SetScore {
            name: name.clone(),
            counts,
            clips: items.len(),
            secs: start.elapsed().as_secs_f64(),
            examples: items
                .iter()
                .zip(hyps)
                .take(3)
                .map(|(i, h)| (i.text.clone(), h))
                .collect(),
        });
    }
    Ok(out)
}

/// Word error rates per set of a JSON-lines file of `{"set", "ref", "hyp"}` objects (another
/// system's transcripts, scored the same way as Glaze's own).
pub fn wer_of_lines(file: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::data(file, e.to_string()))?;
    let mut sets: std::collections::BTreeMap<String, WerCount> = Default::default();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |problem: String| Error::data(file, format!("line {}: {problem}", n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("no `{k}`")))
        };
        let (set, r, h) = (field("set")?, field("ref")?, field("hyp")?);
        let c = wer([(r.as_str(), h.as_str())]);
        let e = sets.entry(set).or_default();
        e.errors += c.errors;
        e.words += c.words;
    }
    Ok(serde_json::Value::Object(
        sets.into_iter()
            .map(|(k, c)| {
                let row =
                    serde_json::json!({"wer": c.rate(), "errors": c.errors, "words": c.words});
                (k, row)
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_of_lines_sums_per_set_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("glaze-wer-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("hyps.jsonl");
        std::fs::write(
            &file,
            "{\"set\":\"a\",\"ref\":\"one two\",\"hyp\":\"one three\"}\n\n\
             {\"set\":\"a\",\"ref\":\"four\",\"hyp\":\"four\"}\n\
             {\"set\":\"b\",\"ref\":\"five six\",\"hyp\":\"\"}\n",
        )
        .expect("write");
        let v = wer_of_lines(&file).expect("scores");
        assert_eq!(v["a"]["errors"], 1);
        assert_eq!(v["a"]["words"], 3);
        assert_eq!(v["b"]["errors"], 2);
        std::fs::write(&file, "{\"set\":\"a\",\"ref\":\"x\"}\n").expect("write");
        let err = wer_of_lines(&file).expect_err("no hyp").to_string();
        assert!(
            err.contains("hyps.jsonl") && err.contains("line 1") && err.contains("`hyp`"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
