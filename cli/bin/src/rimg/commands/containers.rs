//! The container commands: `run`, `create`, `start`, `ps`, `logs`, `stop`, `kill`, `rm`,
//! `exec`, and the hidden `__monitor` that `run -d` and `start` detach.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio as ProcStdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::Signal;
use rimg::container::attach::{connect, DetachKeys};
use rimg::container::log::LogReader;
use rimg::container::monitor::{run_container, run_container_with, Io, MonitorError};
use rimg::container::restart::{self as restart_policy, RestartPolicy};
use rimg::container::{Container, Containers, CreateRequest, Status};
use rimg::image::{Image, ImageError, Images, Reference};
use rimg::runtime::env::{container_env, parse_env_arg, ProcessOverrides};
use rimg::runtime::{spawn, Launch, RawMode, Stdio, Supervisor, Target, Terminal};
use rimg::table::{ellipsis, render, Format};
use rimg::units::{ago, human_duration, now_unix, parse_rfc3339};
use serde_json::{json, Value};

use super::attach::{detach_keys, relay, Ended};
use super::registry::{pull_reference, Out, PullHow};
use super::{out, outln, Ctx, ExitStatus};

/// `--pull` of `run` and `create`, as Docker has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull the image if the store does not have it.
    Missing,
    /// Pull the image before creating the container.
    Always,
    /// Never pull.
    Never,
}

/// The image `name` of a new container, pulled first as `policy` says; pull output goes to
/// stderr, as Docker prints it.
fn container_image(images: &Images, name: &str, policy: PullPolicy) -> Result<Image> {
    let pull = |reference: &Reference| {
        let how = PullHow::implicit(Out::Stderr, false, true);
        pull_reference(images, reference, &how).map_err(|e| fail(125, rimg::error_line(e.as_ref())))
    };
    let reference = Reference::parse(name).ok();
    if let (PullPolicy::Always, Some(r)) = (policy, &reference) {
        pull(r)?;
    }
    match (images.resolve(name), &reference) {
        (Err(ImageError::NotFound(_)), Some(r)) if policy == PullPolicy::Missing => {
            eprintln!("Unable to find image '{r}' locally");
            pull(r)?;
            images
                .resolve(name)
                .map_err(|e| fail(125, format!("{name}: {}", rimg::error_line(&e))))
        }
        (Err(e), _) => Err(fail(
            125,
            format!(
                "Unable to find image '{name}' locally: {}",
                rimg::error_line(&e)
            ),
        )),
        (Ok(image), _) => Ok(image),
    }
}

/// Flags shared by `run` and `create`.
#[derive(Args)]
pub struct CreateFlags {
    /// When to pull the image: when the store lacks it, every time, or never.
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// Name of the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here); repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Network: bridge (default), host, none, or a network's name.
    #[arg(long, visible_alias = "net", default_value = "bridge")]
    pub network: String,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Add a Linux capability (NAME, CAP_NAME or ALL); repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (NAME, CAP_NAME or ALL); repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability, no seccomp and the host's devices.
    #[arg(long)]
    pub privileged: bool,
    /// The image.
    pub image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub mount_flags: super::volumes::MountFlags,
    /// Restart policy: no, on-failure[:max-retries], always, unless-stopped.
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Networks, ports, addresses and names.
    #[command(flatten)]
    pub net: super::network::NetFlags,
    #[command(flatten)]
    pub init_flags: super::init_flags::InitFlags,
    #[command(flatten)]
    pub limit_flags: super::cgroup_cmds::LimitFlags,
}

/// Flags of `rimg run` (`-h` is `--hostname`, as in Docker; help is `--help`).
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Key sequence that detaches from `-it` and leaves the container running (default
    /// ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
}

