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
/// resident size no longer shrinks after a peak. Called by [`crate::train`] and the
/// prompt-tuning loop; a no-op off glibc.
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
