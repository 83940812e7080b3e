//! Reader of CTranslate2 `model.bin` files (the format faster-whisper loads).
//!
//! Layout (little-endian): `u32 version; str spec_name; u32 revision; u32 n_vars`, then per
//! variable `str name; u8 ndim; u32 dims[ndim]; u8 dtype; u32 nbytes; bytes`, then
//! `u32 n_aliases` and `(str alias, str target)` pairs. A `str` is a `u16` length that counts a
//! trailing NUL, the bytes, and the NUL. Dtypes: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.
//! Floating tensors are cast to f32; integer scalars (such as `encoder/num_heads`) are kept as
//! one-element tensors of their value. Only variables whose name starts with the given prefix are
//! kept, so the decoder of a Whisper model costs no memory.

use std::path::Path;

use crate::error::{Error, Result};
use glaze_core::{StoredTensor, TensorStore};

/// What the header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct2Header {
    /// Format version (6 for current files).
    pub version: u32,
    /// Model specification, e.g. `WhisperSpec`.
    pub spec: String,
    /// Specification revision.
    pub revision: u32,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Error::weights(
                self.path,
                format!(
                    "truncated CTranslate2 file: {what} needs {n} bytes at offset {}, the file has {}",
                    self.at,
                    self.bytes.len()
                ),
            ));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = usize::from(self.u16(what)?);
        let b = self.take(n, what)?;
        let body = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(body.to_vec()).map_err(|_| {
            Error::weights(
                self.path,
                format!("{what} at offset {} is not UTF-8", self.at - n),
            )
        })
    }
}

fn element_size(dtype: u8) -> Option<usize> {
    match dtype {
        0 | 3 => Some(4),
        1 => Some(1),
        2 | 4 | 5 => Some(2),
        _ => None,
    }
}

fn to_f32(dtype: u8, raw: &[u8]) -> Vec<f32> {
    match dtype {
        0 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        1 => raw.iter().map(|&b| f32::from(b as i8)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        3 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        4 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// Parses a `model.bin` held in memory; keeps variables whose names start with `prefix`.
pub fn parse_ct2(bytes: &[u8], path: &Path, prefix: &str) -> Result<(Ct2Header, TensorStore)> {
    let mut c = Cursor { bytes, at: 0, path };
    let version = c.u32("the format version")?;
    if !(5..=6).contains(&version) {
        return Err(Error::weights(
            path,
            format!(
                "not a CTranslate2 model.bin (format version {version}; versions 5 and 6 are read)"
            ),
        ));
    }
    let spec = c.string("the spec name")?;
    let revision = c.u32("the spec revision")?;
    let n_vars = c.u32("the variable count")?;
    let mut store = TensorStore::new(path);
    for i in 0..n_vars {
        let name = c.string("a variable name")?;
        let ndim = usize::from(c.u8("a rank")?);
        let mut shape = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            shape.push(c.u32("a dimension")? as usize);
        }
        let dtype = c.u8("a dtype")?;
        let nbytes = c.u32("a byte count")? as usize;
        let raw = c.take(nbytes, &format!("variable `{name}`"))?;
        let Some(size) = element_size(dtype) else {
            return Err(Error::weights(
                path,
                format!("variable {i} `{name}` has unknown dtype code {dtype}"),
            ));
        };
        let count: usize = shape.iter().product();
        if count.checked_mul(size) != Some(nbytes) {
            return Err(Error::weights(
                path,
                format!(
                    "variable `{name}` of shape {shape:?} should take {} bytes, the file gives {nbytes}",
                    count.saturating_mul(size)
                ),
            ));
        }
        if name.starts_with(prefix) {
            let data = to_f32(dtype, raw);
            store.tensors.insert(name, StoredTensor { shape, data });
        }
    }
    Ok((
        Ct2Header {
            version,
            spec,
            revision,
        },
        store,
    ))
}

/// Reads a `model.bin` file; keeps variables whose names start with `prefix`.
pub fn read_ct2(path: &Path, prefix: &str) -> Result<(Ct2Header, TensorStore)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_ct2(&bytes, path, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend(u16::try_from(s.len() + 1).unwrap_or(0).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    fn tiny() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        string(&mut b, "encoder/w");
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.push(4);
        b.extend(4u32.to_le_bytes());
        b.extend(half::f16::from_f32(1.5).to_le_bytes());
        b.extend(half::f16::from_f32(-2.0).to_le_bytes());
        string(&mut b, "decoder/n");
        b.push(0);
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(7i16.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b
    }

    #[test]
    fn reads_f16_and_filters_by_prefix() -> Result<()> {
        let (h, s) = parse_ct2(&tiny(), Path::new("t.bin"), "encoder/")?;
        assert_eq!(h.spec, "WhisperSpec");
        assert_eq!(h.revision, 3);
        let w = s.get("encoder/w", &[2, 1])?;
        assert_eq!(w.data, vec![1.5, -2.0]);
        assert!(!s.tensors.contains_key("decoder/n"));
        Ok(())
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let b = tiny();
        for cut in 0..b.len() - 4 {
            let r = parse_ct2(&b[..cut], Path::new("cut.bin"), "");
            let e = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("cut.bin"), "cut at {cut}: {e}");
        }
    }
}
