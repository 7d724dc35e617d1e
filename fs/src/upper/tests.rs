//! Tests of reading and committing upper dirs.

use super::*;
use crate::changes::{tree_changes, Change};
use crate::digest::Digest;
use crate::layer_index::{index_tar_bytes, EntryKind, LayerIndex};
use crate::store::ContentStore;
use crate::union::UnionTree;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use rustix::fs::{Timespec, Timestamps, XattrFlags, CWD};
use std::path::PathBuf;

const T0: u64 = 1_700_000_000;

/// A lower layer tar.
pub(crate) struct Lower(tar::Builder<Vec<u8>>);

impl Lower {
    pub(crate) fn new() -> Self {
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
    pub(crate) fn dir(self, p: &str) -> Self {
        self.add(tar::EntryType::Directory, &format!("{p}/"), b"", 0o755)
    }
    pub(crate) fn file(self, p: &str, d: &[u8]) -> Self {
        self.add(tar::EntryType::Regular, p, d, 0o644)
    }
    pub(crate) fn build(self) -> Vec<u8> {
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
            Op::Opaque(d) => rfs::setxattr(p(d), OPAQUE_XATTR, b"y", XattrFlags::empty()).unwrap(),
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

pub(crate) fn lines(changes: &[Change]) -> Vec<String> {
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
