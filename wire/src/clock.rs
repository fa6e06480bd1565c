/// `CLOCK_MONOTONIC` in nanoseconds: the one clock the marker and the sampler
/// share. Both run on the same kernel, so their readings are comparable
/// without any conversion. Served from the vDSO: no system call.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
