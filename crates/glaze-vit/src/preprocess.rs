//! Preprocessing as pure CPU code: resize the shortest side (bicubic), then center-crop or pad to
//! a square, then per-channel mean/std normalisation into a planar `[3, S, S]` float buffer.
//!
//! Matches the usual DINOv2/CLIP pipelines (`Resize(S, bicubic)` + `CenterCrop(S)` +
//! `Normalize(ImageNet)`); `Pad` is LLaVA's `expand2square`: the image keeps its aspect ratio on a
//! square canvas of the mean colour.

use burn::prelude::*;
use image::RgbImage;
use image::imageops::{FilterType, resize};

use crate::error::{Error, Result};

/// How the resized image becomes a square.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SquareMode {
    /// Shortest side to `size`, then the central `size × size` square (DINOv2, CLIP).
    CenterCrop,
    /// Longest side to `size`, centred on a square canvas of the mean colour (LLaVA's pad).
    Pad,
}

/// ImageNet channel means (RGB).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Configuration of a [`Preprocessor`].
#[derive(Config, Debug, PartialEq)]
pub struct PreprocessConfig {
    /// Side of the square model input in pixels. Default 224.
    #[config(default = 224)]
    pub size: usize,
    /// Patch side of the encoder; `size` must be a multiple of it. Default 14 (DINOv2).
    #[config(default = 14)]
    pub patch_size: usize,
    /// Crop or pad. Default center crop.
    #[config(default = "SquareMode::CenterCrop")]
    pub mode: SquareMode,
    /// Channel means subtracted after scaling to [0, 1]. Default ImageNet.
    #[config(default = "IMAGENET_MEAN")]
    pub mean: [f32; 3],
    /// Channel standard deviations. Default ImageNet.
    #[config(default = "IMAGENET_STD")]
    pub std: [f32; 3],
}

/// A preprocessed image: planar RGB floats `[3, size, size]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// Planar values, channel-major.
    pub data: Vec<f32>,
    /// Side length.
    pub size: usize,
}

impl Pixels {
    /// Stacks images of one size into a `[B, 3, S, S]` tensor.
    pub fn batch(images: &[Pixels], device: &Device) -> Tensor<4> {
        let s = images.first().map_or(0, |p| p.size);
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for p in images {
            assert_eq!(p.size, s, "invariant: one preprocessor makes one size");
            data.extend_from_slice(&p.data);
        }
        Tensor::from_data(TensorData::new(data, [images.len(), 3, s, s]), device)
    }
}

/// Turns decoded images into model input.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: PreprocessConfig,
}

impl Preprocessor {
    /// Validates the configuration.
    pub fn new(config: PreprocessConfig) -> Result<Self> {
        if config.patch_size == 0
            || config.size == 0
            || !config.size.is_multiple_of(config.patch_size)
        {
            return Err(Error::config(
                "size",
                format!(
                    "{} must be a positive multiple of the patch size {}",
                    config.size, config.patch_size
                ),
            ));
        }
        if config.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::config("std", "every channel std must be positive"));
        }
        Ok(Preprocessor { config })
    }

    /// The configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// Patch grid side: the encoder sees `grid × grid` patches.
    pub fn grid(&self) -> usize {
        self.config.size / self.config.patch_size
    }

    /// How many feature vectors the encoder makes per image: the patches, plus one for CLS.
    pub fn num_features(&self, with_cls: bool) -> usize {
        self.grid() * self.grid() + usize::from(with_cls)
    }

    /// Resize, square and normalise one image.
    pub fn prepare(&self, img: &RgbImage) -> Pixels {
        let s = self.config.size;
        let (w, h) = img.dimensions();
        let square = match self.config.mode {
            SquareMode::CenterCrop => {
                let (nw, nh) = scaled(w, h, s, false);
                let resized = resize(img, nw, nh, FilterType::CatmullRom);
                let x0 = (nw - s as u32) / 2;
                let y0 = (nh - s as u32) / 2;
                image::imageops::crop_imm(&resized, x0, y0, s as u32, s as u32).to_image()
            }
            SquareMode::Pad => {
                let (nw, nh) = scaled(w, h, s, true);
                let resized = resize(img, nw, nh, FilterType::CatmullRom);
                let fill = self
                    .config
                    .mean
                    .map(|m| (m * 255.0).round().clamp(0.0, 255.0) as u8);
                let mut canvas = RgbImage::from_pixel(s as u32, s as u32, image::Rgb(fill));
                let x0 = (s as u32 - nw) / 2;
                let y0 = (s as u32 - nh) / 2;
                image::imageops::replace(&mut canvas, &resized, x0.into(), y0.into());
                canvas
            }
        };
        self.normalise(&square)
    }

    /// Mean/std normalisation of an image already `size × size`.
    pub fn normalise(&self, img: &RgbImage) -> Pixels {
        let s = self.config.size;
        assert_eq!(
            img.dimensions(),
            (s as u32, s as u32),
            "invariant: normalise gets a square of the configured size"
        );
        let mut data = vec![0.0f32; 3 * s * s];
        for (x, y, p) in img.enumerate_pixels() {
            let i = y as usize * s + x as usize;
            for c in 0..3 {
                data[c * s * s + i] =
                    (f32::from(p.0[c]) / 255.0 - self.config.mean[c]) / self.config.std[c];
            }
        }
        Pixels { data, size: s }
    }
}

