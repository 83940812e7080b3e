//! The f32 matrix products of a Time-LLM training step: burn-flex's matmul against
//! `glaze_kernels::matmul` (the AVX-512 GEMM), same process; `cargo xtask bench` records the
//! output in `docs/benchmarks.md` beside PyTorch's (`xtask/bench/gemm_torch.py`).
#![allow(clippy::print_stdout, missing_docs)]

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;

/// `(label, [M, K], [K, N], right operand transposed in memory)`.
const SHAPES: [(&str, [usize; 2], [usize; 2], bool); 6] = [
    (
        "prototypes  Wᵀ·E  100×49152 · 49152×576",
        [100, 49152],
        [49152, 576],
        false,
    ),
    (
        "its weight gradient  dP·Eᵀ  100×576 · 576×49152",
        [100, 576],
        [576, 49152],
        true,
    ),
    (
        "gate/up  384×576 · 576×3072",
        [384, 576],
        [576, 3072],
        false,
    ),
    (
        "its input gradient  dY·Wᵀ  384×3072 · 3072×576",
        [384, 3072],
        [3072, 576],
        true,
    ),
    ("down  384×1536 · 1536×576", [384, 1536], [1536, 576], false),
    (
        "square  1024×1024 · 1024×1024",
        [1024, 1024],
        [1024, 1024],
        false,
    ),
];

fn time(reps: usize, mut f: impl FnMut() -> Tensor<2>) -> f64 {
    let _ = f().into_data();
    let start = Instant::now();
    for _ in 0..reps {
        let _ = std::hint::black_box(f().into_data());
    }
    start.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    // As the training loops: freed buffers are reused instead of mapped afresh.
    glaze_kernels::alloc::keep_freed_memory();
    let device = Device::flex();
    println!(
        "{:<52} {:>12} {:>12} {:>8} {:>12} {:>12}",
        "product", "burn ms", "glaze ms", "GFLOP/s", "8-bit E ms", "packed B ms"
    );
    // `GEMM_PROFILE_ONLY=<text>` runs only the rows whose label contains it (for `perf`).
    let only = std::env::var("GEMM_PROFILE_ONLY").unwrap_or_default();
    for (label, a, b, transposed) in SHAPES.into_iter().filter(|s| s.0.contains(&only)) {
        let x = Tensor::<2>::random(a, Distribution::Default, &device);
        let y = if transposed {
            Tensor::<2>::random([b[1], b[0]], Distribution::Default, &device).transpose()
        } else {
            Tensor::<2>::random(b, Distribution::Default, &device)
        };
        let flops = 2.0 * (a[0] * a[1] * b[1]) as f64;
        let reps = (2e10 / flops).clamp(3.0, 50.0) as usize;
        let burn = time(reps, || x.clone().matmul(y.clone()));
        let glaze = time(reps, || glaze_kernels::matmul::matmul(x.clone(), y.clone()));
        // The word-embedding products again with `E` as the 8-bit table Time-LLM reads.
        let q8 = (b.contains(&49152)).then(|| {
            let (rows, cols) = if transposed {
                (b[1], b[0])
            } else {
                (b[0], b[1])
            };
            let q = (0..rows * cols).map(|i| (i % 251) as i8).collect();
            let scales = vec![0.01; rows * cols / 32];
            let m = std::sync::Arc::new(
                glaze_kernels::gemm::Q8Matrix::new(rows, cols, q, scales).expect("valid"),
            );
            time(reps, || {
                glaze_kernels::matmul::matmul_q8(x.clone(), &m, transposed)
            })
        });
        // The frozen blocks' products with their weight pre-packed (as training reads it).
        let packed = (!b.contains(&49152)).then(|| {
            let data: Vec<f32> = y.clone().into_data().iter::<f32>().collect();
            let m = std::sync::Arc::new(
                glaze_kernels::gemm::PackedMatrix::new(glaze_kernels::gemm::View::row_major(
                    &data, b[0], b[1],
                ))
                .expect("in bounds"),
            );
            time(reps, || {
                glaze_kernels::matmul::matmul_packed(x.clone(), &m, false)
            })
        });
        let ms = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.2}", t * 1e3));
        println!(
            "{label:<52} {:>12.2} {:>12.2} {:>8.0} {:>12} {:>12}",
            burn * 1e3,
            glaze * 1e3,
            flops / glaze / 1e9,
            ms(q8),
            ms(packed)
        );
    }
    if ATTENTION.contains(&only) {
        attention(&device);
    }
}

/// The row label of [`attention`].
const ATTENTION: &str = "attention 32×9 heads×12 rows, 100+12 keys (fwd, bwd)";

/// One block's fused attention on the step's shapes (32 prompts, 9 query and 3 key/value
/// heads of 64, 12 new rows after a 100-position cached prefix, causal): forward and
/// backward ms, in the `glaze ms` column as `forward / backward`.
fn attention(device: &Device) {
    use burn::backend::flex::FlexTensor;
    use glaze_kernels::fused_attention::GlazeAttention;
    let (b, h, kv, t, p, hd) = (32, 9, 3, 12, 100, 64);
    let _ = device;
    let flex = |shape: [usize; 4]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5)
            .collect();
        FlexTensor::from_data(TensorData::new(v, shape))
    };
    let bias = {
        let s = p + t;
        let v: Vec<f32> = (0..t * s)
            .map(|i| {
                if i % s > p + i / s {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        FlexTensor::from_data(TensorData::new(v, [1, 1, t, s]))
    };
    let (q, k, v, pk, pv, dout) = (
        flex([b, h, t, hd]),
        flex([b, kv, t, hd]),
        flex([b, kv, t, hd]),
        flex([b, kv, p, hd]),
        flex([b, kv, p, hd]),
        flex([b, h, t, hd]),
    );
    let scale = 1.0 / (hd as f32).sqrt();
    let run = |reps: usize, f: &dyn Fn()| {
        f();
        let start = Instant::now();
        for _ in 0..reps {
            f();
        }
        start.elapsed().as_secs_f64() / reps as f64
    };
    let fwd = run(50, &|| {
        let out = burn::backend::Flex::glaze_attention(
            q.clone(),
            k.clone(),
            v.clone(),
            pk.clone(),
            pv.clone(),
            bias.clone(),
            scale,
        );
        std::hint::black_box(out);
    });
    let bwd = run(50, &|| {
        let out = burn::backend::Flex::glaze_attention_grad(
            q.clone(),
            k.clone(),
            v.clone(),
            pk.clone(),
            pv.clone(),
            bias.clone(),
            dout.clone(),
            scale,
        );
        std::hint::black_box(out);
    });
    println!(
        "{ATTENTION:<52} {:>12} {:>12}",
        "-",
        format!("{:.2} / {:.2}", fwd * 1e3, bwd * 1e3)
    );
}
