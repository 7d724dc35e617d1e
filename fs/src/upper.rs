//! A container's copy-on-write upper directory: what changed (`diff`) and the layer tar that
//! records it (`commit`), plus the same change list between two images.
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

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::digest::Digest;
use crate::error::IoError;
use crate::store::{ContentStore, StoreError};
use crate::tar_write::{EntryMeta, TarWriter};
use crate::union::{Node, NodeKind, UnionTree, ROOT_INO};
use crate::whiteout;

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

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The path is new (`A`).
    Added,
    /// The path existed and was modified, replaced, or holds changes (`C`).
    Changed,
    /// The path was removed (`D`).
    Deleted,
}

impl ChangeKind {
    /// The letter Docker prints: `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// One line of a change list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The absolute path in the container (`/etc/passwd`).
    pub path: String,
    /// Bytes involved: for `A`/`C` the new entry's size (a file's length, a symlink's target
    /// length, 0 for directories, whose children are listed on their own); for `D` what the
    /// removed entry took in the lower tree, its whole subtree for a directory.
    pub size: u64,
}

impl fmt::Display for Change {
    /// `A /path`, as `docker diff` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

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

/// `/etc//x/./y/` → `etc/x/y`.
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

fn push_name(rel: &mut Vec<u8>, name: &[u8]) -> usize {
    let len = rel.len();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    len
}

fn shown(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

/// Orders paths as a depth-first walk with sorted names does: `/a`, `/a/b`, `/a-b`.
fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes().map(|c| if c == b'/' { 0 } else { c })
    }
    key(a).cmp(key(b))
}

fn sort_changes(changes: &mut [Change]) {
    changes.sort_by(|a, b| walk_order(&a.path, &b.path));
}

/// Docker's `sameFsTime`: equal seconds, and equal nanoseconds unless one side has none.
fn same_time(a: (i64, u32), b: (i64, u32)) -> bool {
    a.0 == b.0 && (a.1 == b.1 || a.1 == 0 || b.1 == 0)
}

