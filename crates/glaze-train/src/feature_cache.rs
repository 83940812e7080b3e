//! Offline feature cache (FLAME's offline embeddings): the output of a frozen computation —
//! an encoder, or a frozen prefix of the backbone — is computed once, stored on disk and reused
//! by later epochs and runs.
//!
//! An entry is keyed by a hash of its input bytes inside a directory keyed by the identity of
//! the frozen model that made it (name, weights hash, layers, anything that changes the
//! output), so another model never reads it. Entries are written atomically; a damaged entry
//! is reported and recomputed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use glaze_core::error::{Error, Result};
use glaze_core::fnv1a64;

const MAGIC: &[u8; 4] = b"GLZF";

/// A cached array: shape and `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A directory of cached arrays for one frozen model.
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl FeatureCache {
    /// The cache for the model described by `identity` under `root`.
    pub fn open(root: &Path, identity: &str) -> Result<Self> {
        let dir = root.join(format!("{:016x}", fnv1a64(identity.as_bytes(), 0)));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let id_file = dir.join("identity.txt");
        if !id_file.exists() {
            crate::atomic::write_atomic(&id_file, identity.as_bytes())?;
        }
        Ok(FeatureCache {
            dir,
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        })
    }

    /// The directory of this model's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let h = fnv1a64(key, 0);
        let h2 = fnv1a64(key, 0x9E37_79B9_7F4A_7C15);
        self.dir
            .join(format!("{:02x}/{h:016x}{h2:016x}.f32", h >> 56))
    }

    /// The entry for `key` (the input's bytes), computed by `compute` when missing.
    pub fn get_or_compute(
        &self,
        key: &[u8],
        compute: impl FnOnce() -> Result<CachedArray>,
    ) -> Result<CachedArray> {
        if let Some(a) = self.get(key) {
            return Ok(a);
        }
        let a = compute()?;
        self.put(key, &a)?;
        Ok(a)
    }

    /// The entry for `key` when it is on disk and intact (counted as a hit).
    pub fn get(&self, key: &[u8]) -> Option<CachedArray> {
        let path = self.path(key);
        if !path.exists() {
            return None;
        }
        match read_entry(&path) {
            Ok(a) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(a)
            }
            Err(e) => {
                tracing::warn!("{e}; it will be recomputed");
                None
            }
        }
    }

    /// [`FeatureCache::get`] for many keys at once, read in parallel (a training batch's
    /// entries: one file each, read and decoded on one thread, took 3.5 ms of a 145 ms
    /// Time-LLM step while the other core waited).
    pub fn get_many(&self, keys: &[&[u8]]) -> Vec<Option<CachedArray>> {
        use rayon::prelude::*;
        keys.par_iter().map(|k| self.get(k)).collect()
    }

    /// Stores a computed entry (counted as a miss), for callers that compute in batches.
    pub fn put(&self, key: &[u8], array: &CachedArray) -> Result<()> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        write_entry(&self.path(key), array)
    }

    /// Entries served from disk so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// Entries computed so far.
    pub fn misses(&self) -> usize {
        self.misses.load(Ordering::Relaxed)
    }
}

fn write_entry(path: &Path, a: &CachedArray) -> Result<()> {
    if a.shape.iter().product::<usize>() != a.data.len() {
        return Err(Error::Cache {
            path: path.to_path_buf(),
            problem: format!("shape {:?} does not hold {} values", a.shape, a.data.len()),
        });
    }
    let mut out = Vec::with_capacity(16 + 8 * a.shape.len() + 4 * a.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(a.shape.len() as u32).to_le_bytes());
    for &d in &a.shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    for v in &a.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    crate::atomic::write_atomic(path, &out)
}

fn read_entry(path: &Path) -> Result<CachedArray> {
    use std::io::Read;
    let bad = |problem: &str| Error::Cache {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let io = |e| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    // A short read is a damaged entry, not an I/O failure.
    let mut exact = |buf: &mut [u8], what: &str| -> Result<()> {
        file.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad(what),
            _ => io(e),
        })
    };
    let mut head = [0u8; 8];
    exact(&mut head, "not a Glaze feature-cache entry")?;
    if &head[0..4] != MAGIC {
        return Err(bad("not a Glaze feature-cache entry"));
    }
    let ndim = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if ndim > 8 {
        return Err(bad("truncated header"));
    }
    let mut dims = [0u8; 64];
    exact(&mut dims[..8 * ndim], "truncated header")?;
    let mut shape = Vec::with_capacity(ndim);
    for d in dims[..8 * ndim].chunks_exact(8) {
        let d = u64::from_le_bytes(d.try_into().expect("8 bytes"));
        shape.push(usize::try_from(d).map_err(|_| bad("huge dimension"))?);
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape overflows"))?;
    let body = n.checked_mul(4).ok_or_else(|| bad("shape overflows"))?;
    if Some(len) != (body as u64).checked_add(8 + 8 * ndim as u64) {
        return Err(bad("size does not match the shape"));
    }
    // Read and decoded a piece at a time (the piece stays in L1): the whole body read into
    // one buffer and decoded from there was a second pass over ≈ 10 MB per training step.
    let mut data = Vec::with_capacity(n);
    let mut piece = [0u8; 1 << 14];
    let mut left = body;
    while left > 0 {
        let k = left.min(piece.len());
        exact(&mut piece[..k], "size does not match the shape")?;
        data.extend(
            piece[..k]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        left -= k;
    }
    Ok(CachedArray { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_then_reads_and_recovers_from_damage() {
        let root = std::env::temp_dir().join(format!("glaze-fc-{}", std::process::id()));
        let cache = FeatureCache::open(&root, "model-a").expect("open");
        let mut calls = 0;
        let mut get = |cache: &FeatureCache| {
            cache
                .get_or_compute(b"input-1", || {
                    calls += 1;
                    Ok(CachedArray {
                        shape: vec![2, 2],
                        data: vec![1.0, 2.0, 3.0, 4.5],
                    })
                })
                .expect("entry")
        };
        let a = get(&cache);
        let b = get(&cache);
        assert_eq!(a, b);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        // Another model never shares entries.
        let other = FeatureCache::open(&root, "model-b").expect("open");
        assert_ne!(other.dir(), cache.dir());
        // A damaged entry is recomputed.
        std::fs::write(cache.path(b"input-1"), b"GLZF\x01").expect("damage");
        let c = get(&cache);
        assert_eq!(a, c);
        assert_eq!(cache.misses(), 2);
        // So is one whose body is shorter or longer than its shape says.
        let good = std::fs::read(cache.path(b"input-1")).expect("entry");
        for body in [
            &good[..good.len() - 4],
            &[&good[..], &[0u8; 4][..]].concat()[..],
        ] {
            std::fs::write(cache.path(b"input-1"), body).expect("damage");
            assert!(matches!(
                read_entry(&cache.path(b"input-1")),
                Err(Error::Cache { problem, .. }) if problem == "size does not match the shape"
            ));
            assert_eq!(get(&cache), a);
        }
        assert_eq!(cache.misses(), 4, "each damaged entry computed again");
        assert_eq!(calls, 4);
        let _ = std::fs::remove_dir_all(&root);
    }
}
