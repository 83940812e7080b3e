#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod adapter;
pub mod bench;
pub mod experiment;
pub mod linear;
pub mod mlp;
pub mod perceiver;
pub mod pool;
pub mod probe;
pub mod report;
pub mod results;
pub mod shapes;
pub mod task;
pub mod textiles;

// The image input and the ViT encoder live in the encoder crate; re-exported so that this
// plugin's users keep one path for everything visual.
pub use glaze_vit::{
    decode, encoder, error, hf, onnx, pos_embed, preprocess, vit, vit_layer, weights,
};

pub use adapter::{VisionAdapter, VisionAdapterConfig};
pub use glaze_vit::{
    DecodeLimits, Error, FeatureSelect, Flavour, Pixels, PreprocessConfig, Preprocessor, Result,
    SquareMode, TensorStore, ViT, ViTConfig, VisionEncoder, decode_bytes, decode_file,
    default_dinov2_path, load_vit,
};
pub use task::{VisionPipeline, VqaItem, VqaTask};