/// The bytes a lower entry takes: files by length, symlinks by target length, a directory by
/// its whole subtree (hard-linked files once).
fn subtree_size(tree: &UnionTree, ino: u64) -> u64 {
    let mut total = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![ino];
    while let Some(i) = stack.pop() {
        let Some(n) = tree.node(i) else { continue };
        match n.kind {
            NodeKind::Dir => stack.extend(n.children.iter().map(|(_, c)| *c)),
            NodeKind::File if n.nlink > 1 && !seen.insert(i) => {}
            NodeKind::File | NodeKind::Symlink => total += n.size,
            _ => {}
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Reading the upper dir

/// What an upper entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Whiteout,
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// The parts of `struct stat` rimg uses, in fixed types.
#[derive(Clone, Copy, Debug)]
struct Stat {
    kind: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, u32),
    dev: u64,
    ino: u64,
    nlink: u64,
    rdev: u64,
}

impl Stat {
    // rustix's `Stat` field types differ between architectures; on some the conversions are
    // identities.
    #[allow(clippy::useless_conversion)]
    fn from_raw(st: &rfs::Stat) -> Self {
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
struct Item {
    name: CString,
    kind: ItemKind,
    stat: Stat,
}

impl Item {
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

/// An xattr list: (name, value) pairs sorted by name.
type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// The upper dir being read: its path, for error messages.
#[derive(Clone, Copy)]
struct Upper<'a>(&'a Path);

impl Upper<'_> {
    fn err(&self, op: &'static str, rel: &[u8]) -> impl FnOnce(rustix::io::Errno) -> UpperError {
        let path = if rel.is_empty() {
            self.0.display().to_string()
        } else {
            format!("{}/{}", self.0.display(), String::from_utf8_lossy(rel))
        };
        move |e| IoError::new(op, path, e.into()).into()
    }

    fn open_root(&self) -> Result<OwnedFd> {
        rfs::open(
            self.0,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.err("open", b""))
    }

    /// Opens a subdirectory without following a symlink in its place.
    fn open_dir(&self, parent: &OwnedFd, name: &CStr, rel: &[u8]) -> Result<OwnedFd> {
        rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.err("open", rel))
    }

    /// The entries of a directory, sorted by name, each `lstat`ed.
    fn list(&self, dir: &OwnedFd, rel: &[u8]) -> Result<Vec<Item>> {
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
                FileType::Directory => ItemKind::Dir,
                FileType::RegularFile => ItemKind::File,
                FileType::Symlink => ItemKind::Symlink,
                FileType::CharacterDevice if stat.rdev == 0 => ItemKind::Whiteout,
                FileType::CharacterDevice => ItemKind::CharDevice,
                FileType::BlockDevice => ItemKind::BlockDevice,
                FileType::Fifo => ItemKind::Fifo,
                _ => ItemKind::Socket,
            };
            items.push(Item { name, kind, stat });
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(items)
    }
}

/// Extended attributes read into reusable buffers.
struct Xattrs {
    list: Vec<u8>,
    value: Vec<u8>,
}

/// Where an entry's xattrs are read: an open fd (files, directories), or a path through
/// `/proc/self/fd/<dir fd>/<name>` with `l*xattr` (symlinks, devices, fifos, which must not be
/// opened). Either way no symlink on the way is followed.
enum XattrSource<'a> {
    Fd(&'a OwnedFd),
    At(&'a OwnedFd, &'a CStr),
}

impl Xattrs {
    fn new() -> Self {
        Xattrs {
            list: vec![0; XATTR_MAX],
            value: vec![0; XATTR_MAX],
        }
    }

    /// Every xattr except overlayfs's own and the host's SELinux label, sorted by name; and
    /// whether the entry is an opaque directory.
    fn read(&mut self, src: &XattrSource<'_>) -> rustix::io::Result<(XattrList, bool)> {
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

// ---------------------------------------------------------------------------------------------
// diff: upper dir against the lower tree

/// The changes a container's upper dir makes to its image's tree `lower`, in Docker's order.
/// Paths in `opts.exclude` and `opts.ignore` (and below them) are not listed.
pub fn upper_changes(
    upper: &Path,
    lower: &UnionTree,
    opts: &LayerOptions,
) -> Result<Vec<Change>, UpperError> {
    let up = Upper(upper);
    let root = up.open_root()?;
    let mut d = Differ {
        up,
        lower,
        skip: PathSet::new(opts),
        xattrs: Xattrs::new(),
        out: Vec::new(),
    };
    let mut rel = Vec::new();
    d.dir(&root, &mut rel, Some(ROOT_INO), false)?;
    let mut out = d.out;
    sort_changes(&mut out);
    Ok(out)
}

struct Differ<'a> {
    up: Upper<'a>,
    lower: &'a UnionTree,
    skip: PathSet,
    xattrs: Xattrs,
    out: Vec<Change>,
}

/// What a directory's walk found.
struct DirSummary {
    /// A change that makes its directories `C` was listed below: an added or deleted path,
    /// a path whose kind changed, or a changed directory.
    listed: bool,
    /// It holds an ignored or excluded entry.
    skipped_child: bool,
}

impl Differ<'_> {
    fn push(&mut self, kind: ChangeKind, rel: &[u8], size: u64) {
        self.out.push(Change {
            kind,
            path: shown(rel),
            size,
        });
    }

    /// Walks one upper directory. `lower` is the lower directory at the same path (if it is
    /// one); `hidden` says its lower children do not show through (it is opaque, or below an
    /// opaque directory), so each one the upper does not hold is deleted.
    fn dir(
        &mut self,
        fd: &OwnedFd,
        rel: &mut Vec<u8>,
        lower: Option<u64>,
        hidden: bool,
    ) -> Result<DirSummary> {
        let items = self.up.list(fd, rel)?;
        let mut sum = DirSummary {
            listed: false,
            skipped_child: false,
        };
        for item in &items {
            let len = push_name(rel, item.name());
            if self.skip.contains(rel) {
                sum.skipped_child = true;
                rel.truncate(len);
                continue;
            }
            let lower_child = lower.and_then(|d| self.lower.lookup(d, item.name()));
            let lower_node = lower_child.and_then(|c| self.lower.node(c));
            match item.kind {
                ItemKind::Whiteout => {
                    // Below an opaque directory the lower child is already hidden; the pass
                    // over hidden children below reports it.
                    if let (Some(c), false) = (lower_child, hidden) {
                        self.push(ChangeKind::Deleted, rel, subtree_size(self.lower, c));
                        sum.listed = true;
                    }
                }
                ItemKind::Dir => {
                    let sub = self.up.open_dir(fd, &item.name, rel)?;
                    let (xattrs, opaque) = self
                        .xattrs
                        .read(&XattrSource::Fd(&sub))
                        .map_err(self.up.err("read xattrs of", rel))?;
                    let lower_dir =
                        lower_child.filter(|_| lower_node.is_some_and(|n| n.kind == NodeKind::Dir));
                    let below = self.dir(&sub, rel, lower_dir, hidden || opaque)?;
                    let kind = match (lower_node, lower_dir) {
                        (None, _) => Some(ChangeKind::Added),
                        (Some(_), None) => Some(ChangeKind::Changed),
                        (Some(n), Some(_)) => {
                            let attrs_differ = item.stat.mode != n.mode & 0o7777
                                || item.stat.uid != n.uid
                                || item.stat.gid != n.gid
                                || xattrs != n.xattrs
                                || (!below.skipped_child
                                    && !same_time(item.stat.mtime, (n.mtime, n.mtime_nsec)));
                            (attrs_differ || below.listed || (opaque && !hidden))
                                .then_some(ChangeKind::Changed)
                        }
                    };
                    if let Some(k) = kind {
                        self.push(k, rel, 0);
                        sum.listed = true;
                    }
                }
                _ => {
                    let kind = if lower_child.is_some() {
                        ChangeKind::Changed
                    } else {
                        ChangeKind::Added
                    };
                    let size = match item.kind {
                        ItemKind::File | ItemKind::Symlink => item.stat.size,
                        _ => 0,
                    };
                    self.push(kind, rel, size);
                    sum.listed |= kind == ChangeKind::Added
                        || lower_node.is_some_and(|n| n.kind == NodeKind::Dir);
                }
            }
            rel.truncate(len);
        }
        if let (true, Some(d)) = (hidden, lower.and_then(|l| self.lower.node(l))) {
            for (name, ino) in &d.children {
                let held = items
                    .binary_search_by(|it| it.name().cmp(name))
                    .is_ok_and(|i| items[i].kind != ItemKind::Whiteout);
                if held {
                    continue;
                }
                let len = push_name(rel, name);
                if !self.skip.contains(rel) {
                    self.push(ChangeKind::Deleted, rel, subtree_size(self.lower, *ino));
                    sum.listed = true;
                }
                rel.truncate(len);
            }
        }
        Ok(sum)
    }
}

// ---------------------------------------------------------------------------------------------
// diff: image against image

/// The changes that turn image tree `old` into image tree `new` (`rimg diff IMAGE1 IMAGE2`),
/// in Docker's order, with sizes. Files are compared by attributes, then (when their size and
/// mtime are equal but their data lives elsewhere) byte by byte from the stored layer tars of
/// `store`. Directories count as changed when their mode, owner or xattrs differ (not their
/// mtime, as in Docker's `ChangesDirs`) or, as in [`upper_changes`], when they hold an added or
/// deleted path, a path whose kind changed, or a changed directory.
pub fn tree_changes(
    old: &UnionTree,
    new: &UnionTree,
    store: &ContentStore,
) -> Result<Vec<Change>, UpperError> {
    let mut t = TreeDiff {
        old: Side::new(old, store),
        new: Side::new(new, store),
        out: Vec::new(),
    };
    let mut rel = Vec::new();
    t.dir(&mut rel, ROOT_INO, ROOT_INO)?;
    let mut out = t.out;
    sort_changes(&mut out);
    Ok(out)
}

/// One image tree and its open layer blobs.
struct Side<'a> {
    tree: &'a UnionTree,
    store: &'a ContentStore,
    files: HashMap<u32, File>,
}

