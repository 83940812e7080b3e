#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod aligner;
pub mod experiment;
pub mod sounds;
pub mod tasks;

// The audio input and encoder live in the encoder crate; re-exported so that this plugin's
// users keep one path for everything audio.
pub use glaze_whisper::{
    bank, corpus, ct2, decode, encoder, error, mel, resample, whisper, whisper_layer, whisper_load,
};

pub use aligner::{AptAligner, AptConfig};
pub use glaze_whisper::{
    Audio, AudioEncoder, AudioLimits, Error, LogMel, MelConfig, Result, WHISPER_RATE,
    WhisperEncoder, WhisperEncoderConfig, Window, decode_bytes, decode_file, default_base_path,
    default_tiny_en_path, encode_clips, encode_files, log_mel, mel_filters, open_cache, pad_frames,
    whisper_input,
};
pub use tasks::{AudioItem, AudioPipeline, AudioQaTask};
