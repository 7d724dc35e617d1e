//! The confinement calls with no safe wrapper, made by the container process before it
//! execs: closing every descriptor it did not bring on purpose, installing a seccomp filter
//! (without setting `no_new_privs` itself, which seccompiler's `apply_filter` would: Docker
//! leaves it off unless asked), and joining a new anonymous session keyring, as runc does,
//! so the container never sees the host's keys.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use seccompiler::BpfProgram;

/// Installs `prog` as a seccomp filter of the calling thread (the container process is
/// single-threaded). Without `no_new_privs` the kernel wants CAP_SYS_ADMIN for it.
pub(crate) fn load_filter(prog: &BpfProgram) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `fprog` and the `len` instructions it
    // points to, which `prog` (seccompiler's `sock_filter`, laid out as the kernel's
    // struct sock_filter) holds for the duration of the call; the kernel copies them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Joins a new anonymous session keyring (`keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`).
/// A kernel without keyrings (ENOSYS) has nothing to share: not an error.
pub(crate) fn join_session_keyring() -> io::Result<()> {
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NULL name reads no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
    }
    Ok(())
}

/// Closes every descriptor from 3 up but those in `keep`, at once: a descriptor the host
/// side opened (a directory of the host's `/proc` or cgroupfs cached by a library) must not
/// reach the container, where `WORKDIR /proc/self/fd/N` would lead out of its root (runc's
/// CVE-2024-21626).
pub(crate) fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut low = 3u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > low {
            let high = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: the container process owns the descriptors in this range and never
            // uses them again: the ones it needs are in `keep`.
            let r = unsafe { libc::close_range(low, high, 0) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        low = k.saturating_add(1);
    }
    Ok(())
}
