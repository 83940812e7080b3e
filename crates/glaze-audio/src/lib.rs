#![doc = include_str!("../README.md")]

pub mod decode;
pub mod error;
pub mod mel;
pub mod resample;

pub use decode::{Audio, AudioLimits, decode_bytes, decode_file};
pub use error::{Error, Result};
pub use mel::{LogMel, MelConfig, log_mel, mel_filters, pad_frames, whisper_input};
pub use resample::{WHISPER_RATE, resample};
