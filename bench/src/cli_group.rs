//! The `cli` group: the same piece of work done by a `rimg` command and by its peer (podman,
//! skopeo), each in a private store, alternating, wall time of each run.
//!
//! To add a comparison, add a [`Case`] to [`CASES`]: two shell command lines run by `sh -c`
//! with these variables set —
//! `$RIMG` (the rimg binary; `$RIMG_ROOT` is its private store), `$PODMAN` (podman with a
//! private root, runroot and overlay storage), `$SKOPEO`, `$TAR` (the base rootfs tar: Debian
//! when available, else busybox), `$BUSYBOX_TAR` (a small busybox rootfs tar) and `$WORK` (a
//! scratch dir). A case whose rimg subcommand does not exist (yet) is reported as skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::report::{Cell, Report, Row};
use crate::sys;

/// One command-level comparison.
pub struct Case {
    /// Row name.
    pub name: &'static str,
    /// The rimg subcommand it needs (`rimg SUB --help` must succeed), e.g. "run".
    pub needs: &'static str,
    /// Whether each run starts from empty stores (import), or from stores set up once.
    pub fresh: bool,
    /// Run once in both stores before the timed runs (e.g. import the busybox image).
    pub setup_rimg: &'static str,
    /// Same for the peer.
    pub setup_peer: &'static str,
    /// The timed rimg command line.
    pub rimg: &'static str,
    /// The timed peer command line.
    pub peer: &'static str,
}

const BUSYBOX_RIMG: &str =
    r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null"#;
const BUSYBOX_PODMAN: &str =
    r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null"#;

/// The comparisons, in table order.
pub const CASES: &[Case] = &[
    Case {
        name: "import rootfs tar",
        needs: "import",
        fresh: true,
        setup_rimg: "",
        setup_peer: "",
        rimg: r#"$RIMG import "$TAR" bench:import"#,
        peer: r#"$PODMAN import "$TAR" bench:import"#,
    },
    Case {
        name: "save docker-archive",
        needs: "save",
        fresh: false,
        setup_rimg: r#"$RIMG import "$TAR" bench:save >/dev/null"#,
        setup_peer: r#"$PODMAN import "$TAR" bench:save >/dev/null"#,
        rimg: r#"$RIMG save -o "$WORK/rimg-save.tar" bench:save"#,
        peer: r#"rm -f "$WORK/podman-save.tar"; $PODMAN save -o "$WORK/podman-save.tar" bench:save"#,
    },
    Case {
        name: "run --rm busybox true",
        needs: "run",
        fresh: false,
        setup_rimg: BUSYBOX_RIMG,
        setup_peer: BUSYBOX_PODMAN,
        rimg: "$RIMG run --rm busybox true",
        peer: "$PODMAN run --rm --network=host --ulimit host busybox true",
    },
    Case {
        name: "run --rm busybox true, seccomp=unconfined",
        needs: "run",
        fresh: false,
        setup_rimg: BUSYBOX_RIMG,
        setup_peer: BUSYBOX_PODMAN,
        rimg: "$RIMG run --rm --security-opt seccomp=unconfined busybox true",
        peer: "$PODMAN run --rm --network=host --ulimit host --security-opt seccomp=unconfined busybox true",
    },
    Case {
        name: "restart a running container",
        needs: "restart",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG run -d --name rs busybox sleep 100000 >/dev/null"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN run -d --name rs --network=host --ulimit host busybox sleep 100000 >/dev/null"#,
        rimg: "$RIMG restart -t 0 rs >/dev/null",
        peer: "$PODMAN restart -t 0 rs >/dev/null",
    },
    Case {
        name: "cp 100 MB into a container",
        needs: "cp",
        fresh: false,
        setup_rimg: r#"head -c 100000000 /dev/urandom > "$WORK/big" && $RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG create --name cpi busybox true >/dev/null"#,
        setup_peer: r#"head -c 100000000 /dev/urandom > "$WORK/big" && $PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN create --name cpi --network=host --ulimit host busybox true >/dev/null"#,
        rimg: r#"$RIMG cp "$WORK/big" cpi:/big"#,
        peer: r#"$PODMAN cp "$WORK/big" cpi:/big"#,
    },
    Case {
        name: "cp 100 MB out of a container",
        needs: "cp",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG run --name cpo busybox sh -c 'head -c 100000000 /dev/urandom > /big' >/dev/null"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN run --name cpo --network=host --ulimit host busybox sh -c 'head -c 100000000 /dev/urandom > /big' >/dev/null"#,
        rimg: r#"rm -f "$WORK/out-rimg"; $RIMG cp cpo:/big "$WORK/out-rimg""#,
        peer: r#"rm -f "$WORK/out-podman"; $PODMAN cp cpo:/big "$WORK/out-podman""#,
    },
    Case {
        name: "stats --no-stream",
        needs: "stats",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG run -d --name st busybox sleep 100000 >/dev/null"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN run -d --name st --network=host --ulimit host busybox sleep 100000 >/dev/null"#,
        rimg: "$RIMG stats --no-stream >/dev/null",
        peer: "$PODMAN stats --no-stream >/dev/null",
    },
    Case {
        name: "inspect a container",
        needs: "inspect",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG create --name in busybox true >/dev/null"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN create --name in --network=host --ulimit host busybox true >/dev/null"#,
        rimg: "$RIMG inspect in >/dev/null",
        peer: "$PODMAN inspect in >/dev/null",
    },
    Case {
        name: "ps -a with 50 containers",
        needs: "ps",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && for i in $(seq 50); do $RIMG create --name ps$i busybox true >/dev/null || exit 1; done"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && for i in $(seq 50); do $PODMAN create --name ps$i --network=host --ulimit host busybox true >/dev/null || exit 1; done"#,
        rimg: "$RIMG ps -a >/dev/null",
        peer: "$PODMAN ps -a >/dev/null",
    },
    Case {
        name: "commit a container (10 MB changed)",
        needs: "commit",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG run --name c busybox sh -c 'head -c 10000000 /dev/urandom > /data' >/dev/null"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN run --name c --network=host --ulimit host busybox sh -c 'head -c 10000000 /dev/urandom > /data' >/dev/null"#,
        rimg: "$RIMG commit c bench:committed",
        peer: "$PODMAN commit -q c bench:committed",
    },
    Case {
        name: "diff a container",
        needs: "diff",
        fresh: false,
        setup_rimg: r#"$RIMG import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $RIMG run --name d busybox sh -c 'mkdir /many && cd /many && for i in $(seq 1000); do echo $i > f$i; done' >/dev/null"#,
        setup_peer: r#"$PODMAN import -c 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null && $PODMAN run --name d --network=host --ulimit host busybox sh -c 'mkdir /many && cd /many && for i in $(seq 1000); do echo $i > f$i; done' >/dev/null"#,
        rimg: "$RIMG diff d",
        peer: "$PODMAN diff d",
    },
    Case {
        name: "build (COPY + RUN), no cache",
        needs: "build",
        fresh: true,
        setup_rimg: BUSYBOX_RIMG,
        setup_peer: BUSYBOX_PODMAN,
        rimg: r#"$RIMG build -t bench:built "$WORK/context""#,
        peer: r#"$PODMAN build -q --network=host -t bench:built "$WORK/context""#,
    },
];

