//! Modality-free layers that adapters of several plugins are built from: multi-head attention
//! with separate query and context widths, the GELU MLP, and BLIP-2's Q-Former (with
//! InstructBLIP's instruction conditioning, which is also the aligner of Acoustic Prompt Tuning).

pub mod attention;
pub mod mlp;
pub mod qformer;
