//! The `fs` group: every workload on every variant of the same layer stack, in one run.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::dataset::{self, Dataset, FileSpec};
use crate::report::{num, Cell, Check, Report, Row};
use crate::sys;
use crate::variants::{self, Kind, Variant};
use crate::workloads as w;

/// How much to do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Timed repetitions of each workload (medians are reported).
    pub runs: usize,
    /// Mounts timed per variant.
    pub mounts: usize,
    /// Seconds per random-read measurement.
    pub rand_secs: f64,
    /// Use fio for random reads when installed.
    pub fio: bool,
    /// Files created by the create workload.
    pub create: usize,
    /// The variants to run (others are reported as not selected).
    pub only: Vec<Kind>,
    /// The rimgfs binary.
    pub rimgfs: PathBuf,
}

// Row indexes.
const MOUNT: usize = 0;
const SEQ_COLD: usize = 1;
const SEQ_WARM: usize = 2;
const RAND1: usize = 3;
const RAND2: usize = 4;
const WALK_COLD: usize = 5;
const WALK_WARM: usize = 6;
const SMALL_COLD: usize = 7;
const SMALL_WARM: usize = 8;
const COPY_MEDIUM: usize = 9;
const COPY_BIG: usize = 10;
const CREATE: usize = 11;

fn size_text(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

fn rows(ds: &Dataset, plan: &Plan, n: usize) -> Vec<Row> {
    let s = &ds.sizes;
    let small = dataset::small_files(s).len();
    let big = size_text(s.big);
    let rand_tool = if plan.fio && sys::have("fio") {
        "fio"
    } else {
        "built-in"
    };
    let overlay = Kind::ALL.iter().position(|k| *k == Kind::Overlay);
    let row = |key: &str, label: String, unit, higher_better, reference: usize, second| Row {
        key: key.into(),
        label,
        unit,
        higher_better,
        reference,
        second,
        cells: vec![Cell::Empty; n],
    };
    vec![
        // Native has no mount step: mount time is compared with kernel overlayfs.
        row(
            "mount",
            "mount time".into(),
            "ms",
            false,
            overlay.unwrap_or(0),
            None,
        ),
        row(
            "seq_cold",
            format!("sequential read {big}, cold"),
            "MB/s",
            true,
            0,
            None,
        ),
        row(
            "seq_warm",
            format!("sequential read {big}, warm"),
            "MB/s",
            true,
            0,
            None,
        ),
        row(
            "rand_1t",
            format!("random 4 KiB reads, 1 thread, warm ({rand_tool})"),
            "IOPS",
            true,
            0,
            None,
        ),
        row(
            "rand_2t",
            format!("random 4 KiB reads, 2 threads, warm ({rand_tool})"),
            "IOPS",
            true,
            0,
            None,
        ),
        row(
            "walk_cold",
            "metadata walk (readdir + lstat), cold".into(),
            "ms",
            false,
            0,
            overlay,
        ),
        row(
            "walk_warm",
            "metadata walk (readdir + lstat), warm".into(),
            "ms",
            false,
            0,
            overlay,
        ),
        row(
            "small_cold",
            format!("read {} small files, cold", num(small as f64)),
            "ms",
            false,
            0,
            None,
        ),
        row(
            "small_warm",
            format!("read {} small files, warm", num(small as f64)),
            "ms",
            false,
            0,
            None,
        ),
        row(
            "copy_up_medium",
            format!(
                "append 1 byte to a lower {} file (copy-up), cold",
                size_text(s.medium)
            ),
            "ms",
            false,
            0,
            None,
        ),
        row(
            "copy_up_big",
            format!("append 1 byte to the {big} lower file (copy-up), cold"),
            "ms",
            false,
            0,
            None,
        ),
        row(
            "create",
            format!("create {} files of 4 KiB", num(plan.create as f64)),
            "ms",
            false,
            0,
            None,
        ),
    ]
}

/// Runs the group and returns its report.
pub fn run(ds: &Dataset, plan: &Plan, run_dir: &Path, notes: Vec<String>) -> Result<Report> {
    let kinds = Kind::ALL;
    let mut report = Report {
        group: "fs",
        title: "rimg-bench fs: one layer stack, five ways".into(),
        variants: kinds.iter().map(|k| k.name().to_string()).collect(),
        notes,
        rows: rows(ds, plan, kinds.len()),
    };
    let files = dataset::merged_files(&ds.sizes);
    let small = dataset::small_files(&ds.sizes);
    let big = dataset::merged_file(&ds.sizes, dataset::BIG).context("the big file")?;
    let medium =
        dataset::merged_file(&ds.sizes, dataset::MEDIUM_COPY_UP).context("the medium file")?;

    // The reference listing: the native copy, checked against the generator first.
    crate::progress(format_args!(
        "checking the native copy against the generator"
    ));
    let (stats, _) = w::walk(&ds.native)?;
    let native_listing = w::listing(&stats, &[]);
    check_bench_tree(&native_listing, &files)?;

    let mut active: Vec<(usize, Variant)> = Vec::new();
    for (vi, kind) in kinds.iter().copied().enumerate() {
        if !plan.only.contains(&kind) {
            set_all(
                &mut report,
                vi,
                Cell::Skipped("not selected (--only)".into()),
            );
        } else if let Some(why) = variants::unavailable(kind, &plan.rimgfs) {
            crate::progress(format_args!("[{}] skipped: {why}", kind.name()));
            set_all(&mut report, vi, Cell::Skipped(why));
        } else {
            active.push((vi, Variant::new(kind, ds, run_dir, &plan.rimgfs)));
        }
    }
    let ctx = Ctx {
        plan,
        big: &big,
        medium: &medium,
        small: &small,
        native_listing: &native_listing,
    };
    // Phase by phase, and within a phase run by run, every variant in turn: on a busy machine
    // each variant's samples are taken under the same conditions as the others'.
    for (vi, v) in &mut active {
        if let Err(e) = v.reset() {
            fail(&mut report, *vi, v.kind, &e);
        }
    }
    for phase in Phase::ALL {
        let runs = match phase {
            Phase::Mount => plan.mounts,
            _ => plan.runs,
        };
        for run in 0..runs {
            for i in 0..active.len() {
                if failed(&report, active[i].0) {
                    continue;
                }
                if phase.drops_caches() {
                    // Both rimgfs variants map the same layer tars, and mapped pages survive a
                    // drop of the page cache: while one is measured cold, the other is down.
                    for (j, (vj, other)) in active.iter_mut().enumerate() {
                        if j != i && other.kind.maps_layers() {
                            if let Err(e) = other.unmount() {
                                fail(&mut report, *vj, other.kind, &e);
                            }
                        }
                    }
                }
                let (vi, v) = &mut active[i];
                if let Err(e) = step(&ctx, phase, run, v, &mut report.rows, *vi) {
                    fail(&mut report, *vi, v.kind, &e);
                }
            }
        }
        for (vi, v) in &mut active {
            if failed(&report, *vi) {
                continue;
            }
            // The checks read through the mount, which another variant's cold run took down.
            match v.mount() {
                Ok(_) => finish(&ctx, phase, v, &mut report.rows, *vi),
                Err(e) => fail(&mut report, *vi, v.kind, &e),
            }
        }
    }
    for (_, v) in &mut active {
        if let Err(e) = v.reset() {
            crate::progress(format_args!("[{}] cleaning up: {e:#}", v.kind.name()));
        }
    }
    Ok(report)
}

/// The workloads, grouped by what they need from the mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Mount,
    Seq,
    Rand,
    Walk,
    Small,
    Writes,
}

