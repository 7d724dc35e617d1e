//! `cp`: files between a container and the host, both ways, on running and stopped
//! containers, through the container's mounted stack (a running container's rootfs, or the
//! stack mounted for the copy under the container's monitor lock, so it cannot start
//! meanwhile). Also the walk and the tar stream `export` writes.
//!
//! Architecture Invariant: every path inside a container is resolved with `openat2` and
//! `RESOLVE_IN_ROOT` against the rootfs (a symlink `/data -> /` or `-> ../../..` leads to the
//! container's own root, never the host's), and below the resolved point every entry is
//! opened relative to its directory's descriptor with `O_NOFOLLOW`: nothing in a container
//! leads `cp` or `export` to a host file (the CVE-2018-15664 family).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rimg_fs::error::{io_err, IoError};
use rimg_fs::tar_stream::{self, TarError, TarStream};
use rimg_fs::tar_write::{EntryMeta, TarWriter};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};

use super::{Container, ContainerError};
use crate::image::Images;
use crate::mount::MountedStack;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The source is not in the container.
    #[error("Could not find the file {path} in container {container}")]
    NotFound {
        /// The path as given.
        path: String,
        /// The container as named.
        container: String,
    },
    /// A copy Docker refuses (a directory onto a file, a missing destination directory).
    #[error("{0}")]
    Refused(String),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The container's rootfs could not be mounted.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The tar stream on stdin is malformed.
    #[error(transparent)]
    Tar(#[from] TarError),
}

/// Result type of `cp` and `export`.
pub type Result<T, E = CpError> = std::result::Result<T, E>;

/// How to copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpOptions {
    /// `-a`: keep the owners (uid/gid) of the source; otherwise what is written belongs to
    /// the user copying (root).
    pub archive: bool,
    /// `-L`: follow a symlink named as the source.
    pub follow: bool,
}

/// A container's root filesystem held mounted for a copy.
pub struct ContainerRoot<'a> {
    path: PathBuf,
    _mount: Option<MountedStack<'a>>,
    _lock: Option<File>,
}

impl ContainerRoot<'_> {
    /// Where the container's merged tree is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Container {
    /// The container's merged tree for reading or writing from the host: a running
    /// container's mounted rootfs, or, for a stopped one, its image and upper dir mounted
    /// now (unmounted when the guard drops) while this process holds its monitor lock.
    pub fn open_rootfs<'a>(&self, images: &'a Images) -> Result<ContainerRoot<'a>> {
        // A process that outlived its monitor still uses the mount: never remount under it.
        let in_use = self.monitor_alive() || self.live_pid().is_some();
        if let Some(lock) = self.lock_monitor()?.filter(|_| !in_use) {
            // A monitor killed earlier may have left its mount behind.
            self.unmount_rootfs()?;
            let mount = self.mount_rootfs(images)?;
            return Ok(ContainerRoot {
                path: self.rootfs_dir(),
                _mount: Some(mount),
                _lock: Some(lock),
            });
        }
        if !self.is_mounted() {
            return Err(ContainerError::Mount(format!(
                "container {} is starting or stopping: its rootfs is not mounted",
                self.short_id()
            ))
            .into());
        }
        Ok(ContainerRoot {
            path: self.rootfs_dir(),
            _mount: None,
            _lock: None,
        })
    }
}

/// A tree paths are resolved in: a container's rootfs (`RESOLVE_IN_ROOT`) or the host.
pub struct Root {
    fd: OwnedFd,
    dir: PathBuf,
    contained: bool,
}

