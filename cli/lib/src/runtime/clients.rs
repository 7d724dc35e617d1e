//! More parties for a [`super::Supervisor`] to serve than its own terminal: the clients
//! `rimg attach` connects to a detached container's monitor. The supervisor polls their
//! descriptors in its one loop (no thread: the monitor forks again at each restart), hands
//! them the container's output, and takes their input for the container's stdin or pty.

use std::os::fd::BorrowedFd;

use super::{Stream, WinSize};

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientInput<'a> {
    /// Bytes for the container's stdin (or pty).
    Data(&'a [u8]),
    /// The client's terminal size, for the container's pty.
    Resize(WinSize),
}

/// Clients attached to a running container.
pub trait Attachments {
    /// The descriptors to wait on for reading (a listening socket, connected clients).
    fn fds(&mut self) -> Vec<BorrowedFd<'_>>;
    /// Descriptor `i` of the last [`Attachments::fds`] is readable: accept or read it,
    /// passing what a client sent to `input`.
    fn readable(&mut self, i: usize, input: &mut dyn FnMut(ClientInput<'_>));
    /// Output of the container, for every client.
    fn output(&mut self, stream: Stream, data: &[u8]);
}

/// The window size of the terminal `fd`, if it is one.
pub fn terminal_size(fd: BorrowedFd<'_>) -> Option<WinSize> {
    super::sys::window_size(fd)
}
