//! The textile-defect images of PyPI `conformal-clip-data==0.1.4` (`cargo xtask fetch textiles`):
//! 1,000 nominal, 500 global-defect and 500 local-defect JPEGs, in one folder per class. Split
//! per class, deterministically by seed, into train / validation / test.

use std::path::{Path, PathBuf};

use glaze_core::SplitMix64;

use crate::error::{Error, Result};

/// Cache folder of the textile images.
pub const TEXTILES_PACKAGE: &str = "conformal-clip-data-0.1.4";

/// Where `cargo xtask fetch textiles` puts them.
pub fn default_textiles_dir() -> PathBuf {
    glaze_core::cache_dir().join(TEXTILES_PACKAGE)
}

/// The classes: folder name and the answer the LLM is taught to give.
pub const CLASSES: [(&str, &str); 3] = [
    ("nominal", "nominal"),
    ("global", "global defect"),
    ("local", "local defect"),
];

/// The question asked about every textile image (the options are in the question, so the frozen
/// LLM without an image can still answer in words: the "no image" baseline).
pub const QUESTION: &str =
    "Inspect this fabric. Is it nominal, or does it show a global defect or a local defect?";

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    /// The file.
    pub path: PathBuf,
    /// Index into [`CLASSES`].
    pub class: usize,
}

/// Train / validation / test lists.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training images.
    pub train: Vec<LabelledImage>,
    /// Validation images.
    pub val: Vec<LabelledImage>,
    /// Test images.
    pub test: Vec<LabelledImage>,
}

/// Lists the images under `dir/{nominal,global,local}` and splits each class by `fractions`
/// (train, validation; the rest is test) after a seeded shuffle.
pub fn load_splits(dir: &Path, fractions: (f64, f64), seed: u64) -> Result<Splits> {
    let mut splits = Splits {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for (class, (folder, _)) in CLASSES.iter().enumerate() {
        let sub = dir.join(folder);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
            .map_err(|e| Error::Dataset {
                path: sub.clone(),
                problem: format!(
                    "cannot list the class folder ({e}); run `cargo xtask fetch textiles`"
                ),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                    matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                })
            })
            .collect();
        if files.is_empty() {
            return Err(Error::Dataset {
                path: sub,
                problem: "no image in the class folder".into(),
            });
        }
        files.sort();
        let n = files.len();
        let mut rng = SplitMix64::new(seed ^ (class as u64 + 1).wrapping_mul(0x9E37_79B9));
        let order = rng.permutation(n);
        let files: Vec<PathBuf> = order.into_iter().map(|i| files[i].clone()).collect();
        let n_train = (n as f64 * fractions.0).round() as usize;
        let n_val = (n as f64 * fractions.1).round() as usize;
        for (i, path) in files.into_iter().enumerate() {
            let item = LabelledImage { path, class };
            if i < n_train {
                splits.train.push(item);
            } else if i < n_train + n_val {
                splits.val.push(item);
            } else {
                splits.test.push(item);
            }
        }
    }
    Ok(splits)
}
