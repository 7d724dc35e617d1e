//! The monitor: the host-side process that owns a running container, as conmon does for
//! podman. It holds the container's `monitor.lock`, mounts the rootfs, starts the container
//! process, writes its output to the log (and to the terminal when attached), forwards
//! signals, records the exit status, unmounts, and removes the container after `--rm`.
//! `run -d` and `start` run it in a detached process; `run` and `start -a` in their own.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rimg_fs::error::IoError;

use crate::runtime::{
    spawn, Launch, OutputSink, RawMode, RuntimeError, Stdio, Supervisor, Target, Tee, Terminal,
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
    /// No client connected to a container that waited for one (`run -it`).
    #[error("no client attached to container {0}")]
    NoClient(String),
}

impl MonitorError {
    /// The exit code `run` gives for this error (Docker's: 125, or 126/127 from the
    /// runtime).
    pub fn exit_code(&self) -> i32 {
        match self {
            MonitorError::Runtime(e) => e.exit_code(),
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
    let rootfs = match begun {
        Ok(rootfs) => rootfs,
        Err(e) => {
            let e = MonitorError::from(e);
            started(Err(&e));
            drop(lock);
            if c.config.auto_remove {
                let _ = containers.remove(c);
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
        supervise_with_restarts(c, attach, server.as_mut(), started)
    } else {
        let e = MonitorError::NoClient(c.id().to_string());
        started(Err(&e));
        Err(e)
    };
    drop(server);
    let unmounted = rootfs.unmount().map(drop).or_else(|e| c.unmount_failed(&e));
    let mut st = c.state.clone();
    record_end(&mut st, &result);
    st.paused = false;
    let saved = c.save_state(st);
    drop(lock);
    if c.config.auto_remove {
        let _ = containers.remove(c);
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
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let policy = c.config.restart;
    let mut backoff = Backoff::default();
    let mut restarts = 0u32;
    let mut first = true;
    loop {
        let began = Instant::now();
        let result = if first {
            supervise(c, attach, server.as_deref_mut(), restarts, started)
        } else {
            supervise(c, attach, server.as_deref_mut(), restarts, &mut |_| {})
        };
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

fn supervise(
    c: &mut Container,
    attach: bool,
    server: Option<&mut AttachServer>,
    restarts: u32,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let spec = c.process().clone();
    let mut sup = Supervisor::new()?;
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
    Ok(code)
}
