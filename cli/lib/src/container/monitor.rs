//! The monitor: the host-side process that owns a running container, as conmon does for
//! podman. It holds the container's `monitor.lock`, mounts the rootfs, starts the container
//! process, writes its output to the log (and to the terminal when attached), forwards
//! signals, records the exit status, unmounts, and removes the container after `--rm`.
//! `run -d` and `start` run it in a detached process; `run` and `start -a` in their own.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rimg_fs::error::IoError;

use crate::network::attach::{attach as network_attach, detach, Attached, Who};
use crate::network::NetworkError;
use crate::runtime::{
    spawn, Launch, Network, OutputSink, RawMode, RuntimeError, Stdio, Supervisor, Target, Tee,
    Terminal,
};
use crate::units::rfc3339_nanos_now;

use super::log::LogWriter;
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
            _ => 125,
        }
    }
}

/// Runs container `c` to its end and returns its exit code. With `attach`, its output also
/// goes to this process's stdout/stderr and (with `-i`) this process's stdin goes to it.
/// `started` is called once the process has exec'd (or failed to).
pub fn run_container(
    containers: &Containers,
    c: &mut Container,
    attach: bool,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let Some(lock) = c.lock_monitor()? else {
        let e = MonitorError::AlreadyRunning(c.id().to_string());
        started(Err(&e));
        return Err(e);
    };
    c.reload()?;
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
    let result = match attach_networks(containers, c) {
        Ok(net) => {
            let r = supervise(c, net.as_ref().map(|n| n.netns.clone()), attach, started);
            drop(net);
            detach(c.dir(), c.id());
            r
        }
        Err(e) => {
            started(Err(&e));
            Err(e)
        }
    };
    let unmounted = rootfs.unmount().map(drop).or_else(|e| c.unmount_failed(&e));
    let mut st = c.state.clone();
    match &result {
        Ok(code) => {
            st.status = "exited".into();
            st.exit_code = *code;
            st.finished_at = Some(rfc3339_nanos_now());
        }
        Err(e) => {
            // A start that failed leaves the container created, as Docker does.
            if st.status != "running" {
                st.status = "created".into();
            } else {
                st.status = "exited".into();
                st.finished_at = Some(rfc3339_nanos_now());
            }
            st.exit_code = e.exit_code();
            st.error = Some(crate::error_line(e));
        }
    }
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
    netns: Option<PathBuf>,
    attach: bool,
    started: &mut dyn FnMut(Result<&Container, &MonitorError>),
) -> Result<i32, MonitorError> {
    let mut spec = c.process().clone();
    spec.netns = netns;
    let mut sup = Supervisor::new()?;
    let rootfs = c.rootfs_dir();
    let etc = c.etc_dir();
    let spawned = spawn(&Launch {
        spec: &spec,
        target: Target::Rootfs {
            rootfs: &rootfs,
            etc_dir: &etc,
        },
        stdin: if attach { Stdio::Inherit } else { Stdio::Null },
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
    } else {
        sup.wait(process, None, &mut log)?
    };
    Ok(code)
}
