//! The black-box test harness: runs the real `rimg` and `rimgfs` binaries against a
//! throw-away store, builds test images from local material, and generates layer tars.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, as `scripts/test.sh`
//! does); the harness finds them beside the test executable.

#![allow(missing_docs)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod archives;
pub mod builds;
pub mod containers;
pub mod registry;
pub mod tree;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<test-exe> → target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of a workspace binary (`rimg`, `rimgfs`).
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --workspace --bins` before the tests",
        p.display()
    );
    p
}

/// A temporary store and the directory around it.
pub struct Store {
    pub dir: tempfile::TempDir,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A fresh, empty store in a temp dir.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rimg-test-")
            .tempdir()
            .expect("tempdir");
        Store { dir }
    }

    /// The store root (`$RIMG_ROOT`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A scratch path beside the store.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `rimg` command against this store.
    pub fn rimg<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin("rimg"));
        c.env("RIMG_ROOT", self.root()).args(args);
        Cmd(c)
    }

    /// A `rimgfs` command against this store.
    pub fn rimgfs<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin("rimgfs"));
        c.env("RIMG_ROOT", self.root()).args(args);
        Cmd(c)
    }

    /// Stores `layers` (uncompressed tars, bottom first) as an image tagged `name`, through
    /// the library (the CLI imports only one-layer images). Returns the image id.
    pub fn image_from_layers(&self, layers: &[Vec<u8>], name: &str) -> String {
        let mut config = rimg::image::ImageConfig::new_for_host();
        config.config.cmd = Some(vec!["sh".into()]);
        self.image_with_config(layers, config, name).id.to_string()
    }

    /// Stores `layers` as an image tagged `name` with `config` (one history entry per layer
    /// is appended).
    pub fn image_with_config(
        &self,
        layers: &[Vec<u8>],
        mut config: rimg::image::ImageConfig,
        name: &str,
    ) -> rimg::image::Image {
        let images = rimg::image::Images::open(&self.root()).expect("open store");
        let mut digests = Vec::new();
        for l in layers {
            digests.push(
                images
                    .store()
                    .ingest_layer(&l[..], None)
                    .expect("ingest layer")
                    .digest,
            );
        }
        for (i, _) in layers.iter().enumerate() {
            config.history.push(rimg::image::History {
                created: Some("2026-01-01T00:00:00Z".into()),
                created_by: Some(format!("test layer {i}")),
                ..Default::default()
            });
        }
        let tag = rimg::image::Reference::parse(name).expect("reference");
        images
            .create(&digests, config, &[tag])
            .expect("create image")
    }

    /// Imports the shared busybox rootfs as `name` (e.g. `busybox:latest`); returns the id.
    pub fn busybox(&self, name: &str) -> String {
        let tar = busybox_tar();
        self.rimg(["import", "-c", "CMD [\"sh\"]"])
            .arg(tar)
            .arg(name)
            .ok()
            .trim()
            .to_string()
    }
}

/// A command with assertion helpers.
pub struct Cmd(pub Command);

impl Cmd {
    /// Adds an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.0.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, a: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.0.args(a);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.0.env(k, v);
        self
    }

    /// Runs with stdin from `input`.
    pub fn stdin_bytes(mut self, input: &[u8]) -> Output {
        use std::io::Write;
        self.0
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.0.spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait");
        let _ = writer.join();
        out
    }

    /// Runs to completion with stdin closed.
    pub fn output(mut self) -> Output {
        self.0.stdin(Stdio::null());
        self.0.output().expect("spawn")
    }

    /// Runs, asserts success, returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        let desc = format!("{:?}", self.0);
        let out = self.output();
        assert!(
            out.status.success(),
            "{desc} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts failure, returns stderr.
    #[track_caller]
    pub fn fails(self) -> String {
        let desc = format!("{:?}", self.0);
        let out = self.output();
        assert!(
            !out.status.success(),
            "{desc} unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Runs a shell command line, asserting success; returns stdout.
#[track_caller]
pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "sh -c {script:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a program is installed (scripts/test.sh installs every tool the tests use).
#[track_caller]
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: scripts/test.sh installs it"
    );
}

/// The busybox rootfs tar that `scripts/make-busybox-image.sh` builds, made once per test
/// process (the script runs with a fake `rimg` that keeps the tar).
pub fn busybox_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rimg-test-busybox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let keep = dir.join("keep-tar.sh");
        let tar = dir.join("busybox.tar");
        std::fs::write(
            &keep,
            format!("#!/bin/sh\n# stands in for rimg: keeps the tar the script imports\nfor a; do case $a in *.tar) cp \"$a\" {};; esac; done\n", tar.display()),
        )
        .expect("write");
        sh(&format!("chmod +x {}", keep.display()));
        let script = workspace().join("scripts/make-busybox-image.sh");
        let out = Command::new(script).env("RIMG", &keep).output().expect("run make-busybox-image.sh");
        assert!(
            out.status.success() && tar.is_file(),
            "make-busybox-image.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tar
    })
    .clone()
}

/// A rimgfs mount made by a test, unmounted on drop (also when the test fails).
pub struct Mounted {
    pub root: PathBuf,
    pub mountpoint: PathBuf,
}

impl Store {
    /// `rimgfs mount [extra...] IMAGE MOUNTPOINT`; the mount point is created beside the store.
    pub fn mount(&self, image: &str, name: &str, extra: &[&str]) -> Mounted {
        let mountpoint = self.path(name);
        std::fs::create_dir_all(&mountpoint).expect("mkdir mountpoint");
        self.rimgfs(["mount"])
            .args(extra)
            .arg(image)
            .arg(&mountpoint)
            .ok();
        Mounted {
            root: self.root(),
            mountpoint,
        }
    }
}

impl Mounted {
    /// A path inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// `rimgfs umount`, asserting it succeeds; consumes the guard.
    pub fn umount(self) {
        let out = Command::new(bin("rimgfs"))
            .env("RIMG_ROOT", &self.root)
            .arg("umount")
            .arg(&self.mountpoint)
            .output()
            .expect("run rimgfs umount");
        assert!(
            out.status.success(),
            "rimgfs umount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new(bin("rimgfs"))
            .env("RIMG_ROOT", &self.root)
            .arg("umount")
            .arg(&self.mountpoint)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// Lines of /proc/mounts that mention `dir` (a test's temp dir): empty when it cleaned up.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    let needle = dir.to_string_lossy().into_owned();
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// What `docker diff` prints for the seeds' lab container (append to ch03.txt, add new.txt,
/// remove /etc/some-file, create /data/f), in Docker's order.
pub const SEEDS_LAB_DIFF: [&str; 7] = [
    "A /data",
    "A /data/f",
    "C /diamol",
    "C /diamol/ch03.txt",
    "A /diamol/new.txt",
    "C /etc",
    "D /etc/some-file",
];
