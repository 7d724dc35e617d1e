//! Layer tars made to order, full tree snapshots, and the reference filesystem to compare
//! mounts against: the same layers extracted by GNU tar and stacked by kernel overlayfs, the
//! way Docker's overlay2 driver presents them.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::sh;

/// A layer tar under construction. Entries are written in call order.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(tar::EntryType::Directory, mode);
        self.builder
            .append_data(
                &mut h,
                format!("{}/", path.trim_end_matches('/')),
                std::io::empty(),
            )
            .expect("append");
        self
    }

    /// A regular file with owner and mtime.
    pub fn file_with(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Self {
        let mut h = header(tar::EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .expect("append");
        self
    }

    /// A regular root-owned file.
    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_with(path, data, mode, 0, 0, 1_700_000_000)
    }

    /// A regular file with extended attributes (PAX `SCHILY.xattr.*`).
    pub fn file_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .expect("pax");
        self.file(path, data, 0o644)
    }

    /// A symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        self.builder
            .append_link(&mut h, path, target)
            .expect("append");
        self
    }

    /// A hard link to an earlier entry.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644);
        self.builder
            .append_link(&mut h, path, target)
            .expect("append");
        self
    }

    /// A character or block device.
    pub fn device(mut self, path: &str, block: bool, major: u32, minor: u32) -> Self {
        let kind = if block {
            tar::EntryType::Block
        } else {
            tar::EntryType::Char
        };
        let mut h = header(kind, 0o660);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .expect("append");
        self
    }

    /// A named pipe.
    pub fn fifo(mut self, path: &str) -> Self {
        let mut h = header(tar::EntryType::Fifo, 0o644);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .expect("append");
        self
    }

    /// A whiteout hiding `path` of lower layers.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), b"", 0o644)
    }

    /// Makes `dir` opaque: every lower child is hidden.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
        )
    }

    /// The tar bytes.
    pub fn build(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish tar")
    }
}

/// Three layers exercising every entry kind, overrides, whiteouts, opaque dirs and hard links.
pub fn every_kind_layers() -> Vec<Vec<u8>> {
    let l1 = Layer::new()
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o640)
        .file("etc/remove-me", b"gone in layer 3\n", 0o644)
        .dir("bin", 0o755)
        .file("bin/tool", &[0x7f, b'E', b'L', b'F', 1, 2, 3], 0o4755)
        .hardlink("bin/tool-link", "bin/tool")
        .symlink("bin/sh", "tool")
        .dir("data", 0o755)
        .file_with(
            "data/owned",
            b"owned by 1000\n",
            0o600,
            1000,
            1000,
            1_600_000_000,
        )
        .dir("data/sub", 0o700)
        .file("data/sub/deep", b"deep\n", 0o644)
        .dir("opq", 0o755)
        .file("opq/lower-a", b"a\n", 0o644)
        .file("opq/lower-b", b"b\n", 0o644)
        .dir("dev", 0o755)
        .device("dev/null", false, 1, 3)
        .device("dev/loop9", true, 7, 9)
        .fifo("dev/pipe")
        .file_xattrs(
            "etc/labelled",
            b"xattrs\n",
            &[("user.comment", b"hello"), ("trusted.rimg", b"\x00\x01")],
        )
        .file("big", &vec![0xabu8; 3 * 1024 * 1024 + 17], 0o644)
        .build();
    let l2 = Layer::new()
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
            0o644,
        )
        .dir("data/sub", 0o750)
        .file("data/sub/added", b"added in 2\n", 0o644)
        .file("opq/lower-c", b"c\n", 0o644)
        .symlink("abs-link", "/etc/passwd")
        .dir("home", 0o755)
        .dir("home/user", 0o755)
        .file_with(
            "home/user/.profile",
            b"export A=1\n",
            0o644,
            1000,
            1000,
            1_650_000_000,
        )
        .hardlink("home/user/profile-link", "home/user/.profile")
        .build();
    let l3 = Layer::new()
        .whiteout("etc/remove-me")
        .opaque("opq")
        .file("opq/upper", b"only this\n", 0o644)
        .whiteout("data/sub")
        .file("bin/tool", b"replaced\n", 0o755)
        .file(&format!("long/{}", "n".repeat(200)), b"long name\n", 0o644)
        .build();
    vec![l1, l2, l3]
}

