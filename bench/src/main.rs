//! rimg-bench: layer read performance of rimgfs against the same layer stack on the native
//! filesystem, under kernel overlayfs and under fuse-overlayfs (`--group fs`), and rimg's
//! commands against podman's (`--group cli`). Progress goes to stderr, the table to stdout,
//! and CSV, Markdown and an SVG chart to `--out`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

mod cli_group;
mod content;
mod dataset;
mod fs_group;
mod report;
mod sys;
mod variants;
mod workloads;

use variants::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Group {
    /// Layer reads: native, kernel overlayfs, fuse-overlayfs, rimgfs, rimgfs --read-only.
    Fs,
    /// Commands: rimg against podman (import, save, run, commit, diff, build).
    Cli,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    Native,
    Overlayfs,
    FuseOverlayfs,
    Rimgfs,
    RimgfsRo,
}

impl Only {
    fn kind(self) -> Kind {
        match self {
            Only::Native => Kind::Native,
            Only::Overlayfs => Kind::Overlay,
            Only::FuseOverlayfs => Kind::FuseOverlay,
            Only::Rimgfs => Kind::Rimgfs,
            Only::RimgfsRo => Kind::RimgfsRo,
        }
    }
}

/// Benchmarks rimg's layer reads and commands on this machine. Needs root (mounts, dropping
/// the page cache). scripts/bench.sh installs the tools, builds, and runs this.
#[derive(Parser, Debug)]
#[command(name = "rimg-bench", version, args_override_self = true)]
struct Args {
    /// Small data set, one run of each workload, a few seconds per variant: checks that every
    /// variant works and reads the right bytes (exits non-zero otherwise). Numbers mean little.
    #[arg(long)]
    quick: bool,
    /// Which comparison to run.
    #[arg(long, value_enum, default_value = "fs")]
    group: Group,
    /// Where the CSV, Markdown table and SVG chart go.
    #[arg(long, default_value = "rimg-bench-results")]
    out: PathBuf,
    /// Where the data set (about 4× its 1.6 GiB plus the base), mounts and stores are kept;
    /// reruns reuse the data set. Must be on a disk filesystem (not tmpfs) for cold reads.
    #[arg(long, env = "RIMG_BENCH_WORK", default_value = "/var/tmp/rimg-bench")]
    work: PathBuf,
    /// Timed repetitions of each workload; medians are reported [default: 3, 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Run only these variants (comma-separated); the others show as not selected.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Only>,
    /// Seconds per random-read measurement [default: 5, 1 with --quick].
    #[arg(long)]
    rand_seconds: Option<f64>,
    /// Use the built-in random reader even when fio is installed.
    #[arg(long)]
    no_fio: bool,
    /// Base layer tar (uncompressed) instead of looking for the Debian image.
    #[arg(long)]
    base_tar: Option<PathBuf>,
    /// The image used as the base when it is in the store at --base-root.
    #[arg(long, default_value = "node:latest")]
    base_image: String,
    /// The store to look for --base-image in [default: $RIMG_ROOT, else /var/lib/rimg].
    #[arg(long)]
    base_root: Option<PathBuf>,
    /// The rimgfs binary [default: beside rimg-bench].
    #[arg(long)]
    rimgfs: Option<PathBuf>,
    /// The rimg binary [default: beside rimg-bench].
    #[arg(long)]
    rimg: Option<PathBuf>,
    /// A note printed under the heading and saved with the results (e.g. "machine busy").
    #[arg(long)]
    note: Vec<String>,
}

/// A progress line on stderr.
pub fn progress(args: std::fmt::Arguments) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "rimg-bench: {args}");
}

fn beside_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .map(|p| p.with_file_name(name))
        .unwrap_or_else(|_| PathBuf::from(name))
}

