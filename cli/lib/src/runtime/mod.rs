//! The built-in container runtime: no daemon, no OCI runtime binary. A container process is
//! forked into new mount, pid, uts and ipc namespaces (and a new network namespace with only
//! `lo` for `--network none`, or the one its caller prepared on a bridge: `crate::network`),
//! pivots into its rootfs with `/proc`, a minimal `/dev` and the
//! `/etc` files bind-mounted, takes the image's user, working directory and environment, and
//! execs. The caller stays on the host side as the container's supervisor: it forwards
//! signals, relays the pty or pipes, and reaps the exit status.
//!
//! ```text
//!  caller (supervisor: signalfd + poll loop)  ── subreaper while spawning
//!     └─ fork: intermediate ── unshare(NEWNS|NEWPID|NEWUTS|NEWIPC[|NEWNET]) or setns()
//!           └─ fork: container process, pid 1 ── mounts, pivot_root, pty, user, execve
//!        (the intermediate exits at once; the container process is reparented to the caller)
//! ```
//!
//! Architecture Invariant: the runtime makes no mount on the host. Everything it mounts is
//! made inside the container's mount namespace and disappears with the container's last
//! process.

pub mod caps;
pub mod cgroup;
mod child;
pub mod clients;
pub mod env;
pub mod mounts;
mod rootfs;
pub mod seccomp;
mod secsys;
pub mod security;
pub(crate) mod sys;
pub mod user;

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};
use rimg_fs::error::{io_err, IoError};
use serde::{Deserialize, Serialize};

use child::{ChildFd, Entry, Plan};
pub use rootfs::{write_etc_files, ETC_FILES};
pub use security::{SeccompProfile, Security};
pub use sys::WinSize;

/// The container's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network namespace (the default: this machine has no other).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
    /// The network namespace at [`ProcessSpec::netns`], prepared by the caller (a bridge
    /// or user network: see `crate::network`).
    Namespace,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => Err(format!(
                "network {other:?} is not supported (use host or none)"
            )),
        }
    }
}

/// What to run in a container and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The command line; `argv[0]` is looked up in the container's `PATH`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` strings (`HOME` is added from the user's passwd entry when missing).
    pub env: Vec<String>,
    /// The working directory, created when missing (as Docker does).
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved through the container's
    /// `/etc/passwd` and `/etc/group`; empty for root.
    pub user: String,
    /// The hostname in the container's uts namespace.
    pub hostname: String,
    /// Allocate a pty (inside the container's devpts) for stdin, stdout and stderr.
    pub tty: bool,
    /// Keep stdin open (otherwise the container's stdin is `/dev/null`).
    pub interactive: bool,
    /// The network.
    pub network: Network,
    /// Seccomp, capabilities, `no_new_privs` (Docker's defaults when empty).
    #[serde(default)]
    pub security: Security,
    /// The cgroup (relative to each hierarchy's root, see [`cgroup::container_path`]) the
    /// process starts in: a new container's gets Docker's device allow-list, an `exec`'d one
    /// joins it as it is; `None`: the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// Bind and tmpfs mounts over the rootfs (volumes, `-v`, `--mount`, `--tmpfs`).
    #[serde(default)]
    pub mounts: Vec<mounts::MountSpec>,
    /// Mount the root filesystem read-only (`--read-only`); mounts stay as they are.
    #[serde(default)]
    pub read_only: bool,
    /// With [`Network::Namespace`]: the network namespace to join (a bind-mounted nsfs
    /// file), set by the monitor when it has prepared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// `--oom-score-adj`: written to `/proc/self/oom_score_adj` before exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// Resource limits applied to a new container's cgroup.
    #[serde(default, skip_serializing_if = "cgroup::Limits::is_empty")]
    pub limits: cgroup::Limits,
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container process could not be started: its command is missing or not
    /// executable, its user unknown, a mount failed. `code` is Docker's exit code for it
    /// (127 not found, 126 not executable, 125 anything else).
    #[error("unable to start container process: {message}")]
    Start {
        /// The exit code `run` reports.
        code: i32,
        /// What went wrong, in runc's words.
        message: String,
    },
    /// A system call on the supervisor's side failed.
    #[error("{op}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The error.
        source: nix::Error,
    },
    /// The supervisor was told to stop (SIGINT, SIGTERM, SIGHUP) while cancelling on
    /// interrupt, and killed the container process.
    #[error("cancelled by {0}")]
    Interrupted(&'static str),
    /// I/O on the supervisor's side failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl RuntimeError {
    /// The exit code `run` gives for this error: the start failure's, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

fn sys_err(op: &'static str) -> impl FnOnce(nix::Error) -> RuntimeError {
    move |source| RuntimeError::Sys { op, source }
}

/// Where the container's stdio goes (ignored for stdin/stdout/stderr when `tty` is set:
/// then all three are the pty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// The caller's own descriptor.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe whose other end is in [`Process`].
    Piped,
}

