//! A frozen linear map with three kernels: when the weights came quantized, the block
//! kernels of [`QMatrix`] for non-autodiff input on the CPU (decode steps, generation
//! prefill); for exact products on the flex CPU with AVX-512 (autodiff inputs, long exact
//! forwards) the GEMM reading the weight pre-packed ([`PackedMatrix`]); elsewhere burn's dense
//! matmul.
//!
//! Weights loaded as quantized blocks get their f32 copies only when an exact product first
//! needs one (`Dense`, the packed panels): generation never does, so an inference process
//! holds the blocks alone (SmolLM2: ≈ 110 MB instead of ≈ 650 MB).

use std::sync::{Arc, OnceLock};

use burn::prelude::*;

use glaze_kernels::gemm::{self, PackedMatrix, View};

use glaze_kernels::qmatmul::{Activations, QMatrix};

/// Inputs with at most this many rows use the quantized kernels.
pub const QUANT_MAX_ROWS: usize = 8;

/// A dense f32 weight: given at construction, or built from quantized blocks on first use
/// (shared by every clone of the model) on the model's device.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    cell: Arc<OnceLock<Tensor<2>>>,
    /// The blocks to build it from, when not given.
    from: Option<Arc<QMatrix>>,
    /// Whether the dense tensor is the blocks' `[rows, cols]` transposed (a linear map's
    /// `[in, out]`) or as stored (an embedding table `[V, D]`).
    transposed: bool,
    dims: [usize; 2],
    device: Device,
}

impl Dense {
    /// A tensor given now.
    pub(crate) fn eager(t: Tensor<2>) -> Self {
        let (dims, device) = (t.dims(), t.device());
        Dense {
            cell: Arc::new(OnceLock::from(t)),
            from: None,
            transposed: false,
            dims,
            device,
        }
    }

    /// Built from `q` on first use, transposed or not.
    pub(crate) fn lazy(q: Arc<QMatrix>, transposed: bool, device: &Device) -> Self {
        let dims = if transposed {
            [q.cols(), q.rows()]
        } else {
            [q.rows(), q.cols()]
        };
        Dense {
            cell: Arc::new(OnceLock::new()),
            from: Some(q),
            transposed,
            dims,
            device: device.clone(),
        }
    }

    /// The tensor (built now if needed).
    pub(crate) fn get(&self) -> Tensor<2> {
        self.cell
            .get_or_init(|| {
                let q = self
                    .from
                    .as_ref()
                    .expect("invariant: a Dense without a tensor has blocks");
                let w = q.dequantize();
                let data = if self.transposed {
                    crate::weights::transpose(&w, q.rows(), q.cols())
                } else {
                    w
                };
                Tensor::from_data(TensorData::new(data, self.dims), &self.device)
            })
            .clone()
    }

    /// Whether the dense tensor exists (given, or built by an earlier use).
    pub(crate) fn is_built(&self) -> bool {
        self.cell.get().is_some()
    }

    /// `[rows, cols]` of the dense tensor.
    pub(crate) fn dims(&self) -> [usize; 2] {
        self.dims
    }

    /// The device it lives (or will live) on.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// The same weight on another device: moved if built, else still lazy.
    pub(crate) fn to_device(&self, device: &Device) -> Self {
        match self.cell.get() {
            Some(t) => Dense::eager(t.clone().to_device(device)),
            None => Dense {
                cell: Arc::new(OnceLock::new()),
                device: device.clone(),
                ..self.clone()
            },
        }
    }
}

/// `y = x · W`, `W` stored dense as `[in, out]` and optionally as quantized `[out, in]` rows.
/// On the flex CPU with the AVX-512 GEMM, exact products (training through the frozen
/// blocks, long exact forwards) read `W` pre-packed in the GEMM's panel layout instead of a
/// dense copy — packed on first use, the transpose for the backward pass on its first use.
#[derive(Debug, Clone)]
pub struct FrozenLinear {
    pub(crate) dense: Dense,
    pub(crate) quant: Option<Arc<QMatrix>>,
    packed: Arc<OnceLock<Arc<PackedMatrix>>>,
    /// Added to every output row: the tensor `[out]`, and its values for the decode step.
    bias: Option<(Tensor<1>, Arc<Vec<f32>>)>,
}

