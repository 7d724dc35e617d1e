//! What happens between fork and exec. The caller forks an intermediate process that enters
//! the new namespaces (or joins a running container's), forks the container process itself
//! (pid 1 of a new pid namespace) and exits; the container process builds its mounts,
//! terminal, stdio, user and working directory, and execs. A failure is written to the
//! report pipe as `CODE\nMESSAGE` before `_exit(CODE)`; a successful exec closes the pipe
//! (close-on-exec) with nothing written.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::SigSet;
use nix::sys::stat::{umask, Mode};
use nix::unistd::{
    chdir, dup2_stderr, dup2_stdin, dup2_stdout, execve, setgid, setgroups, sethostname, setsid,
    setuid, Gid, Uid,
};

use super::cgroup::Cgroup;
use super::security::Confinement;
use super::sys::{self, Forked, WinSize};
use super::user::resolve_user;
use super::{caps, secsys};
use super::{rootfs, Network, ProcessSpec};
use crate::image::config::env_value;

/// Where the container process comes from.
pub(crate) enum Entry {
    /// New namespaces over `rootfs`, with `/etc` files from `etc_dir`.
    New {
        rootfs: PathBuf,
        etc_dir: PathBuf,
        /// The network namespace to join instead of the host's ([`Network::Namespace`]).
        netns: Option<OwnedFd>,
    },
    /// The namespaces of a running container (`exec`), opened by the caller.
    Join(Vec<OwnedFd>),
}

/// What becomes of one of the container's stdio descriptors.
pub(crate) enum ChildFd {
    /// The caller's own descriptor, as it is.
    Keep,
    /// `/dev/null` (of the container).
    Null,
    /// This descriptor (a pipe end).
    Fd(OwnedFd),
}

/// Everything the forked processes need, prepared before the fork.
pub(crate) struct Plan<'a> {
    pub entry: Entry,
    pub spec: &'a ProcessSpec,
    pub stdin: ChildFd,
    pub stdout: ChildFd,
    pub stderr: ChildFd,
    /// With a tty: the socket the pty master is sent over, and the initial window size.
    pub tty: Option<(OwnedFd, Option<WinSize>)>,
    /// The report pipe's write end.
    pub report: OwnedFd,
    /// Where the intermediate process writes the container process's pid.
    pub pid_out: OwnedFd,
    /// Capabilities, seccomp filters, `no_new_privs`.
    pub confinement: Confinement,
    /// The cgroup the intermediate process enters before it forks the container process,
    /// and whether it is new (its limits applied) or a running container's (joined).
    pub cgroup: Option<(Box<dyn Cgroup>, bool)>,
}

