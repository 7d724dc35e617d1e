//! The everyday container verbs beyond run/ps/stop: `rename`, `wait`, `restart`,
//! `container prune`, `system prune`, `cp`, `export`, `top`. Flags and printing here; the
//! work is in `rimg::container` and `rimg::prune`.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rimg::container::cp::{copy, CopyDest, CopySource, CpOptions};
use rimg::container::filter::{parse_time, rfc3339_secs, PruneFilter, PsFilter};
use rimg::container::log::LogEntry;
use rimg::container::{Container, Containers};
use rimg::prune::{system_prune, warning_lines, SystemPrune};
use rimg::runtime::env::parse_env_file;
use rimg::runtime::{spawn, Launch, ProcessSpec, Stdio as RtStdio, Target};
use rimg::units::{human_size, now_unix};

use super::containers::{
    containers, fail, for_each, host_env, parse_signal, start_detached, stop_one, StopArgs,
};
use super::images::{deleted_section, reclaimed_line};
use super::{confirm, out, outln, Ctx};

/// Flags of `rimg rename`.
#[derive(Args)]
pub struct RenameArgs {
    /// The container (name or id).
    pub container: String,
    /// Its new name.
    pub new_name: String,
}

/// `rimg rename OLD NEW`.
pub fn rename(ctx: &Ctx, a: RenameArgs) -> Result<u8> {
    containers(ctx)?
        .rename(&a.container, &a.new_name)
        .map_err(|e| fail(1, rimg::error_line(&e)))?;
    Ok(0)
}

