//! Bad inputs are typed errors naming the file and the problem — never a panic.

use std::path::Path;

use burn::prelude::*;
use glaze::core::harness::ByteCodec;
use glaze::core::{PromptTemplate, SoftTokens};
use glaze::llm::{Error, GgufFile, GgufProblem, LanguageModel, LlamaConfig};
use glaze_tests::GgufWriter;

fn small_file() -> GgufWriter {
    GgufWriter::default()
        .string("general.architecture", "llama")
        .u32("general.alignment", 32)
        .f32_tensor(
            "a.weight",
            &[4, 2],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        )
}

fn problem(bytes: Vec<u8>) -> GgufProblem {
    match GgufFile::from_bytes(bytes, "test.gguf") {
        Err(Error::Gguf { path, problem }) => {
            assert_eq!(path, Path::new("test.gguf"), "the error names the file");
            problem
        }
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

#[test]
fn valid_small_file_parses_and_dequantizes() {
    let file = GgufFile::from_bytes(small_file().build(), "test.gguf").expect("parses");
    assert_eq!(file.tensor("a.weight").expect("tensor").shape(), vec![2, 4]);
    assert_eq!(file.dequantize("a.weight").expect("f32")[7], 8.0);
}

#[test]
fn wrong_magic() {
    let mut bytes = small_file().build();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(problem(bytes), GgufProblem::BadMagic { .. }));
    assert!(matches!(
        problem(b"GG".to_vec()),
        GgufProblem::BadMagic { .. }
    ));
}

#[test]
fn unsupported_version() {
    let mut bytes = small_file().build();
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        problem(bytes),
        GgufProblem::UnsupportedVersion { version: 7 }
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_file().build();
    for cut in 0..bytes.len() - 1 {
        // Cutting inside the zero padding after the last tensor still leaves it complete.
        if let Ok(file) = GgufFile::from_bytes(bytes[..cut].to_vec(), "test.gguf") {
            let info = file.tensor("a.weight").expect("tensor present");
            assert!(
                info.start + info.len <= cut,
                "cut {cut} accepted a tensor past the end"
            );
        }
    }
}

#[test]
fn truncated_real_model_is_an_error() {
    let path = glaze::llm::default_model_path();
    let bytes = std::fs::read(&path).expect("fetched model");
    for cut in [10, 1000, 3_000_000, bytes.len() / 2, bytes.len() - 1] {
        let err = GgufFile::from_bytes(bytes[..cut].to_vec(), &path).expect_err("truncated");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn truncated_files_on_disk_are_errors_when_opened() {
    // `GgufFile::open` reads only the header (in growing prefixes) and checks tensor ranges
    // against the file's length: every cut of the small file fails the same way in memory and
    // on disk, and a real file cut in its header or its data names the file.
    let dir = std::env::temp_dir().join(format!("glaze-gguf-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bytes = small_file().build();
    let path = dir.join("cut.gguf");
    for cut in 0..bytes.len() - 1 {
        std::fs::write(&path, &bytes[..cut]).expect("writes");
        let on_disk = GgufFile::open(&path).map(|f| f.tensors.len());
        let in_memory = GgufFile::from_bytes(bytes[..cut].to_vec(), &path).map(|f| f.tensors.len());
        assert_eq!(on_disk.is_ok(), in_memory.is_ok(), "cut {cut}");
        if let Err(e) = on_disk {
            assert!(e.to_string().contains("cut.gguf"), "{e}");
        }
    }
    let real = std::fs::read(glaze::llm::default_model_path()).expect("fetched model");
    let path = dir.join("real-cut.gguf");
    for cut in [3_000_000, real.len() - 1] {
        std::fs::write(&path, &real[..cut]).expect("writes");
        let err = GgufFile::open(&path).expect_err("truncated");
        assert!(err.to_string().contains("real-cut.gguf"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensor_offset_past_the_end() {
    let mut w = small_file();
    w = w.tensor("b.weight", &[1024], 0, vec![0u8; 16]); // declares 4096 bytes, has 16
    assert!(matches!(
        problem(w.build()),
        GgufProblem::TensorOutOfBounds { .. }
    ));
}

#[test]
fn huge_counts_do_not_allocate() {
    let mut bytes = small_file().build();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    assert!(matches!(problem(bytes), GgufProblem::Implausible { .. }));
    let mut bytes = small_file().build();
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()); // metadata count
    assert!(matches!(problem(bytes), GgufProblem::Implausible { .. }));
}

#[test]
fn unknown_tensor_type_is_typed() {
    let file = small_file().tensor("q.weight", &[256], 10, vec![0u8; 84]); // Q2_K
    let file = GgufFile::from_bytes(file.build(), "test.gguf").expect("directory parses");
    match file.dequantize("q.weight") {
        Err(Error::UnsupportedTensorType {
            name, type_name, ..
        }) => {
            assert_eq!(name, "q.weight");
            assert_eq!(type_name, "Q2_K");
        }
        other => panic!("expected UnsupportedTensorType, got {other:?}"),
    }
    let bogus = small_file().tensor("z.weight", &[4], 99, vec![]);
    let file = GgufFile::from_bytes(bogus.build(), "test.gguf").expect("directory parses");
    assert!(matches!(
        file.dequantize("z.weight"),
        Err(Error::UnsupportedTensorType { ggml_type: 99, .. })
    ));
}

#[test]
fn missing_metadata_is_typed() {
    let file = GgufFile::from_bytes(small_file().build(), "test.gguf").expect("parses");
    let err = LlamaConfig::from_gguf(&file).expect_err("no llama.* keys");
    assert!(err.to_string().contains("llama.embedding_length"), "{err}");
}

#[test]
fn hf_config_missing_field() {
    let dir = std::env::temp_dir().join(format!("glaze-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "vocab_size": 100}"#,
    )
    .expect("write");
    match LlamaConfig::from_hf_json(&config) {
        Err(Error::Config { path, field, .. }) => {
            assert_eq!(path, config);
            assert_eq!(field, "hidden_size");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    std::fs::write(&config, "{ not json").expect("write");
    assert!(matches!(
        LlamaConfig::from_hf_json(&config),
        Err(Error::Json { .. })
    ));
    // A directory without weights.
    std::fs::write(
        &config,
        r#"{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "vocab_size": 10}"#,
    )
    .expect("write");
    let err = LanguageModel::load(&dir, &Device::flex()).expect_err("no safetensors");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_model_path_names_the_file() {
    let err = LanguageModel::load(Path::new("/nonexistent/model.gguf"), &Device::flex())
        .expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn placeholder_without_soft_tokens() {
    let device = Device::flex();
    let soft = SoftTokens::new(Tensor::zeros([2, 8], &device));
    let t = PromptTemplate::new("<image> then <audio>");
    let err = t
        .fill(vec![("<image>", soft.clone())])
        .expect_err("audio has none");
    assert!(err.to_string().contains("<audio>"), "{err}");
    let err = t
        .fill(vec![("<video>", soft.clone())])
        .expect_err("unknown placeholder");
    assert!(matches!(err, glaze::Error::UnknownPlaceholder { .. }));
    let ok = t
        .fill(vec![("<image>", soft.clone()), ("<audio>", soft)])
        .expect("fills");
    assert_eq!(ok.segments().len(), 3);
    let _ = ByteCodec;
}
