//! A small, bounds-checked GGUF (v2/v3) reader.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Every read is checked
//! against the file length and every count against the bytes that remain, so a truncated or
//! hostile file is a [`GgufProblem`], never a panic, an out-of-bounds read or a huge allocation.
//! We parse ourselves rather than pull `candle-core` (decision 0002): the format is ~200 lines
//! and the loader needs only metadata, tensor directory and dequantization.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, GgufProblem, Result};
use glaze_kernels::quant::GgmlType;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integer (u8/u16/u32/u64).
    U64(u64),
    /// Signed integer (i8/i16/i32/i64).
    I64(i64),
    /// Float (f32/f64).
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    /// As an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// As a boolean, if one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// As a float, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// ggml dimensions, innermost first (`[ne0, ne1, ..]`).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: u32,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    /// Byte length of the data.
    pub len: usize,
}

impl TensorInfo {
    /// Element count.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Shape in row-major order (outermost first), as PyTorch would show it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file: its directory in memory, tensor data read on demand.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    data: Data,
    /// Format version.
    pub version: u32,
    /// Metadata key/value pairs.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
}

/// Bytes read from the file at a time when a tensor is repacked or the file hashed (below
/// glibc's mmap threshold: the buffer is reused, not mapped and unmapped).
const READ_PIECE: usize = 64 * 1024;

/// Where tensor data comes from.
#[derive(Debug)]
enum Data {
    /// All bytes in memory ([`GgufFile::from_bytes`]).
    Memory(Vec<u8>),
    /// The open file ([`GgufFile::open`]): only the header is held; a tensor's bytes are read
    /// when it is loaded, so loading never holds the whole file beside the model.
    File {
        file: std::sync::Mutex<std::fs::File>,
        len: u64,
    },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], GgufProblem> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufProblem::Truncated {
                what,
                offset: self.pos,
                needed: n,
                len: self.bytes.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufProblem> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufProblem> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, GgufProblem> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufProblem> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufProblem> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// A count that must fit in the remaining bytes at `min_size` bytes per item.
    fn count(&mut self, what: &'static str, min_size: usize) -> Result<usize, GgufProblem> {
        let offset = self.pos;
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_size.max(1)))
            .is_some_and(|bytes| bytes <= self.remaining());
        if !fits {
            return Err(GgufProblem::Implausible {
                what,
                value: n,
                offset,
            });
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufProblem> {
        let n = self.count(what, 1)?;
        let offset = self.pos;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| GgufProblem::BadUtf8 { what, offset })
    }

    fn value(&mut self, key: &str, value_type: u32, depth: u32) -> Result<Value, GgufProblem> {
        const W: &str = "metadata value";
        Ok(match value_type {
            0 => Value::U64(self.u8(W)? as u64),
            1 => Value::I64(self.u8(W)? as i8 as i64),
            2 => Value::U64(self.u16(W)? as u64),
            3 => Value::I64(self.u16(W)? as i16 as i64),
            4 => Value::U64(self.u32(W)? as u64),
            5 => Value::I64(self.u32(W)? as i32 as i64),
            6 => Value::F64(f32::from_le_bytes(self.array(W)?) as f64),
            7 => Value::Bool(self.u8(W)? != 0),
            8 => Value::Str(self.string("metadata string")?),
            9 => {
                let offset = self.pos;
                if depth > 2 {
                    return Err(GgufProblem::Implausible {
                        what: "array nesting depth",
                        value: depth as u64,
                        offset,
                    });
                }
                let item_type = self.u32("array item type")?;
                let min = match item_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8..=12 => 8,
                    _ => {
                        return Err(GgufProblem::UnknownValueType {
                            key: key.to_string(),
                            value_type: item_type,
                        });
                    }
                };
                let n = self.count("array length", min)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(key, item_type, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(W)?),
            11 => Value::I64(self.u64(W)? as i64),
            12 => Value::F64(f64::from_le_bytes(self.array(W)?)),
            other => {
                return Err(GgufProblem::UnknownValueType {
                    key: key.to_string(),
                    value_type: other,
                });
            }
        })
    }
}

/// Version, metadata and tensor directory of a parsed header.
type Parsed = (u32, BTreeMap<String, Value>, Vec<TensorInfo>);