/// Flags of `rimg create` (`-h` is `--hostname`, as in Docker; help is `--help`).
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// Flags of `rimg start`.
#[derive(Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and return the container's exit code.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers (names or ids).
    #[arg(required_unless_present = "all_restartable")]
    pub containers: Vec<String>,
    /// Start every container whose restart policy is `always`, or `unless-stopped` and the
    /// user did not stop it (what the boot-time unit runs).
    #[arg(long, conflicts_with_all = ["attach", "interactive", "containers"])]
    pub all_restartable: bool,
    /// Key sequence that detaches from `-ai` on a tty and leaves the container running
    /// (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
}

/// Flags of `rimg logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// Follow the output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Number of lines from the end ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// The container.
    pub container: String,
    /// Only lines since this time (RFC 3339, Unix timestamp, or a duration such as 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before this time (RFC 3339, Unix timestamp, or a duration such as 10m).
    #[arg(long)]
    pub until: Option<String>,
}

/// Flags of `rimg ps`.
#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// `json`, or a Go template such as `{{.Names}}`.
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: status=, name=, id=, label=, ancestor=, exited=, before=, since=.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Show the N last created containers (all states).
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_negative_numbers = true)]
    pub last: i64,
    /// Show the latest created container (all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Display total file sizes.
    #[arg(short = 's', long)]
    pub size: bool,
}

/// Flags of `rimg stop`.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    pub time: Option<u64>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Signal to stop the container with (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(short = 's', long = "signal")]
    pub signal: Option<String>,
}

/// Flags of `rimg kill`.
#[derive(Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `rimg rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short, long)]
    pub force: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Remove the anonymous volumes associated with the container.
    #[arg(short = 'v', long = "volumes")]
    pub volumes: bool,
}

/// Flags of `rimg exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable; repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// The container.
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Run the command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
}

/// Flags of the hidden `__monitor`.
#[derive(Args)]
pub struct MonitorArgs {
    /// The container's full id.
    pub id: String,
    /// Say `listening` once the attach socket is bound, and start the container only
    /// once a client has connected (`run -it`).
    #[arg(long)]
    pub attach_first: bool,
}

pub(crate) fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ExitStatus {
        code: code.clamp(1, 255) as u8,
        message: message.into(),
    })
}

pub(crate) fn containers(ctx: &Ctx) -> Result<Containers> {
    let images = ctx.images()?;
    Ok(Containers::open(&images)?)
}

pub(crate) fn host_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn create_container(ctx: &Ctx, f: CreateFlags) -> Result<(Containers, Container)> {
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    f.mount_flags.check()?;
    let image = container_image(&images, &f.image, f.pull)?;
    let (network, net) = super::network::for_create(&containers, &f.network, &f.net, &image)?;
    let restart: RestartPolicy = f.restart.parse().map_err(|e: String| fail(125, e))?;
    if f.rm && restart != RestartPolicy::No {
        return Err(fail(125, "Conflicting options: --restart and --rm"));
    }
    let mut env = super::container_verbs::env_files(&f.env_files)?;
    for e in &f.env {
        match parse_env_arg(e, host_env) {
            Ok(Some(kv)) => env.push(kv),
            Ok(None) => {}
            Err(m) => {
                return Err(fail(
                    125,
                    format!("invalid argument {e:?} for \"-e, --env\" flag: {m}"),
                ))
            }
        }
    }
    let security = security_flags(&f)?;
    let overrides = ProcessOverrides {
        entrypoint: f.entrypoint,
        command: f.command,
        env,
        workdir: f.workdir,
        user: f.user,
        hostname: f.hostname,
        tty: f.tty,
        interactive: f.interactive,
        network,
        security,
        cgroup: None,
    };
    let mut process = rimg::runtime::ProcessSpec::for_image(&image.config.config, overrides)
        .map_err(|e| fail(125, e.to_string()))?;
    process.limits = f
        .limit_flags
        .limits()
        .map_err(|e| fail(125, e.to_string()))?;
    let mounts = super::volumes::container_mounts(
        &images,
        &containers,
        &image,
        &f.mount_flags,
        &mut process,
    )?;
    let stop = f.init_flags.apply(&mut process)?;
    let c = containers
        .create(CreateRequest {
            image,
            image_name: f.image,
            name: f.name,
            process,
            auto_remove: f.rm,
            mounts,
            restart,
            net,
            stop_signal: stop.signal,
            stop_timeout: stop.timeout,
        })
        .map_err(|e| fail(125, rimg::error_line(&e)))?;
    Ok((containers, c))
}