/// A start failure: Docker's exit code for it and the message.
pub(crate) struct Failure {
    pub code: i32,
    pub message: String,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

fn setup(message: String) -> Failure {
    fail(125, message)
}

fn report_and_exit(report: &OwnedFd, f: Failure) -> ! {
    let text = format!("{}\n{}", f.code, f.message);
    let _ = nix::unistd::write(report, text.as_bytes());
    sys::exit_now(f.code)
}

/// The intermediate process: enter or join the namespaces, fork the container process,
/// hand its pid to the caller, exit.
pub(crate) fn intermediate(plan: Plan<'_>) -> ! {
    let r = (|| -> Result<nix::unistd::Pid, Failure> {
        // Before joining a container's mount namespace, which hides the host's cgroupfs.
        match &plan.cgroup {
            Some((cg, true)) => {
                cg.enter(std::process::id() as i32, plan.confinement.privileged)
                    .map_err(setup)?;
                cg.limit(&plan.spec.limits).map_err(setup)?;
            }
            Some((cg, false)) => cg.join(std::process::id() as i32).map_err(setup)?,
            None => {}
        }
        match &plan.entry {
            Entry::New { netns, .. } => {
                let mut flags = CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWPID
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWIPC;
                if plan.spec.network == Network::None {
                    flags |= CloneFlags::CLONE_NEWNET;
                }
                unshare(flags).map_err(|e| setup(format!("creating namespaces: {e}")))?;
                if plan.spec.network == Network::None {
                    sys::loopback_up().map_err(|e| setup(format!("bringing up lo: {e}")))?;
                }
                if let Some(ns) = netns {
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                        .map_err(|e| setup(format!("joining the network namespace: {e}")))?;
                }
            }
            Entry::Join(fds) => {
                for fd in fds {
                    setns(fd.as_fd(), CloneFlags::empty())
                        .map_err(|e| setup(format!("joining the container's namespaces: {e}")))?;
                }
            }
        }
        match sys::fork().map_err(|e| setup(format!("fork: {e}")))? {
            Forked::Parent(pid) => Ok(pid),
            Forked::Child => container_process(&plan),
        }
    })();
    match r {
        Ok(pid) => {
            let _ = nix::unistd::write(&plan.pid_out, pid.as_raw().to_string().as_bytes());
            sys::exit_now(0)
        }
        Err(f) => report_and_exit(&plan.report, f),
    }
}

fn container_process(plan: &Plan<'_>) -> ! {
    match prepare_and_exec(plan) {
        Ok(never) => match never {},
        Err(f) => report_and_exit(&plan.report, f),
    }
}

fn dup_onto(fd: &ChildFd, which: i32) -> Result<(), Failure> {
    let dup = |src: &OwnedFd| match which {
        0 => dup2_stdin(src),
        1 => dup2_stdout(src),
        _ => dup2_stderr(src),
    };
    match fd {
        ChildFd::Keep => Ok(()),
        ChildFd::Fd(f) => dup(f).map_err(|e| setup(format!("stdio: {e}"))),
        ChildFd::Null => {
            let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| setup(format!("opening /dev/null: {e}")))?;
            dup(&null).map_err(|e| setup(format!("stdio: {e}")))
        }
    }
}

fn open_tty(sock: &OwnedFd, size: Option<WinSize>) -> Result<(), Failure> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let err = |e: nix::Error| setup(format!("allocating a pty: {e}"));
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(err)?;
    grantpt(&master).map_err(err)?;
    unlockpt(&master).map_err(err)?;
    let name = ptsname_r(&master).map_err(err)?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    sys::set_controlling_tty(slave.as_fd())
        .map_err(|e| setup(format!("setting the controlling terminal: {e}")))?;
    if let Some(s) = size {
        let _ = sys::set_window_size(slave.as_fd(), s);
    }
    sys::send_fd(sock.as_fd(), master.as_fd()).map_err(err)?;
    for which in 0..3 {
        dup_onto(
            &ChildFd::Fd(slave.try_clone().map_err(|e| setup(e.to_string()))?),
            which,
        )?;
    }
    Ok(())
}

fn cstring(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| setup(format!("{s:?} contains a NUL byte")))
}

