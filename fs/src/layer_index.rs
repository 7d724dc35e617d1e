//! The layer index: every entry of a layer tar with its attributes and the offset of its data,
//! built in one streaming pass when the layer enters the store and persisted beside the blob.
//! Nothing that reads a layer ever parses tar headers again.
//!
//! Persisted format (little endian), `rimg/indexes/sha256/<hex>`:
//! ```text
//! "RIMGIDX1" | layer digest (32) | tar size u64 | entry count u32 | entries… | sha256 of all before (32)
//! entry: path (u32 len + bytes) | kind u8 | mode u32 | uid u32 | gid u32 | mtime i64 | nsec u32
//!        | size u64 | offset u64 | link (u32 len + bytes) | link_index u32 | major u32 | minor u32
//!        | xattr count u32 | (name, value) each u32 len + bytes
//! ```

use std::collections::HashMap;

use crate::digest::{Digest, Hasher};
use crate::tar_stream::{normalize_path, EntryType, RawEntry, TarError};
use crate::whiteout::{self, Whiteout};

const MAGIC: &[u8; 8] = b"RIMGIDX1";
/// `link_index` of entries that are not hard links.
pub const NO_LINK: u32 = u32::MAX;

/// Why a layer could not be indexed, or a persisted index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The tar stream itself is bad.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// A hard link names no earlier non-directory entry of the same layer.
    #[error("hard link {path:?} points to {target:?}, which is not an earlier file in this layer")]
    BadHardlink {
        /// The link's path.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry sits below something that is not a directory in the same layer
    /// (for example below a symlink, which would write through it).
    #[error("tar entry {path:?} has a parent {parent:?} that is not a directory")]
    ParentNotDirectory {
        /// The entry's path.
        path: String,
        /// The offending ancestor.
        parent: String,
    },
    /// A directory is replaced by a non-directory in the same layer.
    #[error("tar entry {0:?} replaces a directory of the same layer with a non-directory")]
    ReplacesDirectory(String),
    /// A whiteout name that names nothing (`.wh.`, `.wh..`), or a whiteout that is not a file.
    #[error("tar entry {0:?} is an invalid whiteout")]
    InvalidWhiteout(String),
    /// The root entry (`./`) is not a directory.
    #[error("the layer's root entry is not a directory")]
    RootNotDirectory,
    /// A persisted index is damaged or from another version.
    #[error("layer index for {0} is corrupt")]
    Corrupt(String),
}

/// What an index entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// A regular file; its data is `size` bytes at `offset` in the tar.
    File = 0,
    /// A directory.
    Dir = 1,
    /// A symbolic link to `link`.
    Symlink = 2,
    /// A hard link to the entry at `link_index` (same layer); `size` and `offset` are its data.
    Hardlink = 3,
    /// A character device.
    CharDevice = 4,
    /// A block device.
    BlockDevice = 5,
    /// A named pipe.
    Fifo = 6,
}

impl EntryKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            3 => EntryKind::Hardlink,
            4 => EntryKind::CharDevice,
            5 => EntryKind::BlockDevice,
            6 => EntryKind::Fifo,
            _ => return None,
        })
    }
}

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Normalized path relative to the root; empty for the root itself.
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: u32,
    /// Data size (files and hard links to files).
    pub size: u64,
    /// Offset of the data in the layer tar.
    pub offset: u64,
    /// Symlink target as stored, or the normalized path a hard link points to.
    pub link: Vec<u8>,
    /// For hard links, the index of the entry that owns the data; [`NO_LINK`] otherwise.
    pub link_index: u32,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The last path component (empty for the root).
    pub fn name(&self) -> &[u8] {
        match self.path.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.path[i + 1..],
            None => &self.path,
        }
    }

    /// The parent directory's path (empty for top-level entries and the root).
    pub fn parent(&self) -> &[u8] {
        parent_of(&self.path)
    }

    /// What this name means as a whiteout.
    pub fn whiteout(&self) -> Whiteout<'_> {
        whiteout::classify(self.name())
    }
}