/// `--security-opt`, `--cap-add`, `--cap-drop`, checked now (a bad name or profile fails
/// `create`, as Docker's does).
fn security_flags(f: &CreateFlags) -> Result<rimg::runtime::Security> {
    let mut security = rimg::runtime::Security {
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        privileged: f.privileged,
        ..Default::default()
    };
    for opt in &f.security_opt {
        security.apply_option(opt).map_err(|e| fail(125, e))?;
    }
    security.resolve().map_err(|e| fail(125, e))?;
    Ok(security)
}

fn monitor_failed(e: MonitorError) -> anyhow::Error {
    fail(e.exit_code(), rimg::error_line(&e))
}

/// Runs a container in this process, attached; returns its exit code.
fn run_attached(containers: &Containers, c: &mut Container) -> Result<u8> {
    match run_container(containers, c, true, &mut |_| {}) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => Err(monitor_failed(e)),
    }
}

/// Starts the container's monitor in a detached process and waits until the container
/// process has started (or failed to).
pub(crate) fn start_detached(ctx: &Ctx, c: &Container) -> Result<()> {
    let (mut child, mut reports) = spawn_monitor(ctx, c, false)?;
    let mut line = String::new();
    reports.read_line(&mut line)?;
    let _ = child.wait();
    start_report(c, &line)
}

/// `run -it`: the container's monitor runs detached and this process is its first client,
/// so the detach keys leave the container running, as Docker's do.
fn run_interactive(ctx: &Ctx, c: &Container, keys: DetachKeys) -> Result<u8> {
    let (mut child, mut reports) = spawn_monitor(ctx, c, true)?;
    let mut line = String::new();
    reports.read_line(&mut line)?;
    if line.trim_end() != "listening" {
        let _ = child.wait();
        start_report(c, &line)?;
        bail!("the monitor of container {} did not listen", c.short_id());
    }
    let stream = connect(c.dir());
    line.clear();
    reports.read_line(&mut line)?;
    let _ = child.wait();
    start_report(c, &line)?;
    match relay(c, stream?, keys, true, false)? {
        Ended::Detached => Ok(0),
        Ended::Exited(code) => {
            // `--rm`: the monitor removes the container (after it lets go of its lock)
            // before `run` returns.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            c.wait_stopped(Duration::from_secs(10));
            while c.config.auto_remove && c.dir().exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(code)
        }
    }
}

