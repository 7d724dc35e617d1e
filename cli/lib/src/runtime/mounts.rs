//! The mounts a container (or a RUN step) asks for on top of its rootfs: bind mounts of host
//! paths (volumes are bind mounts of their `_data` directory) and tmpfs mounts, made by the
//! container's first process inside its own mount namespace, before `pivot_root`.
//!
//! Architecture Invariant: a mount target is resolved inside the container's root and never
//! leads out of it, whatever the image's symlinks say (the runc CVE-2021-30465 family). The
//! target's path is first resolved as if the rootfs were `/` ([`super::rootfs`]'s
//! `resolve_in_root`, securejoin's rule), then opened one component at a time with `openat2`
//! (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` relative to the parent's
//! descriptor; a missing directory is made with `mkdirat` on that descriptor), and the mount
//! is made onto `/proc/self/fd/N` of the last descriptor: what is mounted over is exactly what
//! was resolved inside. Targets in `/proc` and `/sys` are refused, as runc refuses them.
//! Every mount is private; a read-only one is remounted `MS_RDONLY`, which a process without
//! `CAP_SYS_ADMIN` (a container process) cannot undo.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use rustix::fs::{mkdirat, openat, openat2, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

/// What kind of mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A bind mount of a host file or directory (`source`).
    #[default]
    Bind,
    /// A fresh tmpfs (`source` unused).
    Tmpfs,
}

/// One mount of a container, as the runtime makes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Bind or tmpfs.
    pub kind: MountKind,
    /// The host path of a bind mount (a file or a directory).
    #[serde(default)]
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub target: String,
    /// Mount it read-only.
    #[serde(default)]
    pub readonly: bool,
    /// Options: the flags `noexec`, `exec`, `nosuid`, `suid`, `nodev`, `dev`; anything else
    /// (`size=64m`, `mode=1777`) is passed to the filesystem (tmpfs).
    #[serde(default)]
    pub options: Vec<String>,
}

/// Where `target` leads inside `root` (a path relative to it, every symlink resolved as if
/// `root` were `/`): the mount point a [`MountSpec`] with that target uses.
pub fn resolve_target(root: &Path, target: &str) -> std::io::Result<PathBuf> {
    super::rootfs::resolve_in_root(root, Path::new(target))
}

/// The mount flags and filesystem data of `options` on top of `base`.
fn flags_and_data(base: MsFlags, options: &[String]) -> (MsFlags, Option<String>) {
    let mut flags = base;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            other => data.push(other),
        }
    }
    let data = (!data.is_empty()).then(|| data.join(","));
    (flags, data)
}

/// The components of an absolute container path, `..` undone lexically (Docker cleans a
/// mount destination the same way); an error for `/` itself.
pub(crate) fn target_parts(target: &str) -> Result<Vec<String>, String> {
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount config: mount path must be absolute: {target:?}"
        ));
    }
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err("invalid mount config: destination can't be '/'".into());
    }
    Ok(parts)
}

/// `RESOLVE_IN_ROOT` with no symlink followed at all: each component is opened on its own,
/// after the whole path was resolved inside the root.
fn step_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn open_step(parent: &impl AsFd, name: &str, dir: bool) -> rustix::io::Result<OwnedFd> {
    let mut flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    openat2(parent, name, flags, Mode::empty(), step_flags())
}

/// The opened target of a mount inside the rootfs: its parent directory and its own
/// descriptor (`O_PATH`).
struct Target {
    parent: OwnedFd,
    name: String,
    fd: OwnedFd,
    shown: String,
}

impl Target {
    fn proc_path(fd: &OwnedFd) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    /// Opens the target again: after a mount, the mount's root.
    fn reopen(&self) -> Result<OwnedFd, String> {
        open_step(&self.parent, &self.name, false)
            .map_err(|e| format!("reopening mount point {}: {e}", self.shown))
    }
}

/// Resolves `target` inside the root `root` (a directory descriptor of `rootfs`), creating
/// missing directories (0755) and, for a file mount, a missing last component as an empty
/// file (0644).
fn open_target(
    rootfs: &Path,
    root: &impl AsFd,
    target: &str,
    file: bool,
) -> Result<Target, String> {
    let parts = target_parts(target)?;
    let cleaned = format!("/{}", parts.join("/"));
    let rel = super::rootfs::resolve_in_root(rootfs, Path::new(&cleaned))
        .map_err(|e| format!("resolving mount destination {cleaned} in the image: {e}"))?;
    let shown = format!("/{}", rel.display());
    let names: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if let Some(top) = names.first() {
        if top == "proc" || top == "sys" {
            return Err(format!(
                "mount destination {cleaned} (leading to {shown}) cannot be mounted because it is inside /{top}"
            ));
        }
    }
    let Some((last, dirs)) = names.split_last() else {
        return Err(format!(
            "invalid mount config: destination {cleaned} leads to '/' in the image"
        ));
    };
    let mut parent =
        open_step(root, ".", true).map_err(|e| format!("opening the container's root: {e}"))?;
    let mut walked = String::new();
    for name in dirs {
        walked.push('/');
        walked.push_str(name);
        parent = open_dir_or_create(&parent, name, &walked)?;
    }
    let fd = match open_step(&parent, last, false) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if file => {
            openat(
                &parent,
                last.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| format!("creating mount point {shown}: {e}"))?;
            open_step(&parent, last, false)
                .map_err(|e| format!("opening mount point {shown}: {e}"))?
        }
        Err(rustix::io::Errno::NOENT) => open_dir_or_create(&parent, last, &shown)?,
        Err(e) => return Err(format!("opening mount point {shown}: {e}")),
    };
    Ok(Target {
        parent,
        name: last.clone(),
        fd,
        shown,
    })
}

