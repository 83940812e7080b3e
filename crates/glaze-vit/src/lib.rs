#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod decode;
pub mod encoder;
pub mod error;
pub mod hf;
pub mod onnx;
pub mod pos_embed;
pub mod preprocess;
pub mod vit;
pub mod vit_layer;
pub mod weights;

pub use decode::{DecodeLimits, decode_bytes, decode_file};
pub use encoder::{VisionEncoder, default_dinov2_path};
pub use error::{Error, Result};
pub use preprocess::{Pixels, PreprocessConfig, Preprocessor, SquareMode};
pub use vit::{FeatureSelect, ViT, ViTConfig};
pub use weights::{Flavour, TensorStore, load_vit};
