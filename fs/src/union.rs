//! The union tree: an image's layer indexes merged top-down into one read-only tree of
//! inodes, built at mount time from the persisted indexes (no tar is read).
//!
//! Semantics are those of kernel overlayfs stacking each layer extracted on its own, which is
//! what Docker's overlay2 driver shows:
//! - a layer's whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`) act only on the
//!   layers below it, so they are applied before that layer's own entries;
//! - a directory over a directory merges (the upper one's attributes win); anything else over
//!   anything replaces it, subtree included;
//! - an entry below a path that is not a directory in the layers beneath replaces that path
//!   with a directory (symlinks are never followed: the tree cannot point outside itself);
//! - hard links of a layer share one inode, and `nlink` is the number of names it has in its
//!   own layer (what overlayfs reports from the extracted layer, even when a later layer
//!   removes or replaces some of those names).
//!
//! Inode numbers are dense and deterministic (breadth-first, names sorted), so the same image
//! always gets the same numbers. The root is inode 1.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::layer_index::{EntryKind, LayerIndex, NO_LINK};
use crate::whiteout::{self, Whiteout};

/// The root's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT_INO: u64 = 1;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
}

/// Where a file's bytes are: `size` bytes at `offset` of layer `layer`'s tar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRef {
    /// Index into [`UnionTree::layers`] (0 = bottom).
    pub layer: u32,
    /// Offset of the first byte in the tar.
    pub offset: u64,
}

/// One inode of the union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// File size, or symlink target length.
    pub size: u64,
    /// A file's data.
    pub data: Option<DataRef>,
    /// A symlink's target.
    pub link: Vec<u8>,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Link count: names for non-directories, `2 + subdirectories` for directories.
    pub nlink: u32,
    /// The layer the node's attributes come from (0 = bottom); `None` for implied directories.
    pub layer: Option<u32>,
    /// A directory's parent inode (the root is its own parent).
    pub parent: u64,
    /// A directory's entries, sorted by name.
    pub children: Vec<(Vec<u8>, u64)>,
}

/// The merged tree of an image's layers.
#[derive(Clone, Debug)]
pub struct UnionTree {
    layers: Vec<Digest>,
    nodes: Vec<Node>,
}

/// A node while the tree is being built: directories keep their entries in a map.
#[derive(Clone)]
struct Building {
    node: Node,
    entries: BTreeMap<Vec<u8>, usize>,
    /// Names this inode has in the layer that made it: what its `nlink` is there.
    layer_names: u32,
}

fn implied_dir(parent: usize) -> Building {
    Building {
        node: Node {
            kind: NodeKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            data: None,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            nlink: 0,
            layer: None,
            parent: parent as u64,
            children: Vec::new(),
        },
        entries: BTreeMap::new(),
        layer_names: 1,
    }
}

struct Builder {
    nodes: Vec<Building>,
}

impl Builder {
    /// A name of node `old` was replaced by an entry of layer `layer`: if `old` came from
    /// that same layer, it has one name fewer there.
    fn replaced_in_layer(&mut self, old: usize, layer: u32) {
        let n = &mut self.nodes[old];
        if n.node.layer == Some(layer) && n.node.kind != NodeKind::Dir {
            n.layer_names = n.layer_names.saturating_sub(1);
        }
    }

    /// The directory node at `path` (components), creating implied directories and replacing
    /// non-directories on the way.
    fn dir_at(&mut self, path: &[u8]) -> usize {
        let mut cur = 0usize;
        if path.is_empty() {
            return cur;
        }
        for comp in path.split(|&b| b == b'/') {
            let next = match self.nodes[cur].entries.get(comp).copied() {
                Some(n) if self.nodes[n].node.kind == NodeKind::Dir => n,
                _ => {
                    let n = self.nodes.len();
                    self.nodes.push(implied_dir(cur));
                    self.nodes[cur].entries.insert(comp.to_vec(), n);
                    n
                }
            };
            cur = next;
        }
        cur
    }