/// How to start a container process.
pub struct Launch<'a> {
    /// The process.
    pub spec: &'a ProcessSpec,
    /// New namespaces over a rootfs, or a running container's.
    pub target: Target<'a>,
    /// stdin (`Null` unless `spec.interactive`).
    pub stdin: Stdio,
    /// stdout and stderr.
    pub output: Stdio,
}

/// Where a container process runs.
pub enum Target<'a> {
    /// A new container over `rootfs` (a mounted directory, or a plain one), with
    /// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` bind-mounted from `etc_dir`.
    Rootfs {
        /// The root filesystem.
        rootfs: &'a Path,
        /// Holds the [`ETC_FILES`] (see [`write_etc_files`]).
        etc_dir: &'a Path,
    },
    /// Into the namespaces of the running container whose first process is `pid` (`exec`).
    Join {
        /// The host pid of the container's pid 1.
        pid: i32,
    },
}

/// A started container process, seen from the host.
#[derive(Debug)]
pub struct Process {
    /// Its host pid.
    pub pid: Pid,
    /// The pty master (with `tty`).
    pub pty: Option<OwnedFd>,
    /// The write end of its stdin pipe (`Stdio::Piped`).
    pub stdin: Option<OwnedFd>,
    /// The read end of its stdout pipe.
    pub stdout: Option<OwnedFd>,
    /// The read end of its stderr pipe.
    pub stderr: Option<OwnedFd>,
}

fn child_fd(mode: Stdio, reading: bool) -> Result<(ChildFd, Option<OwnedFd>), RuntimeError> {
    Ok(match mode {
        Stdio::Inherit => (ChildFd::Keep, None),
        Stdio::Null => (ChildFd::Null, None),
        Stdio::Piped => {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
            if reading {
                (ChildFd::Fd(r), Some(w))
            } else {
                (ChildFd::Fd(w), Some(r))
            }
        }
    })
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut f = fs::File::from(fd);
    let mut out = Vec::new();
    let _ = f.read_to_end(&mut out);
    out
}

