//! `attach`: clients of a detached container's monitor, as conmon's attach socket is for
//! podman. The monitor listens on `attach.sock` in the container's dir (bound through
//! `/proc/self/fd/N/`, since a store's path can be longer than a socket address allows),
//! and serves its clients from the supervisor's one loop ([`Attachments`]): each gets the
//! container's output from the moment it connects, and what it types goes to the
//! container's pty (or stdin pipe, with `-i`).
//!
//! Both ways the stream is made of frames: a kind byte, a big-endian u32 length, the
//! payload. From the monitor: [`STDOUT`], [`STDERR`], and [`EXIT`] (the exit code, an i32)
//! when the container's process ends. From a client: [`STDIN`] and [`RESIZE`] (rows and
//! columns, two u16). A client detaches by closing its end; the container runs on.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rimg_fs::error::{io_err, IoError};

use crate::runtime::clients::{Attachments, ClientInput};
use crate::runtime::{Stream, WinSize};

/// A frame of the container's stdout (or pty).
pub const STDOUT: u8 = 1;
/// A frame of the container's stderr.
pub const STDERR: u8 = 2;
/// The container's process exited: an i32, big-endian.
pub const EXIT: u8 = 3;
/// Input for the container.
pub const STDIN: u8 = 4;
/// The client's terminal size: rows, columns (u16 each, big-endian).
pub const RESIZE: u8 = 5;

/// The socket's name in the container's dir.
const SOCKET: &str = "attach.sock";
/// The longest frame a client may send.
const MAX_FRAME: usize = 1 << 20;

/// The path of `dir/attach.sock` through an open descriptor of `dir`, short enough for a
/// socket address whatever `dir` is. The path is valid while `dir_fd` is open.
fn short_path(dir_fd: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir_fd.as_raw_fd()))
}

fn open_dir(dir: &Path) -> Result<File, IoError> {
    File::open(dir).map_err(io_err("opening", dir))
}

/// Encodes one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one frame from `r`; `None` at a clean end of the stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// Whether the monitor of the container whose dir is `dir` takes attach clients (a
/// foreground `run` or `start -a` does not).
pub fn has_socket(dir: &Path) -> bool {
    dir.join(SOCKET).exists()
}

/// Connects to the monitor of the container whose dir is `dir`.
pub fn connect(dir: &Path) -> Result<UnixStream, IoError> {
    let d = open_dir(dir)?;
    let path = short_path(&d);
    UnixStream::connect(&path).map_err(io_err("connecting to", &dir.join(SOCKET)))
}

/// One connected client and what it has sent of its current frame.
struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
    gone: bool,
}

/// The monitor's side: the listening socket and its clients.
pub struct AttachServer {
    listener: UnixListener,
    clients: Vec<Client>,
    path: PathBuf,
}

impl AttachServer {
    /// Listens on `dir/attach.sock` (a stale socket from a killed monitor is replaced).
    pub fn listen(dir: &Path) -> Result<Self, IoError> {
        let d = open_dir(dir)?;
        let path = dir.join(SOCKET);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(IoError::new("removing", &path, e))
            }
            _ => {}
        }
        let listener = UnixListener::bind(short_path(&d)).map_err(io_err("binding", &path))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("setting up", &path))?;
        Ok(AttachServer {
            listener,
            clients: Vec::new(),
            path,
        })
    }

    /// Waits up to `timeout` for a client to connect; false if none did.
    pub fn wait_client(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.clients.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => return false,
            }
            self.readable(0, &mut |_| {});
        }
        true
    }

    /// Tells every client the container's process exited with `code`, and lets them go.
    pub fn exited(&mut self, code: i32) {
        let f = frame(EXIT, &code.to_be_bytes());
        for c in &mut self.clients {
            let _ = c.stream.write_all(&f);
        }
        self.clients.clear();
    }

    fn take_frames(c: &mut Client, input: &mut dyn FnMut(ClientInput<'_>)) {
        loop {
            if c.pending.len() < 5 {
                return;
            }
            let len = u32::from_be_bytes([c.pending[1], c.pending[2], c.pending[3], c.pending[4]])
                as usize;
            if len > MAX_FRAME {
                c.gone = true;
                return;
            }
            if c.pending.len() < 5 + len {
                return;
            }
            let payload = &c.pending[5..5 + len];
            match c.pending[0] {
                STDIN => input(ClientInput::Data(payload)),
                RESIZE if len == 4 => input(ClientInput::Resize(WinSize {
                    rows: u16::from_be_bytes([payload[0], payload[1]]),
                    cols: u16::from_be_bytes([payload[2], payload[3]]),
                })),
                _ => {}
            }
            c.pending.drain(..5 + len);
        }
    }
}