    /// The directory at `path` if it exists as a directory all the way down.
    fn existing_dir(&self, path: &[u8]) -> Option<usize> {
        let mut cur = 0usize;
        if path.is_empty() {
            return Some(cur);
        }
        for comp in path.split(|&b| b == b'/') {
            let n = *self.nodes[cur].entries.get(comp)?;
            if self.nodes[n].node.kind != NodeKind::Dir {
                return None;
            }
            cur = n;
        }
        Some(cur)
    }
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn node_kind(k: EntryKind) -> NodeKind {
    match k {
        EntryKind::Dir => NodeKind::Dir,
        EntryKind::File | EntryKind::Hardlink => NodeKind::File,
        EntryKind::Symlink => NodeKind::Symlink,
        EntryKind::CharDevice => NodeKind::CharDevice,
        EntryKind::BlockDevice => NodeKind::BlockDevice,
        EntryKind::Fifo => NodeKind::Fifo,
    }
}

impl UnionTree {
    /// Merges layer indexes, bottom layer first.
    pub fn build(layers: &[LayerIndex]) -> UnionTree {
        let mut b = Builder {
            nodes: vec![implied_dir(0)],
        };
        for (li, layer) in layers.iter().enumerate() {
            let li = li as u32;
            // Whiteouts and opaque markers of this layer act on the layers below it only.
            for e in layer.entries() {
                let (parent, name) = split_parent(&e.path);
                match whiteout::classify(name) {
                    Whiteout::Remove(target) => {
                        if let Some(d) = b.existing_dir(parent) {
                            b.nodes[d].entries.remove(target);
                        }
                    }
                    Whiteout::Opaque => {
                        if let Some(d) = b.existing_dir(parent) {
                            b.nodes[d].entries.clear();
                        }
                    }
                    Whiteout::None | Whiteout::Meta | Whiteout::Invalid => {}
                }
            }
            // The layer's own entries, in tar order; remember each entry's inode for links.
            let mut inode_of: Vec<usize> = vec![usize::MAX; layer.entries().len()];
            for (ei, e) in layer.entries().iter().enumerate() {
                let (parent, name) = split_parent(&e.path);
                if !matches!(whiteout::classify(name), Whiteout::None) {
                    continue;
                }
                if e.path.is_empty() {
                    // The root's own entry ("./"): its attributes.
                    set_attrs(&mut b.nodes[0].node, e, li);
                    inode_of[ei] = 0;
                    continue;
                }
                let d = b.dir_at(parent);
                let existing = b.nodes[d].entries.get(name).copied();
                if e.kind == EntryKind::Hardlink {
                    let target = if e.link_index == NO_LINK {
                        None
                    } else {
                        inode_of
                            .get(e.link_index as usize)
                            .copied()
                            .filter(|&n| n != usize::MAX)
                    };
                    if let Some(t) = target {
                        if let Some(old) = b.nodes[d].entries.insert(name.to_vec(), t) {
                            b.replaced_in_layer(old, li);
                        }
                        b.nodes[t].layer_names += 1;
                        inode_of[ei] = t;
                    }
                    continue;
                }
                let n = match existing {
                    Some(n)
                        if e.kind == EntryKind::Dir && b.nodes[n].node.kind == NodeKind::Dir =>
                    {
                        n
                    }
                    _ => {
                        let n = b.nodes.len();
                        let mut fresh = implied_dir(d);
                        fresh.node.kind = node_kind(e.kind);
                        b.nodes.push(fresh);
                        if let Some(old) = b.nodes[d].entries.insert(name.to_vec(), n) {
                            b.replaced_in_layer(old, li);
                        }
                        n
                    }
                };
                set_attrs(&mut b.nodes[n].node, e, li);
                inode_of[ei] = n;
            }
        }
        UnionTree::finish(b, layers.iter().map(|l| l.digest).collect())
    }