impl Phase {
    /// Whether the phase measures after dropping the page cache.
    fn drops_caches(self) -> bool {
        matches!(
            self,
            Phase::Seq | Phase::Walk | Phase::Small | Phase::Writes
        )
    }

    const ALL: [Phase; 6] = [
        Phase::Mount,
        Phase::Seq,
        Phase::Rand,
        Phase::Walk,
        Phase::Small,
        Phase::Writes,
    ];
}

fn failed(report: &Report, vi: usize) -> bool {
    report
        .rows
        .iter()
        .any(|r| matches!(r.cells[vi], Cell::Failed(_)))
}

/// Marks every cell of the variant not measured yet as failed.
fn fail(report: &mut Report, vi: usize, kind: Kind, e: &anyhow::Error) {
    crate::progress(format_args!("[{}] failed: {e:#}", kind.name()));
    for r in &mut report.rows {
        if matches!(r.cells[vi], Cell::Empty) {
            r.cells[vi] = Cell::Failed(format!("{e:#}"));
        }
    }
}

struct Ctx<'a> {
    plan: &'a Plan,
    big: &'a FileSpec,
    medium: &'a FileSpec,
    small: &'a [FileSpec],
    native_listing: &'a [String],
}

fn set_all(report: &mut Report, vi: usize, cell: Cell) {
    for r in &mut report.rows {
        r.cells[vi] = cell.clone();
    }
}

