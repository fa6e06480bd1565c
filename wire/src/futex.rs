//! Shared (not process-private) futexes on a word of the ring file, so the
//! marker can wake a sampler in another process.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The futex word is the low 32 bits of the little-endian 64-bit atomic.
fn addr(word: &AtomicU64) -> *const u32 {
    word.as_ptr() as *const u32
}

/// Sleeps while the low half of `word` is 0, for at most `timeout`.
pub(crate) fn wait_while_zero(word: &AtomicU64, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `addr` points into a live shared mapping, 8-byte aligned; the
    // kernel only reads it. Errors (EAGAIN: value already non-zero, EINTR,
    // ETIMEDOUT) all mean "go and look again", which the caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr(word),
            libc::FUTEX_WAIT,
            0u32,
            &ts as *const libc::timespec,
            0usize,
            0u32,
        );
    }
}

/// Wakes every waiter on `word`.
pub(crate) fn wake(word: &AtomicU64) {
    // SAFETY: as above; FUTEX_WAKE does not touch the memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr(word),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}
