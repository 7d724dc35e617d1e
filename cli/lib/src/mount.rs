//! Mounted layer stacks: an image's read-only FUSE union (served by a detached daemon that
//! this library forks, named `rimgfs`) with kernel overlayfs on top, and the records that let
//! `rimgfs ls` and `rimgfs umount` find them again. Containers, the builder's RUN steps and
//! `rimgfs mount` all mount through [`Stacks::mount`].
//!
//! Layout under the store:
//! ```text
//! rimg/mounts/<id>/record.json   image, mountpoint, upper, work, lower, daemon pid
//! rimg/mounts/<id>/lower/        the FUSE mount the overlay stacks on (not with --read-only)
//! rimg/mounts/<id>/daemon.log    the daemon's stderr
//! rimg/uppers/<random>/{upper,work}   fresh upper dirs made when no --upper is given
//! ```
//! `<id>` is derived from the mount point, so one mount point has at most one record. While
//! mounted, the image is pinned (`mount-<id>`), so garbage collection keeps its layers.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use rimg_fs::digest::Hasher;
use rimg_fs::error::{io_err, IoError};
use rimg_fs::fuse::{self, FuseOptions, LayerFs, Tuning};
use rimg_fs::mapped::MappedLayer;
use rimg_fs::overlay::{self, CopyOnWrite, KernelOverlay};
use rimg_fs::union::UnionTree;

use crate::image::{ImageError, Images};
use crate::runtime::sys::{self, Forked};

/// Pin-name prefix of mounted images.
pub const MOUNT_PIN_PREFIX: &str = "mount-";
/// The daemon's process name (`/proc/<pid>/comm`), by which a record's pid is known alive.
const DAEMON_NAME: &std::ffi::CStr = c"rimgfs";

/// Why a stack could not be mounted, served or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The image model failed (no such image, damaged store, ...).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A mount or unmount was refused.
    #[error(transparent)]
    Mount(#[from] overlay::MountError),
    /// The mount point does not exist.
    #[error("mountpoint {0} does not exist")]
    NoMountpoint(PathBuf),
    /// The mount point is not a directory.
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Something is mounted there already.
    #[error("mountpoint {0} is busy: something is already mounted there")]
    Busy(PathBuf),
    /// The kernel has no FUSE device.
    #[error(
        "/dev/fuse is missing: load the fuse module (modprobe fuse) or run with --device /dev/fuse"
    )]
    NoFuse,
    /// No record of a rimgfs mount at this path.
    #[error("{0} is not a rimgfs mount")]
    NotMounted(PathBuf),
    /// The overlay at the mount point is in use.
    #[error("{0} is busy: a process is using it (close it, or stop the container using it)")]
    InUse(PathBuf),
    /// A `--tune` spec that does not parse.
    #[error("{0}")]
    Tuning(String),
    /// The system's random source failed (naming a fresh upper directory).
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
    /// The daemon did not come up.
    #[error("the rimgfs daemon failed: {0}")]
    Daemon(String),
    /// Serving failed.
    #[error("FUSE mount at {path}")]
    Fuse {
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        cause: io::Error,
    },
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

type Result<T, E = StackError> = std::result::Result<T, E>;

/// What `rimgfs mount` records about a mount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountRecord {
    /// The record's id (from the mount point).
    pub id: String,
    /// The image as the user named it.
    pub image: String,
    /// The image id (`sha256:…`).
    pub image_id: String,
    /// Where the union is visible.
    pub mountpoint: PathBuf,
    /// The copy-on-write upper dir (`None` with `--read-only`).
    pub upper: Option<PathBuf>,
    /// The overlay work dir.
    pub work: Option<PathBuf>,
    /// The FUSE mount under the store the overlay stacks on (`None` with `--read-only`).
    pub lower: Option<PathBuf>,
    /// The FUSE daemon's pid.
    pub pid: u32,
    /// Whether the upper dir was made by rimgfs.
    pub fresh_upper: bool,
}

impl MountRecord {
    /// Where the FUSE layer is mounted.
    pub fn fuse_target(&self) -> &Path {
        self.lower.as_deref().unwrap_or(&self.mountpoint)
    }
}