/// How much to do.
pub struct Plan {
    /// Timed runs per side.
    pub runs: usize,
    /// The rimg binary.
    pub rimg: PathBuf,
    /// The base rootfs tar (`$TAR`).
    pub tar: PathBuf,
    /// A busybox rootfs tar (`$BUSYBOX_TAR`).
    pub busybox_tar: PathBuf,
}

struct Sides {
    work: PathBuf,
    /// podman refuses a runroot path longer than 50 bytes, so it lives in /run.
    runroot: PathBuf,
}

impl Sides {
    fn rimg_root(&self) -> PathBuf {
        self.work.join("rimg-store")
    }

    fn podman_dir(&self) -> PathBuf {
        self.work.join("podman-store")
    }

    fn reset(&self, plan: &Plan) -> Result<()> {
        // Detached rimg containers (restart, stats) have monitors that outlive the store.
        if self.rimg_root().exists() && plan.rimg.is_file() {
            let _ = self.sh(
                plan,
                "$RIMG ps -aq | xargs -r $RIMG rm -f >/dev/null 2>&1; true",
            );
        }
        // Containers left by a case: podman's own cleanup first, then the mounts and files.
        if self.podman_dir().exists() {
            let _ = self.sh(&Plan::dummy(), "$PODMAN rm -af >/dev/null 2>&1; true");
        }
        for d in [self.rimg_root(), self.podman_dir(), self.runroot.clone()] {
            sys::unmount_under(&d)?;
            if d.exists() {
                fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
        Ok(())
    }

    fn command(&self, plan: &Plan, script: &str) -> Command {
        let pd = self.podman_dir();
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .env("RIMG", &plan.rimg)
            .env("RIMG_ROOT", self.rimg_root())
            .env(
                "PODMAN",
                format!(
                    "podman --root {} --runroot {} --storage-driver overlay --runtime runc",
                    pd.join("root").display(),
                    self.runroot.display()
                ),
            )
            .env("CONTAINERS_CONF", self.work.join("containers.conf"))
            .env("SKOPEO", "skopeo")
            .env("TAR", &plan.tar)
            .env("BUSYBOX_TAR", &plan.busybox_tar)
            .env("WORK", &self.work)
            .stdin(std::process::Stdio::null());
        c
    }

    fn sh(&self, plan: &Plan, script: &str) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        sys::run(&mut self.command(plan, script)).map(|_| ())
    }

    fn timed(&self, plan: &Plan, script: &str) -> Result<f64> {
        nix::unistd::sync();
        let mut c = self.command(plan, script);
        let t = Instant::now();
        let out = c.output().context("running sh")?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "`{script}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(secs)
    }
}

impl Plan {
    fn dummy() -> Plan {
        Plan {
            runs: 0,
            rimg: PathBuf::from("rimg"),
            tar: PathBuf::new(),
            busybox_tar: PathBuf::new(),
        }
    }
}

/// Whether `rimg` has the subcommand `needs`.
fn rimg_has(rimg: &Path, needs: &str) -> bool {
    Command::new(rimg)
        .args(needs.split(' '))
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the group and returns its report.
pub fn run(plan: &Plan, work: &Path, notes: Vec<String>) -> Result<Report> {
    fs::create_dir_all(work)?;
    fs::write(
        work.join("containers.conf"),
        "[containers]\ndefault_ulimits = []\n",
    )?;
    let ctx = work.join("context");
    fs::create_dir_all(&ctx)?;
    fs::write(ctx.join("data.txt"), "rimg-bench build context\n")?;
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY data.txt /data.txt\nRUN cat /data.txt > /copied.txt\nCMD [\"cat\", \"/copied.txt\"]\n",
    )?;
    let sides = Sides {
        work: work.to_path_buf(),
        runroot: PathBuf::from(format!("/run/rimg-bench-{}", std::process::id())),
    };
    let mut report = Report {
        group: "cli",
        title: "rimg-bench cli: rimg commands against podman".into(),
        variants: vec!["rimg".into(), "podman".into()],
        notes,
        rows: Vec::new(),
    };
    let podman = sys::have("podman");
    for case in CASES {
        let mut row = Row {
            key: case
                .name
                .replace([' ', '(', ')', ',', '+'], "_")
                .replace("__", "_"),
            label: case.name.into(),
            unit: "s",
            higher_better: false,
            reference: 1,
            second: None,
            cells: vec![Cell::Empty, Cell::Empty],
        };
        if !plan.rimg.is_file() {
            row.cells[0] = Cell::Skipped(format!("{} is not built", plan.rimg.display()));
        } else if !rimg_has(&plan.rimg, case.needs) {
            // No point timing the peer alone.
            let why = format!("rimg has no `{}` command yet", case.needs);
            row.cells = vec![Cell::Skipped(why.clone()), Cell::Skipped(why)];
        }
        if !podman {
            row.cells[1] =
                Cell::Skipped("podman is not installed (scripts/setup.sh installs it)".into());
        }
        if let Err(e) = run_case(plan, &sides, case, &mut row) {
            crate::progress(format_args!("[{}] failed: {e:#}", case.name));
        }
        report.rows.push(row);
    }
    sides.reset(plan)?;
    Ok(report)
}

fn run_case(plan: &Plan, sides: &Sides, case: &Case, row: &mut Row) -> Result<()> {
    let active: Vec<usize> = (0..2)
        .filter(|i| matches!(row.cells[*i], Cell::Empty))
        .collect();
    let script = |i: usize| if i == 0 { case.rimg } else { case.peer };
    let setup = |i: usize| {
        if i == 0 {
            case.setup_rimg
        } else {
            case.setup_peer
        }
    };
    let prepare = |row: &mut Row| -> Result<()> {
        sides.reset(plan)?;
        for &i in &active {
            if let Err(e) = sides.sh(plan, setup(i)) {
                row.cells[i] = Cell::Failed(format!("setup: {e:#}"));
            }
        }
        Ok(())
    };
    if !case.fresh {
        prepare(row)?;
    }
    for run in 0..plan.runs {
        if case.fresh {
            prepare(row)?;
        }
        for &i in &active {
            if !matches!(row.cells[i], Cell::Empty | Cell::Value(..)) {
                continue;
            }
            match sides.timed(plan, script(i)) {
                Ok(t) => {
                    crate::progress(format_args!(
                        "[{}] {} {}/{}: {:.3} s",
                        case.name,
                        if i == 0 { "rimg" } else { "podman" },
                        run + 1,
                        plan.runs,
                        t
                    ));
                    row.cells[i].push(t);
                }
                Err(e) => row.cells[i] = Cell::Failed(format!("{e:#}")),
            }
        }
        // Non-fresh cases that create something named re-run on the same stores: remove it.
        if !case.fresh {
            let _ = sides.sh(plan, "$RIMG rmi -f bench:committed >/dev/null 2>&1; $PODMAN rmi -f bench:committed >/dev/null 2>&1; true");
        }
    }
    Ok(())
}
