//! The training engine on a tiny frozen backbone: a run killed mid-way resumes to the same
//! weights, the backbone stays bit-identical, checkpoints carry and check their identity.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use glaze::core::harness::{self, ByteCodec};
use glaze::core::{Error as CoreError, FrozenBackbone, export_params};
use glaze::llm::{Llama, LlamaConfig};
use glaze::timeseries::{
    self as ts, Channels, ForecastTask, ForecasterConfig, Frame, ModelKind, PatchEncoder, Pipeline,
    SplitScheme, StoredConfig, WindowSpec,
};
use glaze::train::{Checkpoint, LrSchedule, RunOptions, StepInfo, TrainConfig, train};

fn tiny() -> Llama {
    glaze_tests::tiny_llama_long()
}

fn config(kind: ModelKind, backbone: &Llama, layers: usize) -> ForecasterConfig {
    glaze_tests::tiny_forecaster(kind, backbone, layers)
}

fn window() -> WindowSpec {
    WindowSpec {
        input_len: 32,
        horizon: 8,
        scheme: SplitScheme::Ratio {
            train: 0.6,
            test: 0.2,
        },
        channels: Channels::Multivariate,
        train_stride: 4,
        eval_stride: 16,
    }
}

fn stored(cfg: &ForecasterConfig, data: &ts::SeriesData) -> StoredConfig {
    StoredConfig {
        model: cfg.clone(),
        window: window(),
        columns: data.columns.clone(),
        scaler: data.scaler.clone(),
        description: "Synthetic.".into(),
    }
}

fn data() -> ts::SeriesData {
    let n = 400;
    let frame = Frame {
        path: "synthetic.csv".into(),
        dates: (0..n).map(|i| i.to_string()).collect(),
        columns: vec!["a".into(), "OT".into()],
        values: vec![
            (0..n).map(|t| (t as f32 * 0.2).sin()).collect(),
            (0..n)
                .map(|t| (t as f32 * 0.05).cos() + 0.001 * t as f32)
                .collect(),
        ],
    };
    ts::prepare(&frame, &window()).expect("synthetic data")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("glaze-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn train_config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 6,
        accumulation: 2,
        lr: 5e-3,
        schedule: LrSchedule::WarmupCosine {
            warmup: 2.0,
            min_ratio: 0.1,
        },
        clip_norm: Some(0.5),
        seed: 3,
        checkpoint_every: 2,
        eval_every: Some(3),
        ..TrainConfig::default()
    }
}

/// Trains Time-LLM on the tiny backbone into `dir`; `kill_at` stops the run after that step.
fn run(
    backbone: &Llama,
    data: &ts::SeriesData,
    dir: &Path,
    kill_at: Option<usize>,
) -> Result<Vec<glaze::core::NamedTensor>, CoreError> {
    run_with(backbone, data, dir, kill_at, &train_config())
}