impl<'a> Side<'a> {
    fn new(tree: &'a UnionTree, store: &'a ContentStore) -> Self {
        Side {
            tree,
            store,
            files: HashMap::new(),
        }
    }

    fn node(&self, ino: u64) -> Option<&'a Node> {
        self.tree.node(ino)
    }

    /// Reads `buf.len()` bytes of a file's data starting `at` bytes in.
    fn read(&mut self, n: &Node, at: u64, buf: &mut [u8]) -> Result<()> {
        let Some(data) = n.data else {
            buf.fill(0);
            return Ok(());
        };
        let digest: Digest = match self.tree.layers().get(data.layer as usize) {
            Some(d) => *d,
            None => {
                buf.fill(0);
                return Ok(());
            }
        };
        let file = match self.files.entry(data.layer) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(self.store.open_blob(&digest)?)
            }
        };
        file.read_exact_at(buf, data.offset + at)
            .map_err(|source| IoError::new("read", self.store.blob_path(&digest), source).into())
    }
}

struct TreeDiff<'a> {
    old: Side<'a>,
    new: Side<'a>,
    out: Vec<Change>,
}

impl TreeDiff<'_> {
    fn push(&mut self, kind: ChangeKind, rel: &[u8], size: u64) {
        self.out.push(Change {
            kind,
            path: shown(rel),
            size,
        });
    }

    /// Both trees' directories at `rel`; returns whether a change that makes its directories
    /// `C` was found below (see `DirSummary::listed`).
    fn dir(&mut self, rel: &mut Vec<u8>, o: u64, n: u64) -> Result<bool> {
        let (Some(od), Some(nd)) = (self.old.node(o), self.new.node(n)) else {
            return Ok(false);
        };
        let mut listed = false;
        let (mut i, mut j) = (0, 0);
        while i < od.children.len() || j < nd.children.len() {
            let ord = match (od.children.get(i), nd.children.get(j)) {
                (Some(a), Some(b)) => a.0.cmp(&b.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (name, oc, nc) = match ord {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (&od.children[i - 1].0, Some(od.children[i - 1].1), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (&nd.children[j - 1].0, None, Some(nd.children[j - 1].1))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    let (a, b) = (&od.children[i - 1], &nd.children[j - 1]);
                    (&a.0, Some(a.1), Some(b.1))
                }
            };
            let len = push_name(rel, name);
            listed |= self.entry(rel, oc, nc)?;
            rel.truncate(len);
        }
        Ok(listed)
    }

    fn entry(&mut self, rel: &mut Vec<u8>, oc: Option<u64>, nc: Option<u64>) -> Result<bool> {
        let on = oc.and_then(|c| self.old.node(c));
        let nn = nc.and_then(|c| self.new.node(c));
        match (oc, on, nc, nn) {
            (Some(oc), Some(_), None, _) => {
                self.push(ChangeKind::Deleted, rel, subtree_size(self.old.tree, oc));
                Ok(true)
            }
            (None, _, Some(nc), Some(_)) => {
                self.added(rel, nc);
                Ok(true)
            }
            (Some(oc), Some(on), Some(nc), Some(nn)) => {
                if on.kind == NodeKind::Dir && nn.kind == NodeKind::Dir {
                    let below = self.dir(rel, oc, nc)?;
                    let differs = on.mode != nn.mode
                        || on.uid != nn.uid
                        || on.gid != nn.gid
                        || on.xattrs != nn.xattrs;
                    if below || differs {
                        self.push(ChangeKind::Changed, rel, 0);
                    }
                    return Ok(below || differs);
                }
                if on.kind != nn.kind {
                    self.push(ChangeKind::Changed, rel, entry_size(nn));
                    if nn.kind == NodeKind::Dir {
                        self.added_below(rel, nc);
                    }
                    return Ok(true);
                }
                // A modified file does not make its directory changed, as in container diffs.
                if self.differs(on, nn)? {
                    self.push(ChangeKind::Changed, rel, entry_size(nn));
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn added(&mut self, rel: &mut Vec<u8>, ino: u64) {
        let Some(n) = self.new.node(ino) else { return };
        self.push(ChangeKind::Added, rel, entry_size(n));
        if n.kind == NodeKind::Dir {
            self.added_below(rel, ino);
        }
    }

    fn added_below(&mut self, rel: &mut Vec<u8>, ino: u64) {
        let Some(n) = self.new.node(ino) else { return };
        for (name, c) in &n.children {
            let len = push_name(rel, name);
            self.added(rel, *c);
            rel.truncate(len);
        }
    }

    /// Whether two non-directories of the same kind differ (attributes, then data).
    fn differs(&mut self, a: &Node, b: &Node) -> Result<bool> {
        if a.mode != b.mode
            || a.uid != b.uid
            || a.gid != b.gid
            || a.size != b.size
            || a.link != b.link
            || a.dev_major != b.dev_major
            || a.dev_minor != b.dev_minor
            || a.xattrs != b.xattrs
            || !same_time((a.mtime, a.mtime_nsec), (b.mtime, b.mtime_nsec))
        {
            return Ok(true);
        }
        if a.kind != NodeKind::File {
            return Ok(false);
        }
        let (Some(da), Some(db)) = (a.data, b.data) else {
            return Ok(a.data.is_some() != b.data.is_some());
        };
        let la = self.old.tree.layers().get(da.layer as usize);
        let lb = self.new.tree.layers().get(db.layer as usize);
        if la.is_some() && la == lb && da.offset == db.offset {
            return Ok(false);
        }
        const CHUNK: u64 = 1 << 16;
        let mut ba = vec![0u8; CHUNK.min(a.size) as usize];
        let mut bb = ba.clone();
        let mut at = 0;
        while at < a.size {
            let n = CHUNK.min(a.size - at) as usize;
            self.old.read(a, at, &mut ba[..n])?;
            self.new.read(b, at, &mut bb[..n])?;
            if ba[..n] != bb[..n] {
                return Ok(true);
            }
            at += n as u64;
        }
        Ok(false)
    }
}

fn entry_size(n: &Node) -> u64 {
    match n.kind {
        NodeKind::File | NodeKind::Symlink => n.size,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// commit: the upper dir as a layer tar

/// Writes the upper dir as one layer tar to `out`, deterministically: entries in depth-first
/// sorted-name order; modes, owners, xattrs (PAX `SCHILY.xattr.*`, minus `trusted.overlay.*`
/// and `security.selinux`), devices and fifos as they are; mtimes clamped to
/// `opts.mtime_clamp`; no user or group names; no root entry. Overlayfs whiteouts become
/// `.wh.NAME` entries (those whose target the lower tree does not have are dropped), opaque
/// directories a `DIR/.wh..wh..opq` entry after the directory; files hard-linked inside the
/// upper are written once and then as tar hard links. Sockets are left out (tar cannot hold
/// them), as are `opts.exclude` and `opts.ignore` paths. A user file whose name starts with
/// `.wh.` is refused ([`UpperError::WhiteoutName`]). Nothing is followed: symlinks are
/// recorded, files opened with `O_NOFOLLOW` relative to their directory.
pub fn write_upper_layer(
    upper: &Path,
    lower: &UnionTree,
    out: impl Write,
    opts: &LayerOptions,
) -> Result<(), UpperError> {
    let up = Upper(upper);
    let root = up.open_root()?;
    let mut c = Committer {
        up,
        lower,
        skip: PathSet::new(opts),
        clamp: opts.mtime_clamp,
        tar: TarWriter::new(BufWriter::with_capacity(1 << 20, out)),
        links: HashMap::new(),
        xattrs: Xattrs::new(),
        pending: Vec::new(),
    };
    let mut rel = Vec::new();
    c.dir(&root, &mut rel)?;
    c.tar.finish().map_err(UpperError::Write)?;
    Ok(())
}

struct Committer<'a, W: Write> {
    up: Upper<'a>,
    lower: &'a UnionTree,
    skip: PathSet,
    clamp: Option<i64>,
    tar: TarWriter<W>,
    /// Files with more than one name: (dev, ino) → the path written first.
    links: HashMap<(u64, u64), Vec<u8>>,
    xattrs: Xattrs,
    /// Directories the upper holds only because something was created below them: the same
    /// as in the lower, so written only once an entry below them is (outermost first).
    pending: Vec<PendingDir>,
}

/// A directory entry held back by [`Committer`].
struct PendingDir {
    path: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: XattrList,
}

impl<W: Write> Committer<'_, W> {
    fn mtime(&self, item: &Item) -> i64 {
        let t = item.stat.mtime.0;
        self.clamp.map_or(t, |c| t.min(c))
    }

    fn meta<'m>(&self, item: &Item, rel: &'m [u8], kind: tar::EntryType) -> EntryMeta<'m> {
        EntryMeta {
            path: rel,
            kind,
            mode: item.stat.mode,
            uid: item.stat.uid,
            gid: item.stat.gid,
            mtime: self.mtime(item),
            size: 0,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        }
    }

    fn write(&mut self, meta: &EntryMeta<'_>, data: impl io::Read) -> Result<()> {
        self.flush_pending()?;
        self.append(meta, data)
    }

    /// Writes the held-back directory entries.
    fn flush_pending(&mut self) -> Result<()> {
        for d in std::mem::take(&mut self.pending) {
            let dir = EntryMeta {
                path: &d.path,
                kind: tar::EntryType::Directory,
                mode: d.mode,
                uid: d.uid,
                gid: d.gid,
                mtime: d.mtime,
                size: 0,
                link: b"",
                dev_major: 0,
                dev_minor: 0,
                xattrs: &d.xattrs,
            };
            self.append(&dir, io::empty())?;
        }
        Ok(())
    }

    fn append(&mut self, meta: &EntryMeta<'_>, data: impl io::Read) -> Result<()> {
        self.tar.append_entry(meta, data).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                UpperError::ChangedWhileReading(shown(meta.path))
            } else {
                UpperError::Write(e)
            }
        })
    }

    /// Writes a directory's entries; returns whether it held a skipped (excluded or
    /// runtime-injected) one.
    fn dir(&mut self, fd: &OwnedFd, rel: &mut Vec<u8>) -> Result<bool> {
        let items = self.up.list(fd, rel)?;
        let mut skipped = false;
        for item in &items {
            let len = push_name(rel, item.name());
            if self.skip.contains(rel) {
                skipped = true;
            } else {
                self.entry(fd, item, rel)?;
            }
            rel.truncate(len);
        }
        Ok(skipped)
    }

    fn entry(&mut self, dir: &OwnedFd, item: &Item, rel: &mut Vec<u8>) -> Result<()> {
        if item.kind == ItemKind::Whiteout {
            if self.lower.resolve(rel).is_some() {
                let parent_len = rel.len() - item.name().len();
                let mut path = rel[..parent_len].to_vec();
                path.extend_from_slice(whiteout::PREFIX);
                path.extend_from_slice(item.name());
                let mut meta = self.meta(item, &path, tar::EntryType::Regular);
                meta.mode = 0o600;
                self.write(&meta, io::empty())?;
            }
            return Ok(());
        }
        if item.name().starts_with(whiteout::PREFIX) {
            return Err(UpperError::WhiteoutName(shown(rel)));
        }
        match item.kind {
            ItemKind::Dir => {
                let sub = self.up.open_dir(dir, &item.name, rel)?;
                let (xattrs, opaque) = self
                    .xattrs
                    .read(&XattrSource::Fd(&sub))
                    .map_err(self.up.err("read xattrs of", rel))?;
                // A directory the lower has with the same mode, owner and xattrs waits until
                // something below it is written: the ones the runtime's /etc/hosts & co. made
                // in the upper stay out of the layer, as they stay out of `diff`.
                let lower = self
                    .lower
                    .resolve(rel)
                    .and_then(|i| self.lower.node(i))
                    .filter(|n| {
                        n.kind == NodeKind::Dir
                            && item.stat.mode == n.mode & 0o7777
                            && item.stat.uid == n.uid
                            && item.stat.gid == n.gid
                            && xattrs == n.xattrs
                    })
                    .map(|n| (n.mtime, n.mtime_nsec));
                if let (Some(lower_mtime), false) = (lower, opaque) {
                    let depth = self.pending.len();
                    self.pending.push(PendingDir {
                        path: rel.clone(),
                        mode: item.stat.mode,
                        uid: item.stat.uid,
                        gid: item.stat.gid,
                        mtime: self.mtime(item),
                        xattrs,
                    });
                    let skipped = self.dir(&sub, rel)?;
                    if self.pending.len() > depth {
                        // Nothing below was written. Its own mtime is a change unless an
                        // ignored entry below explains it (as `diff` decides).
                        if !skipped && !same_time(item.stat.mtime, lower_mtime) {
                            self.flush_pending()?;
                        } else {
                            self.pending.truncate(depth);
                        }
                    }
                    return Ok(());
                }
                let mut meta = self.meta(item, rel, tar::EntryType::Directory);
                meta.xattrs = &xattrs;
                self.write(&meta, io::empty())?;
                if opaque {
                    let len = push_name(rel, whiteout::OPAQUE);
                    let mut marker = self.meta(item, rel, tar::EntryType::Regular);
                    marker.mode = item.stat.mode & 0o777;
                    self.write(&marker, io::empty())?;
                    rel.truncate(len);
                }
                self.dir(&sub, rel).map(|_| ())
            }
            ItemKind::File => self.file(dir, item, rel),
            ItemKind::Socket => Ok(()),
            _ => {
                let xattrs = self
                    .xattrs
                    .read(&XattrSource::At(dir, &item.name))
                    .map_err(self.up.err("read xattrs of", rel))?
                    .0;
                let kind = match item.kind {
                    ItemKind::Symlink => tar::EntryType::Symlink,
                    ItemKind::CharDevice => tar::EntryType::Char,
                    ItemKind::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let target = if item.kind == ItemKind::Symlink {
                    rfs::readlinkat(dir, &item.name, Vec::new())
                        .map_err(self.up.err("readlink", rel))?
                        .into_bytes()
                } else {
                    Vec::new()
                };
                let mut meta = self.meta(item, rel, kind);
                meta.link = &target;
                meta.xattrs = &xattrs;
                let rdev = item.stat.rdev;
                meta.dev_major = rfs::major(rdev);
                meta.dev_minor = rfs::minor(rdev);
                self.write(&meta, io::empty())
            }
        }
    }

    fn file(&mut self, dir: &OwnedFd, item: &Item, rel: &[u8]) -> Result<()> {
        let key = (item.stat.dev, item.stat.ino);
        if item.stat.nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                let mut meta = self.meta(item, rel, tar::EntryType::Link);
                meta.link = &first;
                return self.write(&meta, io::empty());
            }
        }
        let fd = rfs::openat(
            dir,
            &item.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.up.err("open", rel))?;
        let st = Stat::from_raw(&rfs::fstat(&fd).map_err(self.up.err("stat", rel))?);
        if st.kind != FileType::RegularFile || st.ino != key.1 {
            return Err(UpperError::ChangedWhileReading(shown(rel)));
        }
        let xattrs = self
            .xattrs
            .read(&XattrSource::Fd(&fd))
            .map_err(self.up.err("read xattrs of", rel))?
            .0;
        let mut meta = self.meta(item, rel, tar::EntryType::Regular);
        meta.size = st.size;
        meta.xattrs = &xattrs;
        let file = File::from(fd);
        self.write(&meta, &file)?;
        if item.stat.nlink > 1 {
            self.links.insert(key, rel.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_index::{index_tar_bytes, EntryKind, LayerIndex};
    use rustix::fs::{Timespec, Timestamps, XattrFlags, CWD};
    use std::path::PathBuf;

    const T0: u64 = 1_700_000_000;

    /// A lower layer tar.
    struct Lower(tar::Builder<Vec<u8>>);

    impl Lower {
        fn new() -> Self {
            Lower(tar::Builder::new(Vec::new()))
        }
        fn add(mut self, kind: tar::EntryType, path: &str, data: &[u8], mode: u32) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(T0);
            h.set_size(data.len() as u64);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }
        fn dir(self, p: &str) -> Self {
            self.add(tar::EntryType::Directory, &format!("{p}/"), b"", 0o755)
        }
        fn file(self, p: &str, d: &[u8]) -> Self {
            self.add(tar::EntryType::Regular, p, d, 0o644)
        }
        fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn tree(layers: &[&[u8]]) -> UnionTree {
        let idx: Vec<LayerIndex> = layers.iter().map(|l| index_tar_bytes(l).unwrap()).collect();
        UnionTree::build(&idx)
    }

    /// What a test does to the upper dir, in order.
    #[derive(Clone, Copy)]
    enum Op<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Whiteout(&'a str),
        Opaque(&'a str),
        Symlink(&'a str, &'a str),
        Chmod(&'a str, u32),
        /// Sets a path's mtime to the lower layers' (what copy-up leaves).
        Settle(&'a str),
        Xattr(&'a str, &'a str, &'a [u8]),
        /// A character device with this major and minor number, mode 0600.
        CharDevice(&'a str, u32, u32),
    }

    fn make_upper(ops: &[Op<'_>]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = |rel: &str| -> PathBuf { dir.path().join(rel) };
        for op in ops {
            match *op {
                Op::Dir(d) => std::fs::create_dir_all(p(d)).unwrap(),
                Op::File(f, data) => {
                    std::fs::create_dir_all(p(f).parent().unwrap()).unwrap();
                    std::fs::write(p(f), data).unwrap()
                }
                Op::Whiteout(w) => {
                    rfs::mknodat(CWD, p(w), FileType::CharacterDevice, Mode::empty(), 0).unwrap()
                }
                Op::Opaque(d) => {
                    rfs::setxattr(p(d), OPAQUE_XATTR, b"y", XattrFlags::empty()).unwrap()
                }
                Op::Symlink(l, t) => std::os::unix::fs::symlink(t, p(l)).unwrap(),
                Op::Chmod(f, m) => {
                    rfs::chmodat(CWD, p(f), Mode::from_raw_mode(m), AtFlags::empty()).unwrap()
                }
                Op::Settle(f) => {
                    let t = Timespec {
                        tv_sec: T0 as i64,
                        tv_nsec: 0,
                    };
                    let times = Timestamps {
                        last_access: t,
                        last_modification: t,
                    };
                    rfs::utimensat(CWD, p(f), &times, AtFlags::SYMLINK_NOFOLLOW).unwrap()
                }
                Op::Xattr(f, k, v) => rfs::lsetxattr(p(f), k, v, XattrFlags::empty()).unwrap(),
                Op::CharDevice(f, major, minor) => rfs::mknodat(
                    CWD,
                    p(f),
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(0o600),
                    rfs::makedev(major, minor),
                )
                .unwrap(),
            }
        }
        dir
    }

    fn lines(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| c.to_string()).collect()
    }

    fn lab_lower() -> Vec<u8> {
        Lower::new()
            .dir("diamol")
            .file("diamol/ch03.txt", b"lab\n")
            .dir("etc")
            .file("etc/some-file", b"12345")
            .file("etc/passwd", b"root\n")
            .dir("o")
            .file("o/a", b"a")
            .dir("o/sub")
            .file("o/sub/x", b"xx")
            .file("o/b", b"b")
            .dir("d")
            .file("d/f", b"123")
            .file("f", b"file")
            .dir("a")
            .dir("a-b")
            .dir("plain")
            .build()
    }

    #[test]
    fn upper_changes_table() {
        let lower = lab_lower();
        let lower = tree(&[&lower]);
        let cases: &[(&str, &[Op<'_>], &[&str])] = &[
            (
                "the seeds' lab",
                &[
                    Op::Dir("diamol"),
                    Op::File("diamol/ch03.txt", b"lab\njslee\n"),
                    Op::File("diamol/new.txt", b"x\n"),
                    Op::Dir("etc"),
                    Op::Whiteout("etc/some-file"),
                    Op::Dir("data"),
                    Op::File("data/f", b"y\n"),
                ],
                &[
                    "A /data",
                    "A /data/f",
                    "C /diamol",
                    "C /diamol/ch03.txt",
                    "A /diamol/new.txt",
                    "C /etc",
                    "D /etc/some-file",
                ],
            ),
            (
                "a parent holding only a copied-up file is not C (its mtime was restored)",
                &[
                    Op::Dir("diamol"),
                    Op::File("diamol/ch03.txt", b"changed"),
                    Op::Settle("diamol"),
                ],
                &["C /diamol/ch03.txt"],
            ),
            (
                "every directory above a new path or a changed directory is C",
                &[
                    Op::Dir("o/sub"),
                    Op::File("o/sub/new", b"n"),
                    Op::Settle("o"),
                    Op::File("etc/passwd", b"x"),
                    Op::Settle("etc"),
                ],
                &["C /etc/passwd", "C /o", "C /o/sub", "A /o/sub/new"],
            ),
            (
                "opaque dir over a lower dir: C plus D for each hidden child",
                &[Op::Dir("o"), Op::Opaque("o"), Op::File("o/b", b"new b")],
                &["C /o", "D /o/a", "C /o/b", "D /o/sub"],
            ),
            (
                "below an opaque dir, a re-made subdir hides its lower children too",
                &[Op::Dir("o/sub"), Op::Opaque("o"), Op::Settle("o/sub")],
                &["C /o", "D /o/a", "D /o/b", "C /o/sub", "D /o/sub/x"],
            ),
            (
                "a deleted lower dir is one D",
                &[Op::Whiteout("d")],
                &["D /d"],
            ),
            (
                "a lower file replaced by a dir",
                &[Op::Dir("f"), Op::File("f/x", b"1")],
                &["C /f", "A /f/x"],
            ),
            (
                "walk order puts /a/x before /a-b",
                &[Op::File("a-b/y", b""), Op::File("a/x", b"")],
                &["C /a", "A /a/x", "C /a-b", "A /a-b/y"],
            ),
            (
                "a chmod'ed dir is C; a settled copied-up dir is not listed",
                &[
                    Op::Dir("plain"),
                    Op::Chmod("plain", 0o700),
                    Op::Dir("a"),
                    Op::Settle("a"),
                ],
                &["C /plain"],
            ),
            (
                "an xattr on a dir is C; overlayfs's own xattrs are not",
                &[
                    Op::Dir("plain"),
                    Op::Xattr("plain", "user.k", b"v"),
                    Op::Settle("plain"),
                    Op::Dir("a"),
                    Op::Xattr("a", "trusted.overlay.origin", b"\x00"),
                    Op::Xattr("a", "trusted.overlay.impure", b"y"),
                    Op::Settle("a"),
                ],
                &["C /plain"],
            ),
            (
                "a whiteout for a name the lower lacks is nothing",
                &[Op::Dir("etc"), Op::Whiteout("etc/never"), Op::Settle("etc")],
                &[],
            ),
            (
                "runtime-injected paths are never listed, nor their parent's mtime",
                &[
                    Op::Dir("etc"),
                    Op::File("etc/hosts", b"127.0.0.1 localhost\n"),
                    Op::File("etc/resolv.conf", b""),
                    Op::Dir("proc"),
                    Op::Dir("dev"),
                    Op::File("dev/null", b""),
                ],
                &[],
            ),
            (
                "symlinks and a symlinked /etc are listed, not followed",
                &[Op::Symlink("etc", "/"), Op::Symlink("link", "/etc/passwd")],
                &["C /etc", "A /link"],
            ),
        ];
        for (name, ops, want) in cases {
            let up = make_upper(ops);
            let got = upper_changes(up.path(), &lower, &LayerOptions::for_container()).unwrap();
            assert_eq!(lines(&got), *want, "{name}");
        }
    }

    #[test]
    fn sizes_and_exclude() {
        let lower = lab_lower();
        let lower = tree(&[&lower]);
        let up = make_upper(&[
            Op::Dir("d"),
            Op::Whiteout("d/f"),
            Op::File("new", b"12345678"),
            Op::Symlink("ln", "target"),
            Op::Dir("tmp/cache"),
            Op::File("tmp/cache/x", b"big"),
            Op::Whiteout("o"),
        ]);
        let opts = LayerOptions {
            exclude: vec!["/tmp/cache/".into()],
            ..Default::default()
        };
        let got = upper_changes(up.path(), &lower, &opts).unwrap();
        let sized: Vec<(String, u64)> = got.iter().map(|c| (c.to_string(), c.size)).collect();
        assert_eq!(
            sized,
            [
                ("C /d".to_string(), 0),
                ("D /d/f".to_string(), 3),
                ("A /ln".to_string(), 6),
                ("A /new".to_string(), 8),
                ("D /o".to_string(), 4),
                ("A /tmp".to_string(), 0),
            ]
        );
    }

    /// The layer's entries as `path kind mode` lines, plus the data of files.
    fn layer_lines(tar: &[u8]) -> Vec<String> {
        let idx = index_tar_bytes(tar).unwrap();
        idx.entries()
            .iter()
            .map(|e| {
                let p = String::from_utf8_lossy(&e.path);
                let extra = match e.kind {
                    EntryKind::File => {
                        let d = &tar[e.offset as usize..][..e.size as usize];
                        format!(" {:?}", String::from_utf8_lossy(d))
                    }
                    EntryKind::Symlink | EntryKind::Hardlink => {
                        format!(" -> {}", String::from_utf8_lossy(&e.link))
                    }
                    _ => String::new(),
                };
                format!("{p} {:?} {:o}{extra}", e.kind, e.mode)
            })
            .collect()
    }

    #[test]
    fn commit_writes_whiteouts_opaque_markers_links_and_nothing_outside() {
        let lower = lab_lower();
        let lower_tree = tree(&[&lower]);
        let up = make_upper(&[
            Op::Dir("etc"),
            Op::Whiteout("etc/some-file"),
            Op::Whiteout("etc/never-existed"),
            Op::Dir("o"),
            Op::Opaque("o"),
            Op::File("o/b", b"new b"),
            Op::Chmod("o", 0o750),
            Op::Symlink("diamol", "/"),
            Op::File("data", b"shared"),
            Op::Xattr("data", "user.k", b"v"),
            Op::Xattr("data", "trusted.overlay.origin", b"x"),
            Op::Dir("proc"),
            Op::File("etc/hosts", b"injected"),
            Op::CharDevice("etc/null", 1, 3),
        ]);
        std::fs::hard_link(up.path().join("data"), up.path().join("etc/data-link")).unwrap();
        let mut out = Vec::new();
        let opts = LayerOptions {
            mtime_clamp: Some(12345),
            ..LayerOptions::for_container()
        };
        write_upper_layer(up.path(), &lower_tree, &mut out, &opts).unwrap();
        assert_eq!(
            layer_lines(&out),
            [
                "data File 644 \"shared\"",
                "diamol Symlink 777 -> /",
                "etc Dir 755",
                "etc/data-link Hardlink 644 -> data",
                "etc/null CharDevice 600",
                "etc/.wh.some-file File 600 \"\"",
                "o Dir 750",
                "o/.wh..wh..opq File 750 \"\"",
                "o/b File 644 \"new b\"",
            ]
        );
        let idx = index_tar_bytes(&out).unwrap();
        assert!(idx.entries().iter().all(|e| e.mtime <= 12345));
        assert_eq!(
            idx.find(b"data").unwrap().xattrs,
            [(b"user.k".to_vec(), b"v".to_vec())]
        );

        // Deterministic: the same upper gives the same bytes.
        let mut again = Vec::new();
        write_upper_layer(up.path(), &lower_tree, &mut again, &opts).unwrap();
        assert_eq!(Digest::of(&out), Digest::of(&again));

        // The committed layer on top of the lower one is the merged view the diff describes.
        let merged = tree(&[&lower, &out]);
        let t = tempfile::tempdir().unwrap();
        let store = ContentStore::open(t.path()).unwrap();
        let changes = tree_changes(&lower_tree, &merged, &store).unwrap();
        assert_eq!(
            lines(&changes),
            [
                "A /data",
                "C /diamol",
                "C /etc",
                "A /etc/data-link",
                "A /etc/null",
                "D /etc/some-file",
                "C /o",
                "D /o/a",
                "C /o/b",
                "D /o/sub",
            ]
        );
    }

    #[test]
    fn commit_leaves_out_directories_diff_leaves_out() {
        let lower_tree = tree(&[&lab_lower()]);
        let up = make_upper(&[
            // As in the lower (mtime restored), nothing below: no change, no entry.
            Op::Dir("diamol"),
            Op::Settle("diamol"),
            // Only the runtime's injected file below: no entry, although its mtime moved.
            Op::File("etc/hosts", b"injected"),
            // Its mtime moved and nothing explains it: a change, in diff and in the layer.
            Op::Dir("d"),
            // A changed file below: its parent's entry comes first.
            Op::File("o/sub/x", b"changed"),
            Op::Settle("o/sub"),
            Op::Settle("o"),
        ]);
        let opts = LayerOptions::for_container();
        let mut out = Vec::new();
        write_upper_layer(up.path(), &lower_tree, &mut out, &opts).unwrap();
        assert_eq!(
            layer_lines(&out),
            [
                "d Dir 755",
                "o Dir 755",
                "o/sub Dir 755",
                "o/sub/x File 644 \"changed\""
            ]
        );
        let diff = upper_changes(up.path(), &lower_tree, &opts).unwrap();
        assert_eq!(lines(&diff), ["C /d", "C /o/sub/x"]);
    }

    #[test]
    fn commit_refuses_user_whiteout_names_unless_excluded() {
        let lower = tree(&[&lab_lower()]);
        let up = make_upper(&[Op::Dir("x"), Op::File("x/.wh.foo", b"sneaky")]);
        let err =
            write_upper_layer(up.path(), &lower, Vec::new(), &LayerOptions::default()).unwrap_err();
        assert!(
            matches!(err, UpperError::WhiteoutName(ref p) if p == "/x/.wh.foo"),
            "{err}"
        );
        let opts = LayerOptions {
            exclude: vec!["/x/.wh.foo".into()],
            ..Default::default()
        };
        write_upper_layer(up.path(), &lower, Vec::new(), &opts).unwrap();
    }

    #[test]
    fn tree_changes_compares_content_when_attributes_match() {
        let base = Lower::new()
            .dir("d")
            .file("d/same", b"aaaa")
            .file("d/diff", b"bbbb")
            .build();
        // Same sizes and mtimes, one file's bytes differ.
        let top = Lower::new()
            .file("d/same", b"aaaa")
            .file("d/diff", b"cccc")
            .build();
        let t = tempfile::tempdir().unwrap();
        let store = ContentStore::open(t.path()).unwrap();
        let b = store.ingest_layer(&base[..], None).unwrap().digest;
        let l = store.ingest_layer(&top[..], None).unwrap().digest;
        let old = UnionTree::build(&[store.layer_index(&b).unwrap()]);
        let new = UnionTree::build(&[
            store.layer_index(&b).unwrap(),
            store.layer_index(&l).unwrap(),
        ]);
        let got = tree_changes(&old, &new, &store).unwrap();
        assert_eq!(lines(&got), ["C /d/diff"]);
        assert_eq!(got[0].size, 4);
        assert!(tree_changes(&new, &new, &store).unwrap().is_empty());
    }

    #[test]
    fn normalize_table() {
        for (input, want) in [
            ("/etc/hosts", "etc/hosts"),
            ("etc//x/./y/", "etc/x/y"),
            ("/", ""),
            ("./tmp", "tmp"),
        ] {
            assert_eq!(normalize(input.as_bytes()), want.as_bytes(), "{input}");
        }
    }
}