/// Go's `exec.LookPath` inside the container, with runc's messages.
fn look_path(name: &str, path_var: &str) -> Result<PathBuf, Failure> {
    let executable = |p: &Path| -> Result<(), std::io::Error> {
        let m = fs::metadata(p)?;
        if m.is_dir() || m.permissions().mode() & 0o111 == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        Ok(())
    };
    if name.contains('/') {
        return match executable(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(fail(
                127,
                format!("exec: {name:?}: stat {name}: no such file or directory"),
            )),
            Err(_) => Err(fail(126, format!("exec: {name:?}: permission denied"))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if executable(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(fail(
        127,
        format!("exec: {name:?}: executable file not found in $PATH"),
    ))
}

fn prepare_and_exec(plan: &Plan<'_>) -> Result<std::convert::Infallible, Failure> {
    let spec = plan.spec;
    let _ = SigSet::empty().thread_set_mask();
    sys::reset_signal_dispositions();
    setsid().map_err(|e| setup(format!("setsid: {e}")))?;
    let mut keep = vec![plan.report.as_raw_fd()];
    for fd in [&plan.stdin, &plan.stdout, &plan.stderr] {
        if let ChildFd::Fd(f) = fd {
            keep.push(f.as_raw_fd());
        }
    }
    if let Some((sock, _)) = &plan.tty {
        keep.push(sock.as_raw_fd());
    }
    secsys::close_fds_except(&keep).map_err(|e| setup(format!("close_range: {e}")))?;
    if let Some(adj) = spec.oom_score_adj {
        // Through the host's /proc, before the capabilities are dropped: lowering it takes CAP_SYS_RESOURCE.
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| setup(format!("writing /proc/self/oom_score_adj: {e}")))?;
    }
    secsys::join_session_keyring().map_err(|e| setup(format!("joining a session keyring: {e}")))?;
    match &plan.entry {
        Entry::New {
            rootfs, etc_dir, ..
        } => {
            rootfs::enter(
                rootfs,
                etc_dir,
                plan.confinement.privileged,
                &spec.mounts,
                spec.read_only,
                &spec.cwd,
            )
            .map_err(setup)?;
            if !spec.hostname.is_empty() {
                sethostname(&spec.hostname).map_err(|e| setup(format!("sethostname: {e}")))?;
            }
        }
        Entry::Join(_) => chdir("/").map_err(|e| setup(format!("chdir /: {e}")))?,
    }
    match &plan.tty {
        Some((sock, size)) => open_tty(sock, *size)?,
        None => {
            dup_onto(&plan.stdin, 0)?;
            dup_onto(&plan.stdout, 1)?;
            dup_onto(&plan.stderr, 2)?;
        }
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let user = resolve_user(&spec.user, &passwd, &group).map_err(setup)?;
    let mut env = spec.env.clone();
    if env_value(&env, "HOME").is_none() {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    // Resolved inside the container's root (a link to a missing absolute path is created
    // where it leads, as runc does), missing directories made 0755; the chdir then follows
    // no symlink, so never a `/proc` magic link out of the container.
    let root = Path::new("/");
    let resolved = rootfs::resolve_in_root(root, Path::new(cwd))
        .and_then(|rel| rootfs::make_dirs_in_root(root, &rel).map(|()| root.join(rel)))
        .map_err(|e| {
            setup(format!(
                "chdir to cwd ({cwd:?}) set in config.json failed: {e}"
            ))
        })?;
    chdir(&resolved).map_err(|e| {
        let code = if e == nix::Error::EACCES { 126 } else { 125 };
        fail(
            code,
            format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"),
        )
    })?;
    let confine = &plan.confinement;
    if confine.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| setup(format!("no_new_privs: {e}")))?;
    } else {
        // Without no_new_privs installing a filter takes CAP_SYS_ADMIN: before the drop, as
        // runc does (the profile allows the calls that follow).
        load_filters(confine)?;
    }
    caps::apply_bounding(&confine.caps).map_err(setup)?;
    caps::keep_across_setuid(true).map_err(setup)?;
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| setup(format!("setgroups: {e}")))?;
    setgid(Gid::from_raw(user.gid)).map_err(|e| setup(format!("setgid: {e}")))?;
    setuid(Uid::from_raw(user.uid)).map_err(|e| setup(format!("setuid: {e}")))?;
    caps::keep_across_setuid(false).map_err(setup)?;
    caps::apply(&confine.caps).map_err(setup)?;
    let Some(arg0) = spec.argv.first() else {
        return Err(setup("no command specified".into()));
    };
    let path_var = env_value(&env, "PATH").unwrap_or(super::env::DEFAULT_PATH);
    let exe = look_path(arg0, path_var)?;
    let exe = CString::new(exe.as_os_str().as_bytes())
        .map_err(|_| setup(format!("{arg0:?} contains a NUL byte")))?;
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>, _>>()?;
    umask(Mode::from_bits_truncate(0o022));
    sys::cloexec_from_3().map_err(|e| setup(format!("close_range: {e}")))?;
    if confine.no_new_privileges {
        // Last before exec, so as few calls as possible run under the filter.
        load_filters(confine)?;
    }
    let e = match execve(&exe, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(match e {
        nix::Error::ENOENT => fail(
            127,
            format!("exec: {arg0:?}: stat {arg0}: no such file or directory"),
        ),
        nix::Error::EACCES => fail(126, format!("exec: {arg0:?}: permission denied")),
        e => fail(126, format!("exec: {arg0:?}: {}", e.desc().to_lowercase())),
    })
}

fn load_filters(confine: &Confinement) -> Result<(), Failure> {
    for f in &confine.filters {
        secsys::load_filter(f).map_err(|e| setup(format!("loading the seccomp filter: {e}")))?;
    }
    Ok(())
}