fn open_dir_or_create(parent: &OwnedFd, name: &str, shown: &str) -> Result<OwnedFd, String> {
    match open_step(parent, name, true) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::NOENT) => {
            match mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(format!("creating mount point directory {shown}: {e}")),
            }
            open_step(parent, name, true)
                .map_err(|e| format!("opening mount point directory {shown}: {e}"))
        }
        Err(rustix::io::Errno::LOOP) => Err(format!(
            "mount point {shown} changed into a symlink while it was resolved"
        )),
        Err(e) => Err(format!("opening mount point directory {shown}: {e}")),
    }
}

/// Makes one mount. `root` is an `O_PATH` descriptor of `rootfs`.
fn mount_one(rootfs: &Path, root: &impl AsFd, m: &MountSpec) -> Result<(), String> {
    let private = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
    let target = match m.kind {
        MountKind::Bind => {
            let src = rustix::fs::open(&m.source, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("opening bind source {}: {e}", m.source.display()))?;
            let is_dir = rustix::fs::fstat(&src)
                .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
                .map_err(|e| format!("bind source {}: {e}", m.source.display()))?;
            let target = open_target(rootfs, root, &m.target, !is_dir)?;
            mount(
                Some(&Target::proc_path(&src)),
                &Target::proc_path(&target.fd),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("mounting {} on {}: {e}", m.source.display(), target.shown))?;
            let (flags, _) = flags_and_data(MsFlags::empty(), &m.options);
            let mounted = target.reopen()?;
            let mut remount = flags & (MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
            if m.readonly || flags.contains(MsFlags::MS_RDONLY) {
                remount |= MsFlags::MS_RDONLY;
            }
            if !remount.is_empty() {
                mount(
                    None::<&str>,
                    &Target::proc_path(&mounted),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | remount,
                    None::<&str>,
                )
                .map_err(|e| format!("remounting {} read-only: {e}", target.shown))?;
            }
            target
        }
        MountKind::Tmpfs => {
            let target = open_target(rootfs, root, &m.target, false)?;
            let mut base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if m.readonly {
                base |= MsFlags::MS_RDONLY;
            }
            let (flags, data) = flags_and_data(base, &m.options);
            mount(
                Some("tmpfs"),
                &Target::proc_path(&target.fd),
                Some("tmpfs"),
                flags,
                data.as_deref(),
            )
            .map_err(|e| format!("mounting a tmpfs on {}: {e}", target.shown))?;
            target
        }
    };
    let mounted = target.reopen()?;
    mount(
        None::<&str>,
        &Target::proc_path(&mounted),
        None::<&str>,
        private,
        None::<&str>,
    )
    .map_err(|e| format!("making {} private: {e}", target.shown))
}

/// Makes every mount of `mounts` over `rootfs` (whose `O_PATH` directory descriptor is
/// `root`), parents before children (fewer path components first, as Docker sorts them).
pub(crate) fn apply(rootfs: &Path, root: &impl AsFd, mounts: &[MountSpec]) -> Result<(), String> {
    let mut order: Vec<&MountSpec> = mounts.iter().collect();
    order.sort_by_key(|m| target_parts(&m.target).map(|p| p.len()).unwrap_or(0));
    for m in order {
        mount_one(rootfs, root, m)?;
    }
    Ok(())
}

/// Remounts the rootfs bind mount read-only (`--read-only`): only that mount, so `/proc`,
/// `/dev`, the `/etc` files, volumes and tmpfs mounts on it stay as they are. The working
/// directory `cwd` is created first (inside the root, as a mount point is), as Docker
/// creates it before the root turns read-only.
pub(crate) fn make_root_read_only(
    rootfs: &Path,
    root: &impl AsFd,
    cwd: &str,
) -> Result<(), String> {
    if target_parts(cwd).is_ok() {
        // A failure here shows later, in the chdir's own words.
        let _ = open_target(rootfs, root, cwd, false);
    }
    mount(
        None::<&str>,
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| format!("remounting the root filesystem read-only: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = flags_and_data(
            MsFlags::MS_NOSUID,
            &[
                "size=64m".into(),
                "noexec".into(),
                "mode=1777".into(),
                "suid".into(),
            ],
        );
        assert_eq!(f, MsFlags::MS_NOEXEC);
        assert_eq!(d.as_deref(), Some("size=64m,mode=1777"));
        let (_, d) = flags_and_data(MsFlags::empty(), &[]);
        assert_eq!(d, None);
    }

    #[test]
    fn targets_are_absolute_and_not_root() {
        assert_eq!(target_parts("/a/../b/c").unwrap(), vec!["b", "c"]);
        assert!(target_parts("a").is_err());
        assert!(target_parts("/").is_err());
        assert!(target_parts("/x/..").is_err());
    }
}
