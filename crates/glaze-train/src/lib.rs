#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod adapter_config;
pub mod atomic;
pub mod checkpoint;
pub mod feature_bank;
pub mod feature_cache;
pub mod item_task;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod schedule;
pub mod trainer;
pub mod tuning;

pub use adapter_config::{AdapterConfig, adapter_identity, load_adapter};
pub use checkpoint::{
    ALLOW_BACKBONE_MISMATCH, AdapterIdentity, BackboneIdentity, BackboneMatch, Checkpoint,
    Modality, SAME_MODEL_DISTANCE, TrainState,
};
pub use feature_bank::{FeatureBank, encode_bank, open_cache};
pub use feature_cache::{CachedArray, FeatureCache};
pub use item_task::{ItemLoss, ItemTask};
pub use optim::{AdamW, AdamWSettings};
pub use plot::LinePlot;
pub use schedule::LrSchedule;
pub use trainer::{RunOptions, StepInfo, TrainConfig, TrainReport, TrainTask, train};
pub use tuning::{PromptTuningConfig, TuningExample, TuningReport, tune_soft_prompt};
