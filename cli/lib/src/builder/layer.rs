//! Layers the builder writes itself, without a container: COPY, ADD and WORKDIR. A
//! [`LayerPlan`] collects the entries a step adds (from the context, from another image's
//! layers, or from an archive), fills in their parent directories as the image has them, and
//! writes one deterministic tar: entries sorted by path, fixed owners and timestamps.
//! [`ImageFiles`] reads an image's files straight from its layer tars through the union tree.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rimg_fs::error::IoError;
use rimg_fs::tar_write::{EntryMeta, TarWriter};
use rimg_fs::union::{NodeKind, UnionTree, ROOT_INO};
use rimg_fs::{ContentStore, Digest, LayerIndex, StoreError};

/// Where a new file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A host file (a download).
    Host(PathBuf),
    /// A file of the build context: `rel` opened inside `root`, symlinks resolved inside it.
    Context {
        /// The context directory.
        root: PathBuf,
        /// The file, relative to it.
        rel: PathBuf,
    },
    /// `offset` into a file (a layer tar or an archive being added).
    Range {
        /// The file.
        file: PathBuf,
        /// Where the data starts.
        offset: u64,
    },
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

/// What a new entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Its data.
        source: Source,
        /// Its size.
        size: u64,
    },
    /// A symbolic link.
    Symlink(Vec<u8>),
}

/// One entry a step adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// What it is.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: i64,
    /// Extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The entries of one layer being planned, by path (relative, no leading `/`).
#[derive(Clone, Debug, Default)]
pub struct LayerPlan {
    entries: BTreeMap<String, NewEntry>,
}

/// Owner and timestamp for directories a step creates.
#[derive(Clone, Copy, Debug)]
pub struct DirDefaults {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: i64,
}

impl LayerPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is planned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds (or replaces) the entry at `path`.
    pub fn add(&mut self, path: &str, entry: NewEntry) {
        let p = path.trim_matches('/').to_string();
        if !p.is_empty() {
            self.entries.insert(p, entry);
        }
    }

    /// The entry planned at `path`.
    pub fn get(&self, path: &str) -> Option<&NewEntry> {
        self.entries.get(path.trim_matches('/'))
    }

    /// Adds every missing parent directory of the planned entries: as the image below has it
    /// (a changed directory is part of the layer, as overlayfs copies it up), or new with
    /// mode 0755 and `defaults`.
    pub fn add_parents(&mut self, lower: Option<&ImageFiles>, defaults: DirDefaults) {
        let mut parents: Vec<String> = Vec::new();
        for path in self.entries.keys() {
            let mut p = path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                parents.push(p.to_string());
            }
        }
        for p in parents {
            if self.entries.contains_key(&p) {
                continue;
            }
            let existing = lower.and_then(|l| {
                let ino = l.tree.resolve(p.as_bytes())?;
                let n = l.tree.node(ino)?;
                (n.kind == NodeKind::Dir).then(|| NewEntry {
                    kind: Kind::Dir,
                    mode: n.mode,
                    uid: n.uid,
                    gid: n.gid,
                    mtime: n.mtime,
                    xattrs: n.xattrs.clone(),
                })
            });
            let e = existing.unwrap_or(NewEntry {
                kind: Kind::Dir,
                mode: 0o755,
                uid: defaults.uid,
                gid: defaults.gid,
                mtime: defaults.mtime,
                xattrs: Vec::new(),
            });
            self.entries.insert(p, e);
        }
    }

    /// Writes the layer tar with the store's deterministic writer: entries in path order,
    /// PAX records for long names and extended attributes.
    pub fn write(&self, out: impl Write) -> io::Result<()> {
        let mut w = TarWriter::new(out);
        for (path, e) in &self.entries {
            let (kind, size, link): (tar::EntryType, u64, &[u8]) = match &e.kind {
                Kind::Dir => (tar::EntryType::Directory, 0, b""),
                Kind::Symlink(t) => (tar::EntryType::Symlink, 0, t),
                Kind::File { size, .. } => (tar::EntryType::Regular, *size, b""),
            };
            let meta = EntryMeta {
                path: path.as_bytes(),
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                size,
                link,
                dev_major: 0,
                dev_minor: 0,
                xattrs: &e.xattrs,
            };
            match &e.kind {
                Kind::File { source, .. } => {
                    let reader: Box<dyn Read> = match source {
                        Source::Host(p) => Box::new(File::open(p)?),
                        Source::Context { root, rel } => {
                            Box::new(super::context::open_in_root(root, rel)?)
                        }
                        Source::Range { file, offset } => Box::new(RangeReader {
                            file: File::open(file)?,
                            pos: *offset,
                            left: size,
                        }),
                        Source::Bytes(v) => Box::new(io::Cursor::new(v.clone())),
                    };
                    w.append_entry(&meta, reader).map_err(|err| {
                        io::Error::new(err.kind(), format!("copying {path}: {err}"))
                    })?;
                }
                _ => w.append_entry(&meta, io::empty())?,
            }
        }
        w.finish()?.flush()
    }
}

