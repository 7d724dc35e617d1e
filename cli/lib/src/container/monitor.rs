//! The monitor: the host-side process that owns a running container, as conmon does for
//! podman. It holds the container's `monitor.lock`, mounts the rootfs, starts the container
//! process, writes its output to the log (and to the terminal when attached), forwards
//! signals, records the exit status, unmounts, and removes the container after `--rm`.
//! `run -d` and `start` run it in a detached process; `run` and `start -a` in their own.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rimg_fs::error::IoError;

use crate::network::attach::{attach as network_attach, detach, Attached, Who};
use crate::network::NetworkError;
use crate::runtime::{
    cgroup, spawn, Launch, Network, OutputSink, RawMode, RuntimeError, Stdio, Supervisor, Target,
    Tee, Terminal,
};
use crate::units::rfc3339_nanos_now;

use super::attach::AttachServer;
use super::log::LogWriter;
use super::restart::{clear_stopped_by_user, stopped_by_user, Backoff};
use super::{process_start_time, Container, ContainerError, Containers, State};

/// Why a container could not be run.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Another monitor runs the container.
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// The container's files, mount or store.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The container process could not be started.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The image's FUSE daemon died while the container ran: it was killed (its files were
    /// gone: every access failed with "Transport endpoint is not connected").
    #[error("the image's FUSE daemon died: the container was killed (start it again to remount)")]
    DaemonDied,
    /// No client connected to a container that waited for one (`run -it`).
    #[error("no client attached to container {0}")]
    NoClient(String),
    /// Its networks could not be set up.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

impl MonitorError {
    /// The exit code `run` gives for this error (Docker's: 125, or 126/127 from the
    /// runtime).
    pub fn exit_code(&self) -> i32 {
        match self {
            MonitorError::Runtime(e) => e.exit_code(),
            MonitorError::DaemonDied => 137,
            _ => 125,
        }
    }
}

/// Runs container `c` to its end and returns its exit code. With `attach`, its output also
/// goes to this process's stdout/stderr and (with `-i`) this process's stdin goes to it;
/// without, clients attach through the container's socket.
/// `started` is called once the process has exec'd (or failed to).
pub fn run_container(
    containers: &Containers,
    c: &mut Container,
    attach: bool,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let io = if attach { Io::Terminal } else { Io::Clients };
    run_container_with(containers, c, io, started)
}

/// How long a monitor waits for the first client of [`Io::FirstClient`].
const FIRST_CLIENT_WAIT: Duration = Duration::from_secs(60);

/// Where a monitor's container takes its input and sends its output (besides the log).
pub enum Io<'a> {
    /// This process's own stdio (`run`, `start -a`).
    Terminal,
    /// The clients of the attach socket (a detached monitor).
    Clients,
    /// The clients of the attach socket, and the container starts only once the first
    /// has connected, so it sees all the output (`run -it`, whose terminal is a client).
    /// The callback is called once the socket listens.
    FirstClient(&'a mut dyn FnMut()),
}

