//! POSIX conformance of a writable rimgfs mount: pjdfstest (the Rust port) runs against
//! rimgfs and against kernel overlayfs over the same layers extracted by GNU tar, in the same
//! test; every case that fails on rimgfs must also fail on kernel overlayfs. And since
//! pjdfstest only touches files it creates, an unprivileged user's commands on the image's
//! own files are compared between the two as well.
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

type Entry = (&'static str, &'static [u8], u32, u64, u64);

/// A layer of files and dirs owned by uid 1000, 1001 and root, with private, sticky,
/// setgid, read-only and group-writable modes.
fn permission_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    // path (a trailing / makes a dir), data, mode, uid, gid
    let entries: [Entry; 11] = [
        ("priv/", b"", 0o700, 1000, 1000),
        ("priv/secret", b"secret\n", 0o600, 1000, 1000),
        ("closed/", b"", 0o700, 1001, 1001),
        ("closed/f", b"f\n", 0o644, 1001, 1001),
        ("shared/", b"", 0o1777, 0, 0),
        ("shared/others", b"o\n", 0o666, 1001, 1001),
        ("shared/mine", b"m\n", 0o644, 1000, 1000),
        ("sgid/", b"", 0o2775, 0, 1000),
        ("sgid/f", b"g\n", 0o664, 0, 1000),
        ("ro", b"ro\n", 0o444, 1000, 1000),
        ("groupw", b"gw\n", 0o660, 0, 1000),
    ];
    for (path, data, mode, uid, gid) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

/// What uid 1000 (no supplementary groups) is told by each command, run in `dir`.
fn as_user_1000(dir: &Path, commands: &[&str]) -> Vec<String> {
    commands
        .iter()
        .map(|c| {
            let out = Command::new("setpriv")
                .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
                .args(["sh", "-c", c])
                .current_dir(dir)
                .output()
                .expect("run setpriv");
            format!(
                "{c}: {} {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .collect()
}

/// pjdfstest works in directories it makes, all in the upper dir. Here an unprivileged
/// user acts on the image's own files: permission checks, sticky and setgid dirs, and
/// copy-up all go through the FUSE layer, and must answer as over extracted layers.
#[test]
fn an_unprivileged_user_is_answered_as_by_kernel_overlayfs() {
    let commands = [
        "cat priv/secret",
        "ls priv",
        "ls closed",
        "cat closed/f",
        "echo x >> shared/others",
        "rm shared/others",
        "rm shared/mine",
        "touch sgid/new && stat -c '%g %a' sgid/new",
        "mkdir sgid/d && stat -c '%g %a' sgid/d",
        "echo y >> ro",
        "chmod 666 ro && stat -c %a ro",
        "echo z >> groupw",
        "touch -d @5 groupw",
        "touch groupw",
        "chown 1000 groupw",
        "chgrp 100 ro",
        "setfattr -n user.x -v 1 ro && getfattr -n user.x --only-values ro",
        "truncate -s 0 groupw && stat -c %s groupw",
        "mv priv/secret priv/moved && cat priv/moved",
        "rmdir closed",
    ];
    let s = Store::new();
    let layers = vec![permission_layer()];
    s.image_from_layers(&layers, "perms");
    let upper = s.path("upper");
    let m = s.mount("perms", "rw", &["--upper", upper.to_str().expect("utf-8")]);
    let ours = as_user_1000(&m.mountpoint, &commands);
    let reference = Reference::mount(&layers, true);
    let peer = as_user_1000(&reference.mountpoint, &commands);
    assert_eq!(ours, peer);
    m.umount();
    assert!(mounts_under(s.dir.path()).is_empty());
}
