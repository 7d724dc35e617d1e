//! A container's copy-on-write upper directory: what changed (`diff`, [`upper_changes`]) and
//! the layer tar that records it (`commit`, [`write_upper_layer`]).
//!
//! The upper dir is in kernel overlayfs format, as `rimgfs mount --upper` leaves it:
//! - a **whiteout** is a character device 0:0 named like the lower entry it hides (overlayfs
//!   may hard-link all whiteouts to one inode, so `nlink` says nothing about them);
//! - an **opaque directory** carries the xattr `trusted.overlay.opaque = "y"`: nothing of the
//!   lower directory shows through, at any depth below it;
//! - every other `trusted.overlay.*` xattr (`origin`, `impure`, `nlink`, `upper`, …) is
//!   overlayfs bookkeeping and is ignored. `redirect_dir` and `metacopy` are not enabled by
//!   rimgfs, so renamed lower directories are copied up whole and copied-up files hold their
//!   data: no `trusted.overlay.redirect` or `trusted.overlay.metacopy` entry needs reading.
//!
//! The change list is podman's (`podman diff`, Docker's `docker diff` on overlay2): `A` added,
//! `C` changed, `D` deleted, in the order a depth-first walk with sorted names gives (`/a`,
//! `/a/b`, `/a-b`). A path is `C` when it exists in the lower tree and the upper holds it (a
//! file copied up is changed even if its bytes are the same), a directory also when its mode,
//! owner, xattrs or mtime differ. Every directory above an added or deleted path, above a path
//! whose kind changed, or above a changed directory is `C`; a modified file alone does not make
//! its directory `C` (overlayfs restores the parent's mtime after a copy-up, and podman 4.3
//! lists `C /bin/busybox` after a chmod without `C /bin`). An opaque directory over a lower
//! directory is `C` plus a `D` for each lower child it hides, where podman prints `D dir` and
//! then `A` for what is inside (moby#37880).
//!
//! Everything in the upper dir is read with `lstat`/`openat(O_NOFOLLOW)` relative to the open
//! directory above it: a symlink inside the upper (`/etc -> /`) is recorded as a symlink and
//! never followed to the host.

mod commit;
mod diff;
mod read;
#[cfg(test)]
pub(crate) mod tests;

pub use commit::write_upper_layer;
pub use diff::upper_changes;

use std::collections::HashSet;
use std::io;

use crate::error::IoError;
use crate::store::StoreError;

/// The xattr that marks an overlayfs opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of overlayfs's own xattrs, never reported nor committed.
pub const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
/// The host's security label, never committed.
const SELINUX_XATTR: &[u8] = b"security.selinux";
/// The paths a runtime injects or mounts over: never listed by `diff`, never committed.
pub const RUNTIME_INJECTED: [&str; 6] = [
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/proc",
    "/dev",
    "/sys",
];
/// Linux's largest xattr value and name list (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`).
const XATTR_MAX: usize = 1 << 16;

/// What [`upper_changes`] and [`write_upper_layer`] leave out, and how times are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// Paths (`/tmp/x`) left out with everything below them (`commit --exclude`): their upper
    /// entries, whiteouts included, are neither listed nor committed, and a directory holding
    /// one is not `C` for its mtime alone (creating them changed it).
    pub exclude: Vec<String>,
    /// Runtime-injected paths ([`RUNTIME_INJECTED`]), left out exactly as `exclude`.
    pub ignore: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: committed mtimes later than this are written as this.
    pub mtime_clamp: Option<i64>,
}

impl LayerOptions {
    /// The options for a container's upper dir: [`RUNTIME_INJECTED`] ignored.
    pub fn for_container() -> Self {
        LayerOptions {
            ignore: RUNTIME_INJECTED.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// Why an upper dir could not be read or committed.
#[derive(Debug, thiserror::Error)]
pub enum UpperError {
    /// A filesystem call on the upper dir (the upper dir joined with the entry's path) or on
    /// a layer blob failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A user file whose name would read as a whiteout in a layer tar.
    #[error("cannot commit {0}: file names starting with .wh. are reserved for whiteouts in image layers")]
    WhiteoutName(String),
    /// A file changed size or identity while it was being committed.
    #[error("{0} changed while it was being committed (pause the container and retry)")]
    ChangedWhileReading(String),
    /// Writing the layer failed (the output was closed or full).
    #[error("writing the layer")]
    Write(#[source] io::Error),
    /// Reading layer data from the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = UpperError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Paths

/// A set of paths, normalized to relative form (`etc/hosts`).
struct PathSet(HashSet<Vec<u8>>);

impl PathSet {
    fn new(opts: &LayerOptions) -> Self {
        PathSet(
            opts.exclude
                .iter()
                .chain(&opts.ignore)
                .map(|p| normalize(p.as_bytes()))
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    fn contains(&self, rel: &[u8]) -> bool {
        !self.0.is_empty() && self.0.contains(rel)
    }
}

/// `/etc//x/./y/` → `etc/x/y`. Not [`crate::path::clean_rel`]: a `..` stays a name here, so an
/// exclude path written through `..` matches nothing the walk meets rather than widening what
/// is left out (and never fails).
fn normalize(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for c in p
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}
