//! `diff`: an upper dir against the lower tree.

use std::os::fd::OwnedFd;
use std::path::Path;

use super::read::{Item, ItemKind, Upper, XattrSource, Xattrs};
use super::{LayerOptions, PathSet, Result, UpperError};
use crate::changes::{push_name, same_time, sort_changes, subtree_size, Change, ChangeKind};
use crate::union::{NodeKind, UnionTree, ROOT_INO};

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
        self.out.push(Change::at(kind, rel, size));
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
                ItemKind::Node(NodeKind::Dir) => {
                    sum.listed |= self.subdir(fd, item, rel, lower_child, hidden)?
                }
                _ => {
                    let kind = if lower_child.is_some() {
                        ChangeKind::Changed
                    } else {
                        ChangeKind::Added
                    };
                    let size = match item.kind {
                        ItemKind::Node(NodeKind::File) | ItemKind::Node(NodeKind::Symlink) => {
                            item.stat.size
                        }
                        _ => 0,
                    };
                    self.push(kind, rel, size);
                    sum.listed |= kind == ChangeKind::Added
                        || lower_node.is_some_and(|n| n.kind == NodeKind::Dir);
                }
            }
            rel.truncate(len);
        }
        if hidden {
            sum.listed |= self.hidden_children(&items, rel, lower);
        }
        Ok(sum)
    }

    /// An upper directory at `rel` (`lower_child`: what the lower has there); returns whether
    /// it was listed.
    fn subdir(
        &mut self,
        parent: &OwnedFd,
        item: &Item,
        rel: &mut Vec<u8>,
        lower_child: Option<u64>,
        hidden: bool,
    ) -> Result<bool> {
        let lower_node = lower_child.and_then(|c| self.lower.node(c));
        let sub = self.up.open_dir(parent, &item.name, rel)?;
        let (xattrs, opaque) = self
            .xattrs
            .read(&XattrSource::Fd(&sub))
            .map_err(self.up.err("read xattrs of", rel))?;
        let lower_dir = lower_child.filter(|_| lower_node.is_some_and(|n| n.kind == NodeKind::Dir));
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
                (attrs_differ || below.listed || (opaque && !hidden)).then_some(ChangeKind::Changed)
            }
        };
        if let Some(k) = kind {
            self.push(k, rel, 0);
        }
        Ok(kind.is_some())
    }

    /// Lists as deleted each child of the hidden lower directory `lower` that the upper
    /// directory (its entries `items`) does not hold; returns whether it listed one.
    fn hidden_children(&mut self, items: &[Item], rel: &mut Vec<u8>, lower: Option<u64>) -> bool {
        let Some(d) = lower.and_then(|l| self.lower.node(l)) else {
            return false;
        };
        let mut listed = false;
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
                listed = true;
            }
            rel.truncate(len);
        }
        listed
    }
}