/// Starts a container process and returns once it has exec'd its command (or failed to:
/// then the error says why, with Docker's exit code). Call it with the signals the caller
/// wants to forward blocked ([`Supervisor::new`] does that), from a single-threaded process.
pub fn spawn(launch: &Launch<'_>) -> Result<Process, RuntimeError> {
    let spec = launch.spec;
    let entry = match &launch.target {
        Target::Rootfs { rootfs, etc_dir } => Entry::New {
            rootfs: rootfs.to_path_buf(),
            etc_dir: etc_dir.to_path_buf(),
            netns: match (&spec.network, &spec.netns) {
                (Network::Namespace, Some(p)) => Some(OwnedFd::from(
                    fs::File::open(p).map_err(io_err("opening", p))?,
                )),
                _ => None,
            },
        },
        Target::Join { pid } => {
            let mut fds = Vec::new();
            for ns in ["ipc", "uts", "net", "pid", "mnt"] {
                let p = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
                let f = fs::File::open(&p).map_err(io_err("opening", &p))?;
                fds.push(OwnedFd::from(f));
            }
            Entry::Join(fds)
        }
    };
    let confinement = spec
        .security
        .resolve()
        .map_err(|message| RuntimeError::Start { code: 125, message })?;
    let cgroup = match &spec.cgroup {
        Some(path) => cgroup::open(Path::new(cgroup::CGROUP_ROOT), path)
            .map_err(|message| RuntimeError::Start { code: 125, message })?
            .map(|cg| (cg, matches!(launch.target, Target::Rootfs { .. }))),
        None => None,
    };
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    let (pid_r, pid_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    let stdin_mode = if spec.interactive {
        launch.stdin
    } else {
        Stdio::Null
    };
    let (c_stdin, p_stdin) = child_fd(stdin_mode, true)?;
    let (c_stdout, p_stdout) = child_fd(launch.output, false)?;
    let (c_stderr, p_stderr) = child_fd(launch.output, false)?;
    let (tty, p_sock) = if spec.tty {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(sys_err("socketpair"))?;
        let size = sys::window_size(io::stdin().as_fd()).or(sys::window_size(io::stdout().as_fd()));
        (Some((b, size)), Some(a))
    } else {
        (None, None)
    };
    let plan = Plan {
        entry,
        spec,
        stdin: c_stdin,
        stdout: c_stdout,
        stderr: c_stderr,
        tty,
        report: report_w,
        pid_out: pid_w,
        confinement,
        cgroup,
    };
    let subreaper = Subreaper::enter()?;
    let forked = sys::fork();
    let intermediate = match forked {
        Ok(sys::Forked::Child) => child::intermediate(plan),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            return Err(RuntimeError::Sys {
                op: "fork",
                source: e,
            });
        }
    };
    drop(plan);
    let _ = waitpid(intermediate, None);
    drop(subreaper);
    let pid_text = String::from_utf8_lossy(&read_all(pid_r)).into_owned();
    let pid = pid_text.trim().parse::<i32>().ok().map(Pid::from_raw);
    let pty = match (&p_sock, pid) {
        (Some(sock), Some(_)) => {
            sys::recv_fd(sock.as_fd()).map_err(sys_err("receiving the pty"))?
        }
        _ => None,
    };
    drop(p_sock);
    let report = read_all(report_r);
    if !report.is_empty() || pid.is_none() {
        if let Some(pid) = pid {
            let _ = waitpid(pid, None);
        }
        let text = String::from_utf8_lossy(&report);
        let (code, message) = text.split_once('\n').unwrap_or(("125", &text));
        let message = if message.is_empty() {
            "the container process exited before it started".to_string()
        } else {
            message.to_string()
        };
        return Err(RuntimeError::Start {
            code: code.parse().unwrap_or(125),
            message,
        });
    }
    let Some(pid) = pid else {
        return Err(RuntimeError::Start {
            code: 125,
            message: "the container process did not start".into(),
        });
    };
    Ok(Process {
        pid,
        pty,
        stdin: p_stdin,
        stdout: p_stdout,
        stderr: p_stderr,
    })
}

/// How many spawns of this process are between fork and the intermediate's exit.
static SPAWNING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// This process is a child subreaper while any of its threads spawns a container process,
/// so the container process, orphaned when the intermediate exits, becomes our child.
struct Subreaper;

impl Subreaper {
    fn enter() -> Result<Self, RuntimeError> {
        let mut n = SPAWNING.lock().unwrap_or_else(|e| e.into_inner());
        if *n == 0 {
            nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("prctl"))?;
        }
        *n += 1;
        Ok(Subreaper)
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        let mut n = SPAWNING.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            let _ = nix::sys::prctl::set_child_subreaper(false);
        }
    }
}

/// Which of the container's output streams a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// stdout (or the pty).
    Stdout,
    /// stderr.
    Stderr,
}

/// Where the container's output goes: the terminal, the container log, or both.
pub trait OutputSink {
    /// Takes one chunk of output.
    fn output(&mut self, stream: Stream, data: &[u8]);
    /// The output is over (flush partial lines).
    fn finish(&mut self) {}
}

/// Writes output to the supervisor's own stdout and stderr.
pub struct Terminal;