/// One line per path: kind, permissions, owner, size, mtime, link target, content hash,
/// xattrs (names starting with `trusted.overlay.` are the union's own and left out).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let m = fs::symlink_metadata(&p).expect("lstat");
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!(
                "symlink -> {}",
                fs::read_link(&p).expect("readlink").display()
            )
        } else if ft.is_file() {
            let mut h = Sha256::new();
            let mut f = fs::File::open(&p).expect("open");
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            format!(
                "file size={} nlink={} sha256={:x}",
                m.len(),
                m.nlink(),
                h.finalize()
            )
        } else if ft.is_char_device() {
            format!("chardev {}:{}", major(m.rdev()), minor(m.rdev()))
        } else if ft.is_block_device() {
            format!("blockdev {}:{}", major(m.rdev()), minor(m.rdev()))
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "socket".to_string()
        };
        let mut xattrs: Vec<String> = Vec::new();
        if !ft.is_symlink() {
            if let Ok(names) = xattr::list(&p) {
                for n in names {
                    let name = n.to_string_lossy().into_owned();
                    if name.starts_with("trusted.overlay.") || name.starts_with("security.") {
                        continue;
                    }
                    let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                    xattrs.push(format!("{name}={}", hex(&v)));
                }
            }
        }
        xattrs.sort();
        let mtime = if ft.is_dir() {
            String::new()
        } else {
            format!(" mtime={}", m.mtime())
        };
        out.insert(
            rel,
            format!(
                "{kind} mode={:o} uid={} gid={}{mtime} xattrs=[{}]",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                xattrs.join(",")
            ),
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// Groups of paths that share an inode (hard links), each group sorted.
pub fn hardlink_groups(root: &Path) -> Vec<Vec<String>> {
    let mut by_ino: HashMap<u64, Vec<String>> = HashMap::new();
    for rel in snapshot(root).keys() {
        let m = fs::symlink_metadata(root.join(rel)).expect("lstat");
        if m.file_type().is_file() && m.nlink() > 1 {
            by_ino.entry(m.ino()).or_default().push(rel.clone());
        }
    }
    let mut groups: Vec<Vec<String>> = by_ino
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// The reference filesystem: each layer extracted by GNU tar into its own directory, OCI
/// whiteouts turned into overlayfs whiteouts, and kernel overlayfs stacking them (read-only,
/// or writable with an upper dir). Unmounted on drop.
pub struct Reference {
    pub dir: tempfile::TempDir,
    pub mountpoint: PathBuf,
    pub upper: Option<PathBuf>,
}

impl Reference {
    /// Extracts and mounts `layers` (bottom first); `writable` adds upper and work dirs.
    pub fn mount(layers: &[Vec<u8>], writable: bool) -> Reference {
        let dir = tempfile::Builder::new()
            .prefix("rimg-ref-")
            .tempdir()
            .expect("tempdir");
        let mut lowers = Vec::new();
        for (i, bytes) in layers.iter().enumerate() {
            let tar = dir.path().join(format!("layer{i}.tar"));
            fs::write(&tar, bytes).expect("write tar");
            let out = dir.path().join(format!("layer{i}"));
            fs::create_dir_all(&out).expect("mkdir");
            sh(&format!(
                "tar --xattrs --xattrs-include='*' --numeric-owner --same-owner -xpf {} -C {}",
                tar.display(),
                out.display()
            ));
            convert_whiteouts(&out);
            lowers.push(out);
        }
        let mountpoint = dir.path().join("merged");
        fs::create_dir_all(&mountpoint).expect("mkdir");
        let lowerdir: Vec<String> = lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let upper = if writable {
            let upper = dir.path().join("upper");
            let work = dir.path().join("work");
            fs::create_dir_all(&upper).expect("mkdir");
            fs::create_dir_all(&work).expect("mkdir");
            sh(&format!(
                "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
                lowerdir.join(":"),
                upper.display(),
                work.display(),
                mountpoint.display()
            ));
            Some(upper)
        } else {
            let opt = if lowers.len() == 1 {
                // overlayfs needs two lowers when there is no upper; add an empty one.
                let empty = dir.path().join("empty");
                fs::create_dir_all(&empty).expect("mkdir");
                format!("{}:{}", lowerdir[0], empty.display())
            } else {
                lowerdir.join(":")
            };
            sh(&format!(
                "mount -t overlay overlay -o ro,lowerdir={opt} {}",
                mountpoint.display()
            ));
            None
        };
        Reference {
            dir,
            mountpoint,
            upper,
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mountpoint)
            .status();
    }
}

/// Turns `.wh.NAME` files into overlayfs whiteouts (char 0:0) and `.wh..wh..opq` into the
/// `trusted.overlay.opaque` xattr, recursively.
fn convert_whiteouts(dir: &Path) {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    for p in entries {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        if name == ".wh..wh..opq" {
            fs::remove_file(&p).expect("rm opq");
            xattr::set(dir, "trusted.overlay.opaque", b"y").expect("set opaque");
        } else if let Some(target) = name.strip_prefix(".wh.") {
            fs::remove_file(&p).expect("rm wh");
            sh(&format!("mknod '{}' c 0 0", dir.join(target).display()));
        } else if fs::symlink_metadata(&p).expect("lstat").is_dir() {
            convert_whiteouts(&p);
        }
    }
}