/// Reads a byte range of a file with positioned reads.
struct RangeReader {
    file: File,
    pos: u64,
    left: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// An image's files, read from its layer tars through the union tree (no mount).
#[derive(Clone, Debug)]
pub struct ImageFiles {
    /// The merged tree.
    pub tree: UnionTree,
    blobs: Vec<PathBuf>,
}

impl ImageFiles {
    /// Builds the tree of `layers` (bottom first) from their persisted indexes.
    pub fn open(store: &ContentStore, layers: &[Digest]) -> Result<Self, StoreError> {
        let mut indexes = Vec::with_capacity(layers.len());
        for d in layers {
            indexes.push(store.layer_index(d)?);
        }
        Ok(Self::from_indexes(store, &indexes))
    }

    /// Builds the tree from layer indexes already read (bottom first).
    pub fn from_indexes(store: &ContentStore, indexes: &[LayerIndex]) -> Self {
        ImageFiles {
            tree: UnionTree::build(indexes),
            blobs: indexes.iter().map(|i| store.blob_path(&i.digest)).collect(),
        }
    }

    /// The inode at `path` (absolute or relative), following symlinks in every component
    /// but the last (within the image: `..` and absolute targets stay inside its root).
    pub fn lookup(&self, path: &str) -> Option<u64> {
        self.lookup_follow(path, false, 0)
    }

    /// [`ImageFiles::lookup`], following a symlink in the last component too.
    pub fn lookup_final(&self, path: &str) -> Option<u64> {
        self.lookup_follow(path, true, 0)
    }

    fn lookup_follow(&self, path: &str, follow_last: bool, depth: u32) -> Option<u64> {
        if depth > 40 {
            return None;
        }
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut stack: Vec<u64> = vec![ROOT_INO];
        let mut resolved: Vec<String> = Vec::new();
        for (i, comp) in comps.iter().enumerate() {
            let cur = *stack.last()?;
            if *comp == ".." {
                if stack.len() > 1 {
                    stack.pop();
                    resolved.pop();
                }
                continue;
            }
            let ino = self.tree.lookup(cur, comp.as_bytes())?;
            let node = self.tree.node(ino)?;
            let last = i + 1 == comps.len();
            if node.kind == NodeKind::Symlink && (!last || follow_last) {
                let target = String::from_utf8_lossy(&node.link).into_owned();
                let base = if target.starts_with('/') {
                    String::new()
                } else {
                    resolved.join("/")
                };
                let rest = comps[i + 1..].join("/");
                let joined = format!("{base}/{target}/{rest}");
                return self.lookup_follow(&joined, follow_last, depth + 1);
            }
            stack.push(ino);
            resolved.push(comp.to_string());
        }
        stack.last().copied()
    }

    /// The canonical path of `path` with symlinks in its directory components resolved
    /// (the last component is kept as is, whether or not it exists).
    pub fn canonical_parent(&self, path: &str) -> String {
        let trimmed = path.trim_matches('/');
        let (dir, name) = match trimmed.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", trimmed),
        };
        let dir_path = self.canonical_dir(dir);
        if dir_path.is_empty() {
            name.to_string()
        } else {
            format!("{dir_path}/{name}")
        }
    }

    fn canonical_dir(&self, dir: &str) -> String {
        // Walk components, following symlinks that resolve to directories.
        let mut out: Vec<String> = Vec::new();
        let mut pending: Vec<String> = dir
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .rev()
            .collect();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            if comp == ".." {
                out.pop();
                continue;
            }
            let here = if out.is_empty() {
                comp.clone()
            } else {
                format!("{}/{comp}", out.join("/"))
            };
            let node = self
                .tree
                .resolve(here.as_bytes())
                .and_then(|i| self.tree.node(i));
            match node {
                Some(n) if n.kind == NodeKind::Symlink && hops < 40 => {
                    hops += 1;
                    let target = String::from_utf8_lossy(&n.link).into_owned();
                    if target.starts_with('/') {
                        out.clear();
                    }
                    for c in target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                    {
                        pending.push(c.to_string());
                    }
                }
                _ => out.push(comp),
            }
        }
        out.join("/")
    }

    /// The data source of a regular file node.
    pub fn source(&self, ino: u64) -> Option<(Source, u64)> {
        let n = self.tree.node(ino)?;
        let data = n.data?;
        let file = self.blobs.get(data.layer as usize)?.clone();
        Some((
            Source::Range {
                file,
                offset: data.offset,
            },
            n.size,
        ))
    }

    /// Reads a small file whole (`/etc/passwd`), following symlinks.
    pub fn read(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        let ino = self.lookup_final(path)?;
        let (src, size) = self.source(ino)?;
        if size > limit {
            return None;
        }
        let Source::Range { file, offset } = src else {
            return None;
        };
        let f = File::open(&file).ok()?;
        let mut buf = vec![0u8; size as usize];
        f.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    /// Every path under the node `ino` (not `ino` itself), relative to it, in sorted
    /// depth-first order, with their inodes.
    pub fn below(&self, ino: u64) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, u64)> = Vec::new();
        if let Some(n) = self.tree.node(ino) {
            for (name, child) in n.children.iter().rev() {
                stack.push((String::from_utf8_lossy(name).into_owned(), *child));
            }
        }
        while let Some((path, i)) = stack.pop() {
            if let Some(n) = self.tree.node(i) {
                for (name, child) in n.children.iter().rev() {
                    stack.push((format!("{path}/{}", String::from_utf8_lossy(name)), *child));
                }
            }
            out.push((path, i));
        }
        out
    }

    /// The node as a [`NewEntry`] for copying (owner, mode, data kept).
    pub fn entry(&self, ino: u64) -> Option<NewEntry> {
        let n = self.tree.node(ino)?;
        let kind = match n.kind {
            NodeKind::Dir => Kind::Dir,
            NodeKind::Symlink => Kind::Symlink(n.link.clone()),
            NodeKind::File => {
                let (source, size) = self.source(ino)?;
                Kind::File { source, size }
            }
            _ => return None,
        };
        Some(NewEntry {
            kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            xattrs: n.xattrs.clone(),
        })
    }

    /// Whether `path` exists in the image as a directory (following symlinks).
    pub fn is_dir(&self, path: &str) -> bool {
        self.lookup_final(path)
            .and_then(|i| self.tree.node(i))
            .is_some_and(|n| n.kind == NodeKind::Dir)
    }
}

