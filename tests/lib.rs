//! Support for the integration tests: where the shared data and references are, the real
//! model loaded once per test binary, and a tiny `.npy` reader.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::prelude::Device;
use glaze::llm::LanguageModel;

/// `../shared` beside the repository, or `$GLAZE_SHARED`.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GLAZE_SHARED").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// `../shared/reference/<rel>`.
pub fn reference(rel: &str) -> PathBuf {
    shared_dir().join("reference").join(rel)
}

/// The fetched SmolLM2, loaded once (f32, flex). Panics with the fetch hint when absent.
pub fn smollm2() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        LanguageModel::load_default(&Device::flex())
            .unwrap_or_else(|e| panic!("real-weight tests need the default model: {e}"))
    })
}

/// Reads a little-endian float32 `.npy` array: (shape, values).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    assert!(
        header.contains("'<f4'"),
        "expected float32, header {header}"
    );
    assert!(
        header.contains("'fortran_order': False"),
        "expected C order"
    );
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape in header");
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let values = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect::<Vec<_>>();
    assert_eq!(values.len(), shape.iter().product::<usize>(), "npy size");
    (shape, values)
}

/// The reference JSON of SmolLM2.
pub fn smollm2_reference() -> serde_json::Value {
    let path = reference("smollm2/smollm2_ref.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON parses")
}
