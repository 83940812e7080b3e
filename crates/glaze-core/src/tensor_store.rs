//! Named f32 tensors read from an encoder's weights file(s), before a plugin's loader puts them
//! into its modules. Every file dtype is cast to f32 at load; names and layouts stay the file's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

use crate::error::{Error, Result};

/// One tensor: shape and f32 values.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Tensors by name, with the file or directory they came from for error messages.
#[derive(Debug, Clone)]
pub struct TensorStore {
    /// The file or directory.
    pub path: PathBuf,
    /// Tensors by name.
    pub tensors: HashMap<String, StoredTensor>,
}

fn weights(path: &Path, problem: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl TensorStore {
    /// An empty store for `path`.
    pub fn new(path: &Path) -> Self {
        TensorStore {
            path: path.to_path_buf(),
            tensors: HashMap::new(),
        }
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&StoredTensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| weights(&self.path, format!("missing tensor `{name}`")))?;
        if t.shape != shape {
            return Err(weights(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape
                ),
            ));
        }
        Ok(t)
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// How many `{head}{i}{tail}` names exist for i = 0, 1, 2, … without a gap.
    pub fn count(&self, head: &str, tail: &str) -> usize {
        (0..)
            .take_while(|i| self.tensors.contains_key(&format!("{head}{i}{tail}")))
            .count()
    }

    /// The part of the first (sorted) name ending in `suffix` before it: the prefix a file's
    /// wrapper adds (`model.`, `backbone.`, …).
    pub fn prefix_of(&self, suffix: &str) -> Option<String> {
        let mut found: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| k.ends_with(suffix))
            .collect();
        found.sort();
        found
            .first()
            .map(|k| k.trim_end_matches(suffix).to_string())
    }

    /// Adds every tensor of the safetensors `files` (f32, f16 or bf16).
    pub fn read_safetensors(&mut self, files: &[PathBuf]) -> Result<()> {
        for file in files {
            let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
            let st = SafeTensors::deserialize(&bytes)
                .map_err(|e| weights(file, format!("not a safetensors file: {e}")))?;
            for (name, view) in st.tensors() {
                let data = view_to_f32(&view).ok_or_else(|| {
                    weights(
                        file,
                        format!(
                            "tensor `{name}` has dtype {:?}; expected f32, f16 or bf16",
                            view.dtype()
                        ),
                    )
                })?;
                self.tensors.insert(
                    name,
                    StoredTensor {
                        shape: view.shape().to_vec(),
                        data,
                    },
                );
            }
        }
        Ok(())
    }
}

/// The `*.safetensors` files of a directory, sorted; an error naming the directory when there are
/// none.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(weights(dir, "no *.safetensors file"));
    }
    Ok(files)
}

/// The values of a safetensors tensor as f32 (F32, F16 and BF16 are cast; `None` for other
/// dtypes). Shared by every loader of safetensors weights.
pub fn view_to_f32(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}
