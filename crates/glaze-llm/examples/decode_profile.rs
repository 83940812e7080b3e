//! Where a decode step of the default model spends its time; `cargo xtask bench` records its
//! output in `docs/benchmarks.md`.
#![allow(clippy::print_stdout, missing_docs)]

use std::time::Instant;

use burn::prelude::*;
use glaze_core::{ForwardOptions, FrozenBackbone};
use glaze_kernels::qmatmul::QMatrix;
use glaze_kernels::quant::GgmlType;
use glaze_llm::{Activations, LanguageModel};

fn time<T>(label: &str, reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let _ = f();
    let start = Instant::now();
    for _ in 0..reps {
        let _ = std::hint::black_box(f());
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{label:<62} {ms:>8.3} ms");
    ms
}

fn main() {
    let device = Device::flex();
    let lm = LanguageModel::load_default(&device).expect("fetched model (cargo xtask fetch)");

    // 1. One FFN-sized matrix: dense f32 (burn matmul) vs the quantized-block kernels.
    let (rows, cols) = (3072, 576);
    let bytes: Vec<u8> = (0..rows * cols / 32 * 20)
        .map(|i| if i % 20 < 4 { 0x20 } else { (i * 7) as u8 })
        .collect();
    let q = QMatrix::from_ggml(GgmlType::Q4_1, &bytes, rows, cols).expect("q4_1");
    let x: Vec<f32> = (0..cols).map(|i| i as f32 * 1e-3).collect();
    let dense =
        Tensor::<2>::from_data(TensorData::new(q.dequantize(), [rows, cols]), &device).transpose();
    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, cols]), &device);
    time("matvec 576→3072, f32 dense (burn)", 500, || {
        xt.clone().matmul(dense.clone()).into_data()
    });
    for act in [Activations::F32, Activations::Int8] {
        time(
            &format!("matvec 576→3072, Q4_1 blocks, {act:?} activations"),
            500,
            || q.matmul_act(&x, 1, act),
        );
    }
    let xs: Vec<f32> = (0..256 * cols).map(|i| (i % 97) as f32 * 1e-3).collect();
    time(
        "matmul 256×576 → 3072, Q4_1 blocks, Int8 (prefill)",
        10,
        || q.matmul_act(&xs, 256, Activations::Int8),
    );

    // 2. The LM head (tied, Q8_0 token embedding) and a whole decode step (30 blocks, no
    // head) as the cache grows, for both activation treatments.
    let one = Tensor::<2, Int>::from_data([[198i64]], &device);
    for act in [Activations::F32, Activations::Int8] {
        let mut m = lm.llama.clone();
        m.set_generation_activations(act);
        let h = Tensor::<3>::zeros([1, 1, 576], &device);
        time(&format!("LM head, 576→49152, {act:?}"), 50, || {
            m.generation_head(h.clone()).into_data()
        });
        for past in [8usize, 256, 512] {
            let ids: Vec<i64> = (0..past as i64).map(|i| 100 + i % 50).collect();
            let prompt = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, past]), &device);
            let mut cache = m.new_cache();
            let _ = m.forward(m.embed(prompt), ForwardOptions::generating(&mut cache));
            time(
                &format!("30 blocks, decode step after {past} cached positions, {act:?}"),
                20,
                || {
                    m.forward(m.embed(one.clone()), ForwardOptions::generating(&mut cache))
                        .into_data()
                },
            );
        }
    }
}