/// What to mount.
#[derive(Clone, Debug, Default)]
pub struct MountRequest {
    /// Image name, id or id prefix.
    pub image: String,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The upper dir; a fresh one under the store when `None`.
    pub upper: Option<PathBuf>,
    /// The work dir; a sibling of the upper dir when `None`.
    pub work: Option<PathBuf>,
    /// Only the FUSE layer, read-only.
    pub read_only: bool,
    /// `allow_other` on the FUSE layer.
    pub allow_other: bool,
    /// Honour setuid bits.
    pub suid: bool,
    /// Allow device nodes.
    pub dev: bool,
    /// FUSE worker threads (0: automatic).
    pub threads: usize,
    /// Benchmark knobs, as `key=value,...` (see [`rimg_fs::fuse::Tuning::parse`]).
    pub tuning: Option<String>,
}

impl MountRequest {
    /// The FUSE layer's options for the mount whose record id is `id`.
    pub fn fuse_options(&self, id: &str) -> Result<FuseOptions> {
        let tuning = match &self.tuning {
            Some(spec) => Tuning::parse(spec).map_err(StackError::Tuning)?,
            None => Tuning::default(),
        };
        Ok(FuseOptions {
            allow_other: self.allow_other,
            suid: self.suid,
            dev: self.dev,
            threads: self.threads,
            fsname: format!("rimgfs:{id}"),
            tuning,
        })
    }
}

/// A mount's state as `rimgfs ls` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountState {
    /// Mounted and served.
    Mounted,
    /// Still mounted, but the daemon is gone: reads fail until `rimgfs umount`.
    DaemonDead,
    /// Only the FUSE layer is mounted: `rimgfs mount` was killed before it stacked the
    /// overlay. `rimgfs umount` (or mounting there again) cleans it up.
    Incomplete,
    /// Not mounted any more (unmounted behind rimgfs's back).
    Gone,
}

/// The mount records of a store.
#[derive(Clone, Copy)]
pub struct Stacks<'a> {
    images: &'a Images,
}

impl<'a> Stacks<'a> {
    /// The mounts of the store behind `images`.
    pub fn new(images: &'a Images) -> Self {
        Stacks { images }
    }

    fn dir(&self) -> PathBuf {
        self.images.store().private_dir().join("mounts")
    }

    fn record_dir(&self, id: &str) -> PathBuf {
        self.dir().join(id)
    }

