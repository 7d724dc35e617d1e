//! POSIX conformance of a writable rimgfs mount: pjdfstest (the Rust port) runs against
//! rimgfs and against kernel overlayfs over the same layers extracted by GNU tar, in the same
//! test; every case that fails on rimgfs must also fail on kernel overlayfs.
//! scripts/conformance.sh is the full version (also fuse-overlayfs, native ext4, fsx, stress).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rimg_tests::mounts_under;
use rimg_tests::tree::{every_kind_layers, Reference};
use rimg_tests::Store;

/// pjdfstest as root on Linux: the features Linux filesystems have, a naptime above the
/// kernel's coarse timestamp tick, and two users Debian always has.
const CONFIG: &str = r#"
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}
SECONDARY

[settings]
naptime = 0.02
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

/// The installed pjdfstest, from PATH or cargo's bin dir.
fn pjdfstest() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    on_path
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|d| d.join("pjdfstest"))
        .find(|p| p.is_file())
}

/// Outcome of each pjdfstest case; failures with the message pjdfstest printed.
#[derive(Debug, Default)]
struct Outcomes {
    passed: BTreeSet<String>,
    failed: BTreeMap<String, String>,
    skipped: BTreeSet<String>,
}

/// Runs the whole suite in `dir` (pjdfstest makes its own temp dir there) and parses its
/// per-case lines. Killed after 5 minutes, so a hung filesystem fails the test.
fn run_pjdfstest(bin: &Path, config: &Path, dir: &Path, log: &Path) -> Outcomes {
    let out = fs::File::create(log).expect("create log");
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(config)
        .arg("-p")
        .arg(dir)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out)
        .spawn()
        .expect("spawn pjdfstest");
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            panic!("pjdfstest in {} hung; last lines: {tail:#?}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = fs::read_to_string(log).expect("read log");
    assert!(
        text.contains("Summary:"),
        "pjdfstest in {} did not finish:\n{text}",
        dir.display()
    );
    let mut o = Outcomes::default();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(result)) = (words.next(), words.next_back()) else {
            continue;
        };
        if !name.contains("::") {
            continue;
        }
        let name = name.to_string();
        match result {
            "ok" => {
                o.passed.insert(name);
            }
            "skipped" => {
                o.skipped.insert(name);
            }
            "FAILED" => {
                // The next, indented line says why.
                let why = lines
                    .next_if(|l| l.starts_with('\t'))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                o.failed.insert(name, why);
            }
            _ => {}
        }
    }
    o
}

/// A fresh directory under /dev/shm (tmpfs: a filesystem other than both mounts) for the
/// EXDEV cases, removed on drop; `None` where there is none (those cases are then skipped on
/// both mounts alike).
fn secondary_fs() -> Option<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return None;
    }
    tempfile::Builder::new()
        .prefix("rimg-pjdfstest-")
        .tempdir_in(shm)
        .ok()
}

#[test]
fn rimgfs_fails_no_pjdfstest_case_that_kernel_overlayfs_passes() {
    let Some(bin) = pjdfstest() else {
        // Written past the test harness's capture, so the skip shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED rimgfs_fails_no_pjdfstest_case_that_kernel_overlayfs_passes: pjdfstest \
             is not installed (scripts/test.sh installs it: cargo install pjdfstest --locked)"
        );
        return;
    };
    let s = Store::new();
    let layers = every_kind_layers();
    s.image_from_layers(&layers, "kinds");
    let secondary = secondary_fs();
    let config = s.path("pjdfstest.toml");
    let secondary_line = secondary
        .as_ref()
        .map(|d| format!("secondary_fs = {:?}", d.path().display().to_string()))
        .unwrap_or_default();
    fs::write(&config, CONFIG.replace("SECONDARY", &secondary_line)).expect("write config");

    let upper = s.path("upper");
    let m = s.mount("kinds", "rw", &["--upper", upper.to_str().expect("utf-8")]);
    let ours = run_pjdfstest(&bin, &config, &m.mountpoint, &s.path("rimgfs.log"));
    m.umount();

    let reference = Reference::mount(&layers, true);
    let peer = run_pjdfstest(&bin, &config, &reference.mountpoint, &s.path("overlay.log"));
    drop(reference);

    eprintln!(
        "pjdfstest: rimgfs {} passed, {} failed, {} skipped; kernel overlayfs {} passed, {} failed, {} skipped",
        ours.passed.len(),
        ours.failed.len(),
        ours.skipped.len(),
        peer.passed.len(),
        peer.failed.len(),
        peer.skipped.len()
    );
    assert!(
        ours.passed.len() > 100,
        "pjdfstest hardly ran on rimgfs: {ours:?}"
    );
    let all = |o: &Outcomes| -> BTreeSet<String> {
        o.passed
            .iter()
            .chain(o.failed.keys())
            .chain(&o.skipped)
            .cloned()
            .collect()
    };
    assert_eq!(all(&ours), all(&peer), "the two runs ran different cases");
    let ours_only: BTreeMap<&String, &String> = ours
        .failed
        .iter()
        .filter(|(name, _)| !peer.failed.contains_key(*name))
        .collect();
    assert!(
        ours_only.is_empty(),
        "pjdfstest cases failing on rimgfs but not on kernel overlayfs: {ours_only:#?}"
    );
    assert!(mounts_under(s.dir.path()).is_empty());
}
