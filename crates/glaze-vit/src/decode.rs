//! Image decoding with limits: PNG, JPEG, WebP, GIF (first frame), BMP and TIFF through the
//! `image` crate, EXIF orientation applied, every pixel format converted to 8-bit RGB.
//!
//! The header is read and checked against [`DecodeLimits`] before any pixel buffer exists, so a
//! 60000×60000 header or a decompression bomb is a typed error, not an out-of-memory abort.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// Limits applied before and during decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLimits {
    /// Largest width or height accepted, in pixels. Default 16384.
    pub max_side: u32,
    /// Largest pixel count (width × height) accepted. Default 64 Mpx.
    pub max_pixels: u64,
    /// Largest allocation the decoder may make, in bytes. Default 512 MiB.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 16_384,
            max_pixels: 64 << 20,
            max_alloc: 512 << 20,
        }
    }
}

/// Reads and decodes an image file to RGB.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, path, limits)
}

/// Decodes an in-memory image to RGB; `name` is used in errors.
pub fn decode_bytes(bytes: &[u8], name: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let path = name.to_path_buf();
    if bytes.is_empty() {
        return Err(Error::Corrupt {
            path,
            detail: "the file is empty".into(),
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    if reader.format().is_none() {
        return Err(Error::UnsupportedFormat {
            path,
            detail: "the content is not PNG, JPEG, WebP, GIF, BMP or TIFF".into(),
        });
    }
    let mut reader = reader;
    // Width and height are checked by `check_dimensions` right after the header is read (with
    // the numbers in the error); the allocation limit guards everything the decoder allocates.
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits.max_alloc);
    reader.limits(lim);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_error(e, &path, limits))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(&path, width, height, limits)?;
    // Some decoders treat the allocation limit as advisory; the output buffer is checked here.
    if decoder.total_bytes() > limits.max_alloc {
        return Err(Error::MemoryLimit {
            path,
            limit_bytes: limits.max_alloc,
        });
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| map_error(e, &path, limits))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, &path, limits))?;
    img.apply_orientation(orientation);
    Ok(to_rgb(img))
}

/// Width, height and pixel count against the limits.
fn check_dimensions(path: &Path, width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    let too_large = |limit: String| Error::TooLarge {
        path: path.to_path_buf(),
        width,
        height,
        limit,
    };
    if width == 0 || height == 0 {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!("the header says {width}×{height} pixels"),
        });
    }
    if width.max(height) > limits.max_side {
        return Err(too_large(format!("{} pixels per side", limits.max_side)));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(too_large(format!("{} pixels", limits.max_pixels)));
    }
    Ok(())
}

/// Grey, grey+alpha, RGBA, 16-bit and float images to 8-bit RGB. Alpha is dropped (as Pillow's
/// `convert("RGB")` does), 16-bit values are scaled to 8 bits.
fn to_rgb(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

fn map_error(e: ImageError, path: &Path, limits: &DecodeLimits) -> Error {
    let path: PathBuf = path.to_path_buf();
    match e {
        ImageError::Limits(l) => match l.kind() {
            image::error::LimitErrorKind::DimensionError => Error::TooLarge {
                path,
                width: 0,
                height: 0,
                limit: format!("{} pixels per side", limits.max_side),
            },
            _ => Error::MemoryLimit {
                path,
                limit_bytes: limits.max_alloc,
            },
        },
        ImageError::Unsupported(u) => Error::UnsupportedFormat {
            path,
            detail: u.to_string(),
        },
        ImageError::IoError(io) => Error::Corrupt {
            path,
            detail: format!("truncated ({io})"),
        },
        other => Error::Corrupt {
            path,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba, RgbaImage};

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encodes");
        out.into_inner()
    }

    fn sample() -> DynamicImage {
        let mut img = RgbaImage::new(5, 3);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = Rgba([(x * 50) as u8, (y * 80) as u8, 7, 128]);
        }
        DynamicImage::ImageRgba8(img)
    }

    #[test]
    fn formats_decode_to_the_same_rgb() {
        let img = sample();
        let want = img.to_rgb8();
        for format in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::Tiff] {
            let got = decode_bytes(
                &encode(&img, format),
                Path::new("x"),
                &DecodeLimits::default(),
            )
            .expect("decodes");
            assert_eq!(got, want, "{format:?}");
        }
        // Lossy or palette formats: same size, close colours.
        let rgb = DynamicImage::ImageRgb8(want.clone());
        for format in [ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::WebP] {
            let got = decode_bytes(
                &encode(&rgb, format),
                Path::new("x"),
                &DecodeLimits::default(),
            )
            .expect("decodes");
            assert_eq!(got.dimensions(), (5, 3), "{format:?}");
        }
    }

    #[test]
    fn grey_and_sixteen_bit_become_rgb() {
        let grey = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(2, 2, |x, _| {
            image::Luma([if x == 0 { 0u16 } else { 65535 }])
        }));
        let got = decode_bytes(
            &encode(&grey, ImageFormat::Png),
            Path::new("g.png"),
            &DecodeLimits::default(),
        )
        .expect("decodes");
        assert_eq!(got.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(got.get_pixel(1, 1).0, [255, 255, 255]);
    }

    #[test]
    fn limits_refuse_large_headers_before_decoding() {
        let png = encode(&sample(), ImageFormat::Png);
        let limits = DecodeLimits {
            max_side: 4,
            ..DecodeLimits::default()
        };
        let err = decode_bytes(&png, Path::new("big.png"), &limits).expect_err("too wide");
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("big.png"), "{err}");
        let limits = DecodeLimits {
            max_pixels: 10,
            ..DecodeLimits::default()
        };
        let err = decode_bytes(&png, Path::new("big.png"), &limits).expect_err("too many");
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    width: 5,
                    height: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// An image inside the pixel limits whose decoding needs more memory than allowed.
    #[test]
    fn allocation_limit_is_a_typed_error() {
        let big = DynamicImage::ImageRgb8(RgbImage::new(200, 200));
        let png = encode(&big, ImageFormat::Png);
        let limits = DecodeLimits {
            max_alloc: 10_000,
            ..DecodeLimits::default()
        };
        let err = match decode_bytes(&png, Path::new("wide.png"), &limits) {
            Ok(img) => panic!("decoded {:?} despite the limit", img.dimensions()),
            Err(e) => e,
        };
        assert!(
            matches!(
                err,
                Error::MemoryLimit {
                    limit_bytes: 10_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("wide.png"));
    }

    #[test]
    fn truncated_empty_and_unknown_are_typed() {
        let png = encode(&sample(), ImageFormat::Png);
        let cut = &png[..png.len() / 2];
        let err = decode_bytes(cut, Path::new("cut.png"), &DecodeLimits::default())
            .expect_err("truncated");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("cut.png"));
        let err =
            decode_bytes(&[], Path::new("e.png"), &DecodeLimits::default()).expect_err("empty");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let err = decode_bytes(
            b"hello, not an image",
            Path::new("t.txt"),
            &DecodeLimits::default(),
        )
        .expect_err("text");
        assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    }
}