    /// Every record with its state, sorted by mount point.
    pub fn list(&self) -> Result<Vec<(MountRecord, MountState)>> {
        let dir = self.dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IoError::new("listing", &dir, e).into()),
        };
        let mounted = overlay::mounts()?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Ok(text) = fs::read(e.path().join("record.json")) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<MountRecord>(&text) else {
                continue;
            };
            let is_mounted = |p: &Path| mounted.iter().any(|m| m.mountpoint == p);
            let state = if !is_mounted(&rec.mountpoint) {
                match &rec.lower {
                    Some(l) if is_mounted(l) => MountState::Incomplete,
                    _ => MountState::Gone,
                }
            } else if daemon_alive(rec.pid) && fuse_alive(rec.fuse_target()) {
                MountState::Mounted
            } else {
                MountState::DaemonDead
            };
            out.push((rec, state));
        }
        out.sort_by(|a, b| a.0.mountpoint.cmp(&b.0.mountpoint));
        Ok(out)
    }

    /// The record of the mount at `mountpoint`.
    pub fn find(&self, mountpoint: &Path) -> Result<Option<MountRecord>> {
        let id = mount_id(mountpoint);
        let p = self.record_dir(&id).join("record.json");
        match fs::read(&p) {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IoError::new("reading", &p, e).into()),
        }
    }

    /// Mounts an image: forks the FUSE daemon, waits until its mount is live, then stacks
    /// the overlay on it. The stack comes down when the returned guard is dropped, unless
    /// [`MountedStack::keep`] leaves it mounted (`rimgfs mount`). Call it from a
    /// single-threaded process: the daemon is forked without exec.
    pub fn mount(&self, req: &MountRequest) -> Result<MountedStack<'a>> {
        let mut rec = self.prepare(req)?;
        match self.start_daemon(req, &rec) {
            Ok(pid) => rec.pid = pid,
            Err(e) => {
                self.forget(&rec);
                return Err(e);
            }
        }
        if let Err(e) = self.write_record(&rec) {
            if let Err(u) = overlay::unmount(rec.fuse_target(), true) {
                return Err(u.into());
            }
            wait_for_exit(rec.pid);
            self.forget(&rec);
            return Err(e);
        }
        self.stack(&rec, req)?;
        Ok(MountedStack {
            stacks: *self,
            record: rec,
            armed: true,
        })
    }

    /// Checks the request and makes the record's directories; the FUSE layer is to be
    /// mounted at [`MountRecord::fuse_target`] next, then [`Stacks::stack`] finishes.
    pub fn prepare(&self, req: &MountRequest) -> Result<MountRecord> {
        let mountpoint = absolute_dir(&req.mountpoint)?;
        if overlay::is_mountpoint(&mountpoint)? {
            return Err(StackError::Busy(mountpoint));
        }
        if !Path::new("/dev/fuse").exists() {
            return Err(StackError::NoFuse);
        }
        let image = self.images.resolve(&req.image)?;
        self.images.ensure_layers(&image)?;

        let id = mount_id(&mountpoint);
        let rdir = self.record_dir(&id);
        if rdir.exists() {
            // A record without a mount at its mount point: the overlay was unmounted behind
            // our back. Its FUSE layer may still be mounted under the record.
            let lower = rdir.join("lower");
            if overlay::is_mountpoint(&lower)? {
                overlay::unmount(&lower, true)?;
            }
            let _ = fs::remove_dir_all(&rdir);
        }
        fs::create_dir_all(&rdir).map_err(io_err("creating", &rdir))?;
        let (upper, work, fresh_upper) = if req.read_only {
            (None, None, false)
        } else {
            let (u, w, fresh) = self.upper_dirs(req)?;
            (Some(u), Some(w), fresh)
        };
        let lower = (!req.read_only).then(|| rdir.join("lower"));
        if let Some(l) = &lower {
            fs::create_dir_all(l).map_err(io_err("creating", l))?;
        }
        self.images
            .pin_volatile(&format!("{MOUNT_PIN_PREFIX}{id}"), &[image.manifest_digest])?;
        let rec = MountRecord {
            id,
            image: req.image.clone(),
            image_id: image.id.to_string(),
            mountpoint,
            upper,
            work,
            lower,
            pid: std::process::id(),
            fresh_upper,
        };
        // Recorded before anything is mounted, so a `rimgfs mount` killed half way leaves a
        // record that `rimgfs umount` and the next mount at this point can clean up.
        if let Err(e) = self.write_record(&rec) {
            self.forget(&rec);
            return Err(e);
        }
        Ok(rec)
    }

    /// With the FUSE layer of `rec` live: stacks the overlay (unless read-only). The record
    /// is already written ([`Stacks::prepare`], and [`Stacks::mount`] once the daemon's pid
    /// is known). On failure the FUSE layer is unmounted and the record forgotten.
    pub fn stack(&self, rec: &MountRecord, req: &MountRequest) -> Result<()> {
        if let (Some(lower), Some(upper), Some(work)) = (&rec.lower, &rec.upper, &rec.work) {
            let cow = KernelOverlay {
                suid: req.suid,
                dev: req.dev,
            };
            if let Err(e) = cow.mount(lower, upper, work, &rec.mountpoint) {
                let _ = overlay::unmount(lower, true);
                if rec.pid != std::process::id() {
                    wait_for_exit(rec.pid);
                }
                self.forget(rec);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Forgets a mount whose FUSE layer ended (the foreground server's exit path).
    pub fn finished(&self, rec: &MountRecord) {
        if self.find(&rec.mountpoint).ok().flatten().as_ref() == Some(rec) {
            self.forget(rec);
        }
    }

    fn upper_dirs(&self, req: &MountRequest) -> Result<(PathBuf, PathBuf, bool)> {
        match &req.upper {
            Some(u) => {
                fs::create_dir_all(u).map_err(io_err("creating", u))?;
                let u = fs::canonicalize(u).map_err(io_err("resolving", u))?;
                let w = match &req.work {
                    Some(w) => w.clone(),
                    None => default_work(&u),
                };
                fs::create_dir_all(&w).map_err(io_err("creating", &w))?;
                let w = fs::canonicalize(&w).map_err(io_err("resolving", &w))?;
                Ok((u, w, false))
            }
            None => {
                let base = self
                    .images
                    .store()
                    .private_dir()
                    .join("uppers")
                    .join(random_id()?);
                let (u, w) = (base.join("upper"), base.join("work"));
                fs::create_dir_all(&u).map_err(io_err("creating", &u))?;
                fs::create_dir_all(&w).map_err(io_err("creating", &w))?;
                Ok((u, w, true))
            }
        }
    }

    /// Forks the FUSE daemon of `rec` and returns its pid once its mount is live. The child
    /// starts a new session and forks the daemon, then exits at once, so it is reaped here
    /// and the daemon, orphaned, needs no reaper of ours. The daemon reports over a pipe:
    /// `ready <pid>`, or `error <why>` (its stderr goes to `daemon.log`).
    fn start_daemon(&self, req: &MountRequest, rec: &MountRecord) -> Result<u32> {
        let opts = req.fuse_options(&rec.id)?;
        let log_path = self.record_dir(&rec.id).join("daemon.log");
        let log = File::create(&log_path).map_err(io_err("creating", &log_path))?;
        let null_path = Path::new("/dev/null");
        let null = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(null_path)
            .map_err(io_err("opening", null_path))?;
        let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| StackError::Daemon(format!("pipe: {e}")))?;
        let daemon = Daemon {
            images: self.images,
            image_id: &rec.image_id,
            target: rec.fuse_target(),
            opts: &opts,
            log,
            null,
        };
        let child = match sys::fork_single_threaded() {
            Ok(Forked::Child) => daemon.detach(report_w),
            Ok(Forked::Parent(pid)) => pid,
            Err(e) => return Err(StackError::Daemon(e.to_string())),
        };
        drop(report_w);
        let _ = waitpid(child, None);
        let mut report = String::new();
        let _ = File::from(report_r).read_to_string(&mut report);
        let line = report.lines().next().unwrap_or_default();
        if let Some(pid) = line.strip_prefix("ready ").and_then(|p| p.parse().ok()) {
            return Ok(pid);
        }
        let why = match line.strip_prefix("error ") {
            Some(why) => why.to_string(),
            // Killed before it could say: its stderr may know.
            None => fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("exited before the mount was ready")
                .trim_start_matches("Error: ")
                .to_string(),
        };
        Err(StackError::Daemon(why))
    }

    fn write_record(&self, rec: &MountRecord) -> Result<()> {
        let p = self.record_dir(&rec.id).join("record.json");
        let bytes = serde_json::to_vec_pretty(rec)
            .map_err(|e| IoError::new("encoding", &p, io::Error::other(e)))?;
        self.images
            .store()
            .write_volatile_file(&p, &bytes)
            .map_err(ImageError::from)?;
        Ok(())
    }

    /// Removes a record, its lower dir and pin (never the upper dir: it is the user's data).
    /// A FUSE layer that a daemon mounted on the lower dir since it was last looked at (one
    /// whose starter was killed while it came up) is taken down first, or the record could
    /// not be removed.
    fn forget(&self, rec: &MountRecord) {
        let _ = self.images.unpin(&format!("{MOUNT_PIN_PREFIX}{}", rec.id));
        let target = rec.fuse_target();
        if overlay::is_mountpoint(target).unwrap_or(false) {
            let _ = overlay::unmount(target, true);
        }
        let _ = fs::remove_dir_all(self.record_dir(&rec.id));
    }

    /// Unmounts the stack at `mountpoint`: the overlay, then the FUSE layer (also when its
    /// daemon is dead), waits for the daemon to exit, and removes the record.
    pub fn unmount(&self, mountpoint: &Path) -> Result<MountRecord> {
        let mountpoint = absolute(mountpoint)?;
        let rec = self
            .find(&mountpoint)?
            .ok_or_else(|| StackError::NotMounted(mountpoint.clone()))?;
        let mounted = overlay::mounts()?;
        let is_mounted = |p: &Path| mounted.iter().any(|m| m.mountpoint == p);
        if rec.lower.is_some() && is_mounted(&rec.mountpoint) {
            match overlay::unmount(&rec.mountpoint, false) {
                Ok(()) => {}
                Err(overlay::MountError::Unmount {
                    cause: nix::errno::Errno::EBUSY,
                    ..
                }) => return Err(StackError::InUse(rec.mountpoint)),
                Err(e) => return Err(e.into()),
            }
        }
        let target = rec.fuse_target().to_path_buf();
        if is_mounted(&target) {
            match overlay::unmount(&target, false) {
                Ok(()) => {}
                Err(overlay::MountError::Unmount {
                    cause: nix::errno::Errno::EBUSY,
                    ..
                }) if rec.lower.is_none() => return Err(StackError::InUse(target)),
                // The overlay is gone; whatever still holds the lower can't see it.
                Err(_) => overlay::unmount(&target, true)?,
            }
        }
        wait_for_exit(rec.pid);
        self.forget(&rec);
        Ok(rec)
    }
}

/// Serves the image `image_id` at `target` until it is unmounted. `ready` runs once the FUSE
/// mount is live (the daemon reports it; `--foreground` stacks the overlay).
pub fn serve(
    images: &Images,
    image_id: &str,
    target: &Path,
    opts: &FuseOptions,
    ready: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let image = images.resolve(image_id)?;
    let diff_ids = images.ensure_layers(&image)?;
    let store = images.store();
    let mut indexes = Vec::with_capacity(diff_ids.len());
    let mut maps = Vec::with_capacity(diff_ids.len());
    for d in &diff_ids {
        indexes.push(store.layer_index(d).map_err(ImageError::from)?);
        let f = store.open_blob(d).map_err(ImageError::from)?;
        maps.push(MappedLayer::map(&f).map_err(io_err("mapping", &store.blob_path(d)))?);
    }
    let tree = UnionTree::build(&indexes);
    drop(indexes);
    let fs = LayerFs::new(tree, maps, opts.tuning);
    let session = fuse::mount(fs, target, opts).map_err(|source| StackError::Fuse {
        path: target.to_path_buf(),
        cause: source,
    })?;
    // Larger sequential reads than the FUSE handshake allows; best effort.
    let _ = fuse::raise_read_ahead(target, opts.tuning.read_ahead_kb);
    overlay::make_private(target)?;
    ready()?;
    fuse::run(session).map_err(|source| StackError::Fuse {
        path: target.to_path_buf(),
        cause: source,
    })
}

/// A stack [`Stacks::mount`] mounted: unmounted (both layers, the record forgotten) when
/// dropped, unless kept.
#[must_use = "the stack is unmounted when this is dropped"]
pub struct MountedStack<'a> {
    stacks: Stacks<'a>,
    record: MountRecord,
    armed: bool,
}

impl MountedStack<'_> {
    /// The mount's record.
    pub fn record(&self) -> &MountRecord {
        &self.record
    }

    /// Unmounts the stack ([`Stacks::unmount`]), reporting why it could not.
    pub fn unmount(mut self) -> Result<MountRecord> {
        self.armed = false;
        self.stacks.unmount(&self.record.mountpoint)
    }

    /// Leaves the stack mounted, served by its daemon after this process exits; `rimgfs
    /// umount` takes it down.
    pub fn keep(mut self) -> MountRecord {
        self.armed = false;
        self.record.clone()
    }
}

