//! The kernel calls the runtime needs that have no safe wrapper: fork, `_exit`, resetting
//! signal dispositions, `close_range`, the controlling terminal, window sizes, passing a file
//! descriptor over a socket, and bringing up the loopback interface of a new network
//! namespace. Everything else goes through nix's safe API.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::signal::{SigHandler, Signal};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork this is.
pub(crate) enum Forked {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// Forks the process. The runtime's children only make system calls, allocate (glibc keeps
/// malloc usable in the child of fork) and then exec or [`exit_now`].
pub(crate) fn fork() -> nix::Result<Forked> {
    // SAFETY: the child never returns into the caller's code: it runs the runtime's own setup
    // (system calls and allocation, which glibc's fork keeps consistent) and then execs or
    // calls `_exit`, so no lock held by another thread of the parent is ever awaited.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Ends the process at once, without running exit handlers or flushing the parent's
/// buffers that the forked child inherited.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process.
    unsafe { libc::_exit(code) }
}

/// Gives every signal its default disposition (Rust ignores SIGPIPE; ignored signals would
/// stay ignored across exec).
pub(crate) fn reset_signal_dispositions() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
}

/// Marks every file descriptor from 3 up close-on-exec, so the container inherits only
/// stdin, stdout and stderr.
pub(crate) fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors.
    let r = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `fd` (a terminal) the calling session leader's controlling terminal.
pub(crate) fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument and touches no memory of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal's size: rows and columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// The window size of the terminal `fd`, if it is one.
pub(crate) fn window_size(fd: BorrowedFd<'_>) -> Option<WinSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the window size of the terminal `fd`.
pub(crate) fn set_window_size(fd: BorrowedFd<'_>, size: WinSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the struct we pass.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `fd` over the Unix socket `sock` (SCM_RIGHTS).
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> nix::Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(b"F")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives a file descriptor sent with [`send_fd`]; `None` when the peer closed the socket
/// without sending one.
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> nix::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&raw) = fds.first() {
                // SAFETY: the kernel just installed `raw` in our table for us; nobody else
                // owns it.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }));
            }
        }
    }
    Ok(None)
}

/// Brings up `lo` in the calling process's network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() returns a new descriptor that we own (or -1).
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags member of the ifreq we pass.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS set the flags member of the union, so reading it is valid.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Docker's default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Drops every capability but Docker's default set from the bounding set, so the command
/// (root in the container is root on the host) execs with at most those.
pub(crate) fn drop_capabilities() -> io::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if DEFAULT_CAPS.contains(&cap) {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Why [`fork_single_threaded`] did not fork.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SoloForkError {
    /// Other threads live: a forked copy of this process could find their locks held.
    #[error(
        "this process runs {0} threads; a daemon is only forked from a single-threaded process"
    )]
    Threaded(usize),
    /// `/proc/self/task` could not be read.
    #[error("counting this process's threads: {0}")]
    Count(io::Error),
    /// The kernel refused the fork.
    #[error("fork: {0}")]
    Fork(nix::Error),
}

/// How many threads this process runs.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Forks a process that runs a single thread, so that the child, a whole copy of it, may run
/// any code (allocate, lock, start threads) and not only exec. Threads that were just joined
/// may linger in the kernel for a moment: it waits up to a second for them to go. The child
/// must end with [`exit_now`], never return into its caller's frames.
pub(crate) fn fork_single_threaded() -> Result<Forked, SoloForkError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let n = thread_count().map_err(SoloForkError::Count)?;
        if n <= 1 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(SoloForkError::Threaded(n));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: the process has one thread (this one, which alone could start another), so no
    // lock is held by a thread the child would not have: the child's memory is consistent.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(SoloForkError::Fork(e)),
    }
}

/// Closes every file descriptor from 3 up but `keep`: a daemon forked without exec must not
/// hold its parent's files (a `flock` on `monitor.lock` would outlive the monitor). Only for
/// a forked child that ends with [`exit_now`]: the objects that owned those descriptors in
/// the parent are never dropped in it.
pub(crate) fn close_fds_except(keep: BorrowedFd<'_>) -> io::Result<()> {
    let keep = u32::try_from(keep.as_raw_fd()).map_err(io::Error::other)?;
    let mut ranges = vec![(keep.max(2) + 1, u32::MAX)];
    if keep > 3 {
        ranges.push((3, keep - 1));
    }
    for (first, last) in ranges {
        // SAFETY: close_range only closes descriptors; the caller's contract (a forked child
        // that exits without dropping their owners) keeps them from being used or closed again.
        let r = unsafe { libc::close_range(first, last, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_other_threads_is_refused_the_daemon_fork() {
        // The test harness runs this on a thread of its own, beside the main thread.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        match fork_single_threaded() {
            Err(SoloForkError::Threaded(n)) => assert!(n >= 2, "{n}"),
            Err(e) => panic!("{e}"),
            Ok(Forked::Child) => exit_now(0),
            Ok(Forked::Parent(_)) => panic!("forked with other threads running"),
        }
        drop(tx);
        let _ = other.join();
    }
}
