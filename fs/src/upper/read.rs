//! Reading an upper dir: its entries (`lstat`, never following a symlink) and their xattrs.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use super::{Result, UpperError, OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, SELINUX_XATTR, XATTR_MAX};
use crate::changes::push_name;
use crate::error::IoError;
use crate::union::NodeKind;

/// What an upper entry is: what a layer's tree holds, or one of the two kinds only an upper
/// dir has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ItemKind {
    /// An overlayfs whiteout (a character device 0:0).
    Whiteout,
    /// A socket, which a layer tar cannot hold.
    Socket,
    /// A directory, file, symlink, device or fifo.
    Node(NodeKind),
}

/// The parts of `struct stat` rimg uses, in fixed types.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stat {
    pub(super) kind: FileType,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) size: u64,
    pub(super) mtime: (i64, u32),
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) nlink: u64,
    pub(super) rdev: u64,
}

impl Stat {
    // rustix's `Stat` field types differ between architectures; on some the conversions are
    // identities.
    #[allow(clippy::useless_conversion)]
    pub(super) fn from_raw(st: &rfs::Stat) -> Self {
        Stat {
            kind: FileType::from_raw_mode(st.st_mode),
            mode: u32::from(st.st_mode) & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (
                i64::from(st.st_mtime),
                u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            ),
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
            nlink: u64::from(st.st_nlink),
            rdev: u64::from(st.st_rdev),
        }
    }
}

/// One entry of an upper directory, from `lstat`.
pub(super) struct Item {
    pub(super) name: CString,
    pub(super) kind: ItemKind,
    pub(super) stat: Stat,
}

impl Item {
    pub(super) fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

/// An xattr list: (name, value) pairs sorted by name.
pub(super) type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// The upper dir being read: its path, for error messages.
#[derive(Clone, Copy)]
pub(super) struct Upper<'a>(pub(super) &'a Path);

impl Upper<'_> {
    pub(super) fn err(
        &self,
        op: &'static str,
        rel: &[u8],
    ) -> impl FnOnce(rustix::io::Errno) -> UpperError {
        let path = if rel.is_empty() {
            self.0.display().to_string()
        } else {
            format!("{}/{}", self.0.display(), String::from_utf8_lossy(rel))
        };
        move |e| IoError::new(op, path, e.into()).into()
    }

    pub(super) fn open_root(&self) -> Result<OwnedFd> {
        rfs::open(
            self.0,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.err("open", b""))
    }

    /// Opens a subdirectory without following a symlink in its place.
    pub(super) fn open_dir(&self, parent: &OwnedFd, name: &CStr, rel: &[u8]) -> Result<OwnedFd> {
        rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.err("open", rel))
    }

    /// The entries of a directory, sorted by name, each `lstat`ed.
    pub(super) fn list(&self, dir: &OwnedFd, rel: &[u8]) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut d = rfs::Dir::read_from(dir).map_err(self.err("read", rel))?;
        while let Some(entry) = d.read() {
            let entry = entry.map_err(self.err("read", rel))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let name = name.to_owned();
            let stat = rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                let mut p = rel.to_vec();
                push_name(&mut p, name.as_bytes());
                self.err("stat", &p)(e)
            })?;
            let stat = Stat::from_raw(&stat);
            let kind = match stat.kind {
                FileType::Directory => ItemKind::Node(NodeKind::Dir),
                FileType::RegularFile => ItemKind::Node(NodeKind::File),
                FileType::Symlink => ItemKind::Node(NodeKind::Symlink),
                FileType::CharacterDevice if stat.rdev == 0 => ItemKind::Whiteout,
                FileType::CharacterDevice => ItemKind::Node(NodeKind::CharDevice),
                FileType::BlockDevice => ItemKind::Node(NodeKind::BlockDevice),
                FileType::Fifo => ItemKind::Node(NodeKind::Fifo),
                _ => ItemKind::Socket,
            };
            items.push(Item { name, kind, stat });
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(items)
    }
}

/// Extended attributes read into reusable buffers.
pub(super) struct Xattrs {
    list: Vec<u8>,
    value: Vec<u8>,
}

/// Where an entry's xattrs are read: an open fd (files, directories), or a path through
/// `/proc/self/fd/<dir fd>/<name>` with `l*xattr` (symlinks, devices, fifos, which must not be
/// opened). Either way no symlink on the way is followed.
pub(super) enum XattrSource<'a> {
    Fd(&'a OwnedFd),
    At(&'a OwnedFd, &'a CStr),
}

impl Xattrs {
    pub(super) fn new() -> Self {
        Xattrs {
            list: vec![0; XATTR_MAX],
            value: vec![0; XATTR_MAX],
        }
    }

    /// Every xattr except overlayfs's own and the host's SELinux label, sorted by name; and
    /// whether the entry is an opaque directory.
    pub(super) fn read(&mut self, src: &XattrSource<'_>) -> rustix::io::Result<(XattrList, bool)> {
        let proc_path = match src {
            XattrSource::Fd(_) => None,
            XattrSource::At(dir, name) => {
                let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                p.extend_from_slice(name.to_bytes());
                Some(p)
            }
        };
        let listed = match (src, &proc_path) {
            (XattrSource::Fd(fd), _) => rfs::flistxattr(fd, &mut self.list[..]),
            (_, Some(p)) => rfs::llistxattr(&p[..], &mut self.list[..]),
            _ => Ok(0),
        };
        let n = match listed {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => 0,
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut opaque = false;
        for name in self.list[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let is_opaque_name = name == OPAQUE_XATTR.as_bytes();
            if name.starts_with(OVERLAY_XATTR_PREFIX) && !is_opaque_name {
                continue;
            }
            if name == SELINUX_XATTR {
                continue;
            }
            let got = match (src, &proc_path) {
                (XattrSource::Fd(fd), _) => rfs::fgetxattr(fd, name, &mut self.value[..]),
                (_, Some(p)) => rfs::lgetxattr(&p[..], name, &mut self.value[..]),
                _ => Ok(0),
            };
            let len = match got {
                Ok(len) => len,
                // Removed between list and get.
                Err(rustix::io::Errno::NODATA) => continue,
                Err(e) => return Err(e),
            };
            if is_opaque_name {
                opaque = &self.value[..len] == b"y";
                continue;
            }
            out.push((name.to_vec(), self.value[..len].to_vec()));
        }
        out.sort();
        Ok((out, opaque))
    }
}