    /// Renumbers reachable nodes breadth-first with sorted names and computes link counts.
    fn finish(b: Builder, layers: Vec<Digest>) -> UnionTree {
        let mut new_ino: Vec<u64> = vec![0; b.nodes.len()];
        let mut order: Vec<usize> = vec![0];
        new_ino[0] = ROOT_INO;
        let mut i = 0;
        while i < order.len() {
            let old = order[i];
            i += 1;
            if b.nodes[old].node.kind != NodeKind::Dir {
                continue;
            }
            for &child in b.nodes[old].entries.values() {
                if new_ino[child] == 0 {
                    order.push(child);
                    new_ino[child] = order.len() as u64;
                }
            }
        }
        let mut nodes = Vec::with_capacity(order.len());
        for &old in &order {
            let src = &b.nodes[old];
            let mut node = src.node.clone();
            node.xattrs.sort();
            if node.kind == NodeKind::Dir {
                node.children = src
                    .entries
                    .iter()
                    .map(|(k, &v)| (k.clone(), new_ino[v]))
                    .collect();
                let subdirs = src
                    .entries
                    .values()
                    .filter(|&&c| b.nodes[c].node.kind == NodeKind::Dir)
                    .count();
                node.nlink = 2 + subdirs as u32;
            } else {
                node.nlink = src.layer_names.max(1);
            }
            nodes.push(node);
        }
        // Parents of directories, in new numbering.
        for (idx, &old) in order.iter().enumerate() {
            if b.nodes[old].node.kind != NodeKind::Dir {
                continue;
            }
            let parent_ino = idx as u64 + 1;
            for &child in b.nodes[old].entries.values() {
                if b.nodes[child].node.kind == NodeKind::Dir {
                    nodes[new_ino[child] as usize - 1].parent = parent_ino;
                }
            }
        }
        nodes[0].parent = ROOT_INO;
        UnionTree { layers, nodes }
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[Digest] {
        &self.layers
    }

    /// Number of inodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree has only its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1 && self.nodes.first().is_none_or(|r| r.children.is_empty())
    }

    /// The node with inode number `ino`.
    pub fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(ino).ok()?.checked_sub(1)?)
    }

    /// The inode of `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let dir = self.node(parent)?;
        dir.children
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|i| dir.children[i].1)
    }

    /// The inode at a relative path (`etc/passwd`; empty for the root), without following
    /// symlinks.
    pub fn resolve(&self, path: &[u8]) -> Option<u64> {
        let mut ino = ROOT_INO;
        for comp in path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            ino = self.lookup(ino, comp)?;
        }
        Some(ino)
    }

    /// Every path in the tree with its inode, depth-first in sorted order (the root, `""`,
    /// first). Hard-linked inodes appear once per name.
    pub fn walk(&self) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), ROOT_INO)];
        while let Some((path, ino)) = stack.pop() {
            if let Some(n) = self.node(ino) {
                for (name, child) in n.children.iter().rev() {
                    let mut p = path.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(name);
                    stack.push((p, *child));
                }
            }
            out.push((path, ino));
        }
        out
    }
}

