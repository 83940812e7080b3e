//! Where one decode step of the default model spends its time (run with `--release`).
#![allow(clippy::print_stdout, missing_docs)]

use std::time::Instant;

use burn::prelude::*;
use glaze_core::{ForwardOptions, FrozenBackbone};
use glaze_llm::LanguageModel;

fn time<T>(label: &str, reps: usize, mut f: impl FnMut() -> T) {
    let _ = f();
    let start = Instant::now();
    for _ in 0..reps {
        let _ = f();
    }
    println!(
        "{label:<44} {:>8.3} ms",
        start.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}

fn main() {
    let device = Device::flex();
    let lm = LanguageModel::load_default(&device).expect("fetched model");
    let m = &lm.llama;
    let ids = Tensor::<2, Int>::from_data([[504i64, 3575, 282, 4649, 314, 7042, 30, 198]], &device);
    let one = Tensor::<2, Int>::from_data([[198i64]], &device);
    time("decode step (forward, cache 8, + lm_head)", 20, || {
        let mut cache = m.new_cache();
        let _ = m.forward(m.embed(ids.clone()), ForwardOptions::cached(&mut cache));
        let h = m.forward(m.embed(one.clone()), ForwardOptions::cached(&mut cache));
        m.lm_head(h).into_data()
    });
    time("prefill 8 tokens (forward only)", 20, || {
        let mut cache = m.new_cache();
        m.forward(m.embed(ids.clone()), ForwardOptions::cached(&mut cache))
            .into_data()
    });
    time("embed 1 id", 50, || m.embed(one.clone()).into_data());
    let e1 = m.embed(one.clone());
    time("forward 1 token, no cache", 20, || {
        m.forward(e1.clone(), ForwardOptions::default()).into_data()
    });
    time("forward 1 token, 4 layers", 20, || {
        m.forward(
            e1.clone(),
            ForwardOptions {
                layers: Some(4),
                ..Default::default()
            },
        )
        .into_data()
    });
    let block = m.block(0).expect("block 0");
    let x3 = Tensor::<3>::random([1, 1, 576], burn::tensor::Distribution::Default, &device);
    let ctx = glaze_llm::attention::AttnContext {
        cos: Tensor::ones([1, 1, 1, 32], &device),
        sin: Tensor::zeros([1, 1, 1, 32], &device),
        bias: None,
    };
    time("block forward, 1 token, no cache", 100, || {
        block.forward(x3.clone(), m.rope(), &ctx, None).into_data()
    });
    let (cos, sin) = m.rope().tables(&glaze_llm::rope::Positions::Range(5), 1);
    let ctx2 = glaze_llm::attention::AttnContext {
        cos,
        sin,
        bias: None,
    };
    time("block forward, 1 token, real rope tables", 100, || {
        block.forward(x3.clone(), m.rope(), &ctx2, None).into_data()
    });
    let mut xx = x3.clone();
    for i in 0..4 {
        xx = m.block(i).expect("b").forward(xx, m.rope(), &ctx2, None);
    }
    time("block forward on a block output", 100, || {
        block.forward(xx.clone(), m.rope(), &ctx2, None).into_data()
    });
    time("block forward chain 4", 20, || {
        let mut y = x3.clone();
        for i in 0..4 {
            y = m.block(i).expect("b").forward(y, m.rope(), &ctx2, None);
        }
        y.into_data()
    });
    time("block forward chain 4, ctx1", 20, || {
        let mut y = x3.clone();
        for i in 0..4 {
            y = m.block(i).expect("b").forward(y, m.rope(), &ctx, None);
        }
        y.into_data()
    });
    let norm = glaze_llm::rms_norm::RmsNormConfig::new(576).init(&device);
    time("rms norm [1,1,576]", 200, || {
        norm.forward(x3.clone()).into_data()
    });
    let mlp = glaze_llm::mlp::SwiGluConfig::new(576, 1536).init(&device);
    time("swiglu [1,1,576]", 200, || {
        mlp.forward(x3.clone()).into_data()
    });
    let attn = glaze_llm::attention::AttentionConfig::new(576, 9, 3, 64).init(&device);
    time("attention [1,1,576], no cache", 200, || {
        attn.forward(x3.clone(), m.rope(), &ctx, None).into_data()
    });
    let h = Tensor::<3>::zeros([1, 1, 576], &device);
    time("lm_head [1,576] x E^T", 20, || {
        m.lm_head(h.clone()).into_data()
    });
    let x = Tensor::<2>::zeros([1, 576], &device);
    for (name, k, n) in [
        ("qkv 576x960", 576, 960),
        ("o 576x576", 576, 576),
        ("gate_up 576x3072", 576, 3072),
        ("down 1536x576", 1536, 576),
    ] {
        let w = Tensor::<2>::zeros([k, n], &device);
        let xi = Tensor::<2>::zeros([1, k], &device);
        time(&format!("matmul [1,{k}] x [{k},{n}] ({name})"), 200, || {
            xi.clone().matmul(w.clone()).into_data()
        });
    }
    let e = Tensor::<2>::zeros([49152, 576], &device);
    time("matmul E [49152,576] x h^T [576,1]", 20, || {
        e.clone().matmul(x.clone().transpose()).into_data()
    });
    let v = Tensor::<4>::zeros([1, 9, 1, 64], &device);
    time("small op: add [1,9,1,64]", 500, || {
        (v.clone() + v.clone()).into_data()
    });
    time("small op: cat+slice rope-like", 500, || {
        let a = v.clone().slice(s![.., .., .., 0..32]);
        let b = v.clone().slice(s![.., .., .., 32..64]);
        Tensor::cat(vec![a, b], 3).into_data()
    });
}