/// The parent of a normalized path.
pub fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// The index of one layer: its entries in tar order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerIndex {
    /// The layer's digest (of the uncompressed tar).
    pub digest: Digest,
    /// Size of the tar in bytes.
    pub tar_size: u64,
    entries: Vec<Entry>,
}

impl LayerIndex {
    /// Every entry, in tar order. Later entries with the same path replace earlier ones.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry `tar -x` would leave at `path` (the last one with that path).
    pub fn find(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.path == path)
    }

    /// The entry whose data a (possibly hard-linked) entry shows.
    pub fn data_entry<'a>(&'a self, e: &'a Entry) -> &'a Entry {
        if e.kind == EntryKind::Hardlink {
            if let Some(t) = self.entries.get(e.link_index as usize) {
                return t;
            }
        }
        e
    }

    /// The size Docker reports for this layer: the bytes of the files it leaves behind once
    /// extracted (regular files, and symlinks by the length of their target), each path
    /// counted once and hard links not at all; directories, devices and whiteouts add nothing.
    pub fn content_size(&self) -> u64 {
        let mut last: HashMap<&[u8], u64> = HashMap::with_capacity(self.entries.len());
        for e in &self.entries {
            let size = match e.kind {
                EntryKind::File => e.size,
                EntryKind::Symlink => e.link.len() as u64,
                _ => 0,
            };
            last.insert(&e.path, size);
        }
        last.values().sum()
    }

    /// Serializes the index in the persisted format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.digest.as_bytes());
        out.extend_from_slice(&self.tar_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            put_bytes(&mut out, &e.path);
            out.push(e.kind as u8);
            for v in [e.mode, e.uid, e.gid] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&e.mtime.to_le_bytes());
            out.extend_from_slice(&e.mtime_nsec.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.offset.to_le_bytes());
            put_bytes(&mut out, &e.link);
            for v in [
                e.link_index,
                e.dev_major,
                e.dev_minor,
                e.xattrs.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for (k, v) in &e.xattrs {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
        }
        let mut h = Hasher::new();
        h.update(&out);
        out.extend_from_slice(h.finish().as_bytes());
        out
    }

    /// Parses the persisted format, checking its trailing checksum and that it belongs to
    /// `expected` (the layer digest it is stored under).
    pub fn decode(bytes: &[u8], expected: &Digest) -> Result<Self, IndexError> {
        let corrupt = || IndexError::Corrupt(expected.to_string());
        if bytes.len() < MAGIC.len() + 32 + 8 + 4 + 32 {
            return Err(corrupt());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        let mut h = Hasher::new();
        h.update(body);
        if h.finish().as_bytes()[..] != sum[..] {
            return Err(corrupt());
        }
        let mut r = Cursor { buf: body, pos: 0 };
        if r.take(8).ok_or_else(corrupt)? != MAGIC {
            return Err(corrupt());
        }
        let digest_bytes = r.take(32).ok_or_else(corrupt)?;
        if digest_bytes != expected.as_bytes() {
            return Err(corrupt());
        }
        let tar_size = r.u64().ok_or_else(corrupt)?;
        let count = r.u32().ok_or_else(corrupt)? as usize;
        // Each entry takes at least 70 bytes; never trust a count the body cannot hold.
        if count > body.len() / 70 + 1 {
            return Err(corrupt());
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(r.entry().ok_or_else(corrupt)?);
        }
        if r.pos != body.len() {
            return Err(corrupt());
        }
        Ok(LayerIndex {
            digest: *expected,
            tar_size,
            entries,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn entry(&mut self) -> Option<Entry> {
        let path = self.bytes()?;
        let kind = EntryKind::from_u8(*self.take(1)?.first()?)?;
        let mode = self.u32()?;
        let uid = self.u32()?;
        let gid = self.u32()?;
        let mtime = self.u64()? as i64;
        let mtime_nsec = self.u32()?;
        let size = self.u64()?;
        let offset = self.u64()?;
        let link = self.bytes()?;
        let link_index = self.u32()?;
        let dev_major = self.u32()?;
        let dev_minor = self.u32()?;
        let nx = self.u32()? as usize;
        let mut xattrs = Vec::with_capacity(nx.min(64));
        for _ in 0..nx {
            let k = self.bytes()?;
            let v = self.bytes()?;
            xattrs.push((k, v));
        }
        Some(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            size,
            offset,
            link,
            link_index,
            dev_major,
            dev_minor,
            xattrs,
        })
    }
}

/// What the builder knows about a path seen so far in this layer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A directory entry, or a directory implied by a deeper entry.
    Dir,
    /// A non-directory entry at this index.
    Other(u32),
}

/// Builds a [`LayerIndex`] from tar entries as they stream past, validating as it goes.
#[derive(Default)]
pub struct IndexBuilder {
    entries: Vec<Entry>,
    seen: HashMap<Vec<u8>, Seen>,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next tar entry.
    pub fn push(&mut self, raw: RawEntry) -> Result<(), IndexError> {
        let shown = |p: &[u8]| crate::tar_stream::show(p);
        let path = raw.path;
        if path.is_empty() && raw.kind != EntryType::Directory {
            return Err(IndexError::RootNotDirectory);
        }
        let name = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[i + 1..],
            None => &path[..],
        };
        match whiteout::classify(name) {
            Whiteout::Invalid => return Err(IndexError::InvalidWhiteout(shown(&path))),
            Whiteout::Remove(_) | Whiteout::Opaque if raw.kind != EntryType::Regular => {
                return Err(IndexError::InvalidWhiteout(shown(&path)))
            }
            _ => {}
        }
        self.check_parents(&path)?;

        let index = self.entries.len() as u32;
        let mut size = raw.size;
        let mut offset = raw.data_offset;
        let mut link = raw.link;
        let mut link_index = NO_LINK;
        let kind = match raw.kind {
            EntryType::Regular => EntryKind::File,
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink,
            EntryType::CharDevice => EntryKind::CharDevice,
            EntryType::BlockDevice => EntryKind::BlockDevice,
            EntryType::Fifo => EntryKind::Fifo,
            EntryType::Hardlink => {
                let target = normalize_path(&link)?;
                let bad = || IndexError::BadHardlink {
                    path: shown(&path),
                    target: shown(&target),
                };
                let Some(Seen::Other(t)) = self.seen.get(&target).copied() else {
                    return Err(bad());
                };
                let mut t = t;
                if let Some(te) = self.entries.get(t as usize) {
                    if te.kind == EntryKind::Hardlink {
                        t = te.link_index;
                    }
                }
                let te = self.entries.get(t as usize).ok_or_else(bad)?;
                size = te.size;
                offset = te.offset;
                link_index = t;
                link = target;
                EntryKind::Hardlink
            }
        };
        match (self.seen.get(&path), kind) {
            (Some(Seen::Dir), k) if k != EntryKind::Dir && !path.is_empty() => {
                return Err(IndexError::ReplacesDirectory(shown(&path)))
            }
            _ => {}
        }
        let seen = if kind == EntryKind::Dir {
            Seen::Dir
        } else {
            Seen::Other(index)
        };
        self.seen.insert(path.clone(), seen);
        self.entries.push(Entry {
            path,
            kind,
            mode: raw.mode,
            uid: raw.uid,
            gid: raw.gid,
            mtime: raw.mtime,
            mtime_nsec: raw.mtime_nsec,
            size,
            offset,
            link,
            link_index,
            dev_major: raw.dev_major,
            dev_minor: raw.dev_minor,
            xattrs: raw.xattrs,
        });
        Ok(())
    }

    /// Walks up from `path`'s parent to the first ancestor already seen in this layer; it
    /// must be a directory. Ancestors not seen yet are recorded as implied directories, so
    /// each path is walked once.
    fn check_parents(&mut self, path: &[u8]) -> Result<(), IndexError> {
        let mut p = parent_of(path);
        let mut implied: Vec<&[u8]> = Vec::new();
        while !p.is_empty() {
            match self.seen.get(p) {
                Some(Seen::Dir) => break,
                Some(Seen::Other(_)) => {
                    return Err(IndexError::ParentNotDirectory {
                        path: crate::tar_stream::show(path),
                        parent: crate::tar_stream::show(p),
                    })
                }
                None => {
                    implied.push(p);
                    p = parent_of(p);
                }
            }
        }
        for d in implied {
            self.seen.insert(d.to_vec(), Seen::Dir);
        }
        Ok(())
    }

    /// The finished index of the layer with this digest and tar size.
    pub fn finish(self, digest: Digest, tar_size: u64) -> LayerIndex {
        LayerIndex {
            digest,
            tar_size,
            entries: self.entries,
        }
    }
}