/// New size with the shortest (or, for `fit`, the longest) side equal to `s`.
fn scaled(w: u32, h: u32, s: usize, fit: bool) -> (u32, u32) {
    let s = s as u64;
    let (w64, h64) = (u64::from(w), u64::from(h));
    let short_is_w = (w64 <= h64) != fit;
    let (nw, nh) = if short_is_w {
        (
            s,
            ((h64 * s + w64 / 2) / w64).max(s * u64::from(!fit)).max(1),
        )
    } else {
        (
            ((w64 * s + h64 / 2) / h64).max(s * u64::from(!fit)).max(1),
            s,
        )
    };
    (nw as u32, nh as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(mode: SquareMode) -> Preprocessor {
        Preprocessor::new(
            PreprocessConfig::new()
                .with_size(28)
                .with_mode(mode)
                .with_mean([0.5; 3])
                .with_std([0.25; 3]),
        )
        .expect("valid")
    }

    #[test]
    fn shortest_side_and_token_count() {
        assert_eq!(scaled(640, 480, 224, false), (299, 224));
        assert_eq!(scaled(480, 640, 224, false), (224, 299));
        assert_eq!(scaled(640, 480, 224, true), (224, 168));
        let p = Preprocessor::new(PreprocessConfig::new()).expect("valid");
        assert_eq!(p.grid(), 16);
        assert_eq!(p.num_features(true), 257);
        assert!(Preprocessor::new(PreprocessConfig::new().with_size(225)).is_err());
    }

    #[test]
    fn constant_image_normalises_exactly() {
        let img = RgbImage::from_pixel(40, 30, image::Rgb([255, 128, 0]));
        let px = pre(SquareMode::CenterCrop).prepare(&img);
        assert_eq!(px.size, 28);
        let plane = 28 * 28;
        assert!(px.data[..plane].iter().all(|v| (v - 2.0).abs() < 1e-6));
        assert!(
            px.data[plane..2 * plane]
                .iter()
                .all(|v| (v - (128.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6)
        );
        assert!(px.data[2 * plane..].iter().all(|v| (v + 2.0).abs() < 1e-6));
    }

    #[test]
    fn crop_keeps_the_centre_and_pad_keeps_everything() {
        // Left third red, middle green, right third blue; 84×28 image.
        let img = RgbImage::from_fn(84, 28, |x, _| match x / 28 {
            0 => image::Rgb([255, 0, 0]),
            1 => image::Rgb([0, 255, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        let crop = pre(SquareMode::CenterCrop).prepare(&img);
        let plane = 28 * 28;
        // The crop is the green middle: green channel high everywhere away from the edges.
        assert!(crop.data[plane + 14 * 28 + 14] > 1.9);
        assert!(crop.data[14 * 28 + 14] < -1.9);
        let pad = pre(SquareMode::Pad).prepare(&img);
        // Padded rows (top) hold the mean colour, i.e. zero after normalisation.
        assert!(pad.data[..28].iter().all(|v| v.abs() < 0.02));
        // The middle row spans red → green → blue.
        let row = 14 * 28;
        assert!(pad.data[row + 2] > 1.9, "red at the left");
        assert!(pad.data[2 * plane + row + 25] > 1.9, "blue at the right");
    }
}