/// [`run_container`] with the container's stdio as `io` says.
pub fn run_container_with(
    containers: &Containers,
    c: &mut Container,
    io: Io<'_>,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let attach = matches!(io, Io::Terminal);
    let Some(lock) = c.lock_monitor()? else {
        let e = MonitorError::AlreadyRunning(c.id().to_string());
        started(Err(&e));
        return Err(e);
    };
    c.reload()?;
    // Started again: a stop by the user is forgotten (the restart policy applies again).
    clear_stopped_by_user(c.dir()).map_err(ContainerError::from)?;
    // A monitor killed earlier may have left the mount behind.
    let begun = c
        .unmount_rootfs()
        .and_then(|_| c.mount_rootfs(&containers.images));
    // Docker's copy-up: empty volumes take the image's files at their mount point.
    let begun = begun.and_then(|rootfs| {
        crate::volume::copy::copy_up(&c.rootfs_dir(), &c.config.mounts)
            .map_err(|e| ContainerError::Mount(crate::error_line(&e)))
            .map(|()| rootfs)
    });
    let rootfs = match begun {
        Ok(rootfs) => rootfs,
        Err(e) => {
            let e = MonitorError::from(e);
            started(Err(&e));
            drop(lock);
            if c.config.auto_remove {
                let _ = containers.remove(c);
                crate::volume::remove_anonymous_of(&containers.images, &c.config.mounts);
            }
            return Err(e);
        }
    };
    // A detached container takes `attach` clients on its socket.
    let mut server = if attach {
        None
    } else {
        match AttachServer::listen(c.dir()) {
            Ok(s) => Some(s),
            Err(e) => {
                let e = MonitorError::from(ContainerError::from(e));
                started(Err(&e));
                drop(rootfs);
                drop(lock);
                return Err(e);
            }
        }
    };
    let mut client = true;
    if let (Io::FirstClient(listening), Some(server)) = (io, server.as_mut()) {
        listening();
        client = server.wait_client(FIRST_CLIENT_WAIT);
    }
    let result = if client {
        match attach_networks(containers, c) {
            Ok(net) => {
                let netns = net.as_ref().map(|n| n.netns.clone());
                let daemon = rootfs.record().pid;
                let r = supervise_with_restarts(c, attach, server.as_mut(), daemon, netns, started);
                drop(net);
                detach(c.dir(), c.id());
                r
            }
            Err(e) => {
                started(Err(&e));
                Err(e)
            }
        }
    } else {
        let e = MonitorError::NoClient(c.id().to_string());
        started(Err(&e));
        Err(e)
    };
    drop(server);
    remove_cgroup(c);
    let unmounted = rootfs.unmount().map(drop).or_else(|e| c.unmount_failed(&e));
    let mut st = c.state.clone();
    record_end(&mut st, &result);
    st.paused = false;
    let saved = c.save_state(st);
    drop(lock);
    if c.config.auto_remove {
        let _ = containers.remove(c);
        crate::volume::remove_anonymous_of(&containers.images, &c.config.mounts);
    }
    unmounted?;
    saved?;
    result
}

/// Records how the last run ended in `st`.
fn record_end(st: &mut State, result: &Result<i32, MonitorError>) {
    match result {
        Ok(code) => {
            st.status = "exited".into();
            st.exit_code = *code;
            st.finished_at = Some(rfc3339_nanos_now());
        }
        Err(e) => {
            // A start that failed leaves the container created, as Docker does.
            if st.status != "running" && st.status != "restarting" {
                st.status = "created".into();
            } else {
                st.status = "exited".into();
                st.finished_at = Some(rfc3339_nanos_now());
            }
            st.exit_code = e.exit_code();
            st.error = Some(crate::error_line(e));
        }
    }
}

/// Runs the container, and again as its restart policy says, with the rootfs mounted all
/// along: between runs the state says `restarting` (with the last exit code) while the
/// monitor waits out the back-off; a stop by the user ends the wait.
fn supervise_with_restarts(
    c: &mut Container,
    attach: bool,
    mut server: Option<&mut AttachServer>,
    daemon: u32,
    netns: Option<PathBuf>,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let policy = c.config.restart;
    let mut backoff = Backoff::default();
    let mut restarts = 0u32;
    let mut first = true;
    loop {
        let began = Instant::now();
        // Only the first start is reported to whoever waits for the container to start.
        let mut quiet = |_: Result<&Container, &MonitorError>| {};
        let report: &mut dyn FnMut(Result<&Container, &MonitorError>) =
            if first { &mut *started } else { &mut quiet };
        let result = supervise(
            c,
            attach,
            daemon,
            netns.clone(),
            server.as_deref_mut(),
            restarts,
            report,
        );
        first = false;
        let code = result?;
        if !policy.should_restart(code, restarts) || stopped_by_user(c.dir()) {
            return Ok(code);
        }
        let mut st = c.state.clone();
        st.status = "restarting".into();
        st.exit_code = code;
        st.pid = 0;
        st.finished_at = Some(rfc3339_nanos_now());
        c.save_state(st)?;
        let deadline = Instant::now() + backoff.next(began.elapsed());
        while Instant::now() < deadline {
            if stopped_by_user(c.dir()) {
                return Ok(code);
            }
            std::thread::sleep(Duration::from_millis(20).min(deadline - Instant::now()));
        }
        if stopped_by_user(c.dir()) {
            return Ok(code);
        }
        restarts += 1;
    }
}

/// Attaches a container with [`Network::Namespace`] to its networks.
fn attach_networks(
    containers: &Containers,
    c: &Container,
) -> Result<Option<Attached>, MonitorError> {
    if c.process().network != Network::Namespace {
        return Ok(None);
    }
    let spec = c.config.net.clone().unwrap_or_default();
    if let Some(other) = &spec.container {
        return join_container(containers, c, other).map(Some);
    }
    let who = Who {
        dir: c.dir(),
        id: c.id(),
        name: c.name(),
        hostname: &c.process().hostname,
    };
    Ok(Some(network_attach(&containers.networks(), &who, &spec)?))
}

