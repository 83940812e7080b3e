//! The time-series plugin: the cached prompt prefix equals the full sequence, training
//! through the frozen backbone, checkpoints, bad inputs and the real ETT data.

use burn::prelude::*;
use glaze::core::FrozenBackbone;
use glaze::core::harness::ByteCodec;
use glaze::llm::Llama;
use glaze::timeseries::{
    self as ts, Channels, ForecasterConfig, ModelKind, Pipeline, SplitScheme, WindowSpec,
};
use glaze::train::{LrSchedule, TrainConfig};

fn tiny() -> Llama {
    glaze_tests::tiny_llama_long()
}

fn config(kind: ModelKind, backbone: &Llama) -> ForecasterConfig {
    glaze_tests::tiny_forecaster(kind, backbone, 2)
}

fn wave(n: usize, phase: f32) -> Vec<f32> {
    (0..n)
        .map(|t| (t as f32 * 0.3 + phase).sin() + 0.01 * t as f32)
        .collect()
}

#[test]
fn cached_prompt_prefix_equals_the_full_sequence() {
    let backbone = tiny();
    let cfg = config(ModelKind::TimeLlm, &backbone);
    let root = std::env::temp_dir().join(format!("glaze-prefix-{}", std::process::id()));
    let pipeline = Pipeline::new(&backbone, &ByteCodec, cfg.clone(), "Test set.", Some(&root))
        .expect("pipeline");
    let device = backbone.device().clone();
    device.seed(5);
    let model = cfg.init(&backbone, &device);
    // Two windows whose prompts have different lengths: the batch is left-padded.
    let a = wave(32, 0.0);
    let b: Vec<f32> = wave(32, 1.0).iter().map(|v| v * 1000.0).collect();
    for input in [&a, &b] {
        assert!(!pipeline.prompt(input).is_empty());
    }
    let (cached, _) = pipeline
        .hidden(&model, &[&a, &b], &device)
        .expect("cached path");
    for (row, input) in [&a, &b].into_iter().enumerate() {
        let full = pipeline
            .full_sequence_hidden(&model, input, &ByteCodec)
            .expect("full path");
        let c = cached.clone().slice(s![row..row + 1, .., ..]);
        let diff = (c - full).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "row {row}: cached prefix differs by {diff}");
    }
    // The second pass reads every prompt from disk.
    let cache = pipeline.prefix().and_then(|p| p.cache()).expect("cache");
    let misses = cache.misses();
    pipeline.hidden(&model, &[&a, &b], &device).expect("again");
    assert_eq!(cache.misses(), misses, "no recomputation");
    assert!(cache.hits() >= 2);
    let _ = std::fs::remove_dir_all(&root);
}

/// A training pass on a cache marked constant (the prompt prefix Time-LLM batches every step:
/// attended in place, no gradient for it) gives the outputs and input gradients of the
/// concatenating path, and leaves the cache as it was.
#[test]
fn a_constant_prompt_cache_gives_the_same_training_pass() {
    use burn::tensor::Distribution;
    use glaze::core::{ForwardOptions, KvCache};
    let backbone = tiny();
    let spec = backbone.spec();
    let (plain, layers) = (backbone.device().clone(), spec.n_layers);
    let ad = plain.clone().autodiff();
    plain.seed(3);
    let prompt = Tensor::<3>::random([2, 5, spec.d_model], Distribution::Normal(0.0, 1.0), &plain);
    let mut base = KvCache::new(layers);
    backbone.forward(prompt, ForwardOptions::cached(&mut base));
    ad.seed(4);
    let x = Tensor::<3>::random([2, 3, spec.d_model], Distribution::Normal(0.0, 1.0), &ad)
        .require_grad();
    let w = Tensor::<3>::random([2, 3, spec.d_model], Distribution::Default, &ad);
    let run = |constant: bool| {
        let mut cache = KvCache::new(layers);
        for i in 0..layers {
            let (k, v) = base.layer(i).expect("prefix keys").clone();
            cache.set_layer(
                i,
                Tensor::from_data(k.into_data(), &ad),
                Tensor::from_data(v.into_data(), &ad),
            );
        }
        cache.set_len(base.len());
        // Row 1 as a left-padded prompt: its first cached key hidden, positions one behind.
        let mask = [true, true, true, true, true, false, true, true, true, true];
        cache.set_key_mask(Some(Tensor::from_data(
            TensorData::new(mask.to_vec(), [2, 5]),
            &ad,
        )));
        cache.set_next_positions(vec![5, 4]);
        cache.set_constant(constant);
        let y = backbone.forward(x.clone(), ForwardOptions::cached(&mut cache));
        // A constant cache serves a second pass the same way (it was left as it was).
        if constant {
            let again = backbone.forward(x.clone(), ForwardOptions::cached(&mut cache));
            assert_eq!(
                again.inner().into_data(),
                y.clone().inner().into_data(),
                "second pass on the constant cache"
            );
        }
        let g = (y.clone() * w.clone()).sum().backward();
        let flat = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        (
            flat(y.inner()),
            flat(x.grad(&g).expect("input gradient")),
            cache.len(),
        )
    };
    let (y1, g1, len1) = run(true);
    let (y2, g2, len2) = run(false);
    assert_eq!((len1, len2), (5, 8), "a constant cache is left as it was");
    for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

fn ett_spec(horizon: usize, train_stride: usize, eval_stride: usize) -> WindowSpec {
    WindowSpec {
        input_len: 96,
        horizon,
        scheme: SplitScheme::EttHourly,
        channels: Channels::Multivariate,
        train_stride,
        eval_stride,
    }
}

fn ett(name: &str) -> std::path::PathBuf {
    glaze_tests::shared_dir().join("data/ett").join(name)
}

fn write_tmp(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("glaze-ts-{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn bad_series_files_are_typed_errors_naming_row_and_column() {
    let sel = ts::ColumnSelection {
        target: Some("OT".into()),
        covariates: None,
    };
    let cases = [
        (
            "missing.csv",
            "date,a,OT\n1,1,2\n2,3\n",
            "line 3, column `OT`: missing cell",
        ),
        (
            "text.csv",
            "date,a,OT\n1,1,2\n2,x,3\n",
            "line 3, column `a`: `x` is not a number",
        ),
        (
            "nan.csv",
            "date,a,OT\n1,NaN,2\n",
            "line 2, column `a`: `NaN` is not a finite",
        ),
        (
            "inf.csv",
            "date,a,OT\n1,1,-inf\n",
            "line 2, column `OT`: `-inf` is not a finite",
        ),
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "date,a,OT\n", "no rows"),
        ("target.csv", "date,a,b\n1,1,2\n", "no column `OT`"),
    ];
    for (name, text, want) in cases {
        let path = write_tmp(name, text);
        let err = ts::read_csv(&path, &sel).expect_err(name);
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains(name), "{name}: {msg}");
        let _ = std::fs::remove_file(path);
    }
    let err = ts::read_csv("/nonexistent/ETTh9.csv".as_ref(), &sel).expect_err("missing file");
    assert!(err.to_string().contains("ETTh9.csv"), "{err}");
    // Too short for the ETT split, and windows longer than a split.
    let frame = ts::read_csv(&ett("ETTh1.csv"), &sel).expect("ETTh1");
    let mut short = frame.clone();
    for c in &mut short.values {
        c.truncate(5000);
    }
    short.dates.truncate(5000);
    let spec = ett_spec(96, 1, 1);
    let err = ts::prepare(&short, &spec).expect_err("too short");
    assert!(
        matches!(err, ts::Error::TooShort { rows: 5000, .. }),
        "{err}"
    );
    let long = WindowSpec {
        horizon: 3000,
        ..spec
    };
    let err = ts::prepare(&frame, &long).expect_err("horizon longer than the test split");
    assert!(err.to_string().contains("validation split"), "{err}");
}