/// Indexes a whole tar held in memory (tests and small layers).
pub fn index_tar_bytes(bytes: &[u8]) -> Result<LayerIndex, IndexError> {
    let mut stream = crate::tar_stream::TarStream::new(bytes);
    let mut b = IndexBuilder::new();
    while let Some(e) = stream.next_entry()? {
        b.push(e)?;
    }
    let (size, _) = stream.finish()?;
    Ok(b.finish(Digest::of(bytes), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        b.append_link(&mut h, path, target).unwrap();
    }

    #[test]
    fn hardlinks_resolve_to_data_and_round_trip() {
        let bytes = tar_of(|b| {
            file(b, "a", b"data");
            link(b, tar::EntryType::Link, "b", "a");
            link(b, tar::EntryType::Link, "c", "b");
        });
        let idx = index_tar_bytes(&bytes).unwrap();
        let c = idx.find(b"c").unwrap();
        assert_eq!(c.kind, EntryKind::Hardlink);
        assert_eq!(c.link_index, 0);
        let d = idx.data_entry(c);
        assert_eq!(&bytes[d.offset as usize..][..d.size as usize], b"data");
        let enc = idx.encode();
        assert_eq!(LayerIndex::decode(&enc, &idx.digest).unwrap(), idx);
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(LayerIndex::decode(&bad, &idx.digest).is_err());
        assert!(LayerIndex::decode(&enc, &Digest::of(b"other")).is_err());
    }

    #[test]
    fn content_size_counts_what_extraction_leaves() {
        let bytes = tar_of(|b| {
            file(b, "a", b"12345");
            file(b, "a", b"123");
            link(b, tar::EntryType::Link, "h", "a");
            link(b, tar::EntryType::Symlink, "s", "target");
            file(b, "d/.wh.x", b"");
        });
        assert_eq!(index_tar_bytes(&bytes).unwrap().content_size(), 3 + 6);
    }

    #[test]
    fn refuses_hostile_layouts() {
        let later = tar_of(|b| {
            link(b, tar::EntryType::Link, "b", "a");
            file(b, "a", b"x");
        });
        assert!(matches!(
            index_tar_bytes(&later),
            Err(IndexError::BadHardlink { .. })
        ));

        let through_symlink = tar_of(|b| {
            link(b, tar::EntryType::Symlink, "l", "/etc");
            file(b, "l/passwd", b"x");
        });
        assert!(matches!(
            index_tar_bytes(&through_symlink),
            Err(IndexError::ParentNotDirectory { .. })
        ));

        let deep_through_symlink = tar_of(|b| {
            link(b, tar::EntryType::Symlink, "l", "../../..");
            file(b, "l/a/b/x", b"x");
        });
        assert!(index_tar_bytes(&deep_through_symlink).is_err());

        let replaces_dir = tar_of(|b| {
            file(b, "d/f", b"x");
            link(b, tar::EntryType::Symlink, "d", "/");
        });
        assert!(matches!(
            index_tar_bytes(&replaces_dir),
            Err(IndexError::ReplacesDirectory(_))
        ));

        let invalid_whiteout = tar_of(|b| file(b, "etc/.wh..", b""));
        assert!(matches!(
            index_tar_bytes(&invalid_whiteout),
            Err(IndexError::InvalidWhiteout(_))
        ));
    }

    #[test]
    fn symlink_replaced_by_directory_is_fine() {
        let bytes = tar_of(|b| {
            link(b, tar::EntryType::Symlink, "d", "/etc");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, "d/", io::empty()).unwrap();
            file(b, "d/f", b"x");
        });
        let idx = index_tar_bytes(&bytes).unwrap();
        assert_eq!(idx.find(b"d").unwrap().kind, EntryKind::Dir);
        assert_eq!(idx.entries().len(), 3);
    }
}
