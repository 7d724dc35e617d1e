//! `rimgfs`: mounts an image as a lazy union of its stored tar layers (read-only FUSE),
//! with a kernel overlayfs copy-on-write upper directory on top.

#[path = "../shared.rs"]
mod shared;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use nix::sys::signal::{SigSet, Signal};

use rimg::image::Images;
use rimg::mount::{self, MountRecord, MountRequest, MountState, Stacks};
use rimg::table;
use rimg_fs::overlay;

#[derive(Subcommand)]
enum Command {
    /// Mount IMAGE at MOUNTPOINT: its layers as a read-only union, writes going to an upper dir.
    Mount(MountArgs),
    /// Unmount a rimgfs mount (both layers; also when its daemon is gone).
    #[command(alias = "unmount")]
    Umount {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// List the mounts rimgfs serves.
    Ls,
}

#[derive(clap::Args)]
struct MountArgs {
    /// The copy-on-write upper directory (default: a fresh one under the store).
    #[arg(long, value_name = "DIR")]
    upper: Option<PathBuf>,
    /// The overlay work directory (default: beside the upper directory).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Mount only the read-only layer stack, without an upper directory.
    #[arg(long)]
    read_only: bool,
    /// Stay in the foreground serving the mount until it is unmounted or interrupted.
    #[arg(long, short = 'f')]
    foreground: bool,
    /// Mount options: allow_other, suid, dev (comma-separated).
    #[arg(short = 'o', value_name = "OPTIONS", value_delimiter = ',')]
    options: Vec<String>,
    /// FUSE worker threads (default: one per CPU, at most 4).
    #[arg(long, default_value_t = 0, hide = true)]
    threads: usize,
    /// Benchmark knobs: ttl=SECS,no_open=0|1,read_ahead_kb=KB.
    #[arg(long, hide = true, value_name = "KEY=VAL,...")]
    tune: Option<String>,
    /// The image: name[:tag], id or id prefix.
    image: String,
    /// Where to mount it (an existing directory).
    mountpoint: PathBuf,
}

fn open(root: &Path) -> Result<Images> {
    Images::open(root).with_context(|| format!("opening store {}", root.display()))
}

fn mount_request(a: &MountArgs) -> Result<MountRequest> {
    let mut req = MountRequest {
        image: a.image.clone(),
        mountpoint: a.mountpoint.clone(),
        upper: a.upper.clone(),
        work: a.work.clone(),
        read_only: a.read_only,
        threads: a.threads,
        tuning: a.tune.clone(),
        ..Default::default()
    };
    // Refuse a bad --tune before anything is mounted.
    req.fuse_options("")?;
    for o in &a.options {
        match o.as_str() {
            "allow_other" => req.allow_other = true,
            "suid" => req.suid = true,
            "dev" => req.dev = true,
            "" => {}
            other => bail!("unknown mount option {other:?} (supported: allow_other, suid, dev)"),
        }
    }
    if a.read_only && (a.upper.is_some() || a.work.is_some()) {
        bail!("--read-only mounts have no upper directory: drop --upper/--work");
    }
    Ok(req)
}

fn cmd_mount(root: &Path, a: MountArgs) -> Result<()> {
    let req = mount_request(&a)?;
    let images = open(root)?;
    if a.foreground {
        return mount_foreground(&images, &req);
    }
    // The daemon outlives this process: `rimgfs umount` takes the stack down.
    let rec = Stacks::new(&images).mount(&req)?.keep();
    if rec.fresh_upper {
        if let Some(u) = &rec.upper {
            println!("{}", u.display());
        }
    }
    Ok(())
}

/// `--foreground`: serve in this process; SIGINT/SIGTERM/SIGHUP (or `rimgfs umount`)
/// unmount and return.
fn mount_foreground(images: &Images, req: &MountRequest) -> Result<()> {
    let stacks = Stacks::new(images);
    let rec = stacks.prepare(req)?;
    // Block the signals before the FUSE threads start, so only our waiter sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;
    let opts = req.fuse_options(&rec.id)?;
    let target = rec.fuse_target().to_path_buf();
    let result = mount::serve(images, &rec.image_id, &target, &opts, || {
        stacks.stack(&rec, req)?;
        if rec.fresh_upper {
            if let Some(u) = &rec.upper {
                println!("{}", u.display());
            }
        }
        let (mp, tgt, writable) = (rec.mountpoint.clone(), target.clone(), rec.lower.is_some());
        std::thread::spawn(move || {
            if signals.wait().is_ok() {
                if writable {
                    let _ = overlay::unmount(&mp, true);
                }
                let _ = overlay::unmount(&tgt, true);
            }
        });
        Ok(())
    });
    stacks.finished(&rec);
    Ok(result?)
}

fn cmd_umount(root: &Path, mountpoint: &Path) -> Result<()> {
    let images = open(root)?;
    Stacks::new(&images).unmount(mountpoint)?;
    Ok(())
}

fn cmd_ls(root: &Path) -> Result<()> {
    let images = open(root)?;
    let mut rows = Vec::new();
    for (rec, state) in Stacks::new(&images).list()? {
        let status = match state {
            MountState::Mounted => "mounted",
            MountState::DaemonDead => "daemon dead (rimgfs umount to recover)",
            MountState::Incomplete => "incomplete (rimgfs umount to clean up)",
            MountState::Gone => continue,
        };
        rows.push(vec![
            rec.image.clone(),
            rec.mountpoint.display().to_string(),
            upper_shown(&rec),
            rec.pid.to_string(),
            status.to_string(),
        ]);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(
        table::render(&["IMAGE", "MOUNTPOINT", "UPPER", "PID", "STATUS"], &rows).as_bytes(),
    )?;
    Ok(())
}

fn upper_shown(rec: &MountRecord) -> String {
    match &rec.upper {
        Some(u) => u.display().to_string(),
        None => "(read-only)".to_string(),
    }
}

fn run(cli: shared::Cli<Command>) -> Result<()> {
    let root = cli.store.dir();
    match cli.command {
        Command::Mount(a) => cmd_mount(&root, a),
        Command::Umount { mountpoint } => cmd_umount(&root, &mountpoint),
        Command::Ls => cmd_ls(&root),
    }
}

fn main() -> ExitCode {
    let cli = shared::Cli::<Command>::parse_as(
        "rimgfs",
        "Mount container images straight from their stored tar layers",
    );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            shared::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