fn run_with(
    backbone: &Llama,
    data: &ts::SeriesData,
    dir: &Path,
    kill_at: Option<usize>,
    train_config: &TrainConfig,
) -> Result<Vec<glaze::core::NamedTensor>, CoreError> {
    let cfg = config(ModelKind::TimeLlm, backbone, 2);
    let pipeline =
        Pipeline::new(backbone, &ByteCodec, cfg.clone(), "Synthetic.", None).expect("pipeline");
    let stored = stored(&cfg, data);
    let identity = ts::experiment::identity(backbone, &stored).expect("identity");
    let device = train_config.device(backbone.device());
    let model = glaze::core::rng::seeded_module(&device, 21, |d| cfg.init(backbone, d));
    let task = ForecastTask {
        pipeline: &pipeline,
        train: &data.train,
        val: Some(&data.val),
        eval_batch: 64,
        loss: glaze::core::RegressionLoss::Mse,
    };
    let mut kill = |s: &StepInfo| match kill_at {
        Some(k) if s.step == k => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let (model, report) = train(
        &task,
        model,
        train_config,
        RunOptions {
            dir: Some(dir.to_path_buf()),
            identity,
            progress: false,
            resume: true,
            on_step: Some(&mut kill),
        },
    )?;
    assert!(report.optimizer_state > 0);
    assert_eq!(
        report.optimizer_state,
        2 * report.trainable_params,
        "optimizer state is two moments of the adapter's parameters and nothing else"
    );
    Ok(export_params(&model))
}

/// On the real SmolLM2 (its 8-bit word table), the prototype map's gradient kept as a product
/// and formed inside AdamW's update (the trainer's default) trains the same adapter as the
/// gradient formed in the backward pass, bit for bit — the prototype weights included, which
/// move — and a killed run with clipping and accumulation resumes to the same weights.
/// (With clipping the norm comes from the Gram matrix, and with accumulation the micro-batches'
/// factors are summed before the product: equal to rounding, which AdamW then magnifies in
/// parameters whose true gradient is zero — the key bias, to which the softmax is blind — so
/// those runs are compared by the unit tests of `product_grad` instead.)
#[test]
fn deferred_prototype_gradient_trains_the_same_adapter() {
    let backbone = &glaze_tests::smollm2().llama;
    assert!(
        backbone.word_embeddings().is_quantized(),
        "an 8-bit word table"
    );
    let data = data();
    let dirs = [
        tmp("defer"),
        tmp("formed"),
        tmp("defer-ck"),
        tmp("defer-resumed"),
    ];
    let exact = TrainConfig {
        max_steps: Some(4),
        clip_norm: None,
        accumulation: 1,
        ..train_config()
    };
    let deferred = run_with(backbone, &data, &dirs[0], None, &exact).expect("deferred");
    let formed = TrainConfig {
        defer_products: false,
        ..exact.clone()
    };
    let formed = run_with(backbone, &data, &dirs[1], None, &formed).expect("formed");
    let cfg = config(ModelKind::TimeLlm, backbone, 2);
    let init = export_params(&glaze::core::rng::seeded_module(
        &backbone.device().clone().autodiff(),
        21,
        |d| cfg.init(backbone, d),
    ));
    let mut moved = false;
    for ((x, y), i) in deferred.iter().zip(&formed).zip(&init) {
        assert_eq!(x.name, y.name);
        assert!(x.data == y.data, "{}: deferred and formed differ", x.name);
        if x.name.contains("mapping.weight") {
            moved = x.data.iter().zip(&i.data).any(|(p, q)| p != q);
        }
    }
    assert!(moved, "the prototype weights trained");
    let clipped = TrainConfig {
        max_steps: Some(4),
        ..train_config()
    };
    let straight = run_with(backbone, &data, &dirs[2], None, &clipped).expect("straight");
    let err = run_with(backbone, &data, &dirs[3], Some(3), &clipped).expect_err("killed");
    assert!(matches!(err, CoreError::Interrupted { step: 3 }), "{err}");
    let resumed = run_with(backbone, &data, &dirs[3], None, &clipped).expect("resumed");
    for (x, y) in straight.iter().zip(&resumed) {
        assert!(x.data == y.data, "{}: the resumed run differs", x.name);
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn killed_run_resumes_to_the_same_weights_and_backbone_is_untouched() {
    let backbone = tiny();
    let data = data();
    let digest = backbone.weights_digest();
    let a = tmp("a");
    let b = tmp("b");
    let straight = run(&backbone, &data, &a, None).expect("uninterrupted run");
    // Killed after step 5: the last checkpoint is step 4 (every 2 steps and after each
    // validation); the resumed run redoes step 5 and goes on.
    let err = run(&backbone, &data, &b, Some(5)).expect_err("killed");
    assert!(matches!(err, CoreError::Interrupted { step: 5 }), "{err}");
    let ck = Checkpoint::load(&b.join("last.safetensors")).expect("last checkpoint");
    assert_eq!(ck.state.as_ref().map(|s| s.step), Some(4));
    let resumed = run(&backbone, &data, &b, None).expect("resumed run");
    assert_eq!(straight.len(), resumed.len());
    for (x, y) in straight.iter().zip(&resumed) {
        assert_eq!(x.name, y.name);
        assert!(x.data == y.data, "tensor {} differs after resume", x.name);
    }
    // The metrics log counts every step once.
    let ma = glaze::train::metrics::read_records(&a.join("metrics.jsonl")).expect("metrics");
    let mb = glaze::train::metrics::read_records(&b.join("metrics.jsonl")).expect("metrics");
    assert_eq!(ma.len(), mb.len());
    assert!(b.join("curve.png").exists());
    assert_eq!(
        backbone.weights_digest(),
        digest,
        "backbone changed during training"
    );
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn gradient_checkpointing_trains_the_same_adapter() {
    // burn's balanced checkpointing recomputes memory-bound activations in the backward
    // pass; the adapter's device carries the strategy and the task's inputs follow it.
    let backbone = tiny();
    let data = data();
    let (a, b) = (tmp("gc-off"), tmp("gc-on"));
    let plain = run(&backbone, &data, &a, None).expect("plain run");
    let config = TrainConfig {
        gradient_checkpointing: true,
        ..train_config()
    };
    let checkpointed = run_with(&backbone, &data, &b, None, &config).expect("checkpointed run");
    assert_eq!(plain.len(), checkpointed.len());
    for (x, y) in plain.iter().zip(&checkpointed) {
        let d = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-5, "tensor {} differs by {d}", x.name);
    }
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A Time-LLM checkpoint of the layout before the patch embedding and reprogramming became
/// the `SeriesAdapter` (their parameters at the top level) loads into today's model with the
/// same values; a name that maps to nothing is still refused.
#[test]
fn checkpoints_of_the_older_layout_still_load() {
    let backbone = tiny();
    let data = data();
    let dir = tmp("old-layout");
    let cfg = config(ModelKind::TimeLlm, &backbone, 2);
    let identity = ts::experiment::identity(&backbone, &stored(&cfg, &data)).expect("identity");
    let model = cfg.init(&backbone, backbone.device());
    let mut weights = export_params(&model);
    assert!(
        weights
            .iter()
            .any(|t| t.name.starts_with("adapter.reprogram."))
    );
    for t in &mut weights {
        t.name = t.name.trim_start_matches("adapter.").to_string();
    }
    let path = dir.join("adapter.safetensors");
    let save = |weights: Vec<glaze::core::NamedTensor>| {
        Checkpoint {
            identity: identity.clone(),
            weights,
            state: None,
            optimizer: Vec::new(),
        }
        .save(&path)
        .expect("save")
    };
    save(weights.clone());
    let (loaded, _) = ts::load_checkpoint(&backbone, &path).expect("old layout loads");
    assert_eq!(export_params(&loaded), export_params(&model));
    weights[0].name = format!("unknown.{}", weights[0].name);
    save(weights);
    let err = ts::load_checkpoint(&backbone, &path).expect_err("unknown name");
    assert!(err.to_string().contains("adapter.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn checkpoints_name_the_backbone_they_need() {
    let backbone = tiny();
    let data = data();
    let dir = tmp("identity");
    let cfg = config(ModelKind::Gpt4ts, &backbone, 2);
    let spec_stored = stored(&cfg, &data);
    let identity = ts::experiment::identity(&backbone, &spec_stored).expect("identity");
    let device = backbone.device().clone();
    let model = cfg.init(&backbone, &device);
    let path = dir.join("adapter.safetensors");
    Checkpoint {
        identity: identity.clone(),
        weights: export_params(&model),
        state: None,
        optimizer: Vec::new(),
    }
    .save(&path)
    .expect("save");
    let (loaded, stored) = ts::load_checkpoint(&backbone, &path).expect("round trip");
    assert_eq!(export_params(&loaded), export_params(&model));
    assert_eq!(stored.columns, data.columns);

    // A different backbone (another width) is refused, naming both.
    let device = Device::flex();
    let other = Llama::init(
        &LlamaConfig::new(48, 2, 4, 2, 64, ByteCodec::VOCAB),
        &device,
    );
    let err = ts::load_checkpoint(&other, &path).expect_err("wrong backbone");
    let msg = err.to_string();
    assert!(
        msg.contains("width 32") && msg.contains("width 48"),
        "{msg}"
    );
    assert!(msg.contains("adapter.safetensors"), "{msg}");

    // Using fewer layers than it was trained with is another backbone identity.
    let mut fewer = identity.clone();
    fewer.backbone.layers_used = 1;
    let err = fewer
        .check_compatible(&identity, &path)
        .expect_err("layer count differs");
    assert!(
        matches!(
            err,
            CoreError::IdentityMismatch {
                what: "backbone",
                ..
            }
        ),
        "{err}"
    );
    // Another encoder, another kind.
    let mut enc = identity.clone();
    enc.encoder = Some(PatchEncoder::new(8, 4).spec_owned());
    let err = enc.check_compatible(&identity, &path).expect_err("encoder");
    assert!(
        matches!(
            err,
            CoreError::IdentityMismatch {
                what: "encoder",
                ..
            }
        ),
        "{err}"
    );
    let mut kind = identity.clone();
    kind.kind = "timeseries/time-llm".into();
    assert!(kind.check_compatible(&identity, &path).is_err());

    // Damaged files are typed errors naming the file.
    let bytes = std::fs::read(&path).expect("read");
    for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let err = ts::load_checkpoint(&backbone, &path).expect_err("truncated");
        assert!(err.to_string().contains("adapter.safetensors"), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn series_adapter_keeps_the_contract() {
    let backbone = tiny();
    let cfg = config(ModelKind::TimeLlm, &backbone, 2);
    let encoder = PatchEncoder::new(8, 4);
    let windows = vec![(0..32).map(|t| t as f32).collect::<Vec<f32>>(); 2];
    harness::check_adapter(
        &backbone,
        &ByteCodec,
        |d| cfg.init(&backbone, d).adapter.expect("series adapter"),
        |d| {
            use glaze::core::Encoder;
            encoder.encode(&windows, d).expect("encode")
        },
    );
}
