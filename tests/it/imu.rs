//! The fifth modality (`glaze-imu`), built on the public API only: its windows encode to the
//! formula's feature count, its adapter trains through the frozen backbone on the shared
//! answer pipeline, and a question holding its marker is refused.

use burn::prelude::*;
use glaze::FrozenBackbone;
use glaze::core::harness::ByteCodec;
use glaze::core::{Encoder, Error};
use glaze::train::{AdapterIdentity, ItemLoss, ItemTask, RunOptions, TrainConfig, train};
use glaze_imu::{ImuAdapterConfig, ImuEncoder, ImuQa, synthetic_windows};

#[test]
fn imu_windows_train_an_adapter_through_the_frozen_backbone() {
    let backbone = glaze_tests::tiny_llama_long();
    let digest = backbone.weights_digest();
    let encoder = ImuEncoder::new(25);
    let items = synthetic_windows(12, 100, 5);
    let feats = encoder
        .encode(
            &[items[0].window.clone(), items[1].window.clone()],
            &Device::flex(),
        )
        .expect("encodes");
    assert_eq!(feats.tokens.dims(), [2, 4, glaze_imu::FEATURES]);
    assert_eq!(encoder.num_features(&items[0].window), 4);
    let pipeline = ImuQa {
        backbone: &backbone,
        codec: &ByteCodec,
        encoder: &encoder,
    };
    let config = TrainConfig {
        batch_size: 6,
        epochs: 10,
        lr: 1e-2,
        ..TrainConfig::default()
    };
    let adapter_config = ImuAdapterConfig::new(backbone.spec().d_model);
    let model = glaze::core::rng::seeded(&config.device(backbone.device()), 1, |d| {
        adapter_config.init(d)
    });
    let identity = AdapterIdentity::new(
        "imu-linear",
        &adapter_config,
        Some(encoder.spec().clone()),
        &backbone,
    )
    .expect("identity");
    let refs: Vec<_> = items.iter().collect();
    let plain = Device::flex();
    let loss_of = |m: &glaze_imu::ImuAdapter| {
        pipeline
            .item_loss(&m.valid(), &refs, &plain)
            .expect("loss")
            .into_scalar::<f32>()
    };
    let before = loss_of(&model);
    let task = ItemTask {
        pipeline,
        train: &items,
        val: None,
        eval_batch: 6,
    };
    let (model, report) =
        train(&task, model, &config, RunOptions::in_memory(identity)).expect("trains");
    // A random two-block backbone barely reacts to four soft tokens, so the drop is small; it
    // is deterministic (seeded) and shows the gradient reaching the adapter through the blocks.
    let after = loss_of(&model);
    assert!(after < before, "training loss {before:.4} → {after:.4}");
    assert_eq!(report.steps, 20);
    assert_eq!(report.optimizer_state, 2 * report.trainable_params);
    assert_eq!(
        backbone.weights_digest(),
        digest,
        "the backbone is unchanged"
    );
    let answers = pipeline
        .answer(&model.valid(), &items[..3], 3)
        .expect("answers");
    assert_eq!(answers.len(), 3);
}

#[test]
fn a_question_with_the_imu_marker_is_rejected() {
    let backbone = glaze_tests::tiny_llama_long();
    let encoder = ImuEncoder::new(25);
    let pipeline = ImuQa {
        backbone: &backbone,
        codec: &ByteCodec,
        encoder: &encoder,
    };
    let model = ImuAdapterConfig::new(backbone.spec().d_model).init(backbone.device());
    let mut items = synthetic_windows(1, 100, 2);
    items[0].question = "<imu> and what now?".into();
    let refs: Vec<_> = items.iter().collect();
    let err = pipeline
        .prompts(&model, &refs, None, backbone.device())
        .expect_err("marker in the question");
    assert!(matches!(err, Error::PlaceholderInText { .. }), "{err}");
}