impl Root {
    /// A container's rootfs at `dir`: every path resolves inside it.
    pub fn contained(dir: &Path) -> Result<Self> {
        let fd = rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| IoError::new("opening", dir, e.into()))?;
        Ok(Root {
            fd,
            dir: dir.to_path_buf(),
            contained: true,
        })
    }

    /// The host's filesystem, relative paths from the working directory.
    pub fn host() -> Result<Self> {
        let dir = std::env::current_dir().map_err(io_err("locating", Path::new(".")))?;
        let fd = rfs::open(
            &dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| IoError::new("opening", &dir, e.into()))?;
        Ok(Root {
            fd,
            dir,
            contained: false,
        })
    }

    /// What an error message calls `path`.
    fn show(&self, path: &Path) -> PathBuf {
        if self.contained {
            Path::new("/").join(path)
        } else {
            self.dir.join(path)
        }
    }

    /// `path` as the user wrote it, as this root takes it: lexically cleaned inside a
    /// container; on the host only a trailing `/` or `/.` dropped (`..` there is real).
    fn path(&self, path: &str) -> PathBuf {
        if self.contained {
            return clean(path);
        }
        let mut p = path;
        while p.len() > 1 && (p.ends_with('/') || p.ends_with("/.")) {
            p = p
                .strip_suffix('/')
                .or_else(|| p.strip_suffix("/."))
                .unwrap_or(p);
        }
        PathBuf::from(p)
    }

    /// Opens `path` (relative to the root; `""` is the root) with `flags`, following
    /// symlinks on the way inside the root.
    fn open(&self, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let resolve = if self.contained {
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
        } else {
            ResolveFlags::empty()
        };
        // openat2 answers EAGAIN when a rename or a mount anywhere on the system raced a
        // `..` in the resolution (it cannot tell whether the walk stayed inside): retry.
        let mut tries = 0;
        loop {
            match rfs::openat2(
                &self.fd,
                path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            ) {
                Err(rustix::io::Errno::AGAIN) if tries < 1000 => tries += 1,
                r => return Ok(r?),
            }
        }
    }

    /// The directory `path`, opened to work in.
    fn open_dir(&self, path: &Path) -> Result<OwnedFd> {
        self.open(path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| IoError::new("opening", self.show(path), e).into())
    }

    /// The kind of what `path` leads to (symlinks followed inside the root), `None` if
    /// nothing is there.
    fn kind(&self, path: &Path) -> Result<Option<FileType>> {
        match self.open(path, OFlags::PATH) {
            Ok(fd) => {
                let st =
                    rfs::fstat(&fd).map_err(|e| IoError::new("stat", self.show(path), e.into()))?;
                Ok(Some(FileType::from_raw_mode(st.st_mode)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IoError::new("stat", self.show(path), e).into()),
        }
    }
}

/// `path` cleaned lexically and made relative to the root: `.` and empty components
/// dropped, `..` removed with the component before it and clamped at the root (as Go's
/// `filepath.Clean` does an absolute path). Unlike `rimg_fs::path::clean_rel`, which refuses
/// a `..` above the root, a user's path may say `/..`: it is the root.
fn clean(path: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.iter().collect()
}

/// What one entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink(Vec<u8>),
    /// A hard link to an earlier entry (tar input only): its path below the destination.
    Hardlink(PathBuf),
    Char(u64),
    Block(u64),
    Fifo,
}

/// An entry's attributes.
#[derive(Clone, Debug)]
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    size: u64,
}

// rustix's `Stat` field types differ between architectures; on some the conversions are
// identities.
#[allow(clippy::useless_conversion)]
fn meta_of(st: &rfs::Stat, kind: Kind) -> Meta {
    Meta {
        kind,
        mode: u32::from(st.st_mode) & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: (
            i64::from(st.st_mtime),
            u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        ),
        size: u64::try_from(st.st_size).unwrap_or(0),
    }
}

/// Where the entries of a copy go.
trait Sink {
    /// Writes the entry at `rel` below the copy's base (`""`: the base itself).
    fn put(&mut self, rel: &Path, meta: &Meta, data: &mut dyn Read) -> Result<()>;
}

/// The entry `name` of directory `dir` (shown as `shown`), never following a symlink.
struct At<'a> {
    dir: BorrowedFd<'a>,
    name: &'a OsStr,
    shown: PathBuf,
}

