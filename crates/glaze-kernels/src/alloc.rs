//! [`keep_freed_memory`]: glibc allocator settings for training loops.
//!
//! A training step allocates and frees the same multi-megabyte activations and gradients
//! every step. With glibc's defaults each such buffer is a fresh `mmap`: first-touch page
//! faults, and an `munmap` whose TLB shootdown interrupts the other worker threads (in a
//! virtual machine a trapped MSR write per interrupt). Measured on the 2-vCPU benchmark VM:
//! 26 % of a fused-attention forward/backward in `native_write_msr` and page faults; the
//! fused SwiGLU gate's forward and backward 10.2 → 3.3 ms with the settings below.
#![allow(unsafe_code)]

/// Serves allocations up to 32 MiB (glibc's maximum mmap threshold on 64-bit) from the
/// heap and keeps freed heap memory for reuse instead of returning it to the system.
/// Process-wide and idempotent; peak memory is unchanged (freed buffers are reused), but the
/// resident size no longer shrinks after a peak. Called by the training engine
/// (`glaze_train::train`) and the prompt-tuning loop; a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: `mallopt` only adjusts allocator parameters; the values are in range
            // (glibc rejects an out-of-range threshold and keeps its default).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}

/// Returns the free pages inside glibc's heaps to the system (`malloc_trim(0)`), e.g. the
/// holes left by a model load's transient read buffers below the weights it kept.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns unused pages; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A raw output pointer shared by parallel tasks that each write a disjoint part of the
/// buffer behind it (the GEMM's tiles, [`par_chunks_zeroed`]'s pieces); the buffer outlives
/// the parallel region.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: the tasks sharing an `Out` write disjoint elements only (each user's contract), and
// the buffer outlives them.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: shared references only hand out the pointer, and the writes through
// it are disjoint.
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `i` values on (a method, so closures capture the whole `Out`, not its raw
    /// field).
    pub(crate) fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// A vector of `len` values made in parallel: `fill(i, chunk)` gets piece `i` (`chunk`
/// values, the last one shorter), zeroed just before, in the task that then writes it.
/// `vec![0.0; len]` zeroes the whole buffer on the calling thread before a parallel region
/// starts: with [`keep_freed_memory`] a reused multi-megabyte buffer is a serial `memset`
/// while the other workers wait (≈ 1.3 ms of a Time-LLM training step's main thread).
///
/// # Panics
/// When `chunk` is 0 and `len` is not.
pub fn par_chunks_zeroed<F>(len: usize, chunk: usize, fill: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    use rayon::prelude::*;
    if len == 0 {
        return Vec::new();
    }
    assert!(chunk > 0, "par_chunks_zeroed: empty chunks");
    let mut v: Vec<f32> = Vec::with_capacity(len);
    // Each task forms a slice of its own piece only (disjoint ranges below).
    let base = Out(v.as_mut_ptr());
    (0..len.div_ceil(chunk)).into_par_iter().for_each(|i| {
        let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(len));
        // SAFETY: `lo..hi` lies inside the allocation of `len` values and no other task
        // touches it; every value is written (zero) before the slice is formed.
        let piece = unsafe {
            let p = base.at(lo);
            std::ptr::write_bytes(p, 0, hi - lo);
            std::slice::from_raw_parts_mut(p, hi - lo)
        };
        fill(i, piece);
    });
    // SAFETY: the pieces cover `0..len`, each zeroed (then written by `fill`).
    unsafe { v.set_len(len) };
    v
}

#[cfg(test)]
mod tests {
    /// Every piece is handed over zeroed, with its index, and what `fill` writes stays; the
    /// last piece is the shorter rest.
    #[test]
    fn chunks_are_zeroed_and_kept() {
        for (len, chunk) in [(0, 3), (1, 1), (10, 3), (12, 4), (1000, 7)] {
            let v = super::par_chunks_zeroed(len, chunk, |i, piece| {
                assert!(piece.iter().all(|&x| x == 0.0), "piece {i} not zeroed");
                assert_eq!(piece.len(), chunk.min(len - i * chunk));
                for (j, x) in piece.iter_mut().enumerate() {
                    *x = (i * chunk + j) as f32;
                }
            });
            assert_eq!(v, (0..len).map(|x| x as f32).collect::<Vec<_>>());
        }
    }
}
