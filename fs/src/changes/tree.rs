//! The change list between two image trees (`rimg diff IMAGE1 IMAGE2`).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{entry_size, push_name, same_time, sort_changes, subtree_size, Change, ChangeKind};
use crate::digest::Digest;
use crate::error::IoError;
use crate::store::ContentStore;
use crate::union::{Node, NodeKind, UnionTree, ROOT_INO};
use crate::upper::UpperError;

type Result<T, E = UpperError> = std::result::Result<T, E>;

/// The changes that turn image tree `old` into image tree `new` (`rimg diff IMAGE1 IMAGE2`),
/// in Docker's order, with sizes. Files are compared by attributes, then (when their size and
/// mtime are equal but their data lives elsewhere) byte by byte from the stored layer tars of
/// `store`. Directories count as changed when their mode, owner or xattrs differ (not their
/// mtime, as in Docker's `ChangesDirs`) or, as in [`crate::upper::upper_changes`], when they hold an added or
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
        self.out.push(Change::at(kind, rel, size));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upper::tests::{lines, Lower};

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
}