/// Walks the tree at `at` depth-first, names sorted, into `sink` as `rel`. Sockets are
/// skipped (a tar cannot hold them).
fn walk(at: &At<'_>, rel: &Path, sink: &mut dyn Sink) -> Result<()> {
    let err = |op: &'static str| {
        let shown = at.shown.clone();
        move |e: rustix::io::Errno| CpError::from(IoError::new(op, shown, e.into()))
    };
    let st = rfs::statat(at.dir, at.name, AtFlags::SYMLINK_NOFOLLOW).map_err(err("lstat"))?;
    let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            sink.put(rel, &meta_of(&st, Kind::Dir), &mut io::empty())?;
            let fd = rfs::openat(
                at.dir,
                at.name,
                OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                Mode::empty(),
            )
            .map_err(err("opening"))?;
            let mut names = Vec::new();
            for e in rfs::Dir::read_from(&fd).map_err(err("listing"))? {
                let e = e.map_err(err("listing"))?;
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsStr::from_bytes(n).to_os_string());
                }
            }
            names.sort();
            for n in &names {
                let child = At {
                    dir: fd.as_fd(),
                    name: n,
                    shown: at.shown.join(n),
                };
                walk(&child, &rel.join(n), sink)?;
            }
            Ok(())
        }
        FileType::RegularFile => {
            let fd = rfs::openat(
                at.dir,
                at.name,
                OFlags::RDONLY | OFlags::NONBLOCK | nofollow,
                Mode::empty(),
            )
            .map_err(err("opening"))?;
            // What was opened is what is copied (the entry may have changed since lstat).
            let st = rfs::fstat(&fd).map_err(err("stat"))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Ok(());
            }
            let meta = meta_of(&st, Kind::File);
            let mut data = File::from(fd).take(meta.size);
            sink.put(rel, &meta, &mut data)
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(at.dir, at.name, Vec::new()).map_err(err("readlink"))?;
            let kind = Kind::Symlink(target.into_bytes());
            sink.put(rel, &meta_of(&st, kind), &mut io::empty())
        }
        FileType::CharacterDevice => {
            sink.put(rel, &meta_of(&st, Kind::Char(st.st_rdev)), &mut io::empty())
        }
        FileType::BlockDevice => sink.put(
            rel,
            &meta_of(&st, Kind::Block(st.st_rdev)),
            &mut io::empty(),
        ),
        FileType::Fifo => sink.put(rel, &meta_of(&st, Kind::Fifo), &mut io::empty()),
        _ => Ok(()),
    }
}

/// The source of a copy, resolved: the directory it is in and its name there (`"."` for a
/// root), and what it is.
struct Source {
    parent: OwnedFd,
    name: PathBuf,
    path: PathBuf,
    kind: FileType,
    /// `SRC/.`: the contents of a directory, not the directory.
    contents: bool,
}

impl Source {
    /// Resolves `path` in `root`; `None` if nothing is there. With `follow`, a symlink
    /// named as the source is followed (inside the root, up to 40 links).
    fn resolve(root: &Root, path: &str, follow: bool) -> Result<Option<Self>> {
        let contents = path.ends_with("/.") || path == ".";
        let mut rel = root.path(path);
        for _ in 0..40 {
            let (parent_rel, name) = split(&rel);
            let parent = match root.open(&parent_rel, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    return Ok(None)
                }
                Err(e) => return Err(IoError::new("opening", root.show(&parent_rel), e).into()),
            };
            let st = match rfs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(e) => return Err(IoError::new("lstat", root.show(&rel), e.into()).into()),
            };
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Symlink && follow {
                let target = rfs::readlinkat(&parent, &name, Vec::new())
                    .map_err(|e| IoError::new("readlink", root.show(&rel), e.into()))?;
                let target = PathBuf::from(OsStr::from_bytes(target.to_bytes()));
                rel = parent_rel.join(target);
                if root.contained {
                    rel = clean(&rel.to_string_lossy());
                }
                continue;
            }
            return Ok(Some(Source {
                parent,
                name,
                path: rel,
                kind,
                contents,
            }));
        }
        Err(IoError::new(
            "following",
            root.show(&rel),
            io::Error::from_raw_os_error(libc::ELOOP),
        )
        .into())
    }

    fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }

    /// The name the copy gets in a destination directory.
    fn base_name(&self) -> PathBuf {
        match self.path.file_name() {
            Some(n) => PathBuf::from(n),
            None => PathBuf::from("."),
        }
    }

    /// Walks the source into `sink`: the source itself as `""` (its contents only with
    /// `SRC/.`, the base then being an existing directory).
    fn walk_into(&self, root: &Root, sink: &mut dyn Sink) -> Result<()> {
        let at = At {
            dir: self.parent.as_fd(),
            name: self.name.as_os_str(),
            shown: root.show(&self.path),
        };
        walk(&at, Path::new(""), sink)
    }
}

/// Writes entries under `base` in `root`: the parent of each resolved inside the root, the
/// entry itself created with `O_NOFOLLOW`/`*at` calls, replacing what was there (a
/// directory only by a directory).
struct DirSink<'a> {
    root: &'a Root,
    base: PathBuf,
    opts: CpOptions,
    /// Leave the base's own attributes alone (it existed: `SRC/.` or a tar into it).
    keep_base: bool,
}

