//! Adapter checkpoints: one safetensors file with the adapter's weights only, optionally the
//! optimizer's moments, and metadata — what the adapter is, which encoder and which backbone
//! (architecture, width, layers used, weights hash) it was trained against, and the training
//! state needed to resume (step, optimizer step, RNG, early-stopping state).
//!
//! Files are written atomically ([`crate::atomic::write_atomic`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::optim::AdamWSettings;
use glaze_core::adapter::EncoderSpec;
use glaze_core::backbone::BackboneSpec;
use glaze_core::error::{Error, Result};
use glaze_core::params::NamedTensor;

/// Version of the metadata layout.
pub const FORMAT_VERSION: u32 = 1;

/// The backbone an adapter was trained against: what the adapter depends on (architecture,
/// width, blocks run, vocabulary, embedding table) and which weights it saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackboneIdentity {
    /// Architecture, e.g. `llama`.
    pub architecture: String,
    /// Model name.
    pub name: String,
    /// Embedding width.
    pub d_model: usize,
    /// Number of blocks the adapter's pipeline runs (a truncated backbone uses fewer than
    /// the model has; 0 when the pipeline runs none).
    pub layers_used: usize,
    /// Hash of the weights file(s).
    pub weights_hash: String,
    /// Hash of the tokenizer's vocabulary (empty in checkpoints that predate it).
    #[serde(default)]
    pub vocab_digest: String,
    /// Fingerprint of the embedding table ([`glaze_core::embedding_sketch`]; empty in
    /// checkpoints that predate it).
    #[serde(default)]
    pub embedding_sketch: Vec<f32>,
}

/// The environment variable that lets an expert load an adapter on a backbone its checkpoint
/// does not match (same width), with a warning instead of an error.
pub const ALLOW_BACKBONE_MISMATCH: &str = "GLAZE_ALLOW_BACKBONE_MISMATCH";

/// Largest sketch distance at which two tables count as one model's ([`sketch_distance`]):
/// quantizations of one model differ by their rounding error, a few percent; two models by
/// about √2.
///
/// [`sketch_distance`]: glaze_core::sketch_distance
pub const SAME_MODEL_DISTANCE: f64 = 0.3;

/// How an adapter's backbone relates to the one at hand.
#[derive(Debug, Clone, PartialEq)]
pub enum BackboneMatch {
    /// The same weights.
    Same,
    /// The same model in other weights (another quantization, an HF copy): same architecture,
    /// width, blocks and vocabulary, embedding sketches this far apart.
    Compatible {
        /// The sketches' relative distance.
        distance: f64,
    },
    /// Another model, or one the checkpoint cannot tell apart from another: why.
    Different(String),
}

impl BackboneIdentity {
    /// The identity of `spec` when `layers_used` of its blocks run.
    pub fn of(spec: &BackboneSpec, layers_used: usize) -> Self {
        BackboneIdentity {
            architecture: spec.architecture.clone(),
            name: spec.name.clone(),
            d_model: spec.d_model,
            layers_used,
            weights_hash: spec.weights_hash.clone(),
            vocab_digest: spec.vocab_digest.clone(),
            embedding_sketch: spec.embedding_sketch.clone(),
        }
    }

    /// How the backbone `other` (at hand) relates to this one (the checkpoint's).
    pub fn compare(&self, other: &BackboneIdentity) -> BackboneMatch {
        let differs = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            BackboneMatch::Different(format!("{what}: {a} vs {b}"))
        };
        if self.architecture != other.architecture {
            return differs("architecture", &self.architecture, &other.architecture);
        }
        if self.d_model != other.d_model {
            return differs("width", &self.d_model, &other.d_model);
        }
        if self.layers_used != other.layers_used {
            return differs("blocks run", &self.layers_used, &other.layers_used);
        }
        if self.weights_hash == other.weights_hash {
            return BackboneMatch::Same;
        }
        if self.vocab_digest.is_empty() || other.vocab_digest.is_empty() {
            return BackboneMatch::Different(
                "other weights, and no vocabulary digest to compare".into(),
            );
        }
        if self.vocab_digest != other.vocab_digest {
            return differs("vocabulary", &self.vocab_digest, &other.vocab_digest);
        }
        match glaze_core::sketch_distance(&self.embedding_sketch, &other.embedding_sketch) {
            Some(distance) if distance <= SAME_MODEL_DISTANCE => {
                BackboneMatch::Compatible { distance }
            }
            Some(distance) => BackboneMatch::Different(format!(
                "embedding tables {distance:.3} apart (one model's quantizations stay within {SAME_MODEL_DISTANCE})"
            )),
            None => {
                BackboneMatch::Different("other weights, and no embedding sketch to compare".into())
            }
        }
    }
}

