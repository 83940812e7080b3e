//! Hugging Face model directories: `config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, and `tokenizer.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::weights::WeightSource;

/// The safetensors shards of an HF model directory, held in memory.
#[derive(Debug)]
pub struct HfWeights {
    dir: PathBuf,
    shards: Vec<(PathBuf, Vec<u8>)>,
    index: BTreeMap<String, usize>,
}

impl HfWeights {
    /// Reads `model.safetensors`, or every shard listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| Error::Io {
                path: index_path.clone(),
                source,
            })?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: index_path.clone(),
                    source,
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Config {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    problem: "missing or not an object".into(),
                })?;
            let mut names: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            return Err(Error::MissingTensor {
                path: dir.to_path_buf(),
                name: "model.safetensors (or model.safetensors.index.json)".into(),
            });
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for file in files {
            let bytes = std::fs::read(&file).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
                path: file.clone(),
                message: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), shards.len());
            }
            drop(st);
            shards.push((file, bytes));
        }
        Ok(HfWeights {
            dir: dir.to_path_buf(),
            shards,
            index,
        })
    }
}

impl HfWeights {
    /// FNV-1a over every shard's bytes, in file-name order.
    pub fn digest(&self) -> u64 {
        self.shards
            .iter()
            .fold(0, |h, (_, bytes)| glaze_core::fnv1a64(bytes, h))
    }
}

impl WeightSource for HfWeights {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let &shard = self.index.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.dir.clone(),
            name: name.to_string(),
        })?;
        let (file, bytes) = &self.shards[shard];
        let st_err = |message: String| Error::Safetensors {
            path: file.clone(),
            message,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| st_err(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| st_err(e.to_string()))?;
        let values = glaze_core::tensor_store::view_to_f32(&view).ok_or_else(|| {
            st_err(format!(
                "tensor `{name}` has dtype {:?}; only F32, F16 and BF16 are loaded",
                view.dtype()
            ))
        })?;
        Ok((view.shape().to_vec(), values))
    }
}