impl FrozenLinear {
    /// A dense-only map from `[in, out]` weights.
    pub fn new(dense: Tensor<2>) -> Self {
        FrozenLinear {
            dense: Dense::eager(dense),
            quant: None,
            packed: Arc::default(),
            bias: None,
        }
    }

    /// The same map plus `bias` (`out` values) on every output row.
    pub fn with_bias(self, bias: Vec<f32>, device: &Device) -> Self {
        let n = bias.len();
        let tensor = Tensor::from_data(TensorData::new(bias.clone(), [n]), device);
        FrozenLinear {
            bias: Some((tensor, Arc::new(bias))),
            ..self
        }
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|(t, _)| t.clone())
    }

    /// Adds the bias to `rows` output rows computed outside burn (the decode step).
    pub(crate) fn add_bias(&self, y: &mut [f32]) {
        if let Some((_, b)) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b.iter()).for_each(|(y, b)| *y += b);
            }
        }
    }

    /// A map from quantized `[out, in]` rows; the dense `[in, out]` copy is built on first use.
    pub fn quantized(q: QMatrix, device: &Device) -> Self {
        let q = Arc::new(q);
        FrozenLinear {
            dense: Dense::lazy(q.clone(), true, device),
            quant: Some(q),
            packed: Arc::default(),
            bias: None,
        }
    }

    /// The same map on another device (the quantized blocks are shared).
    pub fn to_device(self, device: &Device) -> Self {
        FrozenLinear {
            dense: self.dense.to_device(device),
            quant: self.quant,
            packed: self.packed,
            bias: self.bias.map(|(t, host)| (t.to_device(device), host)),
        }
    }

    /// Whether an f32 copy of the weights exists: the dense one or the packed panels.
    pub(crate) fn f32_built(&self) -> bool {
        self.dense.is_built() || self.packed.get().is_some()
    }

    /// The weights in the GEMM's panel layout (packed now if they were not yet): from the
    /// quantized blocks when there are some, else from the dense tensor.
    fn packed(&self) -> Arc<PackedMatrix> {
        self.packed
            .get_or_init(|| {
                let [d_in, d_out] = self.dense.dims();
                let packed = match &self.quant {
                    // Blocks are `[out, in]` rows: W is their transpose.
                    Some(q) => {
                        let rows = q.dequantize();
                        PackedMatrix::new(View::row_major(&rows, d_out, d_in).t())
                    }
                    None => {
                        let w = self.dense.get().into_data().convert::<f32>();
                        let w = w
                            .as_slice::<f32>()
                            .expect("invariant: float data converts to f32");
                        PackedMatrix::new(View::row_major(w, d_in, d_out))
                    }
                };
                Arc::new(packed.expect("invariant: a full matrix view is in bounds"))
            })
            .clone()
    }

    /// The dense `[in, out]` weight (built from the blocks now if it was not yet).
    pub fn dense(&self) -> Tensor<2> {
        self.dense.get()
    }

    /// The device of the dense weight.
    pub fn device(&self) -> &Device {
        self.dense.device()
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
        let y = self.forward_unbiased(x, act);
        match &self.bias {
            Some((b, _)) => y + b.clone().unsqueeze::<2>(),
            None => y,
        }
    }

    fn forward_unbiased(&self, x: Tensor<2>, act: Activations) -> Tensor<2> {
        let [n, _] = x.dims();
        match &self.quant {
            Some(q) if on_cpu_plain(&x.device()) && (n <= QUANT_MAX_ROWS || q.int8_ready(act)) => {
                quantized(q, x, act)
            }
            _ if x.device().inner() == Device::flex() && gemm::available() => {
                glaze_kernels::matmul::matmul_packed(x, &self.packed(), false)
            }
            _ => glaze_kernels::matmul::matmul(x, self.dense.get()),
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
