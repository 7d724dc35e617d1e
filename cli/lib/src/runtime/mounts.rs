//! Extra mounts of a container process ([`ProcessSpec::mounts`](super::ProcessSpec)): host
//! files or directories bind-mounted, and tmpfs, made by the container's first process in its
//! own mount namespace after the runtime's own mounts and before `pivot_root`.
//!
//! A target is resolved inside the rootfs as if the rootfs were `/` (an image's symlink
//! never leads a mount out of it); what it leads to is opened with openat2
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` and the mount is made on that descriptor, so
//! what is mounted over is exactly what was resolved. Missing targets (and their parents)
//! are created, a directory or an empty file after the source's kind; with an overlay they
//! land in the upper directory, where the caller may remove them again.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

use super::rootfs::{make_dirs_in_root, resolve_in_root};

/// What is mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountKind {
    /// A host file or directory (a socket too), bind-mounted.
    Bind {
        /// The host path.
        source: PathBuf,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Its size limit in bytes (the kernel's default, half the memory, when `None`).
        #[serde(default)]
        size: Option<u64>,
    },
}

/// One extra mount of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// What is mounted.
    pub kind: MountKind,
    /// The absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

impl MountSpec {
    /// Whether the mount point is a directory (else a file).
    fn wants_dir(&self) -> bool {
        match &self.kind {
            MountKind::Bind { source } => fs::metadata(source).map_or(true, |m| m.is_dir()),
            MountKind::Tmpfs { .. } => true,
        }
    }
}

/// Where `target` leads inside `root` (a path relative to it, every symlink resolved as if
/// `root` were `/`): the mount point a [`MountSpec`] with that target uses.
pub fn resolve_target(root: &Path, target: &str) -> io::Result<PathBuf> {
    resolve_in_root(root, Path::new(target))
}

/// Makes `mounts`, in order, over `rootfs` (opened as `root`). Runs in the container's first
/// process, in its new mount namespace.
pub(crate) fn apply(
    rootfs: &Path,
    root: &impl rustix::fd::AsFd,
    mounts: &[MountSpec],
) -> Result<(), String> {
    for m in mounts {
        apply_one(rootfs, root, m).map_err(|e| format!("mounting {}: {e}", m.target))?;
    }
    Ok(())
}

fn apply_one(rootfs: &Path, root: &impl rustix::fd::AsFd, m: &MountSpec) -> Result<(), String> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    if !m.target.starts_with('/') {
        return Err("the target must be an absolute path".into());
    }
    let rel = resolve_in_root(rootfs, Path::new(&m.target)).map_err(|e| e.to_string())?;
    if rel.as_os_str().is_empty() {
        return Err("cannot mount over the container's root".into());
    }
    // The kernel's views the runtime masks and makes read-only stay as it made them.
    if let Some(std::path::Component::Normal(top)) = rel.components().next() {
        if top == "proc" || top == "sys" {
            return Err(format!(
                "it leads to /{}, where rimg makes no mounts",
                rel.display()
            ));
        }
    }
    if let Some(parent) = rel.parent() {
        make_dirs_in_root(rootfs, parent).map_err(|e| format!("creating its parents: {e}"))?;
    }
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let dir = m.wants_dir();
    match fs::symlink_metadata(rootfs.join(&rel)) {
        Ok(meta) if meta.is_dir() != dir => {
            return Err(format!(
                "it is {} in the image",
                if meta.is_dir() {
                    "a directory"
                } else {
                    "not a directory"
                }
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if dir {
                make_dirs_in_root(rootfs, &rel).map_err(|e| format!("creating it: {e}"))?;
            } else {
                openat2(
                    root,
                    &rel,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                    resolve,
                )
                .map_err(|e| format!("creating it: {e}"))?;
            }
        }
        Err(e) => return Err(e.to_string()),
    }
    let target = openat2(
        root,
        &rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| e.to_string())?;
    let via = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
    match &m.kind {
        MountKind::Bind { source } => {
            mount(
                Some(source.as_path()),
                &via,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting {}: {e}", source.display()))?;
            if m.read_only {
                // The new mount sits on the resolved path, which holds no symlink.
                mount(
                    None::<&str>,
                    &rootfs.join(&rel),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| format!("making it read-only: {e}"))?;
            }
        }
        MountKind::Tmpfs { size } => {
            let data = size.map(|s| format!("size={s}"));
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if m.read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(Some("tmpfs"), &via, Some("tmpfs"), flags, data.as_deref())
                .map_err(|e| format!("mounting a tmpfs: {e}"))?;
        }
    }
    Ok(())
}