impl DirSink<'_> {
    fn place(&self, rel: &Path) -> Result<(OwnedFd, PathBuf, PathBuf)> {
        let full = if rel.as_os_str().is_empty() {
            self.base.clone()
        } else {
            self.base.join(rel)
        };
        let (parent, name) = split(&full);
        let fd = self.root.open_dir(&parent)?;
        Ok((fd, name, full))
    }
}

impl Sink for DirSink<'_> {
    fn put(&mut self, rel: &Path, meta: &Meta, data: &mut dyn Read) -> Result<()> {
        let (dir, name, full) = self.place(rel)?;
        let shown = self.root.show(&full);
        let err = |op: &'static str| {
            let shown = shown.clone();
            move |e: rustix::io::Errno| CpError::from(IoError::new(op, shown, e.into()))
        };
        let existing = match rfs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(err("lstat")(e)),
        };
        let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(meta.mode);
        match (existing, &meta.kind) {
            (Some(FileType::Directory), Kind::Dir) => {
                if rel.as_os_str().is_empty() && self.keep_base {
                    return Ok(());
                }
            }
            (Some(FileType::Directory), _) => {
                return Err(CpError::Refused(format!(
                    "cannot overwrite directory {:?} with non-directory",
                    shown.display()
                )))
            }
            (Some(_), _) => {
                rfs::unlinkat(&dir, &name, AtFlags::empty()).map_err(err("removing"))?
            }
            (None, _) => {}
        }
        let owner = |fd: &OwnedFd| -> Result<()> {
            if self.opts.archive {
                rfs::fchown(
                    fd,
                    Some(rfs::Uid::from_raw(meta.uid)),
                    Some(rfs::Gid::from_raw(meta.gid)),
                )
                .map_err(err("chown"))?;
            }
            Ok(())
        };
        let times = Timestamps {
            last_access: rfs::Timespec {
                tv_sec: meta.mtime.0,
                tv_nsec: meta.mtime.1.into(),
            },
            last_modification: rfs::Timespec {
                tv_sec: meta.mtime.0,
                tv_nsec: meta.mtime.1.into(),
            },
        };
        match &meta.kind {
            Kind::Dir => {
                if existing.is_none() {
                    rfs::mkdirat(&dir, &name, Mode::from_raw_mode(0o700)).map_err(err("mkdir"))?;
                }
                let fd = rfs::openat(
                    &dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )
                .map_err(err("opening"))?;
                owner(&fd)?;
                rfs::fchmod(&fd, mode).map_err(err("chmod"))?;
            }
            Kind::File => {
                let fd = rfs::openat(
                    &dir,
                    &name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(err("creating"))?;
                let mut f = File::from(fd);
                io::copy(data, &mut f).map_err(io_err("writing", &shown))?;
                let fd = OwnedFd::from(f);
                owner(&fd)?;
                rfs::fchmod(&fd, mode).map_err(err("chmod"))?;
                rfs::futimens(&fd, &times).map_err(err("setting times of"))?;
            }
            Kind::Symlink(target) => {
                rfs::symlinkat(OsStr::from_bytes(target), &dir, &name).map_err(err("symlink"))?;
                if self.opts.archive {
                    chown_entry(&dir, &name, meta).map_err(err("chown"))?;
                }
                rfs::utimensat(&dir, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(err("setting times of"))?;
            }
            Kind::Hardlink(target) => {
                let (tdir, tname, _) = self.place(target)?;
                rfs::linkat(&tdir, &tname, &dir, &name, AtFlags::empty()).map_err(err("link"))?;
            }
            Kind::Char(_) | Kind::Block(_) | Kind::Fifo => {
                let (t, dev) = match meta.kind {
                    Kind::Char(d) => (FileType::CharacterDevice, d),
                    Kind::Block(d) => (FileType::BlockDevice, d),
                    _ => (FileType::Fifo, 0),
                };
                rfs::mknodat(&dir, &name, t, mode, dev).map_err(err("mknod"))?;
                if self.opts.archive {
                    chown_entry(&dir, &name, meta).map_err(err("chown"))?;
                }
            }
        }
        Ok(())
    }
}

