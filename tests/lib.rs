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

/// A copy of the fetched SmolLM2 whose generation uses `act` in the quantized kernels (the
/// copy shares the weights).
pub fn smollm2_with(act: glaze::llm::Activations) -> glaze::llm::Llama {
    let mut llama = smollm2().llama.clone();
    llama.set_generation_activations(act);
    llama
}

/// Token ids stored under `key` in the reference JSON.
pub fn reference_ids(v: &serde_json::Value, key: &str) -> Vec<u32> {
    v[key]
        .as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// A tiny random Llama for the byte codec, with room for Time-LLM's text prompts.
pub fn tiny_llama_long() -> glaze::llm::Llama {
    glaze::core::rng::seeded(&Device::flex(), 11, |device| {
        glaze::llm::Llama::init(
            &glaze::llm::LlamaConfig::tiny(glaze::core::harness::ByteCodec::VOCAB)
                .with_context_length(512),
            device,
        )
    })
}

/// A tiny forecaster configuration (L = 32, H = 8, patches 8/4) for `backbone`.
pub fn tiny_forecaster(
    kind: glaze::timeseries::ModelKind,
    backbone: &glaze::llm::Llama,
    layers: usize,
) -> glaze::timeseries::ForecasterConfig {
    let s = glaze::core::FrozenBackbone::spec(backbone);
    glaze::timeseries::ForecasterConfig::new(kind, 32, 8, s.d_model, s.vocab_size)
        .with_patch_len(8)
        .with_stride(4)
        .with_d_patch(8)
        .with_d_ff(16)
        .with_num_prototypes(10)
        .with_n_heads(2)
        .with_d_keys(4)
        .with_llm_layers(layers)
}

/// Reads a little-endian float32 `.npy` array: (shape, values).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_npy_f32(&bytes, path)
}

/// Reads one float32 member (`name` without `.npy`) of a `.npz` archive: (shape, values).
pub fn read_npz_f32(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("npz is a zip archive");
    let mut member = archive
        .by_name(&format!("{name}.npy"))
        .unwrap_or_else(|e| panic!("{}: no member {name}: {e}", path.display()));
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes).expect("npz member reads");
    parse_npy_f32(&bytes, path)
}

fn parse_npy_f32(bytes: &[u8], path: &Path) -> (Vec<usize>, Vec<f32>) {
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

/// A minimal GGUF v3 writer for tests: metadata of strings/u32/f32 and raw tensors.
#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<(String, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn gguf_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend(s.as_bytes());
    v
}

impl GgufWriter {
    /// Adds a string value.
    pub fn string(mut self, key: &str, value: &str) -> Self {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend(gguf_str(value));
        self.kv.push((key.into(), v));
        self
    }

    /// Adds a u32 value.
    pub fn u32(mut self, key: &str, value: u32) -> Self {
        let mut v = 4u32.to_le_bytes().to_vec();
        v.extend(value.to_le_bytes());
        self.kv.push((key.into(), v));
        self
    }

    /// Adds an f32 value.
    pub fn f32(mut self, key: &str, value: f32) -> Self {
        let mut v = 6u32.to_le_bytes().to_vec();
        v.extend(value.to_le_bytes());
        self.kv.push((key.into(), v));
        self
    }

    /// Adds a tensor with ggml dims (innermost first), type and raw bytes.
    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> Self {
        self.tensors
            .push((name.into(), dims.to_vec(), ggml_type, data));
        self
    }

    /// Adds an F32 tensor.
    pub fn f32_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, 0, data)
    }

    /// The file bytes (alignment 32).
    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            out.extend(gguf_str(k));
            out.extend(v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            out.extend(gguf_str(name));
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        let base = out.len() as u64;
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            assert_eq!(
                out.len() as u64,
                base + off,
                "tensor data at its declared offset"
            );
            out.extend(data);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
        }
        out
    }
}
