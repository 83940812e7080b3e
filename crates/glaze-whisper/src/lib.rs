#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod bank;
pub mod corpus;
pub mod ct2;
pub mod decode;
pub mod encoder;
pub mod error;
pub mod mel;
pub mod resample;
pub mod whisper;
pub mod whisper_layer;
pub mod whisper_load;

pub use bank::{encode_clips, encode_files, open_cache};
pub use decode::{Audio, AudioLimits, decode_bytes, decode_file};
pub use encoder::{AudioEncoder, Window, default_base_path, default_tiny_en_path};
pub use error::{Error, Result};
pub use mel::{LogMel, MelConfig, log_mel, mel_filters, pad_frames, whisper_input};
pub use resample::{WHISPER_RATE, resample};
pub use whisper::{WhisperEncoder, WhisperEncoderConfig};