impl OutputSink for Terminal {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let _ = match stream {
            Stream::Stdout => {
                let mut o = io::stdout().lock();
                o.write_all(data).and_then(|_| o.flush())
            }
            Stream::Stderr => io::stderr().lock().write_all(data),
        };
    }
}

/// Sends output to two sinks.
pub struct Tee<'a>(pub &'a mut dyn OutputSink, pub &'a mut dyn OutputSink);

impl OutputSink for Tee<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        self.0.output(stream, data);
        self.1.output(stream, data);
    }
    fn finish(&mut self) {
        self.0.finish();
        self.1.finish();
    }
}

/// The signals a supervisor forwards to the container process (SIGWINCH last: it resizes
/// the pty rather than reach the process).
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The host side of a running container process: forwards signals, relays its pty or
/// pipes, reaps its exit status. Blocks the forwarded signals (and SIGCHLD) while it lives.
pub struct Supervisor {
    signals: SignalFd,
    old_mask: SigSet,
    cancel_on_interrupt: bool,
    /// Readable when something the container cannot run without is gone (its image's FUSE
    /// daemon, as a pidfd): then the container process is killed.
    needed: Option<OwnedFd>,
    /// Whether `needed` fired.
    lost_needed: bool,
}

impl Supervisor {
    /// Blocks SIGCHLD and the forwarded signals and reads them from a signalfd.
    pub fn new() -> Result<Self, RuntimeError> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        set.add(Signal::SIGCHLD);
        let old_mask = SigSet::thread_get_mask().map_err(sys_err("sigprocmask"))?;
        set.thread_block().map_err(sys_err("sigprocmask"))?;
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys_err("signalfd"))?;
        Ok(Supervisor {
            signals,
            old_mask,
            cancel_on_interrupt: false,
            needed: None,
            lost_needed: false,
        })
    }

    /// Makes SIGINT, SIGTERM and SIGHUP kill the container process (and with it its PID
    /// namespace) rather than reach it, and [`Supervisor::wait`] return
    /// [`RuntimeError::Interrupted`]: a build's RUN step stops on Ctrl-C, as `docker build`
    /// does, even though a shell as PID 1 would ignore the signal.
    pub fn cancel_on_interrupt(mut self) -> Self {
        self.cancel_on_interrupt = true;
        self
    }

    /// Kills the container process when `fd` becomes readable (a pidfd of a process it needs:
    /// readable once that process exits), polled with everything else, so no thread is
    /// needed. [`Supervisor::lost_needed`] then says why it ended.
    pub fn kill_when_readable(&mut self, fd: OwnedFd) {
        self.needed = Some(fd);
    }

    /// Whether the descriptor given to [`Supervisor::kill_when_readable`] fired.
    pub fn lost_needed(&self) -> bool {
        self.lost_needed
    }

    /// Waits for `process` to exit, forwarding signals to it, copying `input` (when given)
    /// to its stdin pipe or pty, and its output to `sink`. Returns the exit code, 128+N for
    /// a death by signal N.
    pub fn wait(
        &mut self,
        process: Process,
        input: Option<BorrowedFd<'_>>,
        sink: &mut dyn OutputSink,
    ) -> Result<i32, RuntimeError> {
        self.wait_attached(process, input, sink, None)
    }

    /// [`Supervisor::wait`], also serving `clients`: their descriptors are polled in the
    /// same loop, they get the output, and what they send goes to the container's stdin
    /// pipe or pty (their window size to the pty).
    pub fn wait_attached(
        &mut self,
        mut process: Process,
        input: Option<BorrowedFd<'_>>,
        sink: &mut dyn OutputSink,
        mut clients: Option<&mut dyn clients::Attachments>,
    ) -> Result<i32, RuntimeError> {
        let mut outputs: Vec<(Stream, fs::File)> = Vec::new();
        if let Some(p) = &process.pty {
            outputs.push((
                Stream::Stdout,
                fs::File::from(p.try_clone().map_err(io_err("dup", Path::new("pty")))?),
            ));
        }
        if let Some(o) = process.stdout.take() {
            outputs.push((Stream::Stdout, fs::File::from(o)));
        }
        if let Some(e) = process.stderr.take() {
            outputs.push((Stream::Stderr, fs::File::from(e)));
        }
        let relayed = input.is_some() || clients.is_some();
        let mut input_dest: Option<fs::File> = match (&process.pty, process.stdin.take()) {
            (Some(p), _) if relayed => p.try_clone().ok().map(fs::File::from),
            (_, Some(w)) if relayed => Some(fs::File::from(w)),
            _ => None,
        };
        let mut input = input.filter(|_| input_dest.is_some());
        let mut status: Option<i32> = None;
        let mut interrupted: Option<Signal> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if status.is_some() && outputs.is_empty() {
                break;
            }
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            for (_, f) in &outputs {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            let input_slot = fds.len();
            if let Some(i) = input {
                fds.push(PollFd::new(i, PollFlags::POLLIN));
            }
            let needed_slot = fds.len();
            if let Some(n) = &self.needed {
                fds.push(PollFd::new(n.as_fd(), PollFlags::POLLIN));
            }
            let clients_slot = fds.len();
            if let Some(c) = clients.as_deref_mut() {
                for fd in c.fds() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
            }
            // A SIGCHLD can be taken by another thread of a multi-threaded caller: look for
            // the exit now and then even without one.
            let timeout = PollTimeout::from(if status.is_some() { 200u16 } else { 500u16 });
            let n = match poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(sys_err("poll")(e)),
            };
            if n == 0 && status.is_none() {
                reap(process.pid, &mut status);
                continue;
            }
            if n == 0 {
                // The process is gone and its output has been quiet: whatever still holds
                // the pipes (an `exec`'d process's children) is not waited for.
                break;
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready.get(needed_slot).copied().unwrap_or(false) && self.needed.is_some() {
                self.needed = None;
                self.lost_needed = true;
                if status.is_none() {
                    let _ = kill(process.pid, Signal::SIGKILL);
                }
            }
            if ready[0] {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    match sig {
                        Signal::SIGCHLD => reap(process.pid, &mut status),
                        Signal::SIGWINCH => {
                            if let (Some(p), Some(size)) =
                                (&process.pty, sys::window_size(io::stdin().as_fd()))
                            {
                                let _ = sys::set_window_size(p.as_fd(), size);
                            }
                        }
                        s @ (Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP)
                            if self.cancel_on_interrupt =>
                        {
                            interrupted.get_or_insert(s);
                            if status.is_none() {
                                let _ = kill(process.pid, Signal::SIGKILL);
                            }
                        }
                        s => {
                            if status.is_none() {
                                let _ = kill(process.pid, s);
                            }
                        }
                    }
                }
            }
            let mut closed = Vec::new();
            for (i, (stream, f)) in outputs.iter_mut().enumerate() {
                if !ready[i + 1] {
                    continue;
                }
                match f.read(&mut buf) {
                    Ok(0) => closed.push(i),
                    Ok(n) => {
                        sink.output(*stream, &buf[..n]);
                        if let Some(c) = clients.as_deref_mut() {
                            c.output(*stream, &buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EIO: the pty's last slave descriptor closed.
                    Err(_) => closed.push(i),
                }
            }
            for i in closed.into_iter().rev() {
                outputs.remove(i);
            }
            if let Some(i) = input {
                if ready.get(input_slot).copied().unwrap_or(false) {
                    let n = nix::unistd::read(i, &mut buf).unwrap_or(0);
                    if n == 0 {
                        input = None;
                        if process.pty.is_none() {
                            input_dest = None;
                        }
                    } else if let Some(d) = input_dest.as_mut() {
                        if d.write_all(&buf[..n]).is_err() {
                            input = None;
                            input_dest = None;
                        }
                    }
                }
            }
            if let Some(c) = clients.as_deref_mut() {
                for (i, _) in ready.iter().enumerate().skip(clients_slot).filter(|r| *r.1) {
                    c.readable(i - clients_slot, &mut |got| match got {
                        clients::ClientInput::Data(data) => {
                            if let Some(d) = input_dest.as_mut() {
                                if d.write_all(data).is_err() && process.pty.is_none() {
                                    input_dest = None;
                                }
                            }
                        }
                        clients::ClientInput::Resize(size) => {
                            if let Some(p) = &process.pty {
                                let _ = sys::set_window_size(p.as_fd(), size);
                            }
                        }
                    });
                }
            }
        }
        sink.finish();
        drop(input_dest);
        if let Some(s) = interrupted {
            return Err(RuntimeError::Interrupted(s.as_str()));
        }
        Ok(status.unwrap_or(137))
    }
}

fn reap(pid: Pid, status: &mut Option<i32>) {
    // Only our own process: other supervisors in this process wait for theirs.
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => *status = Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => *status = Some(128 + sig as i32),
        Ok(_) => {}
        // Already reaped by someone else: its status is lost.
        Err(nix::Error::ECHILD) => *status = status.or(Some(255)),
        Err(_) => {}
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.old_mask.thread_set_mask();
    }
}

