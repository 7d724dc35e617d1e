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
use rimg::container::log::LogReader;
use rimg::container::monitor::{run_container, MonitorError};
use rimg::container::{Container, Containers, CreateRequest, Status};
use rimg::image::{Image, ImageError, Images, Reference};
use rimg::runtime::env::{container_env, parse_env_arg, parse_env_file, ProcessOverrides};
use rimg::runtime::{spawn, Launch, RawMode, Stdio, Supervisor, Target, Terminal};
use rimg::table::{apply_template, ellipsis, render};
use rimg::units::{ago, human_duration, now_unix, parse_rfc3339};
use serde_json::{json, Value};

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
    /// The image.
    pub image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Networks, ports, addresses and names.
    #[command(flatten)]
    pub net: super::network::NetFlags,
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
    #[arg(required = true)]
    pub containers: Vec<String>,
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
}

/// Flags of `rimg stop`.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
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
}

/// Flags of the hidden `__monitor`.
#[derive(Args)]
pub struct MonitorArgs {
    /// The container's full id.
    pub id: String,
}

fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ExitStatus {
        code: code.clamp(1, 255) as u8,
        message: message.into(),
    })
}

fn containers(ctx: &Ctx) -> Result<Containers> {
    let images = ctx.images()?;
    Ok(Containers::open(&images)?)
}

fn host_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn create_container(ctx: &Ctx, f: CreateFlags) -> Result<(Containers, Container)> {
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let image = container_image(&images, &f.image, f.pull)?;
    let (network, net) = super::network::for_create(&containers, &f.network, &f.net, &image)?;
    let mut env = Vec::new();
    for file in &f.env_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| fail(125, format!("open {}: {e}", file.display())))?;
        env.extend(
            parse_env_file(&text, host_env)
                .map_err(|e| fail(125, format!("{}: {e}", file.display())))?,
        );
    }
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
    };
    let process = rimg::runtime::ProcessSpec::for_image(&image.config.config, overrides)
        .map_err(|e| fail(125, e.to_string()))?;
    let c = containers
        .create(CreateRequest {
            image,
            image_name: f.image,
            name: f.name,
            process,
            auto_remove: f.rm,
            net,
        })
        .map_err(|e| fail(125, rimg::error_line(&e)))?;
    Ok((containers, c))
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
fn start_detached(ctx: &Ctx, c: &Container) -> Result<()> {
    let exe = std::env::current_exe().context("locating the rimg binary")?;
    let log = File::create(c.dir().join("monitor.log"))
        .with_context(|| format!("creating {}", c.dir().join("monitor.log").display()))?;
    let mut child = Command::new(exe)
        .arg("--root")
        .arg(ctx.root())
        .arg("__monitor")
        .arg(c.id())
        .stdin(ProcStdio::null())
        .stdout(ProcStdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the container's monitor")?;
    let mut line = String::new();
    if let Some(o) = child.stdout.take() {
        BufReader::new(o).read_line(&mut line)?;
    }
    let _ = child.wait();
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
        if c.status().is_running() {
            outln(name)?;
            continue;
        }
        if c.status() == Status::Dead {
            c.clean_up_after_monitor()?;
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
    match run_container(&containers, &mut c, false, &mut report) {
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
        Status::Dead => "Dead".into(),
    }
}

fn ps_json(c: &Container, trunc: bool) -> Value {
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
        "Size": "0B",
        "State": c.status().word(),
        "Status": status_text(c),
    })
}

/// `rimg ps`.
pub fn ps(ctx: &Ctx, a: PsArgs) -> Result<u8> {
    let containers = containers(ctx)?;
    let list: Vec<Container> = containers
        .list()?
        .into_iter()
        .filter(|c| a.all || c.status().is_running())
        .collect();
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
        let mut s = String::new();
        for c in &list {
            let v = ps_json(c, trunc);
            if fmt == "json" {
                s.push_str(&serde_json::to_string(&v)?);
            } else {
                s.push_str(&apply_template(fmt, &v)?);
            }
            s.push('\n');
        }
        return out(&s).map(|_| 0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let v = ps_json(c, trunc);
            [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ]
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
        ],
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
    let entries = reader.read_all()?;
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print_entry(e, a.timestamps)?;
    }
    if a.follow {
        loop {
            let running = c.monitor_alive() || c.live_pid().is_some();
            while let Some(e) = reader.next_entry()? {
                print_entry(&e, a.timestamps)?;
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

fn parse_signal(s: &str) -> Result<Signal> {
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
fn stop_one(c: &mut Container, timeout: Duration) -> Result<()> {
    match c.status() {
        Status::Running | Status::Paused => {
            let sig = c
                .config
                .stop_signal
                .as_deref()
                .map(parse_signal)
                .transpose()?
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
            c.clean_up_after_monitor()?;
        }
        Status::Dead => c.clean_up_after_monitor()?,
        Status::Created | Status::Exited(_) => {}
    }
    Ok(())
}

fn for_each(
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
    let t = Duration::from_secs(a.time);
    for_each(ctx, &a.containers, |_, c| stop_one(c, t))
}

/// `rimg kill`.
pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<u8> {
    let sig = parse_signal(&a.signal)?;
    for_each(ctx, &a.containers, |_, c| {
        if !c.status().is_running() {
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
        if c.status().is_running() {
            if !a.force {
                return Err(rimg::container::ContainerError::Running(c.name().to_string()).into());
            }
            if c.status() == Status::Paused {
                c.unpause()?;
            }
            let _ = c.signal(Signal::SIGKILL);
            c.wait_stopped(Duration::from_secs(10));
        }
        c.clean_up_after_monitor()?;
        Ok(containers.remove(c)?)
    })
}

/// `rimg exec`.
pub fn exec(ctx: &Ctx, a: ExecArgs) -> Result<u8> {
    let containers = containers(ctx)?;
    let c = containers.resolve(&a.container)?;
    let pid = match (c.status(), c.live_pid()) {
        (Status::Running, Some(pid)) => pid,
        (Status::Paused, _) => bail!(
            "container {} is paused, unpause the container before exec",
            c.id()
        ),
        _ => bail!("container {} is not running", c.id()),
    };
    let mut spec = c.process().clone();
    spec.argv = a.command;
    spec.tty = a.tty;
    spec.interactive = a.interactive;
    if let Some(u) = a.user {
        spec.user = u;
    }
    if let Some(w) = a.workdir {
        spec.cwd = w;
    }
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
