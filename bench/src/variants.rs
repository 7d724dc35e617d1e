//! The ways the same layer stack is presented: extracted on the native filesystem, kernel
//! overlayfs, fuse-overlayfs, and rimgfs (writable: FUSE + overlayfs upper; read-only: FUSE
//! alone). Each can be mounted afresh (a new daemon for the FUSE ones), so cold runs start
//! with nothing cached anywhere.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::dataset::Dataset;
use crate::sys;

/// Which presentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The merged tree copied onto the host filesystem (the ceiling).
    Native,
    /// Kernel overlayfs over the extracted layers, with an upper dir.
    Overlay,
    /// fuse-overlayfs over the same extracted layers, with an upper dir.
    FuseOverlay,
    /// `rimgfs mount --upper`: FUSE union of the tar layers, overlayfs on top.
    Rimgfs,
    /// `rimgfs mount --read-only`: the FUSE union alone.
    RimgfsRo,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 5] = [
        Kind::Native,
        Kind::Overlay,
        Kind::FuseOverlay,
        Kind::Rimgfs,
        Kind::RimgfsRo,
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Native => "native",
            Kind::Overlay => "overlayfs",
            Kind::FuseOverlay => "fuse-overlayfs",
            Kind::Rimgfs => "rimgfs",
            Kind::RimgfsRo => "rimgfs-ro",
        }
    }

    /// Whether writes (copy-up, new files) make sense.
    pub fn writable(self) -> bool {
        self != Kind::RimgfsRo
    }

    /// Whether its daemon maps the store's layer tars (whose pages a drop of the page cache
    /// then keeps).
    pub fn maps_layers(self) -> bool {
        matches!(self, Kind::Rimgfs | Kind::RimgfsRo)
    }

    /// Whether it has a mount step at all.
    pub fn mounts(self) -> bool {
        self != Kind::Native
    }
}

/// A variant ready to mount, with its private directories under the work dir.
pub struct Variant {
    /// Which one.
    pub kind: Kind,
    dir: PathBuf,
    rimgfs: PathBuf,
    mounted: bool,
    store: PathBuf,
    image: String,
    layers: Vec<PathBuf>,
    native: PathBuf,
}

/// Why a variant cannot run here, or None.
pub fn unavailable(kind: Kind, rimgfs: &Path) -> Option<String> {
    let fuse = Path::new("/dev/fuse").exists();
    let overlay = fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay"));
    match kind {
        Kind::Native => None,
        Kind::Overlay if !overlay => {
            Some("kernel overlayfs is not available (modprobe overlay)".into())
        }
        Kind::FuseOverlay if !sys::have("fuse-overlayfs") => {
            Some("fuse-overlayfs is not installed (scripts/setup.sh installs it)".into())
        }
        Kind::FuseOverlay | Kind::Rimgfs | Kind::RimgfsRo if !fuse => {
            Some("/dev/fuse is missing".into())
        }
        Kind::Rimgfs | Kind::RimgfsRo if !rimgfs.is_file() => Some(format!(
            "{} is not built (cargo build --release --bins)",
            rimgfs.display()
        )),
        Kind::Rimgfs if !overlay => Some("kernel overlayfs is not available".into()),
        _ => None,
    }
}

impl Variant {
    /// A variant over `ds`, keeping its mount point and upper dir in `run_dir/<name>`.
    pub fn new(kind: Kind, ds: &Dataset, run_dir: &Path, rimgfs: &Path) -> Self {
        Variant {
            kind,
            dir: run_dir.join(kind.name()),
            rimgfs: rimgfs.to_path_buf(),
            mounted: false,
            store: ds.store.clone(),
            image: ds.image.clone(),
            layers: ds.layers.clone(),
            native: ds.native.clone(),
        }
    }

    /// Where the stack is visible.
    pub fn root(&self) -> PathBuf {
        match self.kind {
            Kind::Native => self.native.clone(),
            _ => self.dir.join("mnt"),
        }
    }

    fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// Unmounts and empties the upper and work dirs: the next mount starts clean.
    pub fn reset(&mut self) -> Result<()> {
        self.unmount()?;
        sys::unmount_under(&self.dir)?;
        for d in [self.upper(), self.work()] {
            if d.exists() {
                fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
        if self.kind.mounts() {
            for d in [self.upper(), self.work(), self.root()] {
                fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            }
        }
        Ok(())
    }

    /// Mounts (a no-op for native) and returns how long it took until the mount was usable.
    pub fn mount(&mut self) -> Result<Duration> {
        if self.mounted || !self.kind.mounts() {
            return Ok(Duration::ZERO);
        }
        let mnt = self.root();
        let t = Instant::now();
        match self.kind {
            Kind::Native => {}
            Kind::Overlay => {
                sys::mount_overlay(&self.layers, Some((&self.upper(), &self.work())), &mnt)?;
            }
            Kind::FuseOverlay => {
                let lowers: Vec<String> = self
                    .layers
                    .iter()
                    .rev()
                    .map(|p| p.display().to_string())
                    .collect();
                sys::run(
                    Command::new("fuse-overlayfs")
                        .arg("-o")
                        .arg(format!(
                            "lowerdir={},upperdir={},workdir={}",
                            lowers.join(":"),
                            self.upper().display(),
                            self.work().display()
                        ))
                        .arg(&mnt),
                )?;
            }
            Kind::Rimgfs => {
                sys::run(
                    Command::new(&self.rimgfs)
                        .arg("--root")
                        .arg(&self.store)
                        .args(["mount", "--upper"])
                        .arg(self.upper())
                        .arg("--work")
                        .arg(self.work())
                        .arg(&self.image)
                        .arg(&mnt),
                )?;
            }
            Kind::RimgfsRo => {
                sys::run(
                    Command::new(&self.rimgfs)
                        .arg("--root")
                        .arg(&self.store)
                        .args(["mount", "--read-only"])
                        .arg(&self.image)
                        .arg(&mnt),
                )?;
            }
        }
        let took = t.elapsed();
        self.mounted = true;
        Ok(took)
    }

    /// Unmounts; for the FUSE variants, waits until the daemon has exited, so that no process
    /// keeps layer pages mapped through a following drop of the page cache.
    pub fn unmount(&mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        let mnt = self.root();
        let daemons = daemons(self.kind, &mnt, &self.store);
        match self.kind {
            Kind::Native => {}
            Kind::Overlay | Kind::FuseOverlay => sys::umount(&mnt)?,
            Kind::Rimgfs | Kind::RimgfsRo => {
                sys::run(
                    Command::new(&self.rimgfs)
                        .arg("--root")
                        .arg(&self.store)
                        .arg("umount")
                        .arg(&mnt),
                )?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while daemons
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Unmounts and mounts again (a fresh daemon, an empty cache).
    pub fn remount(&mut self) -> Result<Duration> {
        self.unmount()?;
        self.mount()
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        let _ = self.unmount();
        let _ = sys::unmount_under(&self.dir);
    }
}

/// Process ids of the daemons serving this variant: fuse-overlayfs processes named with the
/// mount point, and for rimgfs every process that maps a file of the bench store (its layer
/// tars), whose mapped pages a drop of the page cache would not evict.
fn daemons(kind: Kind, mnt: &Path, store: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return pids;
    };
    let me = std::process::id();
    let mnt = mnt.to_string_lossy();
    let store = store.to_string_lossy();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let found = match kind {
            Kind::FuseOverlay => fs::read(p.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("fuse-overlayfs") && c.contains(&*mnt)
            }),
            Kind::Rimgfs | Kind::RimgfsRo => {
                fs::read_to_string(p.path().join("maps")).is_ok_and(|m| m.contains(&*store))
            }
            Kind::Native | Kind::Overlay => false,
        };
        if found {
            pids.push(pid);
        }
    }
    pids
}