/// Starts the monitor of `c` in a detached process; returns the process and its reports.
fn spawn_monitor(
    ctx: &Ctx,
    c: &Container,
    attach_first: bool,
) -> Result<(std::process::Child, BufReader<std::process::ChildStdout>)> {
    let exe = std::env::current_exe().context("locating the rimg binary")?;
    let log = File::create(c.dir().join("monitor.log"))
        .with_context(|| format!("creating {}", c.dir().join("monitor.log").display()))?;
    let mut child = Command::new(exe)
        .arg("--root")
        .arg(ctx.root())
        .arg("__monitor")
        .arg(c.id())
        .args(attach_first.then_some("--attach-first"))
        .stdin(ProcStdio::null())
        .stdout(ProcStdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the container's monitor")?;
    let out = child
        .stdout
        .take()
        .context("reading the container's monitor")?;
    Ok((child, BufReader::new(out)))
}

/// What the monitor said of the start: `ok` or `error CODE MESSAGE`.
fn start_report(c: &Container, line: &str) -> Result<()> {
    let line = line.trim_end();
    if line == "ok" {
        return Ok(());
    }
    match line.strip_prefix("error ").and_then(|r| r.split_once(' ')) {
        Some((code, msg)) => Err(fail(code.parse().unwrap_or(125), msg)),
        None => Err(fail(
            125,
            format!(
                "the monitor of container {} exited without starting it (see {})",
                c.short_id(),
                c.dir().join("monitor.log").display()
            ),
        )),
    }
}

/// `rimg run`.
pub fn run(ctx: &Ctx, a: RunArgs) -> Result<u8> {
    if !a.detach
        && a.flags.tty
        && a.flags.interactive
        && !nix::unistd::isatty(io::stdin().as_fd()).unwrap_or(false)
    {
        return Err(fail(1, "the input device is not a TTY"));
    }
    if !a.detach && a.flags.tty && a.flags.interactive {
        let keys = detach_keys(a.detach_keys.as_deref()).map_err(|e| fail(125, e.to_string()))?;
        let (_, c) = create_container(ctx, a.flags)?;
        return run_interactive(ctx, &c, keys);
    }
    let (containers, mut c) = create_container(ctx, a.flags)?;
    if a.detach {
        start_detached(ctx, &c)?;
        outln(c.id())?;
        return Ok(0);
    }
    run_attached(&containers, &mut c)
}

/// `rimg create`.
pub fn create(ctx: &Ctx, a: CreateArgs) -> Result<u8> {
    let (_, c) = create_container(ctx, a.flags)?;
    outln(c.id())?;
    Ok(0)
}

/// `rimg start`.
pub fn start(ctx: &Ctx, a: StartArgs) -> Result<u8> {
    if a.all_restartable {
        return start_all_restartable(ctx);
    }
    let containers = containers(ctx)?;
    let mut failed = false;
    for name in &a.containers {
        let mut c = match containers.resolve(name) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {}", rimg::error_line(&e));
                failed = true;
                continue;
            }
        };
        if !c.status().can_start() {
            outln(name)?;
            continue;
        }
        if c.status() == Status::Dead {
            c.clean_up_after_monitor()?;
        }
        let p = c.process();
        if a.interactive && p.tty && p.interactive && nix::unistd::isatty(io::stdin().as_fd())? {
            // As `run -it`: a client of a detached monitor, so the detach keys leave it
            // running.
            let keys = detach_keys(a.detach_keys.as_deref())?;
            return run_interactive(ctx, &c, keys);
        }
        if a.attach || a.interactive {
            c.config.process.interactive = c.config.process.interactive && a.interactive;
            return run_attached(&containers, &mut c);
        }
        match start_detached(ctx, &c) {
            Ok(()) => outln(name)?,
            Err(e) => {
                eprintln!("Error: {}", rimg::error_line(e.as_ref()));
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `rimg start --all-restartable`: the containers a restart policy keeps up, after a boot
/// (their monitors died with the machine).
fn start_all_restartable(ctx: &Ctx) -> Result<u8> {
    let containers = containers(ctx)?;
    let mut failed = false;
    for mut c in containers.list()? {
        let by_user = restart_policy::stopped_by_user(c.dir());
        if !c.config.restart.starts_at_boot(by_user) || c.status().is_running() {
            continue;
        }
        let started = c
            .clean_up_after_monitor()
            .map_err(anyhow::Error::from)
            .and_then(|_| start_detached(ctx, &c));
        match started {
            Ok(()) => outln(c.name())?,
            Err(e) => {
                eprintln!("Error: {}: {}", c.name(), rimg::error_line(e.as_ref()));
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// The hidden monitor of a detached container: detaches, runs the container to its end,
/// reports the start on stdout (`ok` or `error CODE MESSAGE`).
pub fn monitor(ctx: &Ctx, a: MonitorArgs) -> Result<u8> {
    rimg::runtime::detach()?;
    let containers = containers(ctx)?;
    let mut c = containers.resolve(&a.id)?;
    let mut report = |r: std::result::Result<&Container, &MonitorError>| {
        let line = match r {
            Ok(_) => "ok\n".to_string(),
            Err(e) => format!("error {} {}\n", e.exit_code(), rimg::error_line(e)),
        };
        let mut o = io::stdout().lock();
        let _ = o.write_all(line.as_bytes());
        let _ = o.flush();
        if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(null.as_fd());
        }
    };
    let mut listening = || {
        let mut o = io::stdout().lock();
        let _ = o.write_all(b"listening\n");
        let _ = o.flush();
    };
    let how = if a.attach_first {
        Io::FirstClient(&mut listening)
    } else {
        Io::Clients
    };
    match run_container_with(&containers, &mut c, how, &mut report) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => Err(monitor_failed(e)),
    }
}

fn status_text(c: &Container) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(parse_rfc3339)
            .map(|s| human_duration(now_unix() - s))
            .unwrap_or_else(|| "N/A".into())
    };
    match c.status() {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&c.state.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&c.state.started_at)),
        Status::Exited(code) => format!("Exited ({code}) {} ago", since(&c.state.finished_at)),
        Status::Restarting(code) => {
            format!("Restarting ({code}) {} ago", since(&c.state.finished_at))
        }
        Status::Dead => "Dead".into(),
    }
}

fn ps_json(c: &Container, trunc: bool, size: &dyn Fn(&Container) -> String) -> Value {
    let cmd = c.command().join(" ");
    let cmd = if trunc { ellipsis(&cmd, 20) } else { cmd };
    let created = c
        .config
        .created
        .get(..19)
        .map(|s| format!("{} +0000 UTC", s.replace('T', " ")))
        .unwrap_or_default();
    json!({
        "Command": serde_json::to_string(&cmd).unwrap_or_default(),
        "CreatedAt": created,
        "ID": if trunc { c.short_id().to_string() } else { c.id().to_string() },
        "Image": c.config.image,
        "Labels": "",
        "LocalVolumes": "0",
        "Mounts": "",
        "Names": c.name(),
        "Networks": rimg::network::mode_name(c.process().network, c.config.net.as_ref()),
        "Ports": rimg::network::inspect::ports_text(&c.config),
        "RunningFor": ago(Some(&c.config.created)),
        "Size": size(c),
        "State": c.status().word(),
        "Status": status_text(c),
    })
}

/// `docker ps`' columns, for `--format table`.
const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
/// The column names of `docker ps`' fields.
const PS_HEADERS: &[(&str, &str)] = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("Size", "SIZE"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];

/// `rimg ps`.
pub fn ps(ctx: &Ctx, a: PsArgs) -> Result<u8> {
    let containers = containers(ctx)?;
    let list = super::container_verbs::ps_select(&containers, &a)?;
    let size = super::container_verbs::ps_size(ctx, a.size)?;
    let trunc = !a.no_trunc;
    if a.quiet {
        let mut s = String::new();
        for c in &list {
            s.push_str(if trunc { c.short_id() } else { c.id() });
            s.push('\n');
        }
        return out(&s).map(|_| 0);
    }
    if let Some(fmt) = &a.format {
        let rows: Vec<Value> = list.iter().map(|c| ps_json(c, trunc, &size)).collect();
        return out(&Format::parse(fmt, PS_TABLE)?.render(&rows, PS_HEADERS)?).map(|_| 0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let v = ps_json(c, trunc, &size);
            [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
                "Size",
            ][..7 + usize::from(a.size)]
                .iter()
                .map(|k| v[*k].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    out(&render(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
            "SIZE",
        ][..7 + usize::from(a.size)],
        &rows,
    ))?;
    Ok(0)
}

fn print_entry(e: &rimg::container::log::LogEntry, timestamps: bool) -> Result<()> {
    let text = if timestamps {
        format!("{} {}", e.time, e.log)
    } else {
        e.log.clone()
    };
    if e.stream == "stderr" {
        let mut err = io::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()?;
    } else {
        out(&text)?;
    }
    Ok(())
}

/// `rimg logs`.
pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<u8> {
    let containers = containers(ctx)?;
    let c = containers.resolve(&a.container)?;
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse()
                .with_context(|| format!("invalid --tail {n:?}: expected a number or all"))?,
        ),
    };
    let Some(mut reader) = LogReader::open(&c.log_path())? else {
        return Ok(0);
    };
    let window = super::container_verbs::log_window(a.since.as_deref(), a.until.as_deref())?;
    let mut entries = reader.read_all()?;
    entries.retain(|e| window(e));
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print_entry(e, a.timestamps)?;
    }
    if a.follow {
        loop {
            let running = c.monitor_alive() || c.live_pid().is_some();
            while let Some(e) = reader.next_entry()? {
                if window(&e) {
                    print_entry(&e, a.timestamps)?;
                }
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

pub(crate) fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("invalid signal: {s}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .with_context(|| format!("invalid signal: {s}"))
}

/// Stops one container: its stop signal, then SIGKILL after `timeout`; returns once its
/// monitor has recorded the exit and unmounted.
pub(crate) fn stop_one(c: &mut Container, timeout: Duration, signal: Option<Signal>) -> Result<()> {
    // Before any signal: the monitor must not restart what the user stops.
    restart_policy::mark_stopped_by_user(c.dir())?;
    match c.status() {
        Status::Restarting(_) => {
            if !c.wait_stopped(timeout.max(Duration::from_secs(10))) {
                bail!("container {} did not stop", c.name());
            }
        }
        Status::Running | Status::Paused => {
            let image_signal = c.config.stop_signal.as_deref().map(parse_signal);
            let sig = signal
                .or(image_signal.transpose()?)
                .unwrap_or(Signal::SIGTERM);
            if c.status() == Status::Paused {
                c.unpause()?;
            }
            let _ = c.signal(sig);
            if !c.wait_stopped(timeout) {
                let _ = c.signal(Signal::SIGKILL);
                if !c.wait_stopped(Duration::from_secs(10)) {
                    bail!("container {} did not stop", c.name());
                }
            }
            // The monitor recorded the exit: read it, or it would be taken for a kill (137).
            c.reload()?;
            c.clean_up_after_monitor()?;
        }
        Status::Dead => c.clean_up_after_monitor()?,
        Status::Created | Status::Exited(_) => {}
    }
    Ok(())
}

pub(crate) fn for_each(
    ctx: &Ctx,
    names: &[String],
    mut f: impl FnMut(&Containers, &mut Container) -> Result<()>,
) -> Result<u8> {
    let containers = containers(ctx)?;
    let mut failed = false;
    for name in names {
        let r = containers
            .resolve(name)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| f(&containers, &mut c));
        match r {
            Ok(()) => outln(name)?,
            Err(e) => {
                eprintln!("Error: {}", rimg::error_line(e.as_ref()));
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `rimg stop`.
pub fn stop(ctx: &Ctx, a: StopArgs) -> Result<u8> {
    let sig = a.signal.as_deref().map(parse_signal).transpose()?;
    for_each(ctx, &a.containers, |_, c| {
        stop_one(c, super::init_flags::stop_timeout(a.time, c), sig)
    })
}

/// `rimg kill`.
pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<u8> {
    let sig = parse_signal(&a.signal)?;
    for_each(ctx, &a.containers, |_, c| {
        let stop_signal = c.config.stop_signal.as_deref().map(parse_signal);
        if c.status().is_running()
            && (sig == Signal::SIGKILL
                || matches!(stop_signal, Some(Ok(s)) if s == sig)
                || (stop_signal.is_none() && sig == Signal::SIGTERM))
        {
            // As Docker's: a container killed by the user is not restarted.
            restart_policy::mark_stopped_by_user(c.dir())?;
        }
        if matches!(c.status(), Status::Restarting(_)) {
            // Its monitor ends the restart loop.
            return Ok(());
        }
        if !c.status().can_kill() {
            bail!(
                "cannot kill container: {}: container {} is not running",
                c.name(),
                c.id()
            );
        }
        Ok(c.signal(sig)?)
    })
}

/// `rimg rm`.
pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<u8> {
    // As Docker's: `rm -f` of a container that does not exist is not an error.
    let names: Vec<String> = if a.force {
        let all = containers(ctx)?;
        a.containers
            .iter()
            .filter(|n| {
                !matches!(
                    all.resolve(n),
                    Err(rimg::container::ContainerError::NotFound(_))
                )
            })
            .cloned()
            .collect()
    } else {
        a.containers.clone()
    };
    for_each(ctx, &names, |containers, c| {
        if !c.status().can_remove(a.force) {
            return Err(rimg::container::ContainerError::Running(c.name().to_string()).into());
        }
        if c.status().is_running() {
            restart_policy::mark_stopped_by_user(c.dir())?;
            if c.status() == Status::Paused {
                c.unpause()?;
            }
            let _ = c.signal(Signal::SIGKILL);
            c.wait_stopped(Duration::from_secs(10));
        }
        c.clean_up_after_monitor()?;
        containers.remove(c)?;
        if a.volumes {
            super::volumes::remove_anonymous(ctx, &c.config.mounts)?;
        }
        Ok(())
    })
}

/// `rimg exec`.
pub fn exec(ctx: &Ctx, a: ExecArgs) -> Result<u8> {
    let containers = containers(ctx)?;
    let c = containers.resolve(&a.container)?;
    let pid = match (c.status(), c.live_pid()) {
        (s, Some(pid)) if s.can_exec() => pid,
        (Status::Paused, _) => bail!(
            "container {} is paused, unpause the container before exec",
            c.id()
        ),
        (Status::Restarting(_), _) => bail!(
            "Container {} is restarting, wait until the container is running",
            c.id()
        ),
        _ => bail!("container {} is not running", c.id()),
    };
    let mut spec = c.process().clone();
    spec.cgroup = Some(rimg::runtime::cgroup::container_path(c.id()));
    spec.argv = a.command;
    spec.tty = a.tty;
    spec.interactive = a.interactive;
    if let Some(u) = a.user {
        spec.user = u;
    }
    if let Some(w) = a.workdir {
        spec.cwd = w;
    }
    let from_files = super::container_verbs::env_files(&a.env_files)?;
    spec.env = container_env(&spec.env, &from_files, &spec.hostname, false);
    for e in &a.env {
        match parse_env_arg(e, host_env) {
            Ok(Some(kv)) => spec.env = container_env(&spec.env, &[kv], &spec.hostname, false),
            Ok(None) => {}
            Err(m) => bail!("invalid argument {e:?} for \"-e, --env\" flag: {m}"),
        }
    }
    if a.tty {
        spec.env = container_env(&spec.env, &["TERM=xterm".into()], &spec.hostname, false);
    }
    if a.detach {
        return super::container_verbs::exec_detached(spec, pid);
    }
    let mut sup = Supervisor::new()?;
    let process = spawn(&Launch {
        spec: &spec,
        target: Target::Join { pid: pid.as_raw() },
        stdin: Stdio::Inherit,
        output: Stdio::Inherit,
    })
    .map_err(|e| fail(e.exit_code(), rimg::error_line(&e)))?;
    let stdin = io::stdin();
    let relay = a.tty && a.interactive;
    let _raw = relay.then(|| RawMode::enable(stdin.as_fd())).flatten();
    let code = sup.wait(process, relay.then(|| stdin.as_fd()), &mut Terminal)?;
    Ok(code.clamp(0, 255) as u8)
}
