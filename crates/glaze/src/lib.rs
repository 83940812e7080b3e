#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[cfg(feature = "audio")]
pub use glaze_audio as audio;
pub use glaze_core as core;
pub use glaze_core::{
    Adapter, ChatMessage, Encoder, Error, ForwardOptions, FrozenBackbone, Prompt, PromptTemplate,
    SoftPrompt, SoftTokens, TextCodec,
};
pub use glaze_kernels as kernels;
pub use glaze_llm as llm;
#[cfg(feature = "speech")]
pub use glaze_speech as speech;
#[cfg(feature = "timeseries")]
pub use glaze_timeseries as timeseries;
pub use glaze_train as train;
#[cfg(feature = "vision")]
pub use glaze_vision as vision;
#[cfg(feature = "whisper")]
pub use glaze_whisper as whisper;
