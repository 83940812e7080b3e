//! All cross-crate tests, in one binary (one link, shared model load).

mod audio;
mod bad_input;
mod batching;
mod contract;
mod gemma3;
mod hf_dir;
mod imu;
mod kquants;
mod mixed;
mod parity;
mod quantized;
mod qwen2;
mod real_model;
mod serve;
mod serve_batching;
mod serve_ui;
mod speech;
mod timeseries;
mod tokenizer;
mod training;
mod vision;
#[cfg(feature = "wgpu")]
mod wgpu;
