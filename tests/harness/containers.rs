//! Container tests' cleanup: every container of a test store force-removed, and whatever
//! is still mounted under the test's directory unmounted, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{bin, mounts_under, Store};

/// Force-removes every container of `store` on drop, then lazily unmounts anything left
/// under the store's directory (which a passing test must not have left: see
/// [`assert_no_mounts`]).
pub struct Cleanup<'a>(pub &'a Store);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = Command::new(bin("rimg"))
            .env("RIMG_ROOT", self.0.root())
            .args(["ps", "-aq", "--no-trunc"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new(bin("rimg"))
                .env("RIMG_ROOT", self.0.root())
                .args(["rm", "-f", id])
                .output();
        }
        let mut left = mounts_under(self.0.dir.path());
        left.reverse();
        for l in left {
            if let Some(p) = l.split(' ').nth(1) {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
}

/// Polls `f` until it is true or `secs` pass (containers start and stop asynchronously).
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Waits up to 30 s for `f` to hold, failing the test with `what` when it never does.
#[track_caller]
pub fn wait_until(what: &str, f: impl FnMut() -> bool) {
    assert!(eventually(30, f), "timed out waiting for {what}");
}

/// Asserts that nothing is mounted under `dir` (the test's temp dir).
#[track_caller]
pub fn assert_no_mounts(dir: &Path) {
    let left = mounts_under(dir);
    assert!(left.is_empty(), "mounts left behind:\n{}", left.join("\n"));
}

/// The directory (`rimg/containers/<id>`) of the container named `name`.
#[track_caller]
pub fn container_dir(s: &Store, name: &str) -> PathBuf {
    let ps = s.rimg(["ps", "-a", "--no-trunc"]).ok();
    let id = ps
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no container {name}:\n{ps}"))
        .to_string();
    s.root().join("rimg/containers").join(id)
}

/// `program ARGS... CMD` where CMD is `cmd`'s program, arguments and environment: a
/// command run under a driver (a python3 pty, a timeout).
pub fn wrapped<I, S>(cmd: &super::Cmd, program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut out = Command::new(program);
    out.args(args);
    out.arg(cmd.0.get_program()).args(cmd.0.get_args());
    for (k, v) in cmd.0.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    out
}

/// A fresh store holding the test busybox image as `busybox:latest`.
pub fn busybox_store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

/// `rimg inspect -f TEMPLATE NAME`, trimmed.
pub fn inspect_field(s: &Store, name: &str, template: &str) -> String {
    s.rimg(["inspect", "-f", template, name])
        .ok()
        .trim()
        .to_string()
}