/// `--network container:NAME`: the other container's namespace (it must run) and its
/// `/etc/hosts` and `/etc/resolv.conf`.
fn join_container(
    containers: &Containers,
    c: &Container,
    other: &str,
) -> Result<Attached, MonitorError> {
    let o = containers.resolve(other)?;
    let pid = o
        .live_pid()
        .ok_or_else(|| ContainerError::NotRunning(o.name().to_string()))?;
    for f in ["hosts", "resolv.conf"] {
        let (from, to) = (o.etc_dir().join(f), c.etc_dir().join(f));
        std::fs::copy(&from, &to)
            .map_err(|e| ContainerError::from(IoError::new("copying", &from, e)))?;
    }
    Ok(Attached::joined(PathBuf::from(format!(
        "/proc/{pid}/ns/net"
    ))))
}

fn supervise(
    c: &mut Container,
    attach: bool,
    daemon: u32,
    netns: Option<PathBuf>,
    server: Option<&mut AttachServer>,
    restarts: u32,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let mut spec = c.process().clone();
    spec.cgroup = Some(cgroup::container_path(c.id()));
    spec.netns = netns;
    let mut sup = Supervisor::new()?;
    watch_daemon(&mut sup, daemon);
    let rootfs = c.rootfs_dir();
    let etc = c.etc_dir();
    let spawned = spawn(&Launch {
        spec: &spec,
        target: Target::Rootfs {
            rootfs: &rootfs,
            etc_dir: &etc,
        },
        // Detached, a `-i` container's stdin is a pipe that attached clients write to.
        stdin: if attach { Stdio::Inherit } else { Stdio::Piped },
        output: Stdio::Piped,
    });
    let process = match spawned {
        Ok(p) => p,
        Err(e) => {
            let e = MonitorError::from(e);
            started(Err(&e));
            return Err(e);
        }
    };
    let pid = process.pid.as_raw();
    let state = State {
        status: "running".into(),
        pid,
        pid_start: process_start_time(pid).unwrap_or(0),
        monitor_pid: std::process::id() as i32,
        exit_code: 0,
        started_at: Some(rfc3339_nanos_now()),
        finished_at: None,
        error: None,
        paused: false,
        restart_count: restarts,
    };
    if let Err(e) = c.save_state(state) {
        let _ = nix::sys::signal::kill(process.pid, nix::sys::signal::Signal::SIGKILL);
        let e = MonitorError::from(e);
        started(Err(&e));
        return Err(e);
    }
    started(Ok(c));
    let mut log = LogWriter::open(&c.log_path())
        .map_err(|source| ContainerError::from(IoError::new("opening", c.log_path(), source)))?;
    let code = if attach {
        let stdin = io::stdin();
        let relay_stdin = spec.tty && spec.interactive;
        let _raw = relay_stdin
            .then(|| RawMode::enable(stdin.as_fd()))
            .flatten();
        let mut term = Terminal;
        let mut tee = Tee(&mut term, &mut log);
        let sink: &mut dyn OutputSink = &mut tee;
        sup.wait(process, relay_stdin.then(|| stdin.as_fd()), sink)?
    } else if let Some(server) = server {
        let code = sup.wait_attached(process, None, &mut log, Some(&mut *server));
        server.exited(*code.as_ref().unwrap_or(&137));
        code?
    } else {
        sup.wait(process, None, &mut log)?
    };
    if sup.lost_needed() {
        return Err(MonitorError::DaemonDied);
    }
    Ok(code)
}

/// Removes the container's cgroup (killing anything its process left behind in it).
pub(crate) fn remove_cgroup(c: &Container) {
    let path = cgroup::container_path(c.id());
    if let Ok(Some(cg)) = cgroup::open(std::path::Path::new(cgroup::CGROUP_ROOT), &path) {
        let _ = cg.remove();
    }
}

/// Has `sup` kill the container when the FUSE daemon serving its image (pid `daemon`) dies:
/// its files would be gone, every access failing with `ENOTCONN`, while `ps` showed it up.
/// The daemon is not our child (it detached and was re-parented to init), so it is watched
/// by pidfd, which the supervisor polls with its signals. Best effort: a pid that is already
/// gone leaves the container to fail on its own.
fn watch_daemon(sup: &mut Supervisor, daemon: u32) {
    let pid = i32::try_from(daemon)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        if let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            sup.kill_when_readable(fd);
        }
    }
}