impl GgufFile {
    /// Opens and parses a GGUF file. The header (metadata and tensor directory) is read and
    /// checked now, every tensor's byte range against the file's length; tensor data is read
    /// when a tensor is loaded.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // The header's size is not known before parsing: read a prefix, and a longer one
        // while the parse runs past its end (at most the whole file, for a broken header).
        let mut want = 8u64 << 20;
        loop {
            let n = want.min(len);
            let mut head = Vec::with_capacity(n as usize);
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            (&mut file).take(n).read_to_end(&mut head).map_err(io)?;
            match Self::parse(&head, len) {
                Ok(parsed) => {
                    let data = Data::File {
                        file: std::sync::Mutex::new(file),
                        len,
                    };
                    return Self::build(parsed, data, path);
                }
                Err(_) if n < len => want = want.saturating_mul(4),
                Err(problem) => {
                    return Err(Error::Gguf {
                        path: path.to_path_buf(),
                        problem,
                    });
                }
            }
        }
    }

    /// Parses GGUF bytes; `path` is used in error messages.
    pub fn from_bytes(bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match Self::parse(&bytes, bytes.len() as u64) {
            Ok(parsed) => Self::build(parsed, Data::Memory(bytes), path),
            Err(problem) => Err(Error::Gguf {
                path: path.to_path_buf(),
                problem,
            }),
        }
    }

    fn build((version, metadata, tensors): Parsed, data: Data, path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let mut by_name = BTreeMap::new();
        for (i, t) in tensors.iter().enumerate() {
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(Error::Gguf {
                    path,
                    problem: GgufProblem::DuplicateTensor {
                        name: t.name.clone(),
                    },
                });
            }
        }
        Ok(GgufFile {
            path,
            data,
            version,
            metadata,
            tensors,
            by_name,
        })
    }

    /// Parses the header in `bytes` (a prefix of a file of `file_len` bytes).
    fn parse(bytes: &[u8], file_len: u64) -> Result<Parsed, GgufProblem> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.array::<4>("magic").map_err(|_| GgufProblem::BadMagic {
            found: bytes.iter().take(4).copied().collect(),
        })?;
        if &magic != b"GGUF" {
            return Err(GgufProblem::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufProblem::UnsupportedVersion { version });
        }
        // A tensor entry takes at least 8 (name len) + 4 + 8 + 4 + 8 bytes.
        let n_tensors = r.count("tensor count", 32)?;
        // A metadata entry takes at least 8 (key len) + 4 + 1 bytes.
        let n_kv = r.count("metadata count", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let value_type = r.u32("metadata value type")?;
            let value = r.value(&key, value_type, 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 20 => a as usize,
                _ => {
                    return Err(GgufProblem::Metadata {
                        key: "general.alignment".into(),
                        expected: "a power of two ≤ 1 MiB",
                    });
                }
            },
        };
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let offset = r.pos;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims == 0 || n_dims > 4 {
                return Err(GgufProblem::Implausible {
                    what: "tensor dimension count",
                    value: n_dims as u64,
                    offset,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let ggml_type = r.u32("tensor type")?;
            let rel = r.u64("tensor offset")?;
            raw.push((name, dims, ggml_type, rel, offset));
        }
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ggml_type, rel, offset) in raw {
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&e| e <= 1 << 40)
                .ok_or(GgufProblem::Implausible {
                    what: "tensor element count",
                    value: u64::MAX,
                    offset,
                })?;
            // Unknown types are kept in the directory; loading them is a typed error later.
            let len = match GgmlType::from_u32(ggml_type) {
                Some(t) => {
                    let (block, block_bytes) = t.block();
                    if elements % block as u64 != 0 {
                        return Err(GgufProblem::RaggedBlocks {
                            name,
                            elements,
                            block: block as u64,
                        });
                    }
                    elements / block as u64 * block_bytes as u64
                }
                None => 0,
            };
            let start = (data_start as u64).checked_add(rel);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                    name,
                    dims,
                    ggml_type,
                    start: start as usize,
                    len: len as usize,
                }),
                _ => {
                    return Err(GgufProblem::TensorOutOfBounds {
                        name,
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        len: file_len as usize,
                    });
                }
            }
        }
        Ok((version, metadata, tensors))
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// FNV-1a of the whole file (the backbone's weights hash), read through one 64 KiB
    /// buffer.
    pub fn content_hash(&self) -> Result<u64> {
        match &self.data {
            Data::Memory(bytes) => Ok(glaze_core::fnv1a64(bytes, 0)),
            Data::File { len, .. } => {
                let mut h = 0;
                let mut at = 0u64;
                let mut buf = vec![0u8; READ_PIECE];
                while at < *len {
                    let n = (*len - at).min(READ_PIECE as u64) as usize;
                    self.read_into(at, &mut buf[..n])?;
                    h = glaze_core::fnv1a64(&buf[..n], h);
                    at += n as u64;
                }
                Ok(h)
            }
        }
    }

    /// `n` bytes at `offset` of the file.
    fn read_at(&self, offset: u64, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.read_into(offset, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from `offset` of the file.
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let Data::File { file, .. } = &self.data else {
            unreachable!("invariant: only called for file-backed data");
        };
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        // A poisoned lock only means another reader panicked; the file handle is still fine.
        let mut f = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        f.read_exact(buf).map_err(io)
    }

    /// A tensor's raw bytes.
    fn tensor_bytes(&self, info: &TensorInfo) -> Result<std::borrow::Cow<'_, [u8]>> {
        match &self.data {
            Data::Memory(bytes) => Ok(std::borrow::Cow::Borrowed(
                &bytes[info.start..info.start + info.len],
            )),
            Data::File { .. } => Ok(std::borrow::Cow::Owned(
                self.read_at(info.start as u64, info.len)?,
            )),
        }
    }

    /// A tensor's directory entry.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn missing(&self, key: &str, expected: &'static str) -> Error {
        Error::Gguf {
            path: self.path.clone(),
            problem: GgufProblem::Metadata {
                key: key.to_string(),
                expected,
            },
        }
    }

    /// A required unsigned integer.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.missing(key, "an unsigned integer"))
    }

    /// A required float.
    pub fn f64(&self, key: &str) -> Result<f64> {
        self.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.missing(key, "a number"))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.missing(key, "a string"))
    }

    /// A required array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| self.missing(key, "an array of strings"))
    }

    /// Dequantizes a tensor to f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let ty = GgmlType::from_u32(info.ggml_type)
            .filter(|t| t.can_dequantize())
            .ok_or_else(|| Error::UnsupportedTensorType {
                path: self.path.clone(),
                name: name.to_string(),
                ggml_type: info.ggml_type,
                type_name: GgmlType::name_of(info.ggml_type),
            })?;
        let data = self.tensor_bytes(info)?;
        Ok(glaze_kernels::quant::dequantize(
            ty,
            &data,
            info.elements() as usize,
        ))
    }
}

