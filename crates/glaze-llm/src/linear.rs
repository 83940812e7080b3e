//! A frozen linear map with two kernels: burn's dense matmul (autodiff inputs, long
//! sequences) and, when the weights came quantized, the block kernels of [`QMatrix`] for a few
//! rows of non-autodiff input (decode steps).

use std::sync::Arc;

use burn::prelude::*;

use crate::qmatmul::{Activations, QMatrix};

/// Inputs with at most this many rows use the quantized kernels.
pub const QUANT_MAX_ROWS: usize = 8;

/// `y = x · W`, `W` stored dense as `[in, out]` and optionally as quantized `[out, in]` rows.
#[derive(Debug, Clone)]
pub struct FrozenLinear {
    pub(crate) dense: Tensor<2>,
    pub(crate) quant: Option<Arc<QMatrix>>,
}

impl FrozenLinear {
    /// A dense-only map from `[in, out]` weights.
    pub fn new(dense: Tensor<2>) -> Self {
        FrozenLinear { dense, quant: None }
    }

    /// The same map on another device (the quantized blocks are shared).
    pub fn to_device(self, device: &Device) -> Self {
        FrozenLinear {
            dense: self.dense.to_device(device),
            quant: self.quant,
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.dense.dims()[0]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.dense.dims()[1]
    }

    /// # Shapes
    /// `[N, in]` → `[N, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_act(x, Activations::F32)
    }

    /// [`FrozenLinear::forward`] with the activation treatment of the quantized kernels: with
    /// [`Activations::Int8`] they take any number of rows (prompt prefill included), with
    /// [`Activations::F32`] only up to [`QUANT_MAX_ROWS`] (beyond, the dense matmul is faster).
    pub fn forward_act(&self, x: Tensor<2>, act: Activations) -> Tensor<2> {
        let [n, _] = x.dims();
        match &self.quant {
            Some(q) if on_cpu_plain(&x.device()) && (n <= QUANT_MAX_ROWS || q.int8_ready(act)) => {
                quantized(q, x, act)
            }
            _ => x.matmul(self.dense.clone()),
        }
    }
}

/// The quantized kernels run on the CPU, for inference: a plain (non-autodiff) flex tensor.
pub(crate) fn on_cpu_plain(device: &Device) -> bool {
    !device.is_autodiff() && *device == Device::flex()
}

/// `x · Wᵀ` through the quantized kernels, for a few rows of a plain CPU tensor `[N, in]`.
pub(crate) fn quantized(q: &QMatrix, x: Tensor<2>, act: Activations) -> Tensor<2> {
    let device = x.device();
    let [n, _] = x.dims();
    let data = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("invariant: float data converts to f32");
    let y = q.matmul_act(&data, n, act);
    Tensor::from_data(TensorData::new(y, [n, q.rows()]), &device)
}
