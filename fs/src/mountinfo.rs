//! The mount table of this mount namespace, from `/proc/self/mountinfo`: the one parser the
//! workspace uses (the overlay and FUSE layers, the benchmarks, the tests).
//!
//! A line reads `id parent major:minor root mountpoint options [optional...] - fstype source
//! super-options`; the kernel escapes space, tab, newline and backslash in paths as `\040`,
//! `\011`, `\012` and `\134`.

use std::io;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The filesystem type (`overlay`, `fuse.rimgfs`, ...).
    pub fstype: String,
    /// The mount source.
    pub source: String,
    /// The device, `major:minor`.
    pub device: String,
}

/// The mounts of this mount namespace, in the kernel's order (a mount stacked on another
/// comes after it).
pub fn read() -> io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Mount points at or under `dir` (as given: compare with a canonical path), deepest first,
/// each once.
pub fn under(mounts: &[MountInfo], dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.mountpoint.starts_with(dir))
        .map(|m| m.mountpoint.clone())
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Parses `/proc/self/mountinfo` text; lines that do not have the format are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(dev), Some(mp), Some(fstype), Some(source)) = (
            fields.get(2),
            fields.get(4),
            fields.get(sep + 1),
            fields.get(sep + 2),
        ) else {
            continue;
        };
        out.push(MountInfo {
            mountpoint: PathBuf::from(unescape_octal(mp)),
            fstype: (*fstype).to_string(),
            source: unescape_octal(source),
            device: (*dev).to_string(),
        });
    }
    out
}

/// Undoes the kernel's `\040`-style escaping of spaces, tabs, newlines and backslashes.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(oct) = b.get(i + 1..i + 4) {
            if b[i] == b'\\' && oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
36 22 98:0 / /mnt/with\\040space rw,noatime master:1 - overlay overlay rw,lowerdir=x\n\
40 36 0:55 / /var/lib/rimg/x rw - fuse.rimgfs rimgfs:busybox ro\n\
41 22 0:56 / /tmp/tab\\011new\\012line\\134slash rw - tmpfs my\\040src rw\n\
not a mountinfo line\n";

    #[test]
    fn lines_parse_with_optional_fields_and_escapes() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].mountpoint, PathBuf::from("/"));
        assert_eq!(m[0].source, "/dev/sda1");
        assert_eq!(m[1].mountpoint, PathBuf::from("/mnt/with space"));
        assert_eq!(m[1].fstype, "overlay");
        assert_eq!(m[2].fstype, "fuse.rimgfs");
        assert_eq!(m[2].source, "rimgfs:busybox");
        assert_eq!(m[2].device, "0:55");
        assert_eq!(m[3].mountpoint, PathBuf::from("/tmp/tab\tnew\nline\\slash"));
        assert_eq!(m[3].source, "my src");
    }

    #[test]
    fn a_backslash_not_followed_by_three_octal_digits_is_kept() {
        assert_eq!(unescape_octal("a\\9b\\04"), "a\\9b\\04");
    }

    #[test]
    fn mounts_under_a_dir_come_deepest_first() {
        let m = parse(SAMPLE);
        assert_eq!(
            under(&m, Path::new("/mnt")),
            vec![PathBuf::from("/mnt/with space")]
        );
        let all = under(&m, Path::new("/"));
        assert_eq!(all.last(), Some(&PathBuf::from("/")));
        assert_eq!(all.len(), 4);
    }
}