impl crate::weights::WeightSource for GgufFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn has(&self, name: &str) -> bool {
        self.tensor(name).is_some()
    }

    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let shape =
            self.tensor(name)
                .map(TensorInfo::shape)
                .ok_or_else(|| Error::MissingTensor {
                    path: self.path.clone(),
                    name: name.to_string(),
                })?;
        Ok((shape, self.dequantize(name)?))
    }

    fn quantized(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Option<glaze_kernels::qmatmul::QMatrix> {
        let info = self.tensor(name)?;
        if info.shape() != [rows, cols] {
            return None;
        }
        let ty = GgmlType::from_u32(info.ggml_type)?;
        let mut builder = glaze_kernels::qmatmul::QBuilder::new(ty, rows, cols, info.len)?;
        match &self.data {
            Data::Memory(bytes) => builder.push(&bytes[info.start..info.start + info.len]),
            Data::File { .. } => {
                // Whole blocks through one buffer of at most READ_PIECE bytes. A read error
                // leaves the tensor to the dense path, which reports it.
                let piece = (READ_PIECE / builder.block_bytes()).max(1) * builder.block_bytes();
                let mut buf = Vec::new();
                for at in (0..info.len).step_by(piece) {
                    buf.resize(piece.min(info.len - at), 0);
                    self.read_into((info.start + at) as u64, &mut buf).ok()?;
                    builder.push(&buf);
                }
            }
        }
        builder.finish()
    }
}
