//! Change lists: what `docker diff` prints, for a container's upper dir
//! ([`crate::upper::upper_changes`]) and between two images ([`tree_changes`]).

mod tree;

pub use tree::tree_changes;

use std::collections::HashSet;
use std::fmt;

use crate::union::{Node, NodeKind, UnionTree};

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

impl Change {
    /// The change of `kind` at `rel`, a relative path as walks build it (`etc/passwd`).
    pub(crate) fn at(kind: ChangeKind, rel: &[u8], size: u64) -> Self {
        Change {
            kind,
            path: shown(rel),
            size,
        }
    }
}

impl fmt::Display for Change {
    /// `A /path`, as `docker diff` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

pub(crate) fn push_name(rel: &mut Vec<u8>, name: &[u8]) -> usize {
    let len = rel.len();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    len
}

pub(crate) fn shown(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

/// Orders paths as a depth-first walk with sorted names does: `/a`, `/a/b`, `/a-b`.
fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes().map(|c| if c == b'/' { 0 } else { c })
    }
    key(a).cmp(key(b))
}

pub(crate) fn sort_changes(changes: &mut [Change]) {
    changes.sort_by(|a, b| walk_order(&a.path, &b.path));
}

/// Docker's `sameFsTime`: equal seconds, and equal nanoseconds unless one side has none.
pub(crate) fn same_time(a: (i64, u32), b: (i64, u32)) -> bool {
    a.0 == b.0 && (a.1 == b.1 || a.1 == 0 || b.1 == 0)
}

/// The bytes a lower entry takes: files by length, symlinks by target length, a directory by
/// its whole subtree (hard-linked files once).
pub(crate) fn subtree_size(tree: &UnionTree, ino: u64) -> u64 {
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

pub(crate) fn entry_size(n: &Node) -> u64 {
    match n.kind {
        NodeKind::File | NodeKind::Symlink => n.size,
        _ => 0,
    }
}
