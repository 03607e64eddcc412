//! What a command inherits of kiln's descriptors: its stdio, nothing else.
//!
//! kiln opens its own files close-on-exec (Rust's default, and RocksDB's), but not the
//! descriptors it was itself started with: a CI agent's or make's jobserver pipes, sockets a
//! parent forgot. A command in the image must not see those (the leaked-descriptor half of
//! runc's CVE-2024-21626), so the forked child marks every descriptor from 3 up close-on-exec
//! just before the exec. Marking rather than closing keeps the pipes that report the exec's
//! outcome working until the exec itself closes them.

/// Marks every descriptor from 3 up close-on-exec. Only raw system calls: safe between fork and
/// exec.
#[allow(unsafe_code)]
pub(super) fn close_on_exec_from_3() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    let marked = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if marked == 0 {
        return;
    }
    // Kernels before 5.11: one descriptor at a time, up to the descriptor limit.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20);
    for fd in 3..i32::try_from(limit).unwrap_or(i32::MAX) {
        // SAFETY: fcntl on a descriptor number only reads or sets its flags (EBADF if unused).
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