impl Attachments for AttachServer {
    fn fds(&mut self) -> Vec<BorrowedFd<'_>> {
        self.clients.retain(|c| !c.gone);
        let mut out = vec![self.listener.as_fd()];
        out.extend(self.clients.iter().map(|c| c.stream.as_fd()));
        out
    }

    fn readable(&mut self, i: usize, input: &mut dyn FnMut(ClientInput<'_>)) {
        if i == 0 {
            while let Ok((stream, _)) = self.listener.accept() {
                // A client that stops reading loses its place rather than stall the
                // container.
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                self.clients.push(Client {
                    stream,
                    pending: Vec::new(),
                    gone: false,
                });
            }
            return;
        }
        let Some(c) = self.clients.get_mut(i - 1) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => c.gone = true,
            Ok(n) => {
                c.pending.extend_from_slice(&buf[..n]);
                Self::take_frames(c, input);
            }
        }
    }

    fn output(&mut self, stream: Stream, data: &[u8]) {
        let kind = match stream {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        };
        let f = frame(kind, data);
        for c in self.clients.iter_mut().filter(|c| !c.gone) {
            if c.stream.write_all(&f).is_err() {
                c.gone = true;
            }
        }
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Docker's `--detach-keys`: the key sequence that detaches a client and leaves the
/// container running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl Default for DetachKeys {
    /// ctrl-p ctrl-q.
    fn default() -> Self {
        DetachKeys(vec![0x10, 0x11])
    }
}

impl std::str::FromStr for DetachKeys {
    type Err = String;

    /// Docker's spelling: comma-separated keys, each a single character or `ctrl-X` with
    /// X one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for key in s.split(',') {
            let b = key.as_bytes();
            match b {
                [c] => out.push(*c),
                _ => {
                    let rest = key
                        .strip_prefix("ctrl-")
                        .filter(|r| r.len() == 1)
                        .ok_or_else(|| format!("Unknown character: '{key}'"))?;
                    let c = rest.as_bytes()[0].to_ascii_lowercase();
                    out.push(match c {
                        b'a'..=b'z' => c - b'a' + 1,
                        b'@' => 0,
                        b'[' => 27,
                        b'\\' => 28,
                        b']' => 29,
                        b'^' => 30,
                        b'_' => 31,
                        _ => return Err(format!("Unknown character: '{rest}'")),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err("no detach keys".into());
        }
        Ok(DetachKeys(out))
    }
}

/// Watches typed input for the detach sequence. Bytes that might begin it are held back
/// until they turn out not to (then they are passed on, as Docker's proxy does).
#[derive(Debug)]
pub struct DetachWatch {
    keys: DetachKeys,
    held: usize,
}

/// What typed input comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Pass these bytes to the container.
    Input(Vec<u8>),
    /// The detach sequence: leave (with the bytes typed before it).
    Detach(Vec<u8>),
}

impl DetachWatch {
    /// Watches for `keys`.
    pub fn new(keys: DetachKeys) -> Self {
        DetachWatch { keys, held: 0 }
    }

    /// Takes typed bytes.
    pub fn feed(&mut self, data: &[u8]) -> Typed {
        let seq = &self.keys.0;
        let mut out = Vec::new();
        for &b in data {
            if b == seq[self.held] {
                self.held += 1;
                if self.held == seq.len() {
                    self.held = 0;
                    return Typed::Detach(out);
                }
                continue;
            }
            out.extend_from_slice(&seq[..self.held]);
            self.held = 0;
            if b == seq[0] {
                self.held = 1;
                if seq.len() == 1 {
                    self.held = 0;
                    return Typed::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Typed::Input(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_dockers() {
        assert_eq!("ctrl-p,ctrl-q".parse(), Ok(DetachKeys::default()));
        assert_eq!("ctrl-a,x".parse(), Ok(DetachKeys(vec![1, b'x'])));
        assert_eq!("ctrl-[".parse(), Ok(DetachKeys(vec![27])));
        assert!("ctrl-1".parse::<DetachKeys>().is_err());
        assert!("shift-a".parse::<DetachKeys>().is_err());
    }

    #[test]
    fn the_sequence_detaches_and_a_broken_one_is_passed_on() {
        let mut w = DetachWatch::new(DetachKeys::default());
        assert_eq!(w.feed(b"ls\r"), Typed::Input(b"ls\r".to_vec()));
        assert_eq!(w.feed(&[0x10]), Typed::Input(vec![]));
        assert_eq!(w.feed(b"a"), Typed::Input(vec![0x10, b'a']));
        assert_eq!(w.feed(&[0x10, 0x10]), Typed::Input(vec![0x10]));
        assert_eq!(w.feed(&[0x11]), Typed::Detach(vec![]));
        assert_eq!(w.feed(&[b'x', 0x10, 0x11, b'y']), Typed::Detach(vec![b'x']));
    }

    #[test]
    fn frames_round_trip() {
        let mut bytes = frame(STDOUT, b"hello");
        bytes.extend(frame(EXIT, &3i32.to_be_bytes()));
        let mut r = &bytes[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((EXIT, 3i32.to_be_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn a_client_frame_split_across_reads_is_taken_whole() {
        let mut c = Client {
            stream: UnixStream::pair().unwrap().0,
            pending: Vec::new(),
            gone: false,
        };
        let mut bytes = frame(STDIN, b"abc");
        bytes.extend(frame(RESIZE, &[0, 24, 0, 80]));
        let mut got = Vec::new();
        c.pending.extend_from_slice(&bytes[..6]);
        AttachServer::take_frames(&mut c, &mut |i| got.push(format!("{i:?}")));
        assert!(got.is_empty());
        c.pending.extend_from_slice(&bytes[6..]);
        AttachServer::take_frames(&mut c, &mut |i| got.push(format!("{i:?}")));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("Data"));
        assert!(got[1].contains("rows: 24"));
    }
}
