//! The runtime's raw kernel calls. Those with no safe wrapper are here as `unsafe`: fork,
//! `_exit`, resetting signal dispositions, `close_range`, and the interface-flags ioctls that
//! bring up the loopback interface of a new network namespace. Beside them, through rustix's
//! safe wrappers: the controlling terminal, window sizes, passing a file descriptor over a
//! socket, the socket for the loopback ioctls, and dropping capabilities from the bounding
//! set. Everything else goes through nix's safe API.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::termios::Winsize;

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
    Ok(rustix::process::ioctl_tiocsctty(fd)?)
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
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0).then_some(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the window size of the terminal `fd`.
pub(crate) fn set_window_size(fd: BorrowedFd<'_>, size: WinSize) -> io::Result<()> {
    let ws = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(fd, ws)?)
}

/// Sends `fd` over the Unix socket `sock` (SCM_RIGHTS).
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> nix::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let iov = [IoSlice::new(b"F")];
    rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::empty()).map_err(nix_error)?;
    Ok(())
}

/// Receives a file descriptor sent with [`send_fd`]; `None` when the peer closed the socket
/// without sending one.
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> nix::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(nix_error)?;
    let received = control.drain().find_map(|c| match c {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    Ok(received)
}

/// A rustix error as nix's (the same errno), for [`RuntimeError::Sys`](super::RuntimeError).
fn nix_error(e: rustix::io::Errno) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error())
}

/// Brings up `lo` in the calling process's network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    let sock = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
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