fn set_attrs(n: &mut Node, e: &crate::layer_index::Entry, layer: u32) {
    n.kind = node_kind(e.kind);
    n.mode = e.mode;
    n.uid = e.uid;
    n.gid = e.gid;
    n.mtime = e.mtime;
    n.mtime_nsec = e.mtime_nsec;
    n.layer = Some(layer);
    n.xattrs = e.xattrs.clone();
    n.dev_major = e.dev_major;
    n.dev_minor = e.dev_minor;
    n.link.clear();
    n.data = None;
    n.size = 0;
    match e.kind {
        EntryKind::File => {
            n.size = e.size;
            n.data = Some(DataRef {
                layer,
                offset: e.offset,
            });
        }
        EntryKind::Symlink => {
            n.link = e.link.clone();
            n.size = e.link.len() as u64;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_index::index_tar_bytes;

    struct L(tar::Builder<Vec<u8>>);
    impl L {
        fn new() -> Self {
            L(tar::Builder::new(Vec::new()))
        }
        fn add(
            mut self,
            kind: tar::EntryType,
            path: &str,
            data: &[u8],
            link: Option<&str>,
        ) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            match link {
                Some(l) => self.0.append_link(&mut h, path, l).unwrap(),
                None => self.0.append_data(&mut h, path, data).unwrap(),
            }
            self
        }
        fn dir(self, p: &str) -> Self {
            self.add(tar::EntryType::Directory, p, b"", None)
        }
        fn file(self, p: &str, d: &[u8]) -> Self {
            self.add(tar::EntryType::Regular, p, d, None)
        }
        fn link(self, p: &str, t: &str) -> Self {
            self.add(tar::EntryType::Link, p, b"", Some(t))
        }
        fn symlink(self, p: &str, t: &str) -> Self {
            self.add(tar::EntryType::Symlink, p, b"", Some(t))
        }
        fn index(self) -> LayerIndex {
            index_tar_bytes(&self.0.into_inner().unwrap()).unwrap()
        }
    }

    fn names(t: &UnionTree) -> Vec<String> {
        t.walk()
            .into_iter()
            .map(|(p, _)| String::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_only_lower_layers() {
        let l1 = L::new()
            .dir("a")
            .file("a/x", b"1")
            .file("a/y", b"1")
            .dir("o")
            .file("o/lower", b"1")
            .index();
        let l2 = L::new()
            .file("a/.wh.x", b"")
            .file("o/.wh..wh..opq", b"")
            .file("o/upper", b"2")
            .file("a/new", b"2")
            .index();
        let t = UnionTree::build(&[l1, l2]);
        assert_eq!(names(&t), ["", "a", "a/new", "a/y", "o", "o/upper"]);
    }

    #[test]
    fn a_whiteout_does_not_hide_its_own_layers_entry() {
        let l1 = L::new().file("f", b"1").index();
        let l2 = L::new().file("f", b"2").file(".wh.f", b"").index();
        let t = UnionTree::build(&[l1, l2]);
        let n = t.node(t.resolve(b"f").unwrap()).unwrap();
        assert_eq!(n.data.unwrap().layer, 1);
    }

    #[test]
    fn replacement_rules_and_entries_below_non_directories() {
        let l1 = L::new()
            .dir("d")
            .file("d/child", b"1")
            .symlink("lib", "usr/lib")
            .file("f", b"1")
            .index();
        let l2 = L::new()
            .file("d", b"now a file")
            .file("lib/x", b"2")
            .dir("f")
            .index();
        let t = UnionTree::build(&[l1, l2]);
        assert_eq!(names(&t), ["", "d", "f", "lib", "lib/x"]);
        assert_eq!(
            t.node(t.resolve(b"d").unwrap()).unwrap().kind,
            NodeKind::File
        );
        assert_eq!(
            t.node(t.resolve(b"lib").unwrap()).unwrap().kind,
            NodeKind::Dir
        );
        assert_eq!(
            t.node(t.resolve(b"f").unwrap()).unwrap().kind,
            NodeKind::Dir
        );
    }

    #[test]
    fn hardlinks_share_an_inode_and_count_names() {
        let l1 = L::new()
            .file("a", b"data")
            .link("b", "a")
            .link("c", "a")
            .index();
        let l2 = L::new().file(".wh.c", b"").index();
        let t = UnionTree::build(&[l1, l2]);
        let a = t.resolve(b"a").unwrap();
        assert_eq!(t.resolve(b"b"), Some(a));
        assert_eq!(t.resolve(b"c"), None);
        // As overlayfs shows the extracted lower layer: three names there.
        assert_eq!(t.node(a).unwrap().nlink, 3);
    }

    #[test]
    fn inode_numbers_are_dense_stable_and_parents_correct() {
        let mk = || {
            L::new()
                .dir("z")
                .dir("z/y")
                .file("z/y/f", b"x")
                .dir("a")
                .index()
        };
        let t1 = UnionTree::build(&[mk()]);
        let t2 = UnionTree::build(&[mk()]);
        assert_eq!(t1.walk(), t2.walk());
        assert_eq!(t1.len(), 5);
        let y = t1.resolve(b"z/y").unwrap();
        assert_eq!(t1.node(y).unwrap().parent, t1.resolve(b"z").unwrap());
        assert_eq!(t1.node(ROOT_INO).unwrap().nlink, 4);
        assert_eq!(t1.node(ROOT_INO).unwrap().parent, ROOT_INO);
    }
}
