//! `rimg attach`: a client of a running container's monitor (`attach.sock`). It shows the
//! container's output, sends what is typed (with `-i` containers), keeps the container's
//! pty the size of this terminal, and leaves on the detach keys (default ctrl-p ctrl-q)
//! with the container still running; when the container's process ends it exits with
//! its code.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rimg::container::attach::{
    connect, frame, has_socket, read_frame, DetachKeys, DetachWatch, Typed, EXIT, RESIZE, STDERR,
    STDIN, STDOUT,
};
use rimg::container::{Container, Containers, Status};
use rimg::runtime::clients::terminal_size;
use rimg::runtime::{RawMode, FORWARDED};

use super::Ctx;

/// Flags of `rimg attach`.
#[derive(Args)]
pub struct AttachArgs {
    /// Key sequence that detaches and leaves the container running (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Do not attach stdin.
    #[arg(long)]
    pub no_stdin: bool,
    /// Send the signals this process receives to the container (not with a tty).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// The container.
    pub container: String,
}

/// `rimg attach`.
pub fn attach(ctx: &Ctx, a: AttachArgs) -> Result<u8> {
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let c = containers.resolve(&a.container)?;
    match c.status() {
        s if s.can_attach() => {}
        Status::Paused => bail!("You cannot attach to a paused container, unpause it first"),
        Status::Restarting(_) => {
            bail!("You cannot attach to a restarting container, wait until it is running")
        }
        _ => bail!("You cannot attach to a stopped container, start it first"),
    }
    let keys = detach_keys(a.detach_keys.as_deref())?;
    if !has_socket(c.dir()) {
        bail!(
            "container {} runs attached to the rimg run or start -a that started it: only a detached container can be attached to",
            c.name()
        );
    }
    let stream = connect(c.dir())?;
    let stdin = !a.no_stdin && c.process().interactive;
    match relay(&c, stream, keys, stdin, a.sig_proxy)? {
        Ended::Exited(code) => Ok(code),
        Ended::Detached => Ok(0),
    }
}

/// How an attached session ended.
pub enum Ended {
    /// The container's process exited with this code.
    Exited(u8),
    /// The detach keys were typed; the container runs on.
    Detached,
}

/// Relays this process's terminal to container `c` through `stream` (connected to its
/// monitor) until the container's process ends or the detach keys are typed. `stdin`:
/// send what is typed; `sig_proxy`: forward signals (never with a tty, where they are
/// keys).
pub fn relay(
    c: &Container,
    stream: UnixStream,
    keys: DetachKeys,
    stdin: bool,
    sig_proxy: bool,
) -> Result<Ended> {
    let relay = Relay {
        container: c,
        stdin,
        tty: c.process().tty,
        sig_proxy: sig_proxy && !c.process().tty,
        keys,
    };
    relay.run(stream)
}

/// Parses `--detach-keys` (Docker's default when not given).
pub fn detach_keys(flag: Option<&str>) -> Result<DetachKeys> {
    match flag {
        Some(k) => k
            .parse::<DetachKeys>()
            .map_err(|e| anyhow::anyhow!("invalid detach keys ({k}): {e}")),
        None => Ok(DetachKeys::default()),
    }
}

/// One attached session.
struct Relay<'a> {
    container: &'a Container,
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
    keys: DetachKeys,
}

impl Relay<'_> {
    fn run(self, mut stream: UnixStream) -> Result<Ended> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGWINCH);
        if self.sig_proxy {
            // The signals `run` forwards, SIGWINCH apart (always taken, for the size).
            for s in FORWARDED {
                set.add(s);
            }
        }
        set.thread_block().context("blocking signals")?;
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("signalfd")?;
        let stdin = io::stdin();
        let _raw = (self.stdin && self.tty)
            .then(|| RawMode::enable(stdin.as_fd()))
            .flatten();
        if self.tty {
            send_size(&mut stream, stdin.as_fd())?;
        }
        let mut watch = DetachWatch::new(self.keys.clone());
        let mut reading_stdin = self.stdin;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut fds = vec![
                PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            if reading_stdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[1] {
                while let Ok(Some(info)) = signals.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGWINCH) => send_size(&mut stream, stdin.as_fd())?,
                        Ok(s) => {
                            let _ = self.container.signal(s);
                        }
                        Err(_) => {}
                    }
                }
            }
            if reading_stdin && ready[2] {
                let n = stdin.lock().read(&mut buf).unwrap_or(0);
                if n == 0 {
                    reading_stdin = false;
                } else {
                    let typed = if self.tty {
                        watch.feed(&buf[..n])
                    } else {
                        Typed::Input(buf[..n].to_vec())
                    };
                    let (data, detach) = match typed {
                        Typed::Input(d) => (d, false),
                        Typed::Detach(d) => (d, true),
                    };
                    if !data.is_empty() {
                        stream.write_all(&frame(STDIN, &data))?;
                    }
                    if detach {
                        return Ok(Ended::Detached);
                    }
                }
            }
            if ready[0] {
                match read_frame(&mut stream) {
                    Ok(Some((STDOUT, data))) => {
                        let mut o = io::stdout().lock();
                        o.write_all(&data)?;
                        o.flush()?;
                    }
                    Ok(Some((STDERR, data))) => io::stderr().lock().write_all(&data)?,
                    Ok(Some((EXIT, code))) => {
                        let code = code
                            .get(..4)
                            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        return Ok(Ended::Exited(code.clamp(0, 255) as u8));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Ok(Ended::Exited(self.last_exit_code())),
                }
            }
        }
    }

    /// The exit code the container recorded (its monitor closed the socket without one).
    fn last_exit_code(&self) -> u8 {
        let mut c = self.container.clone();
        let _ = c.reload();
        c.state.exit_code.clamp(0, 255) as u8
    }
}

/// Sends this terminal's size, if stdin is one.
fn send_size(stream: &mut UnixStream, fd: BorrowedFd<'_>) -> Result<()> {
    if let Some(size) = terminal_size(fd) {
        let mut p = size.rows.to_be_bytes().to_vec();
        p.extend_from_slice(&size.cols.to_be_bytes());
        stream.write_all(&frame(RESIZE, &p))?;
    }
    Ok(())
}
