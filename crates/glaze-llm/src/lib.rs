#![doc = include_str!("../README.md")]

pub mod attention;
pub mod block;
pub mod bpe;
pub mod config;
pub mod decode;
pub mod error;
pub mod fused_attention;
pub mod gguf;
mod heads;
pub mod hf;
pub mod linear;
pub mod llama;
pub mod mlp;
pub mod model;
pub mod qint8;
pub mod qkernels;
pub mod qmatmul;
pub mod quant;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;
mod tiles;
pub mod tokenizer;
pub mod vecops;
pub mod weights;

pub use config::{LlamaConfig, RopeLayout};
pub use error::{Error, GgufProblem, Result};
pub use gguf::GgufFile;
pub use glaze_core::generate::{
    self, FinishReason, Generation, GenerationConfig, generate, generate_batch,
};
pub use llama::Llama;
pub use model::{LanguageModel, cache_dir, default_model_path};
pub use qmatmul::Activations;
pub use tokenizer::Tokenizer;
pub use weights::{Naming, WeightSource, load_llama};

/// What the fused operations' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use burn::prelude::*;

    /// Asserts that `fused` and `composed` (each computing, from `x`, an output shaped like
    /// `w`) give equal outputs and equal gradients of `Σ y·w` with respect to `x`, within `tol`
    /// relative.
    pub(crate) fn assert_same_op<const D: usize, const E: usize>(
        x: &Tensor<D>,
        w: &Tensor<E>,
        fused: impl Fn() -> Tensor<E>,
        composed: impl Fn() -> Tensor<E>,
        tol: f32,
    ) {
        let run = |f: &dyn Fn() -> Tensor<E>| {
            let y = f();
            let g = (y.clone() * w.clone()).sum().backward();
            let grad: Vec<f32> = x.grad(&g).expect("grad").into_data().iter().collect();
            let y: Vec<f32> = y.into_data().iter().collect();
            (y, grad)
        };
        let ((y1, g1), (y2, g2)) = (run(&fused), run(&composed));
        assert_eq!((y1.len(), g1.len()), (y2.len(), g2.len()));
        for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
