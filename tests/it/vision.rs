//! The vision plugin: DINOv2 parity with onnxruntime, preprocessing against Pillow, HF
//! safetensors directories, decoder limits and bad files.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::prelude::*;
use glaze::vision::{
    DecodeLimits, Error, FeatureSelect, Pixels, PreprocessConfig, Preprocessor, ViT, ViTConfig,
    VisionEncoder, decode_bytes, decode_file,
};
use glaze_tests::{read_npz_f32, reference};

fn dinov2() -> &'static VisionEncoder {
    static ENC: OnceLock<VisionEncoder> = OnceLock::new();
    ENC.get_or_init(|| {
        VisionEncoder::load_default(&Device::flex())
            .unwrap_or_else(|e| panic!("real-weight vision tests need the encoder: {e}"))
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glaze-vision-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0f32, f32::max);
    diff / scale
}

const IMAGES: [&str; 3] = ["chelsea", "coffee", "astronaut"];

/// The reference (onnxruntime 1.32 on the same ONNX file, output `/backbone/layernorm/Add_1`;
/// see ASSETS.md) on the reference's own pixels: CLS and all 256 patch tokens.
#[test]
fn dinov2_matches_onnxruntime_on_three_real_images() {
    let npz = reference("dinov2/dinov2_s_ref.npz");
    let enc = dinov2();
    let device = Device::flex();
    for name in IMAGES {
        let (shape, px) = read_npz_f32(&npz, &format!("{name}_pixels"));
        assert_eq!(shape, [1, 3, 224, 224]);
        let (tshape, want) = read_npz_f32(&npz, &format!("{name}_tokens"));
        assert_eq!(tshape, [1, 257, 384]);
        let got = values(enc.encode_pixels(
            &[Pixels {
                data: px,
                size: 224,
            }],
            &device,
        ));
        let cls = rel_err(&got[..384], &want[..384]);
        let patches = rel_err(&got[384..], &want[384..]);
        eprintln!("{name}: relative error CLS {cls:.2e}, patches {patches:.2e}");
        assert!(
            cls <= 1e-4 && patches <= 1e-4,
            "{name}: CLS {cls:.2e}, patches {patches:.2e}"
        );
    }
}

fn skimage(name: &str) -> PathBuf {
    glaze::core::cache_dir()
        .join("scikit-image-0.26.0")
        .join(name)
}

/// Our decode + bicubic resize + crop + normalise against Pillow's (the reference pixels), and
/// what the remaining resize difference does to the encoder's output.
#[test]
fn preprocessing_is_close_to_pillow() {
    let npz = reference("dinov2/dinov2_s_ref.npz");
    let pre = Preprocessor::new(PreprocessConfig::new()).expect("default preprocessing");
    let device = Device::flex();
    for name in IMAGES {
        let img = decode_file(&skimage(&format!("{name}.png")), &DecodeLimits::default())
            .expect("scikit-image data is fetched by `cargo xtask fetch`");
        let ours = pre.prepare(&img);
        let (_, pillow) = read_npz_f32(&npz, &format!("{name}_pixels"));
        let mean_abs = ours
            .data
            .iter()
            .zip(&pillow)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / pillow.len() as f32;
        let a = values(dinov2().encode_pixels(&[ours], &device));
        let (_, b) = read_npz_f32(&npz, &format!("{name}_tokens"));
        let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let cos = dot
            / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
                * b.iter().map(|x| x * x).sum::<f32>().sqrt());
        eprintln!("{name}: mean |Δpixel| {mean_abs:.4} (normalised units), token cosine {cos:.5}");
        assert!(mean_abs < 0.03, "{name}: mean pixel difference {mean_abs}");
        assert!(cos > 0.99, "{name}: token cosine {cos}");
    }
}