impl Drop for MountedStack<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.stacks.unmount(&self.record.mountpoint);
        }
    }
}

/// What the forked daemon serves, and the files it keeps.
struct Daemon<'a> {
    images: &'a Images,
    image_id: &'a str,
    target: &'a Path,
    opts: &'a FuseOptions,
    log: File,
    null: File,
}

impl Daemon<'_> {
    /// In the first child: a new session (no terminal's ^C or hangup reaches the daemon),
    /// the daemon forked, and exit.
    fn detach(self, report: OwnedFd) -> ! {
        let forked = nix::unistd::setsid()
            .map_err(|e| format!("setsid: {e}"))
            .and_then(|_| sys::fork_single_threaded().map_err(|e| e.to_string()));
        match forked {
            Ok(Forked::Child) => self.serve(report),
            Ok(Forked::Parent(_)) => sys::exit_now(0),
            Err(why) => {
                let _ = writeln!(File::from(report), "error {why}");
                sys::exit_now(1)
            }
        }
    }

    /// In the daemon: stdio on /dev/null and the log, no other file of the parent's, then
    /// [`serve`] until unmounted. Never returns into the caller's frames.
    fn serve(self, report: OwnedFd) -> ! {
        let _ = nix::sys::prctl::set_name(DAEMON_NAME);
        let _ = SigSet::empty().thread_set_mask();
        // std keeps 0, 1 and 2 open, so every file of ours is 3 or above and the dup2s
        // overwrite none of them.
        let _ = nix::unistd::dup2_stdin(&self.null);
        let _ = nix::unistd::dup2_stdout(&self.null);
        let _ = nix::unistd::dup2_stderr(&self.log);
        let closed = sys::close_fds_except(report.as_fd());
        // Closed above: their owners must not close them again.
        std::mem::forget(self.log);
        std::mem::forget(self.null);
        let mut report = Some(File::from(report));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            closed.map_err(io_err(
                "closing inherited files",
                Path::new("/proc/self/fd"),
            ))?;
            serve(self.images, self.image_id, self.target, self.opts, || {
                if let Some(mut r) = report.take() {
                    // Nobody reads the report when the command that started the mount was
                    // killed meanwhile: then no one will stack or record it, so the mount
                    // goes (dropping the session unmounts it) instead of serving an orphan.
                    writeln!(r, "ready {}", std::process::id()).map_err(|e| {
                        StackError::Daemon(format!(
                            "the command that started the mount is gone: {e}"
                        ))
                    })?;
                }
                Ok(())
            })
        }));
        let why = match result {
            Ok(Ok(())) => sys::exit_now(0),
            Ok(Err(e)) => crate::error_line(&e),
            Err(_) => "the daemon panicked (see its daemon.log)".to_string(),
        };
        eprintln!("Error: {why}");
        if let Some(mut r) = report.take() {
            let _ = writeln!(r, "error {}", why.replace('\n', " "));
        }
        sys::exit_now(1)
    }
}