/// Now, to the minute: `2026-11-22 23:32 UTC`.
fn utc_now() -> String {
    let t = rimg::units::rfc3339(rimg::units::now_unix());
    let minute = t.get(..16).unwrap_or(&t).replacen('T', " ", 1);
    format!("{minute} UTC")
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the chosen group; Ok(false) when a variant read wrong bytes or a workload failed.
fn run(args: &Args) -> Result<bool> {
    if !sys::is_root() {
        bail!("rimg-bench needs root: it mounts overlayfs and FUSE and drops the page cache");
    }
    fs::create_dir_all(&args.work).with_context(|| format!("creating {}", args.work.display()))?;
    let work = args.work.canonicalize()?;
    let run_dir = work.join("run");
    // Mounts left by an interrupted run.
    sys::unmount_under(&run_dir)?;
    let base_root = args
        .base_root
        .clone()
        .or_else(|| std::env::var_os("RIMG_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/rimg"));
    let base = dataset::choose_base(
        args.base_tar.as_deref(),
        &args.base_image,
        &base_root,
        args.quick,
    )?;
    if let Some(n) = &base.fallback_note {
        progress(format_args!("note: {n}"));
    }
    let mut notes = vec![format!("{} — {}", utc_now(), sys::machine(&work))];
    notes.push(format!(
        "base: {}{}",
        base.describe,
        if base.fallback_note.is_some() {
            " (Debian image not found: fallback)"
        } else {
            ""
        }
    ));
    if args.quick {
        notes.push("--quick: small data set, one run; a smoke test, not a measurement".into());
    }
    notes.extend(args.note.iter().cloned());
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let report = match args.group {
        Group::Fs => {
            let ds = dataset::prepare(&work, args.quick, base)?;
            let mut tools = Vec::new();
            for (p, a) in [("fuse-overlayfs", "--version"), ("fio", "--version")] {
                if let Some(v) = sys::version(p, a) {
                    tools.push(v);
                }
            }
            notes.push(format!(
                "{} runs (median), cold = remount + drop_caches; {}",
                runs,
                tools.join(", ")
            ));
            let plan = fs_group::Plan {
                runs,
                mounts: if args.quick { 3 } else { 5 },
                rand_secs: args
                    .rand_seconds
                    .unwrap_or(if args.quick { 1.0 } else { 5.0 }),
                fio: !args.no_fio,
                create: 1000,
                only: if args.only.is_empty() {
                    Kind::ALL.to_vec()
                } else {
                    args.only.iter().map(|o| o.kind()).collect()
                },
                rimgfs: args.rimgfs.clone().unwrap_or_else(|| beside_me("rimgfs")),
            };
            fs::create_dir_all(&run_dir)?;
            fs_group::run(&ds, &plan, &run_dir, notes)?
        }
        Group::Cli => {
            let cli_dir = work.join("cli");
            fs::create_dir_all(&cli_dir)?;
            let busybox_tar = cli_dir.join("busybox.tar");
            dataset::write_busybox_tar(&busybox_tar)?;
            let tar = match &base.base {
                dataset::Base::Tars(t) if t.len() == 1 => t[0].clone(),
                _ => busybox_tar.clone(),
            };
            if let Some(v) = sys::version("podman", "--version") {
                notes.push(format!("{runs} runs (median), alternating; {v}"));
            }
            let plan = cli_group::Plan {
                runs,
                rimg: args.rimg.clone().unwrap_or_else(|| beside_me("rimg")),
                tar,
                busybox_tar,
            };
            cli_group::run(&plan, &cli_dir.join("stores"), notes)?
        }
    };
    let mut text = report.text();
    if args.group == Group::Fs {
        let goals = fs_group::goals(&report);
        if !goals.is_empty() {
            text.push_str("\nrimgfs against the goals (DESIGN.md):\n");
            for g in goals {
                text.push_str(&format!("  {g}\n"));
            }
        }
    }
    print!("{text}");
    save(&args.out, &report, &text)?;
    let problems = report.problems();
    for p in &problems {
        eprintln!("Error: {p}");
    }
    Ok(problems.is_empty())
}

fn save(out: &Path, report: &report::Report, text: &str) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let g = report.group;
    let files = [
        (format!("{g}.csv"), report.csv()),
        (format!("{g}.md"), format!("{}\n", report.markdown())),
        (format!("{g}.svg"), report.svg()),
        (format!("{g}.txt"), text.to_string()),
    ];
    for (name, body) in files {
        let p = out.join(&name);
        fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
    }
    progress(format_args!(
        "results in {}/{g}.{{csv,md,svg,txt}}",
        out.display()
    ));
    Ok(())
}