fn check_of(r: Result<()>) -> Check {
    match r {
        Ok(()) => Check::Ok,
        Err(e) => Check::Mismatch(format!("{e:#}")),
    }
}

/// The files under `bench/` in the listing are exactly the generator's merged view.
fn check_bench_tree(listing: &[String], files: &[FileSpec]) -> Result<()> {
    let got: Vec<&String> = listing
        .iter()
        .filter(|l| l.starts_with("bench/") && l.split(' ').nth(1) == Some("f"))
        .collect();
    let want: Vec<String> = files
        .iter()
        .map(|f| format!("{} f {} 644 0:0", f.path, f.content.len))
        .collect();
    if got.len() != want.len() || got.iter().zip(&want).any(|(a, b)| *a != b) {
        let diff = w::first_difference(&want, &got.into_iter().cloned().collect::<Vec<_>>());
        anyhow::bail!(
            "the data set's merged tree is not what the generator made ({}); delete the work dir",
            diff.unwrap_or_default()
        );
    }
    Ok(())
}

/// Run number `run` of `phase` on one variant.
fn step(
    c: &Ctx,
    phase: Phase,
    run: usize,
    v: &mut Variant,
    rows: &mut [Row],
    vi: usize,
) -> Result<()> {
    let name = v.kind.name();
    let say = |what: String| crate::progress(format_args!("[{name}] {what}"));
    let root = v.root();
    let big = root.join(&c.big.path);
    let runs = c.plan.runs;
    if phase != Phase::Mount {
        // Down if another variant was measured cold meanwhile.
        v.mount()?;
    }
    match phase {
        Phase::Mount if !v.kind.mounts() => {
            rows[MOUNT].cells[vi] = Cell::NotApplicable("nothing to mount".into());
        }
        Phase::Mount => {
            v.unmount()?;
            let t = v.mount()?.as_secs_f64() * 1000.0;
            rows[MOUNT].cells[vi].push(t);
            say(format!(
                "mount {}/{}: {} ms",
                run + 1,
                c.plan.mounts,
                num(t)
            ));
        }
        Phase::Seq => {
            cold_then_warm(
                v,
                rows,
                vi,
                (SEQ_COLD, SEQ_WARM),
                (run, runs),
                "sequential read",
                "MB/s",
                || {
                    let (n, t) = w::seq_read(&big)?;
                    Ok((n as f64 / t / 1e6, ()))
                },
            )?;
        }
        Phase::Rand => {
            // Warm the file, then measure right away.
            w::seq_read(&big)?;
            for (row, threads) in [(RAND1, 1), (RAND2, 2)] {
                let iops = if c.plan.fio && sys::have("fio") {
                    w::rand_fio(&big, threads, c.plan.rand_secs)?
                } else {
                    w::rand_builtin(&big, threads, c.plan.rand_secs)?
                };
                rows[row].cells[vi].push(iops);
                say(format!(
                    "random 4 KiB reads {}/{runs}, {threads} thread(s): {} IOPS",
                    run + 1,
                    num(iops)
                ));
            }
        }
        Phase::Walk => {
            let stats = cold_then_warm(
                v,
                rows,
                vi,
                (WALK_COLD, WALK_WARM),
                (run, runs),
                "metadata walk",
                "ms",
                || {
                    let (stats, t) = w::walk(&root)?;
                    Ok((t * 1000.0, stats))
                },
            )?;
            if run == 0 {
                let listing = w::listing(&stats, &[]);
                let ok = match w::first_difference(c.native_listing, &listing) {
                    None => Check::Ok,
                    Some(d) => Check::Mismatch(format!("the tree differs from native: {d}")),
                };
                rows[WALK_COLD].cells[vi].check(ok.clone());
                rows[WALK_WARM].cells[vi].check(ok);
            }
        }
        Phase::Small => {
            cold_then_warm(
                v,
                rows,
                vi,
                (SMALL_COLD, SMALL_WARM),
                (run, runs),
                "small files",
                "ms",
                || Ok((w::read_files(&root, c.small)? * 1000.0, ())),
            )?;
        }
        Phase::Writes if !v.kind.writable() => {
            for r in [COPY_MEDIUM, COPY_BIG, CREATE] {
                rows[r].cells[vi] = Cell::NotApplicable("read-only mount".into());
            }
        }
        Phase::Writes => {
            // A fresh upper dir and a cold cache for each run.
            v.reset()?;
            v.mount()?;
            sys::drop_caches()?;
            let tm = w::append_byte(&root, c.medium)? * 1000.0;
            let tb = w::append_byte(&root, c.big)? * 1000.0;
            rows[COPY_MEDIUM].cells[vi].push(tm);
            rows[COPY_BIG].cells[vi].push(tb);
            say(format!(
                "copy-up {}/{runs}: medium {} ms, big {} ms",
                run + 1,
                num(tm),
                num(tb)
            ));
            if run == 0 {
                rows[COPY_MEDIUM].cells[vi].check(check_of(w::check_appended(&root, c.medium)));
                rows[COPY_BIG].cells[vi].check(check_of(w::check_appended(&root, c.big)));
            }
            if v.kind == Kind::Native {
                restore(&root, c.medium)?;
                restore(&root, c.big)?;
            }
            let dir = root.join("bench-create");
            let t = w::create_files(&dir, c.plan.create)? * 1000.0;
            rows[CREATE].cells[vi].push(t);
            say(format!(
                "create {} files {}/{runs}: {} ms",
                c.plan.create,
                run + 1,
                num(t)
            ));
            if run == 0 {
                rows[CREATE].cells[vi].check(check_of(w::check_created(&dir, c.plan.create)));
            }
            if v.kind == Kind::Native {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// The untimed byte checks after a phase's runs.
fn finish(c: &Ctx, phase: Phase, v: &Variant, rows: &mut [Row], vi: usize) {
    let root = v.root();
    let big = root.join(&c.big.path);
    match phase {
        Phase::Seq => {
            crate::progress(format_args!(
                "[{}] checking the big file's sha256",
                v.kind.name()
            ));
            let ok = check_of(w::check_file(&root, c.big));
            rows[SEQ_COLD].cells[vi].check(ok.clone());
            rows[SEQ_WARM].cells[vi].check(ok);
        }
        Phase::Rand => {
            let ok = check_of(w::check_random_blocks(&big, c.big, 1024));
            rows[RAND1].cells[vi].check(ok.clone());
            rows[RAND2].cells[vi].check(ok);
        }
        Phase::Small => {
            let ok = check_of(w::check_files(&root, c.small));
            rows[SMALL_COLD].cells[vi].check(ok.clone());
            rows[SMALL_WARM].cells[vi].check(ok);
        }
        Phase::Mount | Phase::Walk | Phase::Writes => {}
    }
}

/// Remounts, drops the page cache, runs `op` cold, then again at once, warm (the cold pass is
/// the warming pass). `op` returns a sample in the rows' unit; the samples go to the rows
/// `cold` and `warm`. Returns what the warm pass returned.
#[allow(clippy::too_many_arguments)]
fn cold_then_warm<T>(
    v: &mut Variant,
    rows: &mut [Row],
    vi: usize,
    (cold, warm): (usize, usize),
    (run, runs): (usize, usize),
    what: &str,
    unit: &str,
    mut op: impl FnMut() -> Result<(f64, T)>,
) -> Result<T> {
    v.remount()?;
    sys::drop_caches()?;
    let (c, _) = op()?;
    let (w, out) = op()?;
    rows[cold].cells[vi].push(c);
    rows[warm].cells[vi].push(w);
    crate::progress(format_args!(
        "[{}] {what} {}/{runs}: cold {} {unit}, warm {} {unit}",
        v.kind.name(),
        run + 1,
        num(c),
        num(w)
    ));
    Ok(out)
}

/// Undoes the append on the native copy.
fn restore(root: &Path, spec: &FileSpec) -> Result<()> {
    let p = root.join(&spec.path);
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_len(spec.content.len))
        .with_context(|| format!("truncating {} back", p.display()))
}

/// The goals of DESIGN.md, as lines saying where rimgfs stands.
pub fn goals(report: &Report) -> Vec<String> {
    let idx = |name: &str| report.variants.iter().position(|v| v == name);
    let (Some(native), Some(overlay), Some(fuse), Some(rimgfs)) = (
        idx("native"),
        idx("overlayfs"),
        idx("fuse-overlayfs"),
        idx("rimgfs"),
    ) else {
        return Vec::new();
    };
    let r = &report.rows;
    let mut out = Vec::new();
    let mut goal = |what: &str,
                    value: Option<f64>,
                    pass: &dyn Fn(f64) -> bool,
                    fmt: &dyn Fn(f64) -> String| {
        let line = match value {
            Some(v) => format!(
                "{what}: {} — {}",
                fmt(v),
                if pass(v) { "met" } else { "NOT met" }
            ),
            None => format!("{what}: not measured"),
        };
        out.push(line);
    };
    let x = |v: f64| format!("{v:.2}×");
    goal(
        "warm sequential read ≥ 0.95× native",
        r[SEQ_WARM].ratio(rimgfs, native),
        &|v| v >= 0.95,
        &x,
    );
    goal(
        "cold sequential read ≥ 0.7× native",
        r[SEQ_COLD].ratio(rimgfs, native),
        &|v| v >= 0.7,
        &x,
    );
    let ahead = |row: usize| match (r[row].cells[rimgfs].median(), r[row].cells[fuse].median()) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    goal(
        "cold sequential read ahead of fuse-overlayfs",
        ahead(SEQ_COLD),
        &|v| v > 1.0,
        &|v| format!("{v:.2}× fuse-overlayfs"),
    );
    goal(
        "warm random 4 KiB reads ahead of fuse-overlayfs",
        ahead(RAND1),
        &|v| v > 1.0,
        &|v| format!("{v:.2}× fuse-overlayfs (1 thread)"),
    );
    goal(
        "metadata walk warm ≤ 1.2× kernel overlayfs",
        r[WALK_WARM].ratio(rimgfs, overlay),
        &|v| v <= 1.2,
        &x,
    );
    goal(
        "metadata walk cold ≤ 2× kernel overlayfs",
        r[WALK_COLD].ratio(rimgfs, overlay),
        &|v| v <= 2.0,
        &x,
    );
    goal(
        "mount < 50 ms",
        r[MOUNT].cells[rimgfs].median(),
        &|v| v < 50.0,
        &|v| format!("{v:.1} ms"),
    );
    out
}