/// The record id of a mount point: a hash of its absolute path.
pub fn mount_id(mountpoint: &Path) -> String {
    let mut h = Hasher::new();
    h.update(mountpoint.as_os_str().as_encoded_bytes());
    h.finish().hex()[..16].to_string()
}

fn random_id() -> Result<String> {
    Ok(crate::random::hex_id(6)?)
}

fn default_work(upper: &Path) -> PathBuf {
    match upper.file_name().and_then(|n| n.to_str()) {
        Some("upper") => upper.with_file_name("work"),
        Some(name) => upper.with_file_name(format!("{name}.work")),
        None => upper.join("../work"),
    }
}

/// `path` made absolute without touching its last component (a stale FUSE mount cannot be
/// stat'ed).
fn absolute(path: &Path) -> Result<PathBuf> {
    let name = path.file_name();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = fs::canonicalize(&parent).map_err(|_| StackError::NotMounted(path.into()))?;
    Ok(match name {
        Some(n) => parent.join(n),
        None => parent,
    })
}

fn absolute_dir(path: &Path) -> Result<PathBuf> {
    let abs = fs::canonicalize(path).map_err(|_| StackError::NoMountpoint(path.into()))?;
    if !abs.is_dir() {
        return Err(StackError::NotADirectory(abs));
    }
    Ok(abs)
}