impl std::fmt::Display for BackboneIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, width {}, {} layers, weights {})",
            self.name, self.architecture, self.d_model, self.layers_used, self.weights_hash
        )
    }
}

/// What an adapter is and what it was trained against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterIdentity {
    /// Adapter kind, e.g. `time-llm`.
    pub kind: String,
    /// The adapter's configuration as JSON (enough to rebuild it).
    pub config: serde_json::Value,
    /// The frozen encoder, if the pipeline has one.
    pub encoder: Option<EncoderSpec>,
    /// The frozen backbone.
    pub backbone: BackboneIdentity,
}

/// The family of adapters a checkpoint holds, read from its identity's kind (`vision/…`,
/// `audio/…`, `speech/…`, `timeseries/…`; anything else is `Other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// Images (`glaze-vision`).
    Vision,
    /// General audio (`glaze-audio`'s aligner).
    Audio,
    /// Speech recognition (`glaze-speech`).
    Speech,
    /// Time series (`glaze-timeseries`).
    TimeSeries,
    /// A kind no plugin of this workspace writes.
    Other,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Vision => "vision",
            Modality::Audio => "audio",
            Modality::Speech => "speech",
            Modality::TimeSeries => "time-series",
            Modality::Other => "other",
        })
    }
}

impl AdapterIdentity {
    /// The adapter family this identity's kind names.
    pub fn modality(&self) -> Modality {
        match self.kind.split('/').next() {
            Some("vision") => Modality::Vision,
            Some("audio") => Modality::Audio,
            Some("speech") => Modality::Speech,
            Some("timeseries") => Modality::TimeSeries,
            _ => Modality::Other,
        }
    }

    /// The identity of an adapter of `kind` with serialisable `config`, trained against
    /// `encoder` (if any) and all blocks of `backbone`.
    pub fn new(
        kind: impl Into<String>,
        config: &impl serde::Serialize,
        encoder: Option<EncoderSpec>,
        backbone: &dyn glaze_core::backbone::FrozenBackbone,
    ) -> Result<Self> {
        Ok(AdapterIdentity {
            kind: kind.into(),
            config: serde_json::to_value(config).map_err(|e| Error::InvalidConfig {
                field: "adapter",
                problem: e.to_string(),
            })?,
            encoder,
            backbone: BackboneIdentity::of(backbone.spec(), backbone.spec().n_layers),
        })
    }

    /// Checks that a checkpoint's identity fits the pipeline it is loaded into:
    /// same kind, same encoder, same backbone. The error names both sides and the file.
    pub fn check_compatible(&self, expected: &AdapterIdentity, file: &Path) -> Result<()> {
        let mismatch =
            |what: &'static str, found: String, wanted: String| Error::IdentityMismatch {
                path: file.to_path_buf(),
                what,
                found,
                expected: wanted,
            };
        if self.kind != expected.kind {
            return Err(mismatch(
                "adapter kind",
                self.kind.clone(),
                expected.kind.clone(),
            ));
        }
        let allow = std::env::var(ALLOW_BACKBONE_MISMATCH).is_ok_and(|v| v == "1");
        self.check_backbone(expected, file, allow)?;
        if self.encoder != expected.encoder {
            let show = |e: &Option<EncoderSpec>| match e {
                Some(e) => format!(
                    "{} (width {}, weights {})",
                    e.name, e.feature_dim, e.weights_hash
                ),
                None => "no encoder".into(),
            };
            return Err(mismatch(
                "encoder",
                show(&self.encoder),
                show(&expected.encoder),
            ));
        }
        Ok(())
    }

    /// The backbone part of [`AdapterIdentity::check_compatible`]: the same weights load; the
    /// same model in other weights loads with a warning that states the difference; another
    /// model is an error naming both, unless `allow_mismatch` (the expert override,
    /// [`ALLOW_BACKBONE_MISMATCH`]) and the widths agree.
    pub fn check_backbone(
        &self,
        expected: &AdapterIdentity,
        file: &Path,
        allow_mismatch: bool,
    ) -> Result<()> {
        let (trained, here) = (&self.backbone, &expected.backbone);
        match trained.compare(here) {
            BackboneMatch::Same => {}
            BackboneMatch::Compatible { distance } => tracing::warn!(
                "{}: trained on {trained}, loading on {here}: same architecture, width and \
                 vocabulary, other weights (embedding tables {distance:.4} apart, as another \
                 quantization or copy of one model)",
                file.display()
            ),
            BackboneMatch::Different(why) => {
                if !allow_mismatch || trained.d_model != here.d_model {
                    return Err(Error::IdentityMismatch {
                        path: file.to_path_buf(),
                        what: "backbone",
                        found: format!("{trained}"),
                        expected: format!("{here} ({why})"),
                    });
                }
                tracing::warn!(
                    "{}: trained on {trained}, loading on {here} ({why}), as {ALLOW_BACKBONE_MISMATCH}=1 asks",
                    file.display()
                );
            }
        }
        Ok(())
    }
}