#[test]
fn onnx_errors_name_the_file() {
    let dir = scratch("onnx");
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff\xff not a protobuf").expect("write");
    let err = glaze::vision::onnx::read_onnx(&garbage).expect_err("garbage");
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(err.to_string().contains("garbage.onnx"), "{err}");
    let missing = glaze::vision::onnx::read_onnx(&dir.join("absent.onnx")).expect_err("missing");
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
    // A valid protobuf without the ViT tensors.
    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, []).expect("write");
    let err = glaze::vision::onnx::read_onnx(&empty).expect_err("no graph");
    assert!(err.to_string().contains("empty.onnx"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes a ViT in HF names (the test's own table, independent of the loader) as f16 or f32.
fn write_hf(vit: &ViT, config: &ViTConfig, dinov2: bool, dir: &Path, f16: bool) {
    use safetensors::{Dtype, tensor::TensorView};
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let t = |x: Tensor<2>| x.transpose(); // burn [in, out] → HF [out, in]
    let mut push = |name: String, shape: Vec<usize>, v: Vec<f32>| named.push((name, shape, v));
    let v1 =
        |p: &burn::module::Param<Tensor<1>>| p.val().into_data().try_to_vec::<f32>().expect("f32");
    let v2 = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().expect("f32");
    let d = config.dim;
    let p = config.patch_size;
    push(
        "embeddings.cls_token".into(),
        vec![1, 1, d],
        values(vit.cls_token.val()),
    );
    push(
        "embeddings.position_embeddings".into(),
        vec![1, 1 + config.pos_grid * config.pos_grid, d],
        values(vit.pos_embed.val()),
    );
    push(
        "embeddings.patch_embeddings.projection.weight".into(),
        vec![d, 3, p, p],
        v2(t(vit.patch.weight.val())),
    );
    push(
        "embeddings.patch_embeddings.projection.bias".into(),
        vec![d],
        v1(vit.patch.bias.as_ref().expect("bias")),
    );
    let lin = |l: &burn::nn::Linear| {
        let w = t(l.weight.val());
        let shape = w.dims().to_vec();
        (shape, v2(w), v1(l.bias.as_ref().expect("bias")))
    };
    for (i, layer) in vit.layers.iter().enumerate() {
        let pre = format!("encoder.layer.{i}.");
        let (n1, n2, f1, f2) = if dinov2 {
            ("norm1", "norm2", "mlp.fc1", "mlp.fc2")
        } else {
            (
                "layernorm_before",
                "layernorm_after",
                "intermediate.dense",
                "output.dense",
            )
        };
        for (name, norm) in [(n1, &layer.norm1), (n2, &layer.norm2)] {
            push(format!("{pre}{name}.weight"), vec![d], v1(&norm.gamma));
            push(
                format!("{pre}{name}.bias"),
                vec![d],
                v1(norm.beta.as_ref().expect("beta")),
            );
        }
        for (name, l) in [
            ("attention.attention.query", &layer.attn.query),
            ("attention.attention.key", &layer.attn.key),
            ("attention.attention.value", &layer.attn.value),
            ("attention.output.dense", &layer.attn.out),
            (f1, &layer.fc1),
            (f2, &layer.fc2),
        ] {
            let (shape, w, b) = lin(l);
            push(format!("{pre}{name}.bias"), vec![shape[0]], b);
            push(format!("{pre}{name}.weight"), shape, w);
        }
        if dinov2 {
            push(
                format!("{pre}layer_scale1.lambda1"),
                vec![d],
                v1(layer.scale1.as_ref().expect("scale")),
            );
            push(
                format!("{pre}layer_scale2.lambda1"),
                vec![d],
                v1(layer.scale2.as_ref().expect("scale")),
            );
        }
    }
    push("layernorm.weight".into(), vec![d], v1(&vit.norm.gamma));
    push(
        "layernorm.bias".into(),
        vec![d],
        v1(vit.norm.beta.as_ref().expect("beta")),
    );
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .into_iter()
        .map(|(n, s, v)| {
            let b = if f16 {
                v.iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect()
            } else {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
            (n, s, b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
            (
                n.clone(),
                TensorView::new(dtype, s.clone(), b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    let cfg = serde_json::json!({
        "model_type": if dinov2 { "dinov2" } else { "vit" },
        "hidden_size": d,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.mlp_dim,
        "image_size": config.pos_grid * p,
        "patch_size": p,
        "layer_norm_eps": config.eps,
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write config");
}

#[test]
fn hf_safetensors_directories_load_both_flavours() {
    let device = Device::flex();
    for (dinov2, f16) in [(true, false), (false, true)] {
        device.seed(5);
        let config = ViTConfig::tiny().with_layer_scale(dinov2);
        let vit = config.init(&device);
        let dir = scratch(if dinov2 { "hf-dinov2" } else { "hf-vit" });
        write_hf(&vit, &config, dinov2, &dir, f16);
        let enc = VisionEncoder::from_hf_dir(&dir, 16, &device).expect("loads");
        let px = Tensor::<4>::random([2, 3, 16, 16], burn::tensor::Distribution::Default, &device);
        let want = values(vit.forward(px.clone(), &FeatureSelect::new()));
        let got = values(enc.vit().forward(px, enc.select()));
        let err = rel_err(&got, &want);
        let tol = if f16 { 1e-2 } else { 1e-6 };
        assert!(err < tol, "dinov2={dinov2} f16={f16}: {err}");
        // A missing tensor names the tensor and the directory.
        let st = dir.join("model.safetensors");
        std::fs::write(&st, b"{}").expect("overwrite");
        let err = VisionEncoder::from_hf_dir(&dir, 16, &device).expect_err("broken");
        assert!(
            err.to_string().contains("model.safetensors")
                || err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn feature_layer_and_cls_selection() {
    let enc = dinov2();
    let device = Device::flex();
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    });
    let pixels = [enc.preprocessor().prepare(&img)];
    let last = values(enc.encode_pixels(&pixels, &device));
    let penultimate = enc
        .clone()
        .with_select(
            FeatureSelect::new()
                .with_layer(Some(11))
                .with_final_norm(false)
                .with_cls(false),
        )
        .expect("valid layer");
    use glaze::core::Encoder;
    assert_eq!(penultimate.num_features(&img), 256);
    assert_ne!(
        penultimate.spec().name,
        enc.spec().name,
        "the selection is part of the identity"
    );
    let pen = values(penultimate.encode_pixels(&pixels, &device));
    assert_eq!(pen.len(), 256 * 384);
    assert!(
        rel_err(&pen, &last[384..]) > 0.01,
        "a different layer gives different features"
    );
    assert!(
        enc.clone()
            .with_select(FeatureSelect::new().with_layer(Some(13)))
            .is_err()
    );
}

fn png(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// CRC-32 (IEEE) for patching PNG chunks in tests.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn huge_headers_and_decompression_bombs_are_refused_before_allocation() {
    // A valid 8×8 PNG whose IHDR is rewritten to 60000×60000 (with a correct CRC).
    let mut bytes = png(&image::DynamicImage::new_rgb8(8, 8));
    bytes[16..20].copy_from_slice(&60000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    let err =
        decode_bytes(&bytes, Path::new("huge.png"), &DecodeLimits::default()).expect_err("huge");
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("huge.png"), "{err}");
    // A bomb: 12000×12000 black pixels compress to a small file but would need 432 MB.
    let bomb = png(&image::DynamicImage::new_luma8(12000, 12000));
    assert!(
        bomb.len() < 1 << 20,
        "the bomb file is small ({} bytes)",
        bomb.len()
    );
    let err =
        decode_bytes(&bomb, Path::new("bomb.png"), &DecodeLimits::default()).expect_err("bomb");
    assert!(
        matches!(err, Error::TooLarge { .. } | Error::MemoryLimit { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bomb.png"), "{err}");
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6) comes out
/// rotated: a 4×2 image decodes to 2×4, with its left column on top.
#[test]
fn exif_orientation_is_applied() {
    let img = image::RgbImage::from_fn(16, 8, |x, _| {
        if x < 8 {
            image::Rgb([250, 0, 0])
        } else {
            image::Rgb([0, 0, 250])
        }
    });
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("jpeg");
    let jpeg = jpeg.into_inner();
    // TIFF header (little endian), one IFD entry: tag 0x0112 SHORT count 1 value 6.
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    let plain =
        decode_bytes(&jpeg, Path::new("plain.jpg"), &DecodeLimits::default()).expect("plain");
    assert_eq!(plain.dimensions(), (16, 8));
    let rotated =
        decode_bytes(&out, Path::new("exif.jpg"), &DecodeLimits::default()).expect("exif");
    assert_eq!(rotated.dimensions(), (8, 16));
    // Rotating 90° clockwise puts the left (red) half on top.
    assert!(
        rotated.get_pixel(4, 2).0[0] > 200,
        "{:?}",
        rotated.get_pixel(4, 2)
    );
    assert!(
        rotated.get_pixel(4, 13).0[2] > 200,
        "{:?}",
        rotated.get_pixel(4, 13)
    );
}

#[test]
fn corrupt_and_truncated_files_are_typed_errors() {
    let dir = scratch("corrupt");
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(64, 64)
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("jpeg");
    let jpeg = jpeg.into_inner();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 3]).expect("write");
    let err = decode_file(&cut, &DecodeLimits::default()).expect_err("truncated");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("cut.jpg"), "{err}");
    let mut bad = jpeg.clone();
    for b in bad.iter_mut().skip(200).take(300) {
        *b = 0xff;
    }
    let flipped = dir.join("flipped.jpg");
    std::fs::write(&flipped, &bad).expect("write");
    // Either a typed error or an image of the right size — never a panic.
    match decode_file(&flipped, &DecodeLimits::default()) {
        Ok(img) => assert_eq!(img.dimensions(), (64, 64)),
        Err(e) => assert!(e.to_string().contains("flipped.jpg"), "{e}"),
    }
    let err = decode_file(&dir.join("absent.png"), &DecodeLimits::default()).expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tiny_encoder(name: &str) -> VisionEncoder {
    let vit = glaze::core::rng::seeded_module(&Device::flex(), 21, |d| ViTConfig::tiny().init(d));
    VisionEncoder::new(
        vit,
        PreprocessConfig::new().with_size(16).with_patch_size(4),
        name,
        "tiny",
    )
    .expect("valid tiny encoder")
}

fn tiny_shapes(
    encoder: &VisionEncoder,
    root: &Path,
    sizes: glaze::vision::experiment::ShapesSizes,
) -> (glaze::vision::experiment::VisionData, usize) {
    use glaze::vision::experiment::{load_shapes, open_cache};
    let cache = open_cache(root, encoder).expect("cache opens");
    let data = load_shapes(encoder, &cache, sizes, 3, &Device::flex()).expect("scenes");
    (data, cache.hits())
}

/// Tiny LLM + tiny ViT: features go through the offline cache (second load = all hits), the
/// adapter trains on the engine with checkpoints, and loading it back checks the encoder
/// identity: a different encoder is an error naming both.
#[test]
fn tiny_vision_run_caches_trains_and_checks_identity() {
    use glaze::core::Adapter;
    use glaze::core::harness::ByteCodec;
    use glaze::train::TrainConfig;
    use glaze::vision::VisionAdapterConfig;
    use glaze::vision::experiment::{RunSpec, ShapesSizes, load_adapter, run};
    let backbone = glaze_tests::tiny_llama_long();
    let encoder = tiny_encoder("tiny-vit");
    let root = scratch("tiny-run");
    let sizes = ShapesSizes {
        train: 8,
        val: 4,
        test: 4,
    };
    let (data, hits) = tiny_shapes(&encoder, &root.join("features"), sizes);
    assert_eq!(hits, 0, "first load computes every feature");
    let (again, hits) = tiny_shapes(&encoder, &root.join("features"), sizes);
    assert_eq!(hits, 16, "second load reads every feature from the cache");
    assert_eq!(again.bank.rows, data.bank.rows);
    assert_eq!(data.bank.len_of(0), 17, "CLS + 4×4 patches");
    let spec = RunSpec {
        adapter: VisionAdapterConfig::Mlp { pool: 2 },
        train: TrainConfig {
            batch_size: 4,
            epochs: 2,
            max_steps: Some(3),
            lr: 1e-2,
            checkpoint_every: 1,
            ..TrainConfig::default()
        },
        seed: 1,
        dir: Some(root.join("run")),
        eval_batch: 4,
        max_new_tokens: 4,
        progress: false,
    };
    let outcome = run(&backbone, &ByteCodec, &encoder, &data, &spec).expect("trains");
    assert_eq!(outcome.steps, 3);
    assert_eq!(outcome.tokens, 5, "CLS + 2×2 pooled patches");
    assert_eq!(outcome.answers.len(), 4);
    let file = root.join("run/adapter.safetensors");
    let (loaded, config) = load_adapter(&backbone, &encoder, &file).expect("loads back");
    assert_eq!(config, spec.adapter);
    let device = Device::flex();
    let feats = data.bank.batch(&[0, 1], &device);
    let a = values(loaded.adapt(&feats, None));
    let b = values(outcome.adapter.adapt(&feats, None));
    assert_eq!(a, b, "the saved adapter is the trained one");
    // Another encoder (another name) is refused, naming both.
    let other = tiny_encoder("other-vit");
    let err = load_adapter(&backbone, &other, &file).expect_err("wrong encoder");
    let msg = err.to_string();
    assert!(
        msg.contains("tiny-vit") && msg.contains("other-vit"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(root);
}

/// Real SmolLM2 + real DINOv2 on generated scenes: a short run of the MLP projector lowers the
/// held-out caption loss well below where it started (the soft tokens carry the picture).
#[test]
fn real_models_learn_to_caption_generated_shapes() {
    use glaze::train::TrainConfig;
    use glaze::vision::VisionAdapterConfig;
    use glaze::vision::experiment::{RunSpec, ShapesSizes, run};
    use glaze::vision::task::{VisionPipeline, VqaItem};
    let model = glaze_tests::smollm2();
    let encoder = dinov2();
    let root = scratch("real-shapes");
    let cache = glaze::vision::experiment::open_cache(&root, encoder).expect("cache");
    let data = glaze::vision::experiment::load_shapes(
        encoder,
        &cache,
        ShapesSizes {
            train: 24,
            val: 8,
            test: 4,
        },
        9,
        &Device::flex(),
    )
    .expect("scenes");
    let pipeline = VisionPipeline {
        backbone: &model.llama,
        codec: &model.tokenizer,
    };
    let val: Vec<&VqaItem> = data.val.iter().collect();
    let spec = RunSpec {
        adapter: VisionAdapterConfig::Mlp { pool: 4 },
        train: TrainConfig {
            batch_size: 8,
            max_steps: Some(8),
            epochs: 3,
            lr: 3e-3,
            ..TrainConfig::default()
        },
        seed: 0,
        dir: None,
        eval_batch: 4,
        max_new_tokens: 12,
        progress: false,
    };
    let device = Device::flex();
    device.seed(0);
    let untrained = spec.adapter.init(384, 576, &device).expect("adapter");
    let before = pipeline
        .answer_loss(&untrained, &data.bank, &val, &device)
        .expect("loss")
        .into_scalar::<f32>();
    let outcome = run(&model.llama, &model.tokenizer, encoder, &data, &spec).expect("trains");
    let after = pipeline
        .answer_loss(&outcome.adapter, &data.bank, &val, &device)
        .expect("loss")
        .into_scalar::<f32>();
    eprintln!(
        "held-out caption loss {before:.3} → {after:.3}; e.g. {:?}",
        outcome.answers[0]
    );
    assert!(after < 0.6 * before, "caption loss {before} → {after}");
    let _ = std::fs::remove_dir_all(root);
}

/// A question that holds the image placeholder is a typed error naming the field, not a prompt
/// with the system turn dropped (the prompt used to be split at the question's own `<image>`).
#[test]
fn a_question_with_the_image_placeholder_is_rejected() {
    use glaze::core::Error;
    use glaze::core::harness::ByteCodec;
    use glaze::vision::task::VisionPipeline;
    let backbone = glaze_tests::tiny_llama_long();
    let pipeline = VisionPipeline {
        backbone: &backbone,
        codec: &ByteCodec,
    };
    let plain = pipeline
        .prompt("What colour is it?", None, None)
        .expect("plain question");
    assert!(!plain.segments().is_empty());
    let err = pipeline
        .prompt("Is <image> the same as this one?", None, None)
        .expect_err("placeholder in the question");
    assert!(
        matches!(&err, Error::PlaceholderInText { placeholder, field: "question" } if placeholder == "<image>"),
        "{err}"
    );
}

/// `glaze ask --image` in the library: one image through the encoder trait, its soft tokens
/// spliced by the shared pipeline — the same answer as `answer` over the encoder's features.
#[test]
fn asking_about_one_image_is_answering_over_its_features() {
    use glaze::core::harness::ByteCodec;
    use glaze::core::{Encoder, FrozenBackbone};
    use glaze::vision::task::VisionPipeline;
    use glaze::vision::{VisionAdapterConfig, VqaItem};
    let backbone = glaze_tests::tiny_llama_long();
    let encoder = tiny_encoder("tiny-vit");
    let device = Device::flex();
    let adapter = glaze::core::rng::seeded(&device, 4, |d| {
        VisionAdapterConfig::Mlp { pool: 2 }
            .init(encoder.spec().feature_dim, backbone.spec().d_model, d)
            .expect("adapter")
    });
    let image = image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, 120])
    });
    let pipeline = VisionPipeline {
        backbone: &backbone,
        codec: &ByteCodec,
    };
    let asked = pipeline
        .ask(&adapter, &encoder, image.clone(), "What is it?", 6)
        .expect("asks");
    let features = encoder.encode(&[image], &device).expect("encodes");
    let bank = glaze::train::FeatureBank {
        f: encoder.spec().feature_dim,
        rows: vec![
            features
                .tokens
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32"),
        ],
    };
    let item = VqaItem {
        image: 0,
        question: "What is it?".into(),
        answer: String::new(),
    };
    let answered = pipeline
        .answer(Some(&adapter), &bank, &[item], 1, 6)
        .expect("answers");
    assert_eq!(asked, answered[0]);
}

/// The table in docs/results/vision.md is what the library's renderer makes of the committed
/// docs/results/vision.jsonl (the renderer moved out of the CLI unchanged).
#[test]
fn the_results_table_renders_from_the_committed_rows() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(docs.join("vision.jsonl"))
        .expect("vision.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    let md = std::fs::read_to_string(docs.join("vision.md")).expect("vision.md");
    let (begin, end) = ("<!-- sweep:begin -->\n", "<!-- sweep:end -->");
    let a = md.find(begin).expect("begin marker") + begin.len();
    let b = md.find(end).expect("end marker");
    assert_eq!(glaze::vision::report::results_tables(&rows), md[a..b]);
}
