//! `commit`: the upper dir as a layer tar.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

use super::read::{Item, ItemKind, Stat, Upper, XattrList, XattrSource, Xattrs};
use super::{LayerOptions, PathSet, Result, UpperError};
use crate::changes::{push_name, same_time, shown};
use crate::tar_write::{EntryMeta, TarWriter};
use crate::union::{NodeKind, UnionTree};
use crate::whiteout;

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
            return self.whiteout(item, rel);
        }
        if item.name().starts_with(whiteout::PREFIX) {
            return Err(UpperError::WhiteoutName(shown(rel)));
        }
        match item.kind {
            ItemKind::Node(NodeKind::Dir) => self.directory(dir, item, rel),
            ItemKind::Node(NodeKind::File) => self.file(dir, item, rel),
            ItemKind::Socket => Ok(()),
            _ => self.special(dir, item, rel),
        }
    }

    /// An overlayfs whiteout as a `.wh.NAME` entry, if the lower tree has what it hides.
    fn whiteout(&mut self, item: &Item, rel: &[u8]) -> Result<()> {
        if self.lower.resolve(rel).is_some() {
            let parent_len = rel.len() - item.name().len();
            let mut path = rel[..parent_len].to_vec();
            path.extend_from_slice(whiteout::PREFIX);
            path.extend_from_slice(item.name());
            let mut meta = self.meta(item, &path, tar::EntryType::Regular);
            meta.mode = 0o600;
            self.write(&meta, io::empty())?;
        }
        Ok(())
    }

    /// A directory and what is below it.
    fn directory(&mut self, dir: &OwnedFd, item: &Item, rel: &mut Vec<u8>) -> Result<()> {
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

    /// A symlink, device or fifo: a header only.
    fn special(&mut self, dir: &OwnedFd, item: &Item, rel: &[u8]) -> Result<()> {
        let xattrs = self
            .xattrs
            .read(&XattrSource::At(dir, &item.name))
            .map_err(self.up.err("read xattrs of", rel))?
            .0;
        let kind = match item.kind {
            ItemKind::Node(NodeKind::Symlink) => tar::EntryType::Symlink,
            ItemKind::Node(NodeKind::CharDevice) => tar::EntryType::Char,
            ItemKind::Node(NodeKind::BlockDevice) => tar::EntryType::Block,
            _ => tar::EntryType::Fifo,
        };
        let target = if item.kind == ItemKind::Node(NodeKind::Symlink) {
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