/// Where a training run stands (enough to resume it exactly).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Optimizer settings.
    pub optimizer: AdamWSettings,
    /// Optimizer update count (AdamW bias correction).
    pub optimizer_t: u64,
    /// State of the data-order generator.
    pub rng: u64,
    /// Best validation value so far, and the step it was reached at.
    pub best: Option<(f64, usize)>,
    /// Validations since the best one (early stopping).
    pub bad_evals: usize,
    /// True once early stopping fired.
    pub stopped: bool,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Identity of the adapter.
    pub identity: AdapterIdentity,
    /// Adapter weights.
    pub weights: Vec<NamedTensor>,
    /// Training state, for resumable checkpoints.
    pub state: Option<TrainState>,
    /// Optimizer moments, for resumable checkpoints.
    pub optimizer: Vec<NamedTensor>,
}

fn bad(path: &Path, problem: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl Checkpoint {
    /// Loads a checkpoint and reads its adapter configuration as `C`; `what` names the expected
    /// kind in the error (e.g. "a speech adapter").
    pub fn load_config<C: serde::de::DeserializeOwned>(
        path: &Path,
        what: &str,
    ) -> Result<(Checkpoint, C)> {
        let ck = Checkpoint::load(path)?;
        let config =
            serde_json::from_value(ck.identity.config.clone()).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                problem: format!("not {what}: {e}"),
            })?;
        Ok((ck, config))
    }

    /// Serialises and writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("glaze.format".to_string(), FORMAT_VERSION.to_string());
        let json = |v: serde_json::Result<String>| v.map_err(|e| bad(path, e.to_string()));
        meta.insert(
            "glaze.identity".to_string(),
            json(serde_json::to_string(&self.identity))?,
        );
        if let Some(state) = &self.state {
            meta.insert(
                "glaze.train_state".to_string(),
                json(serde_json::to_string(state))?,
            );
        }
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .weights
            .iter()
            .map(|t| (format!("adapter.{}", t.name), t))
            .chain(
                self.optimizer
                    .iter()
                    .map(|t| (format!("optim.{}", t.name), t)),
            )
            .map(|(name, t)| {
                let b: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, b, t.shape.clone())
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, b, shape)| {
                TensorView::new(Dtype::F32, shape.clone(), b)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| bad(path, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let out =
            safetensors::serialize(views, Some(meta)).map_err(|e| bad(path, e.to_string()))?;
        crate::atomic::write_atomic(path, &out)
    }

    /// Reads a checkpoint; anything malformed is an [`Error::Checkpoint`] naming the file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&buf)
            .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        let meta = header
            .metadata()
            .clone()
            .ok_or_else(|| bad(path, "no metadata: not a Glaze adapter checkpoint"))?;
        let version = meta.get("glaze.format").ok_or_else(|| {
            bad(
                path,
                "no `glaze.format` entry: not a Glaze adapter checkpoint",
            )
        })?;
        if version != &FORMAT_VERSION.to_string() {
            return Err(bad(
                path,
                format!("format version {version}, this build reads {FORMAT_VERSION}"),
            ));
        }
        let identity: AdapterIdentity = meta
            .get("glaze.identity")
            .ok_or_else(|| bad(path, "no `glaze.identity` entry"))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| bad(path, format!("bad identity: {e}")))
            })?;
        let state: Option<TrainState> = match meta.get("glaze.train_state") {
            Some(s) => Some(
                serde_json::from_str(s)
                    .map_err(|e| bad(path, format!("bad training state: {e}")))?,
            ),
            None => None,
        };
        let st = SafeTensors::deserialize(&buf).map_err(|e| bad(path, e.to_string()))?;
        let mut weights = Vec::new();
        let mut optimizer = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        for name in names {
            let view = st.tensor(&name).map_err(|e| bad(path, e.to_string()))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(
                    path,
                    format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let shape = view.shape().to_vec();
            if let Some(n) = name.strip_prefix("adapter.") {
                weights.push(NamedTensor {
                    name: n.to_string(),
                    shape,
                    data,
                });
            } else if let Some(n) = name.strip_prefix("optim.") {
                optimizer.push(NamedTensor {
                    name: n.to_string(),
                    shape,
                    data,
                });
            } else {
                return Err(bad(path, format!("unexpected tensor `{name}`")));
            }
        }
        if weights.is_empty() {
            return Err(bad(path, "the file holds no adapter weights"));
        }
        Ok(Checkpoint {
            identity,
            weights,
            state,
            optimizer,
        })
    }

    /// The weights by name.
    pub fn weight_map(&self) -> BTreeMap<String, NamedTensor> {
        self.weights
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect()
    }

    /// Loads a checkpoint written for `expected` (kind, encoder and backbone must match).
    pub fn load_for(path: &Path, expected: &AdapterIdentity) -> Result<Checkpoint> {
        let ck = Self::load(path)?;
        ck.identity.check_compatible(expected, path)?;
        Ok(ck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_kind(kind: &str) -> AdapterIdentity {
        AdapterIdentity {
            kind: kind.into(),
            config: serde_json::Value::Null,
            encoder: None,
            backbone: BackboneIdentity {
                architecture: "llama".into(),
                name: "b".into(),
                d_model: 8,
                layers_used: 1,
                weights_hash: "0".into(),
                vocab_digest: "v".into(),
                embedding_sketch: vec![1.0, 2.0, 3.0, 4.0],
            },
        }
    }

    /// Another quantization of one model (same structure and vocabulary, nearby sketch) is
    /// compatible; another model, another vocabulary, another width or a checkpoint without
    /// digests is not; the expert override loads a different model of the same width only.
    #[test]
    fn backbones_compare_by_what_adapters_depend_on() {
        let path = Path::new("adapter.safetensors");
        let trained = with_kind("vision/mlp");
        let with = |f: &dyn Fn(&mut BackboneIdentity)| {
            let mut id = trained.clone();
            id.backbone.weights_hash = "1".into();
            f(&mut id.backbone);
            id
        };
        assert_eq!(
            trained.backbone.compare(&trained.backbone),
            BackboneMatch::Same
        );
        let requantized = with(&|b| b.embedding_sketch = vec![1.05, 1.95, 3.1, 3.9]);
        assert!(matches!(
            trained.backbone.compare(&requantized.backbone),
            BackboneMatch::Compatible { distance } if distance < 0.05
        ));
        assert!(trained.check_compatible(&requantized, path).is_ok());
        let others = [
            with(&|b| b.embedding_sketch = vec![-4.0, 1.0, -2.0, 3.0]),
            with(&|b| b.vocab_digest = "w".into()),
            with(&|b| b.vocab_digest = String::new()),
            with(&|b| b.d_model = 16),
            with(&|b| b.architecture = "qwen2".into()),
        ];
        for other in &others {
            assert!(matches!(
                trained.backbone.compare(&other.backbone),
                BackboneMatch::Different(_)
            ));
            let err = trained
                .check_compatible(other, path)
                .expect_err("another model");
            assert!(err.to_string().contains("adapter.safetensors"), "{err}");
        }
        assert!(trained.check_backbone(&others[0], path, true).is_ok());
        assert!(trained.check_backbone(&others[3], path, true).is_err());
    }

    #[test]
    fn the_modality_is_read_from_the_kind() {
        for (kind, want) in [
            ("vision/mlp", Modality::Vision),
            ("audio/apt", Modality::Audio),
            ("speech/frame-stack", Modality::Speech),
            ("timeseries/time-llm", Modality::TimeSeries),
            ("imu-linear", Modality::Other),
            ("speechless/x", Modality::Other),
        ] {
            assert_eq!(with_kind(kind).modality(), want, "{kind}");
        }
    }
}
