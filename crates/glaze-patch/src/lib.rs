#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod encoder;
pub mod patching;
pub mod revin;

pub use encoder::{PatchEncoder, PatchedWindows};
pub use patching::{num_patches, patchify};
pub use revin::RevinStats;
