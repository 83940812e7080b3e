#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod adapter;
pub mod asr;
pub mod bench;
pub mod conv;
pub mod corpus;
pub mod error;
pub mod evaluation;
pub mod experiment;
pub mod frame_stack;
pub mod report;
pub mod stream;
pub mod wer;

pub use adapter::{SpeechAdapter, SpeechAdapterConfig};
pub use asr::{AsrTask, SpeechItem, SpeechPipeline};
pub use corpus::{Split, Utterance, fsdd, synthetic};
pub use error::{Error, Result};
pub use glaze_whisper::bank::{encode_files, open_cache};
pub use stream::{StreamResult, StreamingRecognizer};
pub use wer::{WerCount, wer};