/// Puts a terminal in raw mode while it lives (`run -it` on a terminal).
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal; `None` otherwise.
    pub fn enable(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let fd = fd.try_clone_to_owned().ok()?;
        tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Runs `spec` in a new container over the directory `rootfs` with stdio inherited (a pty
/// relayed to them with `spec.tty`) and returns its exit code (128+N for a death by signal
/// N). SIGINT, SIGTERM and SIGHUP kill the container and return
/// [`RuntimeError::Interrupted`]; other signals are forwarded. The `/etc` files are
/// generated in a temporary directory. This is what the builder's `RUN` uses; `rimg run`
/// uses [`spawn`] and [`Supervisor`] directly.
pub fn run_in_rootfs(rootfs: &Path, spec: &ProcessSpec) -> Result<i32, RuntimeError> {
    run_in_rootfs_with_etc(rootfs, spec, None)
}

/// [`run_in_rootfs`] with the `/etc` files from `etc_dir` when given (a RUN step on a
/// bridge network, whose files name its address).
pub fn run_in_rootfs_with_etc(
    rootfs: &Path,
    spec: &ProcessSpec,
    etc_dir: Option<&Path>,
) -> Result<i32, RuntimeError> {
    let owned;
    let etc_dir = match etc_dir {
        Some(d) => d,
        None => {
            owned = EtcDir::new(&spec.hostname, spec.network)?;
            owned.0.path()
        }
    };
    let mut sup = Supervisor::new()?.cancel_on_interrupt();
    let process = spawn(&Launch {
        spec,
        target: Target::Rootfs { rootfs, etc_dir },
        stdin: Stdio::Inherit,
        output: Stdio::Inherit,
    })?;
    let stdin = io::stdin();
    let _raw = (spec.tty && spec.interactive)
        .then(|| RawMode::enable(stdin.as_fd()))
        .flatten();
    let input = (spec.tty && spec.interactive).then(|| stdin.as_fd());
    sup.wait(process, input, &mut Terminal)
}

/// A private temporary directory for the `/etc` files of [`run_in_rootfs`], removed when
/// it is dropped.
struct EtcDir(tempfile::TempDir);

impl EtcDir {
    fn new(hostname: &str, network: Network) -> Result<Self, RuntimeError> {
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("rimg-etc-{}-", std::process::id()))
            .tempdir_in(&tmp)
            .map_err(io_err("creating a directory in", &tmp))?;
        write_etc_files(dir.path(), hostname, network == Network::Host)
            .map_err(io_err("writing", dir.path()))?;
        Ok(EtcDir(dir))
    }
}

/// Detaches the calling process from its parent and terminal: forks, the parent exits at
/// once (so whoever started it can reap it), the child starts a new session. For the
/// monitor of a detached container.
pub fn detach() -> Result<(), RuntimeError> {
    match sys::fork().map_err(sys_err("fork"))? {
        sys::Forked::Parent(_) => sys::exit_now(0),
        sys::Forked::Child => {
            nix::unistd::setsid().map_err(sys_err("setsid"))?;
            Ok(())
        }
    }
}