/// Flags of `rimg wait`.
#[derive(Args)]
pub struct WaitArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `rimg wait`: blocks until each container stops and prints its exit code, one per line.
pub fn wait(ctx: &Ctx, a: WaitArgs) -> Result<u8> {
    let all = containers(ctx)?;
    let mut failed = false;
    for name in &a.containers {
        match all.resolve(name).and_then(|mut c| c.wait_exit()) {
            Ok(code) => outln(&code.to_string())?,
            Err(e) => {
                eprintln!("Error: {}", rimg::error_line(&e));
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `rimg restart`: stops each container (as `stop`), then starts it detached.
pub fn restart(ctx: &Ctx, a: StopArgs) -> Result<u8> {
    let sig = a.signal.as_deref().map(parse_signal).transpose()?;
    for_each(ctx, &a.containers, |_, c| {
        stop_one(c, super::init_flags::stop_timeout(a.time, c), sig)?;
        c.reload()?;
        start_detached(ctx, c)
    })
}

/// Flags of `rimg container prune`.
#[derive(Args)]
pub struct ContainerPruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// `until=TIME` (created before), `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`.
    #[arg(long)]
    pub filter: Vec<String>,
}

fn prune_filter(args: &[String]) -> Result<PruneFilter> {
    PruneFilter::parse(args, now_unix() as f64).map_err(|e| fail(125, e.to_string()))
}

/// `rimg container prune`: removes stopped containers.
pub fn container_prune(ctx: &Ctx, a: ContainerPruneArgs) -> Result<u8> {
    let filter = prune_filter(&a.filter)?;
    if !a.force
        && !confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )?
    {
        return Ok(0);
    }
    let report = containers(ctx)?.prune(&filter)?;
    let mut s = deleted_section("Deleted Containers:", &report.deleted);
    s.push_str(&reclaimed_line(report.reclaimed));
    out(&s)?;
    Ok(0)
}

/// Flags of `rimg system prune`.
#[derive(Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Also remove volumes no container uses.
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// `until=TIME`, `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`.
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `rimg system prune`: stopped containers, unused images, build cache (and volumes).
pub fn system_prune_cmd(ctx: &Ctx, a: SystemPruneArgs) -> Result<u8> {
    let opts = SystemPrune {
        all: a.all,
        volumes: a.volumes,
        filter: prune_filter(&a.filter)?,
    };
    if !a.force {
        let mut q = String::from("WARNING! This will remove:\n");
        for l in warning_lines(&opts) {
            q.push_str(&format!("  - {l}\n"));
        }
        q.push_str("\nAre you sure you want to continue?");
        if !confirm(&q)? {
            return Ok(0);
        }
    }
    let images = ctx.images()?;
    let report = system_prune(&images, &opts)?;
    let mut s = deleted_section("Deleted Containers:", &report.containers.deleted);
    s.push_str(&deleted_section("Deleted Networks:", &report.networks));
    s.push_str(&deleted_section("Deleted Volumes:", &report.volumes));
    s.push_str(&deleted_section("Deleted Images:", &report.images.lines));
    s.push_str(&reclaimed_line(report.reclaimed()));
    out(&s)?;
    Ok(0)
}

/// The containers `ps` lists: running ones (every one with `-a`, `-n`, `-l`, or a
/// `status=`/`exited=` filter) that pass `--filter`, newest first, the first N with `-n`.
pub fn ps_select(containers: &Containers, a: &super::containers::PsArgs) -> Result<Vec<Container>> {
    let filter = PsFilter::parse(&a.filter).map_err(|e| fail(125, e.to_string()))?;
    let last = if a.latest { 1 } else { a.last };
    let all = a.all || last >= 0 || filter.lists_stopped();
    let mut list: Vec<Container> = containers
        .list()?
        .into_iter()
        .filter(|c| all || c.status().is_running())
        .filter(|c| filter.matches(c, containers))
        .collect();
    if let Ok(n) = usize::try_from(last) {
        list.truncate(n);
    }
    Ok(list)
}

/// The SIZE of `ps -s`: the upper dir's bytes and, as "virtual", those plus the image's
/// (Docker's `SizeRw` and `SizeRootFs`); `0B` without `-s`.
pub fn ps_size(ctx: &Ctx, wanted: bool) -> Result<impl Fn(&Container) -> String> {
    let images = if wanted { Some(ctx.images()?) } else { None };
    Ok(move |c: &Container| {
        let Some(images) = &images else {
            return "0B".to_string();
        };
        let rw = c.size_rw();
        let image = images
            .resolve(&c.image_id().to_string())
            .map_or(0, |i| i.size(images.store()));
        format!("{} (virtual {})", human_size(rw), human_size(rw + image))
    })
}

/// Flags of `rimg cp`.
#[derive(Args)]
pub struct CpArgs {
    /// Archive mode: keep the source's uid/gid.
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Follow a symlink named as the source.
    #[arg(short = 'L', long = "follow-link")]
    pub follow: bool,
    /// Suppress progress output (rimg prints none).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar on stdin).
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar on stdout).
    pub dest: String,
}

/// `CONTAINER:PATH` split; `None` for a host path (a path with a `/` before any `:`, or
/// none at all, is the host's, as Docker reads it).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.contains('/')).then_some((c, p))
}

/// `rimg cp`: files between a container and the host, or a tar stream.
pub fn cp(ctx: &Ctx, a: CpArgs) -> Result<u8> {
    let opts = CpOptions {
        archive: a.archive,
        follow: a.follow,
    };
    let (src, dst) = (container_path(&a.src), container_path(&a.dest));
    let (name, from_ctr) = match (src, dst) {
        (Some(_), Some(_)) => return Err(fail(1, "copying between containers is not supported")),
        (None, None) => return Err(fail(1, "must specify at least one container source")),
        (Some((c, _)), None) => (c, true),
        (None, Some((c, _))) => (c, false),
    };
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let c = containers.resolve(name)?;
    let root = c.open_rootfs(&images)?;
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let (from, to) = if from_ctr {
        let p = src.map_or("", |s| s.1);
        let to = match a.dest.as_str() {
            "-" => CopyDest::Tar(&mut stdout),
            d => CopyDest::Host(d),
        };
        (CopySource::Container(p), to)
    } else {
        let p = dst.map_or("", |s| s.1);
        let from = match a.src.as_str() {
            "-" => CopySource::Tar(&mut stdin),
            s => CopySource::Host(s),
        };
        (from, CopyDest::Container(p))
    };
    copy(root.path(), name, from, to, opts)?;
    stdout.flush()?;
    Ok(0)
}