#[test]
fn ett_files_load_with_the_standard_splits() {
    let sel = ts::ColumnSelection {
        target: Some("OT".into()),
        covariates: None,
    };
    for name in ["ETTh1.csv", "ETTh2.csv"] {
        let frame = ts::read_csv(&ett(name), &sel).expect("ETT");
        assert_eq!(frame.len(), 17420);
        assert_eq!(
            frame.columns,
            ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
        );
        let d = ts::prepare(&frame, &ett_spec(96, 1, 1)).expect("prepare");
        // The papers' window counts: 8640 - 96 - 96 + 1 training and 2880 - 96 + 1 test windows.
        assert_eq!(d.train.starts.len(), 8449);
        assert_eq!(d.val.starts.len(), 2785);
        assert_eq!(d.test.starts.len(), 2785);
        assert_eq!(d.test.len(), 2785 * 7);
        // Standardised on the training rows.
        let train_ot = &d.scaled[6][..8640];
        let mean = train_ot.iter().map(|&v| v as f64).sum::<f64>() / 8640.0;
        assert!(mean.abs() < 1e-4, "{mean}");
    }
}

/// Ten Time-LLM steps on the real SmolLM2 (2 of 30 blocks) beat repeat-last on ETTh1.
#[test]
fn time_llm_on_smollm2_beats_repeat_last_on_etth1() {
    let model = glaze_tests::smollm2();
    let s = model.llama.spec();
    let root = std::env::temp_dir().join(format!("glaze-ts-real-{}", std::process::id()));
    let spec = ts::RunSpec {
        data: ett("ETTh1.csv"),
        target: Some("OT".into()),
        window: ett_spec(96, 16, 400),
        model: ForecasterConfig::new(ModelKind::TimeLlm, 96, 96, s.d_model, s.vocab_size)
            .with_num_prototypes(100)
            .with_llm_layers(2),
        train: TrainConfig {
            epochs: 1,
            batch_size: 32,
            lr: 1e-3,
            max_steps: Some(10),
            schedule: LrSchedule::OneCycle {
                pct_start: 0.2,
                div: 25.0,
                final_div: 1e4,
            },
            ..TrainConfig::default()
        },
        description: ts::experiment::ETT_DESCRIPTION.into(),
        eval_batch: 64,
        loss: glaze::core::RegressionLoss::Mse,
        covariates: None,
    };
    let digest = model.llama.weights_digest();
    let (_, outcome) = ts::run(
        &model.llama,
        &model.tokenizer,
        &spec,
        None,
        Some(&root),
        false,
    )
    .expect("run");
    let data = ts::experiment::load_data(&spec).expect("data");
    let base = ts::baselines::repeat_last(&data.test);
    assert_eq!(outcome.report.steps, 10);
    eprintln!(
        "Time-LLM after 10 steps: test MSE {:.4} (repeat-last {:.4})",
        outcome.test.mse(),
        base.mse()
    );
    assert!(
        outcome.test.mse() < base.mse(),
        "Time-LLM {} vs repeat-last {}",
        outcome.test.mse(),
        base.mse()
    );
    assert_eq!(model.llama.weights_digest(), digest, "backbone changed");
    let _ = std::fs::remove_dir_all(root);
}