/// Whether `pid` is still a live rimgfs process (not a recycled pid, not a zombie).
fn daemon_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ..."; a zombie has released its mount already.
    match stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(')')) {
        Some((comm, rest)) => {
            comm.as_bytes() == DAEMON_NAME.to_bytes() && !rest.trim_start().starts_with('Z')
        }
        None => false,
    }
}

/// Whether the FUSE layer at `target` still answers (a dead daemon gives `ENOTCONN`).
fn fuse_alive(target: &Path) -> bool {
    !matches!(fs::metadata(target), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

fn wait_for_exit(pid: u32) {
    if pid == std::process::id() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon_alive(pid) {
        if Instant::now() > deadline {
            if let Ok(p) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_dirs_sit_beside_the_upper() {
        assert_eq!(
            default_work(Path::new("/c/1/upper")),
            PathBuf::from("/c/1/work")
        );
        assert_eq!(
            default_work(Path::new("/tmp/changes")),
            PathBuf::from("/tmp/changes.work")
        );
    }

    #[test]
    fn mount_ids_are_stable_per_path() {
        assert_eq!(mount_id(Path::new("/mnt/x")), mount_id(Path::new("/mnt/x")));
        assert_ne!(mount_id(Path::new("/mnt/x")), mount_id(Path::new("/mnt/y")));
    }
}