/// Flags of `rimg export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// The container.
    pub container: String,
}

/// `rimg export`: the container's filesystem as a tar, to stdout or `-o FILE`.
pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<u8> {
    let images = ctx.images()?;
    let c = Containers::open(&images)?.resolve(&a.container)?;
    match &a.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            c.export(&images, io::BufWriter::new(file))?
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("writing {}", path.display()))?
                .sync_all()?;
        }
        None => {
            if io::stdout().is_terminal() {
                return Err(fail(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let out = c.export(&images, io::BufWriter::new(io::stdout().lock()))?;
            out.into_inner().map_err(|e| e.into_error())?.flush()?;
        }
    }
    Ok(0)
}

/// The `KEY=VALUE`s of `--env-file` files, in order (exit 125 for a file that cannot be
/// read or parsed, as Docker's).
pub fn env_files(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| fail(125, format!("open {}: {e}", file.display())))?;
        env.extend(
            parse_env_file(&text, host_env)
                .map_err(|e| fail(125, format!("{}: {e}", file.display())))?,
        );
    }
    Ok(env)
}

/// `exec -d`: starts the command in the container's namespaces with no terminal and its
/// output discarded, and returns at once; the container's pid 1 reaps it.
pub fn exec_detached(mut spec: ProcessSpec, pid: nix::unistd::Pid) -> Result<u8> {
    spec.tty = false;
    spec.interactive = false;
    spawn(&Launch {
        spec: &spec,
        target: Target::Join { pid: pid.as_raw() },
        stdin: RtStdio::Null,
        output: RtStdio::Null,
    })
    .map_err(|e| fail(e.exit_code(), rimg::error_line(&e)))?;
    Ok(0)
}

/// Whether a log entry is inside `--since`/`--until` (Docker's: since inclusive, until
/// exclusive; times as `rimg::container::filter::parse_time` reads them).
pub fn log_window(since: Option<&str>, until: Option<&str>) -> Result<impl Fn(&LogEntry) -> bool> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let parse = |flag: &str, v: Option<&str>| -> Result<Option<f64>> {
        v.map(|v| {
            parse_time(v, now).ok_or_else(|| {
                fail(
                    125,
                    format!("invalid value for \"{flag}\": failed to parse value as time or duration: \"{v}\""),
                )
            })
        })
        .transpose()
    };
    let since = parse("since", since)?;
    let until = parse("until", until)?;
    Ok(move |e: &LogEntry| {
        let t = rfc3339_secs(&e.time).unwrap_or(0.0);
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
    })
}

/// Flags of `rimg top`.
#[derive(Args)]
pub struct TopArgs {
    /// The container.
    pub container: String,
    /// Options for ps (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `rimg top`: the host's `ps` (with the given options, `-ef` by default), only the rows
/// of the container's processes, under ps's own header.
pub fn top(ctx: &Ctx, a: TopArgs) -> Result<u8> {
    let c = containers(ctx)?.resolve(&a.container)?;
    if !c.status().is_running() {
        return Err(fail(1, format!("container {} is not running", c.id())));
    }
    let pids: Vec<String> = c.processes().iter().map(|p| p.to_string()).collect();
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let ps = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !ps.status.success() {
        return Err(fail(
            1,
            format!("ps: {}", String::from_utf8_lossy(&ps.stderr).trim_end()),
        ));
    }
    let text = String::from_utf8_lossy(&ps.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        return Err(fail(
            1,
            format!("Couldn't find PID field in ps output: {header}"),
        ));
    };
    let mut s = format!("{header}\n");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .is_some_and(|p| pids.iter().any(|x| x == p))
        {
            s.push_str(l);
            s.push('\n');
        }
    }
    out(&s)?;
    Ok(0)
}