/// Resolves `--chown` user and group names through the image's `/etc/passwd` and
/// `/etc/group` (numbers are taken as they are). Returns `(uid, gid)`.
pub fn resolve_owner(files: Option<&ImageFiles>, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = files
        .and_then(|f| f.read("/etc/passwd", 4 << 20))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let group_file = files
        .and_then(|f| f.read("/etc/group", 4 << 20))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let line = passwd
                .lines()
                .find(|l| l.split(':').next() == Some(user))
                .ok_or_else(|| {
                    format!("unable to find user {user}: no matching entries in passwd file")
                })?;
            let f: Vec<&str> = line.split(':').collect();
            let uid = f
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or("bad passwd entry")?;
            let gid = f.get(3).and_then(|s| s.parse().ok());
            (uid, gid)
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_file
                .lines()
                .find(|l| l.split(':').next() == Some(g))
                .and_then(|l| l.split(':').nth(2))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

/// Writes `plan` as a layer into the store (streamed through a pipe, indexed in the same
/// pass) and returns its digest.
pub fn store_plan(store: &ContentStore, plan: &LayerPlan) -> Result<Digest, StoreError> {
    use rimg_fs::store::WriteLayerError;
    let write = |w: io::PipeWriter| plan.write(io::BufWriter::with_capacity(1 << 20, w));
    let broken_pipe = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    match store.ingest_layer_from(write, broken_pipe) {
        Ok(info) => Ok(info.digest),
        Err(WriteLayerError::Store(e)) => Err(e),
        Err(WriteLayerError::Writer(source)) => {
            Err(IoError::new("write layer", Path::new("layer"), source).into())
        }
    }
}

/// Whether `path` names a tar archive ADD should extract (plain, gzip or zstd, by content).
pub fn sniff_archive(path: &Path) -> io::Result<Option<crate::image::Compression>> {
    use crate::image::Compression;
    let mut f = File::open(path)?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let m = f.read(&mut head[n..])?;
        if m == 0 {
            break;
        }
        n += m;
    }
    let comp = Compression::sniff(&head[..n]);
    if comp != Compression::None {
        return Ok(Some(comp));
    }
    if n == 512 && rimg_fs::tar_stream::is_header_block(&head) {
        return Ok(Some(Compression::None));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind) -> NewEntry {
        NewEntry {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn plans_write_sorted_tars_with_parents() {
        let mut p = LayerPlan::new();
        p.add(
            "/web-ping/app.js",
            entry(Kind::File {
                source: Source::Bytes(b"hi".to_vec()),
                size: 2,
            }),
        );
        p.add("a/link", entry(Kind::Symlink(b"../x".to_vec())));
        p.add_parents(
            None,
            DirDefaults {
                uid: 1,
                gid: 2,
                mtime: 5,
            },
        );
        let mut out = Vec::new();
        p.write(&mut out).unwrap();
        let idx = rimg_fs::layer_index::index_tar_bytes(&out).unwrap();
        let paths: Vec<String> = idx
            .entries()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(paths, ["a", "a/link", "web-ping", "web-ping/app.js"]);
        let dir = &idx.entries()[2];
        assert_eq!((dir.uid, dir.gid, dir.mtime, dir.mode), (1, 2, 5, 0o755));
        // Same plan, same bytes.
        let mut again = Vec::new();
        p.write(&mut again).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn owners_resolve_numbers_without_an_image() {
        assert_eq!(resolve_owner(None, "10:20").unwrap(), (10, 20));
        assert_eq!(resolve_owner(None, "10").unwrap(), (10, 10));
        assert!(resolve_owner(None, "nobody").is_err());
    }
}
