#![doc = include_str!("../README.md")]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

/// A kernel's bounds or shape check: an assertion in this crate's own tests (which `cargo test`
/// and CI run), in debug builds and with the `checked` feature; nothing otherwise — the hot
/// loops must not pay for it in the optimised dev profile the other crates' tests use.
macro_rules! check {
    ($($arg:tt)*) => {
        if cfg!(any(test, debug_assertions, feature = "checked")) {
            assert!($($arg)*);
        }
    };
}

pub mod adamw;
pub mod alloc;
pub mod fused_attention;
pub mod gemm;
pub mod head_split;
pub mod matmul;
pub mod product_grad;
pub mod qint8;
pub mod qkernels;
pub mod qmatmul;
pub mod quant;
pub mod rms_norm;
pub mod rope;
pub mod softmax;
pub mod swiglu;
pub mod tiles;
pub mod vecops;
pub mod vmath;

#[doc(hidden)]
pub mod testing;

pub use gemm::{PackedMatrix, Q8Matrix};
pub use matmul::{linear, matmul, matmul_rows};
pub use qmatmul::{Activations, QMatrix};
pub use quant::GgmlType;

/// FNV-1a, 64 bit: a stable, dependency-free hash for weight files and weight digests.
pub fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = if seed == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        seed
    };
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
