//! The copy-on-write upper: a writable layer stacked on the read-only FUSE view.
//!
//! Today that is kernel overlayfs ([`KernelOverlay`]): writes, copy-up, renames and deletes
//! are the kernel's, and the upper dir is in overlayfs format (whiteout = char device 0:0,
//! opaque dir = xattr `trusted.overlay.opaque="y"`), as podman and Docker's overlay2 leave
//! it. [`CopyOnWrite`] is the seam for a pure-FUSE mode on hosts without overlayfs.
//!
//! Also here: the mount-table helpers both layers need (is a path a mount point, private
//! propagation, unmounting a mount whose daemon is gone; the table itself is
//! [`crate::mountinfo`]).

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{io_err, IoError};

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The kernel refused the overlay mount.
    #[error("kernel overlayfs refused to mount {target} (is the overlay module loaded, and are upper and work dirs on one filesystem that supports trusted xattrs?)")]
    Overlay {
        /// The mount point.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        cause: Errno,
    },
    /// Unmounting failed.
    #[error("cannot unmount {target}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        cause: Errno,
    },
    /// Changing mount propagation failed.
    #[error("cannot make {target} a private mount")]
    Propagation {
        /// The mount point.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        cause: Errno,
    },
    /// A path could not be used.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A path cannot be passed to overlayfs.
    #[error("path {0} cannot be used in overlayfs mount options")]
    BadPath(PathBuf),
}

/// A writable layer over a read-only lower directory.
pub trait CopyOnWrite {
    /// Mounts at `target` the union of `lower` (read-only) under `upper`, using `work` as
    /// scratch space on the same filesystem as `upper`.
    fn mount(
        &self,
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), MountError>;
}

/// Kernel overlayfs.
#[derive(Clone, Debug, Default)]
pub struct KernelOverlay {
    /// Honour setuid bits.
    pub suid: bool,
    /// Allow device nodes.
    pub dev: bool,
}

impl CopyOnWrite for KernelOverlay {
    fn mount(
        &self,
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), MountError> {
        for (dir, op) in [(upper, "creating upper dir"), (work, "creating work dir")] {
            fs::create_dir_all(dir).map_err(io_err(op, dir))?;
        }
        // redirect_dir, metacopy and index off: the upper dir stays in the plain format that
        // diff and commit read (and that Docker's overlay2 leaves).
        let data = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
            escape(lower)?,
            escape(upper)?,
            escape(work)?
        );
        let mut flags = MsFlags::empty();
        if !self.suid {
            flags |= MsFlags::MS_NOSUID;
        }
        if !self.dev {
            flags |= MsFlags::MS_NODEV;
        }
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|source| MountError::Overlay {
            target: target.to_path_buf(),
            cause: source,
        })?;
        make_private(target)
    }
}

/// Escapes the characters overlayfs treats specially in path options.
fn escape(p: &Path) -> Result<String, MountError> {
    let s = p
        .to_str()
        .ok_or_else(|| MountError::BadPath(p.to_path_buf()))?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// Makes the mount at `target` private, so mounts below it never propagate to or from
/// other mount namespaces.
pub fn make_private(target: &Path) -> Result<(), MountError> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| MountError::Propagation {
        target: target.to_path_buf(),
        cause: source,
    })
}

/// Unmounts `target`. A mount that is busy is refused unless `lazy`; a mount whose FUSE
/// daemon is gone (`ENOTCONN`) is always detached.
pub fn unmount(target: &Path, lazy: bool) -> Result<(), MountError> {
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    match umount2(target, flags) {
        Ok(()) => Ok(()),
        Err(Errno::ENOTCONN) | Err(Errno::EIO) => {
            umount2(target, MntFlags::MNT_DETACH).map_err(|source| MountError::Unmount {
                target: target.to_path_buf(),
                cause: source,
            })
        }
        Err(source) => Err(MountError::Unmount {
            target: target.to_path_buf(),
            cause: source,
        }),
    }
}

pub use crate::mountinfo::MountInfo;

/// The mounts of this mount namespace ([`crate::mountinfo::read`]).
pub fn mounts() -> Result<Vec<MountInfo>, MountError> {
    crate::mountinfo::read()
        .map_err(|e| io_err("reading", Path::new("/proc/self/mountinfo"))(e).into())
}

/// Whether `path` is a mount point in this namespace.
pub fn is_mountpoint(path: &Path) -> Result<bool, MountError> {
    Ok(mounts()?.iter().any(|m| m.mountpoint == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")).unwrap(), "/a\\,b\\:c\\\\d");
    }
}
