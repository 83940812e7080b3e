//! The frozen LLM's whole word-embedding table `E [V, D]` as one handle, for adapters that
//! read every row at once (Time-LLM's text prototypes are a trainable map over the vocabulary).
//!
//! The handle hides how the backbone stores the table: a dense tensor, or 8-bit rows with one
//! scale per 32 values (a GGUF Q8_0 table kept as it is; the same values in a quarter of the
//! memory traffic of each product over the vocabulary).

use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;
use glaze_kernels::gemm::Q8Matrix;
use glaze_kernels::matmul::matmul;
use glaze_kernels::product_grad::{ProductSink, matmul_q8_t_param};

use crate::backbone::FrozenBackbone;

/// The word-embedding table `E [V, D]` of a frozen backbone
/// ([`FrozenBackbone::word_embeddings`]).
#[derive(Debug, Clone)]
pub struct WordEmbeddings(Table);

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per pipeline; a tensor handle, not its data
enum Table {
    Dense(Tensor<2>),
    Q8(Arc<Q8Matrix>),
}

impl WordEmbeddings {
    /// A dense table `[V, D]`.
    pub fn dense(table: Tensor<2>) -> Self {
        WordEmbeddings(Table::Dense(table))
    }

    /// An 8-bit table, as a backbone that holds its embeddings that way hands it out (the
    /// GEMM reads it on the CPU; [`WordEmbeddings::to_device`] makes it dense elsewhere).
    pub fn quantized(table: Arc<Q8Matrix>) -> Self {
        WordEmbeddings(Table::Q8(table))
    }

    /// Every row of `backbone`'s table through [`FrozenBackbone::embed`], on its device.
    pub fn through_embed<B: FrozenBackbone + ?Sized>(backbone: &B) -> Self {
        let v = backbone.spec().vocab_size;
        let ids = Tensor::<1, Int>::arange(0..v as i64, backbone.device()).reshape([1, v]);
        let e = backbone.embed(ids);
        let d = e.dims()[2];
        Self::dense(e.reshape([v, d]))
    }

    /// True when the table is held as 8-bit rows.
    pub fn is_quantized(&self) -> bool {
        matches!(self.0, Table::Q8(_))
    }

    /// `[V, D]`.
    pub fn dims(&self) -> [usize; 2] {
        match &self.0 {
            Table::Dense(e) => e.dims(),
            Table::Q8(q) => [q.rows(), q.cols()],
        }
    }

    /// The table for `device`: a dense table moves; the 8-bit one stays as it is on the CPU
    /// (flex, plain or autodiff) and becomes a dense table elsewhere.
    pub fn to_device(self, device: &Device) -> Self {
        match self.0 {
            Table::Dense(e) => Self::dense(e.to_device(device)),
            Table::Q8(q) if device.clone().inner() != Device::flex() => {
                Self::dense(Tensor::from_data(
                    TensorData::new(q.dequantize(), [q.rows(), q.cols()]),
                    device,
                ))
            }
            q => WordEmbeddings(q),
        }
    }

    /// `Wᵀ · E` → `[M, D]` for the parameter `W [V, M]`, differentiable in `W`. On the 8-bit
    /// table the gradient comes back in `W`'s layout with no strided copy, and inside the
    /// trainer, given its `products` sink, as a product the optimizer forms block by block
    /// ([`matmul_q8_t_param`]).
    pub fn left_product_t(
        &self,
        w: &Param<Tensor<2>>,
        products: Option<&ProductSink>,
    ) -> Tensor<2> {
        match &self.0 {
            Table::Dense(e) => matmul(w.val().transpose(), e.clone()),
            Table::Q8(q) => matmul_q8_t_param(w, q, false, products),
        }
    }
}