/// Gives the entry `name` of `dir` (not following a symlink) the owner `meta` records.
fn chown_entry(dir: &OwnedFd, name: &Path, meta: &Meta) -> rustix::io::Result<()> {
    rfs::chownat(
        dir,
        name,
        Some(rfs::Uid::from_raw(meta.uid)),
        Some(rfs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

/// Writes entries as a tar stream, each named `prefix/rel` (`prefix` alone for the top;
/// with an empty prefix the top itself is left out, as `export` and `SRC/.` want).
pub(crate) struct TarSink<W: Write> {
    tar: TarWriter<W>,
    prefix: PathBuf,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: W, prefix: PathBuf) -> Self {
        TarSink {
            tar: TarWriter::new(out),
            prefix,
        }
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        self.tar.finish()
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn put(&mut self, rel: &Path, meta: &Meta, data: &mut dyn Read) -> Result<()> {
        // `join("")` would add a trailing `/`, which marks a directory in a tar.
        let name = if rel.as_os_str().is_empty() {
            self.prefix.clone()
        } else {
            self.prefix.join(rel)
        };
        if name.as_os_str().is_empty() {
            return Ok(());
        }
        let (kind, link, dev): (tar::EntryType, &[u8], u64) = match &meta.kind {
            Kind::Dir => (tar::EntryType::Directory, b"", 0),
            Kind::File => (tar::EntryType::Regular, b"", 0),
            Kind::Symlink(t) => (tar::EntryType::Symlink, t, 0),
            Kind::Hardlink(t) => (tar::EntryType::Link, t.as_os_str().as_bytes(), 0),
            Kind::Char(d) => (tar::EntryType::Char, b"", *d),
            Kind::Block(d) => (tar::EntryType::Block, b"", *d),
            Kind::Fifo => (tar::EntryType::Fifo, b"", 0),
        };
        let entry = EntryMeta {
            path: name.as_os_str().as_bytes(),
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime.0,
            size: meta.size,
            link,
            dev_major: rfs::major(dev),
            dev_minor: rfs::minor(dev),
            xattrs: &[],
        };
        self.tar
            .append_entry(&entry, data)
            .map_err(|e| IoError::new("writing the tar of", name, e).into())
    }
}

/// Walks the whole tree at `dir` (its root left out) into a tar on `out`: `export`.
pub(crate) fn tar_tree<W: Write>(dir: &Path, out: W) -> Result<W> {
    let root = Root::contained(dir)?;
    let mut sink = TarSink::new(out, PathBuf::new());
    let at = At {
        dir: root.fd.as_fd(),
        name: OsStr::new("."),
        shown: PathBuf::from("/"),
    };
    walk(&at, Path::new(""), &mut sink)?;
    sink.finish()
        .map_err(|e| IoError::new("writing", "the tar", e).into())
}

/// A source of `cp`: a path in the container or on the host, or a tar stream.
pub enum CopySource<'a> {
    /// A path on the host.
    Host(&'a str),
    /// A path in the container.
    Container(&'a str),
    /// A tar stream to unpack into the destination directory (`-`).
    Tar(&'a mut dyn Read),
}

/// A destination of `cp`.
pub enum CopyDest<'a> {
    /// A path on the host.
    Host(&'a str),
    /// A path in the container.
    Container(&'a str),
    /// A tar stream of the source (`-`).
    Tar(&'a mut dyn Write),
}

/// Copies `from` to `to`, one side being in container `c` (named `shown` in messages),
/// whose merged tree is at `rootfs`, with Docker's rules: a file onto a directory goes in
/// it under its name; a directory onto a missing path becomes that path; `SRC/.` copies a
/// directory's contents; a destination ending in `/` must be a directory.
pub fn copy(
    rootfs: &Path,
    shown: &str,
    from: CopySource<'_>,
    to: CopyDest<'_>,
    opts: CpOptions,
) -> Result<()> {
    let ctr = Root::contained(rootfs)?;
    let host = Root::host()?;
    let (src_root, src_path) = match &from {
        CopySource::Host(p) => (&host, *p),
        CopySource::Container(p) => (&ctr, *p),
        CopySource::Tar(_) => (&host, ""),
    };
    let (dst_root, dst_path) = match &to {
        CopyDest::Host(p) => (&host, *p),
        CopyDest::Container(p) => (&ctr, *p),
        CopyDest::Tar(_) => (&host, ""),
    };
    if let CopySource::Tar(input) = from {
        return untar_into(dst_root, dst_path, input, opts);
    }
    let src = match Source::resolve(src_root, src_path, opts.follow)? {
        Some(s) => s,
        None if src_root.contained => {
            return Err(CpError::NotFound {
                path: src_path.to_string(),
                container: shown.to_string(),
            })
        }
        None => {
            return Err(IoError::new(
                "lstat",
                src_root.show(&src_root.path(src_path)),
                io::Error::from_raw_os_error(libc::ENOENT),
            )
            .into())
        }
    };
    if src_path.ends_with('/') && !src.is_dir() {
        return Err(CpError::Refused(format!("{src_path}: not a directory")));
    }
    if let CopyDest::Tar(out) = to {
        let prefix = if src.contents {
            PathBuf::new()
        } else {
            src.base_name()
        };
        let mut sink = TarSink::new(out, prefix);
        src.walk_into(src_root, &mut sink)?;
        sink.finish()
            .map_err(|e| IoError::new("writing", "the tar", e))?;
        return Ok(());
    }
    let dst_rel = dst_root.path(dst_path);
    let dst_dir_wanted = dst_path.ends_with('/') || dst_path.ends_with("/.");
    let (base, keep_base) = match dst_root.kind(&dst_rel)? {
        Some(FileType::Directory) if src.is_dir() && src.contents => (dst_rel, true),
        Some(FileType::Directory) => (dst_rel.join(src.base_name()), false),
        Some(_) if src.is_dir() => {
            return Err(CpError::Refused(format!(
                "cannot copy a directory to a file: {}",
                dst_root.show(&dst_rel).display()
            )))
        }
        Some(_) if dst_dir_wanted => {
            return Err(CpError::Refused(format!(
                "{}: not a directory",
                dst_root.show(&dst_rel).display()
            )))
        }
        Some(_) => (dst_rel, false),
        None if dst_dir_wanted && !src.is_dir() => {
            return Err(CpError::Refused(format!(
                "no such directory: {}",
                dst_root.show(&dst_rel).display()
            )))
        }
        None => {
            let (parent, _) = split(&dst_rel);
            if dst_root.kind(&parent)? != Some(FileType::Directory) {
                return Err(CpError::Refused(format!(
                    "no such directory: {}",
                    dst_root.show(&parent).display()
                )));
            }
            (dst_rel, false)
        }
    };
    let mut sink = DirSink {
        root: dst_root,
        base,
        opts,
        keep_base,
    };
    src.walk_into(src_root, &mut sink)
}

/// A path's directory and last name; a path without a last name (`""`, `/`, `..`) is the
/// directory itself, named `.` in it.
fn split(path: &Path) -> (PathBuf, PathBuf) {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), PathBuf::from(n)),
        _ => (path.to_path_buf(), PathBuf::from(".")),
    }
}

/// Unpacks a tar stream into the existing directory `dst_path` of `root`.
fn untar_into(root: &Root, dst_path: &str, input: &mut dyn Read, opts: CpOptions) -> Result<()> {
    let dst = root.path(dst_path);
    if root.kind(&dst)? != Some(FileType::Directory) {
        return Err(CpError::Refused(format!(
            "destination \"{dst_path}\" must be a directory"
        )));
    }
    let mut sink = DirSink {
        root,
        base: dst,
        opts,
        keep_base: true,
    };
    let mut tar = TarStream::new(input);
    while let Some(e) = tar.next_entry()? {
        let kind = match e.kind {
            tar_stream::EntryType::Regular => Kind::File,
            tar_stream::EntryType::Directory => Kind::Dir,
            tar_stream::EntryType::Symlink => Kind::Symlink(e.link.clone()),
            tar_stream::EntryType::Hardlink => {
                let target = tar_stream::normalize_path(&e.link)?;
                Kind::Hardlink(PathBuf::from(OsStr::from_bytes(&target)))
            }
            tar_stream::EntryType::CharDevice => Kind::Char(rfs::makedev(e.dev_major, e.dev_minor)),
            tar_stream::EntryType::BlockDevice => {
                Kind::Block(rfs::makedev(e.dev_major, e.dev_minor))
            }
            tar_stream::EntryType::Fifo => Kind::Fifo,
        };
        let meta = Meta {
            kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: (e.mtime, e.mtime_nsec),
            size: e.size,
        };
        let rel = PathBuf::from(OsStr::from_bytes(&e.path));
        let mut data = tar.data();
        sink.put(&rel, &meta, &mut data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_and_clamp_at_the_root() {
        assert_eq!(clean("/a/b/../c/."), PathBuf::from("a/c"));
        assert_eq!(clean("/../../etc"), PathBuf::from("etc"));
        assert_eq!(clean("/"), PathBuf::new());
        assert_eq!(clean("data/"), PathBuf::from("data"));
    }
}
