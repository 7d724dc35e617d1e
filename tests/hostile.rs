//! Hostile layers (issue 8): every breakout or resource-exhaustion archive the issue lists,
//! generated here, run through `rimg import` (and `rimg load` for two-layer cases) and, when
//! stored, through `rimgfs mount --read-only` and a full tree walk. For each: a victim
//! directory beside the store is unchanged, the layer is refused whole with one clear error
//! line and the store untouched, or imported deterministically (same image id twice), no panic,
//! and the peak memory of `rimg` stays bounded. bad_input.rs covers `../x`, an absolute hard
//! link and `up -> ..` then `up/x`; this file covers the rest.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rimg_tests::archives::{store_state, tmp_files, DockerImage};
use rimg_tests::{sh, Store};

/// Peak RSS any single rimg command may reach on a hostile layer (generous: busybox imports
/// at about 10 MB).
const MAX_RSS_KB: u64 = 512 * 1024;

/// A header written by hand (GNU format), so that names and fields `tar` refuses to write can
/// be tested. `kind` is the typeflag.
fn raw(out: &mut Vec<u8>, name: &[u8], kind: u8, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::new(kind));
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name);
    gnu.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    push(out, h.as_bytes(), data);
}

fn push(out: &mut Vec<u8>, header: &[u8], data: &[u8]) {
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A PAX extended header (`x`) carrying `records` (key, value).
fn pax(out: &mut Vec<u8>, records: &[(&str, &[u8])]) {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ' '=' '\n'
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    raw_body(out, b"././@PaxHeader", b'x', &body);
}

/// An extension header of type `kind` (`x`, `L`, `K`) with `body` as its data.
fn raw_body(out: &mut Vec<u8>, name: &[u8], kind: u8, body: &[u8]) {
    raw(out, name, kind, b"", body);
}

fn file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    raw(out, name.as_bytes(), b'0', b"", data);
}

fn dir(out: &mut Vec<u8>, name: &str) {
    raw(out, name.as_bytes(), b'5', b"", b"");
}

fn symlink(out: &mut Vec<u8>, name: &str, target: &str) {
    raw(out, name.as_bytes(), b'2', target.as_bytes(), b"");
}

fn hardlink(out: &mut Vec<u8>, name: &str, target: &str) {
    raw(out, name.as_bytes(), b'1', target.as_bytes(), b"");
}

fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.resize(out.len() + 1024, 0);
    out
}

/// What a case must do.
enum Expect {
    /// Refused with one `Error:` line containing this text.
    Refused(&'static str),
    /// Imported; the mounted tree, listed by `find` (sorted, relative), must contain these.
    Imported(&'static [&'static str]),
}

/// A victim directory beside the store: what an escape would write to or delete.
fn victim(s: &Store) -> PathBuf {
    let v = s.path("victim");
    fs::create_dir_all(v.join("etc")).unwrap();
    fs::write(v.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(v.join("x"), "precious").unwrap();
    v
}

/// Every path, kind, mode and content under `root` (symlinks not followed).
fn tree_hash(root: &Path) -> String {
    sh(&format!(
        "cd {} && find . -printf '%p %y %m %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0r sha256sum",
        root.display()
    ))
}

/// Runs `cmd` under `/usr/bin/time`, killed after two minutes (a hang guard, not a timing
/// assertion). Returns its output with the time line taken out, and its peak RSS in KiB.
fn measured(cmd: rimg_tests::Cmd) -> (Output, u64) {
    let mut inner = cmd.0;
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "120", "/usr/bin/time", "-f", "maxrss-kb=%M"])
        .arg(inner.get_program());
    c.args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    inner.stdin(Stdio::null());
    let mut out = c.stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut rss = 0;
    let mut kept = String::new();
    for l in err.lines() {
        if let Some(v) = l.strip_prefix("maxrss-kb=") {
            rss = v.parse().unwrap();
        } else if !l.starts_with("Command exited with non-zero status")
            && !l.starts_with("Command terminated by signal")
        {
            kept.push_str(l);
            kept.push('\n');
        }
    }
    assert_ne!(
        out.status.code(),
        Some(137),
        "killed after 2 minutes: {inner:?}"
    );
    assert!(
        !kept.contains("panicked"),
        "rimg panicked on a hostile layer:\n{kept}"
    );
    assert!(rss <= MAX_RSS_KB, "{inner:?} peaked at {rss} KiB:\n{kept}");
    out.stderr = kept.into_bytes();
    (out, rss)
}

/// Imports `layer` as `name` and checks what `expect` says; returns the mounted tree listing
/// when imported.
#[track_caller]
fn check(s: &Store, name: &str, layer: &[u8], expect: Expect) {
    let v = victim(s);
    let victim_before = tree_hash(&v);
    let p = s.path(&format!("{name}.tar"));
    fs::write(&p, layer).unwrap();
    let before = store_state(&s.root());
    let import = |tag: &str| {
        measured(
            s.rimg(["import"])
                .arg(&p)
                .arg(tag)
                .env("SOURCE_DATE_EPOCH", "0"),
        )
    };
    let (out, rss) = import(&format!("hostile-{name}:1"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    match expect {
        Expect::Refused(what) => {
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            assert!(!out.status.success(), "{name}: imported, expected refusal");
            assert_eq!(lines.len(), 1, "{name}: one error line expected:\n{err}");
            assert!(
                lines[0].starts_with("Error: ") && lines[0].contains(what),
                "{name}: expected an error naming {what:?}, got:\n{err}"
            );
            assert_eq!(store_state(&s.root()), before, "{name}: the store changed");
            eprintln!("{name}: refused ({rss} KiB): {}", lines[0]);
        }
        Expect::Imported(want) => {
            assert!(out.status.success(), "{name}: refused:\n{err}");
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let (again, _) = import(&format!("hostile-{name}:2"));
            assert!(again.status.success(), "{name}: second import failed");
            assert_eq!(
                String::from_utf8_lossy(&again.stdout).trim(),
                id,
                "{name}: importing the same layer twice gave two ids"
            );
            let listing = walk_mounted(s, &format!("hostile-{name}:1"), name);
            for w in want {
                assert!(
                    listing.lines().any(|l| l == *w),
                    "{name}: {w:?} not in the mounted tree:\n{listing:.2000}"
                );
            }
            eprintln!("{name}: imported ({rss} KiB) as {id}");
        }
    }
    assert_eq!(
        tmp_files(&s.root()),
        Vec::<String>::new(),
        "{name}: rimg/tmp"
    );
    assert_eq!(tree_hash(&v), victim_before, "{name}: the victim changed");
}

/// Mounts `image` read-only, lists and reads every file (GNU tar walks with openat, so deep
/// trees work), unmounts; returns `find`'s sorted listing (`%y %p`, relative).
fn walk_mounted(s: &Store, image: &str, name: &str) -> String {
    let m = s.mount(image, &format!("mnt-{name}"), &["--read-only"]);
    let mp = m.mountpoint.display().to_string();
    let listing = sh(&format!(
        "cd {mp} && find . -printf '%y %p\\n' | LC_ALL=C sort"
    ));
    sh(&format!("tar -C {mp} -cf - . | wc -c"));
    // The daemon's peak memory after serving every entry.
    let ls = s.rimgfs(["ls"]).ok();
    let pid = ls
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(mp.as_str()))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("{mp} not in rimgfs ls:\n{ls}"))
        .to_string();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hwm <= MAX_RSS_KB, "{name}: rimgfs peaked at {hwm} KiB");
    eprintln!("{name}: rimgfs daemon peak {hwm} KiB");
    m.umount();
    listing
}

/// A store that exists already (the first command creates `index.json`).
fn case() -> Store {
    let s = Store::new();
    s.rimg(["images"]).ok();
    s
}

#[test]
fn names_with_dotdot_or_absolute_paths() {
    let s = case();
    let mut l = Vec::new();
    file(&mut l, "a/../../x", b"evil");
    check(
        &s,
        "dotdot-inner",
        &end(l),
        Expect::Refused("escapes the root"),
    );
    let mut l = Vec::new();
    pax(&mut l, &[("path", b"../../victim/x")]);
    file(&mut l, "harmless", b"evil");
    check(
        &s,
        "dotdot-pax",
        &end(l),
        Expect::Refused("escapes the root"),
    );
    let mut l = Vec::new();
    file(&mut l, "/etc/passwd", b"evil");
    file(&mut l, "//abs//x", b"evil");
    check(
        &s,
        "absolute",
        &end(l),
        Expect::Imported(&["f ./etc/passwd", "f ./abs/x"]),
    );
}

#[test]
fn writes_through_symlinks_are_refused() {
    let s = case();
    let mut l = Vec::new();
    symlink(&mut l, "l", "/etc");
    file(&mut l, "l/passwd", b"evil");
    check(
        &s,
        "symlink-abs",
        &end(l),
        Expect::Refused("\"l/passwd\" has a parent \"l\" that is not a directory"),
    );
    let mut l = Vec::new();
    symlink(&mut l, "l", "../../..");
    file(&mut l, "l/x", b"evil");
    check(
        &s,
        "symlink-up",
        &end(l),
        Expect::Refused("\"l/x\" has a parent \"l\" that is not a directory"),
    );
    // Through a symlink further up, and a hard link through a symlink.
    let mut l = Vec::new();
    dir(&mut l, "d/");
    symlink(&mut l, "d/l", "/");
    dir(&mut l, "d/l/etc/");
    check(
        &s,
        "symlink-dir",
        &end(l),
        Expect::Refused("has a parent \"d/l\" that is not a directory"),
    );
    let mut l = Vec::new();
    symlink(&mut l, "l", "/etc");
    hardlink(&mut l, "h", "l/passwd");
    check(
        &s,
        "hardlink-via-symlink",
        &end(l),
        Expect::Refused("hard link \"h\" points to \"l/passwd\""),
    );
    // A symlink replaced by a directory: the directory wins, nothing is followed.
    let mut l = Vec::new();
    symlink(&mut l, "d", "/etc");
    dir(&mut l, "d/");
    file(&mut l, "d/passwd", b"inside");
    check(
        &s,
        "symlink-then-dir",
        &end(l),
        Expect::Imported(&["d ./d", "f ./d/passwd"]),
    );
    // Symlinks named `.` or with an empty name are the root, which must be a directory.
    for (what, n) in [
        ("symlink-dot", "."),
        ("symlink-empty", ""),
        ("symlink-slash", "/"),
    ] {
        let mut l = Vec::new();
        symlink(&mut l, n, "/etc");
        file(&mut l, "passwd", b"evil");
        check(
            &s,
            what,
            &end(l),
            Expect::Refused("the layer's root entry is not a directory"),
        );
    }
    // Dangling and escaping symlinks alone are stored as they are (they are data).
    let mut l = Vec::new();
    symlink(&mut l, "up", "../../../../victim/x");
    symlink(&mut l, "abs", "/etc/shadow");
    check(
        &s,
        "symlink-only",
        &end(l),
        Expect::Imported(&["l ./up", "l ./abs"]),
    );
}

#[test]
fn hardlinks_outside_missing_or_later_are_refused() {
    let s = case();
    let mut l = Vec::new();
    hardlink(&mut l, "h", "../victim/x");
    check(
        &s,
        "hardlink-up",
        &end(l),
        Expect::Refused("escapes the root"),
    );
    let mut l = Vec::new();
    hardlink(&mut l, "h", "missing");
    check(
        &s,
        "hardlink-missing",
        &end(l),
        Expect::Refused("hard link \"h\" points to \"missing\""),
    );
    let mut l = Vec::new();
    hardlink(&mut l, "h", "later");
    file(&mut l, "later", b"x");
    check(
        &s,
        "hardlink-later",
        &end(l),
        Expect::Refused("hard link \"h\" points to \"later\""),
    );
    let mut l = Vec::new();
    dir(&mut l, "d/");
    hardlink(&mut l, "h", "d");
    check(
        &s,
        "hardlink-dir",
        &end(l),
        Expect::Refused("hard link \"h\" points to \"d\""),
    );
    let mut l = Vec::new();
    hardlink(&mut l, "h", "h");
    check(
        &s,
        "hardlink-self",
        &end(l),
        Expect::Refused("hard link \"h\" points to \"h\""),
    );
}

#[test]
fn invalid_whiteouts_are_refused() {
    let s = case();
    for (what, n) in [
        ("wh-empty", ".wh."),
        ("wh-dot", ".wh.."),
        ("wh-etc-dot", "etc/.wh.."),
        ("wh-dotdot", "etc/.wh..."),
    ] {
        let mut l = Vec::new();
        file(&mut l, n, b"");
        check(&s, what, &end(l), Expect::Refused("is an invalid whiteout"));
    }
    let mut l = Vec::new();
    symlink(&mut l, ".wh.etc", "/");
    check(
        &s,
        "wh-symlink",
        &end(l),
        Expect::Refused("is an invalid whiteout"),
    );
    let mut l = Vec::new();
    symlink(&mut l, "l", "/etc");
    file(&mut l, "l/.wh.passwd", b"");
    check(
        &s,
        "wh-through-symlink",
        &end(l),
        Expect::Refused("has a parent \"l\" that is not a directory"),
    );
}

/// A whiteout in an upper layer under a path that is a symlink in the layer below: the union
/// never follows the lower symlink (the host's /etc is not consulted, let alone changed).
#[test]
fn whiteouts_through_a_lower_symlink_stay_in_the_image() {
    let s = case();
    let v = victim(&s);
    let before = tree_hash(&v);
    let mut lower = Vec::new();
    symlink(&mut lower, "l", &v.join("etc").display().to_string());
    file(&mut lower, "keep", b"k");
    let mut upper = Vec::new();
    file(&mut upper, "l/.wh.passwd", b"");
    file(&mut upper, "l/new", b"n");
    let img = DockerImage::new(&[end(lower), end(upper)], "wh-lower:1");
    let p = s.path("wh-lower.tar");
    fs::write(&p, img.build()).unwrap();
    let (out, _) = measured(s.rimg(["load", "-i"]).arg(&p));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = walk_mounted(&s, "wh-lower:1", "wh-lower");
    assert!(
        listing.contains("d ./l\n") && listing.contains("f ./l/new\n"),
        "{listing}"
    );
    assert!(!listing.contains("passwd"), "{listing}");
    assert_eq!(tree_hash(&v), before);
}

#[test]
fn duplicates_devices_and_sizes() {
    let s = case();
    let mut l = Vec::new();
    file(&mut l, "f", b"first");
    file(&mut l, "f", b"second");
    dir(&mut l, "d/");
    dir(&mut l, "d/");
    check(
        &s,
        "duplicates",
        &end(l),
        Expect::Imported(&["f ./f", "d ./d"]),
    );
    let m = s.mount("hostile-duplicates:1", "dup", &["--read-only"]);
    assert_eq!(fs::read(m.join("f")).unwrap(), b"second");
    m.umount();

    let mut l = Vec::new();
    dir(&mut l, "d/");
    file(&mut l, "d", b"x");
    check(
        &s,
        "dir-then-file",
        &end(l),
        Expect::Refused("replaces a directory of the same layer"),
    );

    for (what, major, minor) in [("dev-major", 4096u64, 0u64), ("dev-minor", 1, 1 << 20)] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_size(0);
        h.set_mode(0o600);
        h.set_path("dev/x").unwrap();
        h.set_device_major(major as u32).unwrap();
        h.set_device_minor(minor as u32).unwrap();
        h.set_cksum();
        let mut l = Vec::new();
        push(&mut l, h.as_bytes(), b"");
        check(
            &s,
            what,
            &end(l),
            Expect::Refused("device number out of range"),
        );
    }

    let mut l = Vec::new();
    pax(&mut l, &[("size", b"1000")]);
    file(&mut l, "f", b"short");
    check(
        &s,
        "pax-size",
        &end(l),
        Expect::Refused("PAX size 1000 disagrees with header size 5"),
    );
    // A PAX size with a zero ustar size (how >8 GiB files are written) that runs past the end.
    let mut l = Vec::new();
    pax(&mut l, &[("size", b"99999999999999")]);
    file(&mut l, "f", b"");
    check(
        &s,
        "pax-size-huge",
        &end(l),
        Expect::Refused("tar is truncated"),
    );
    let mut l = Vec::new();
    pax(&mut l, &[("size", b"18446744073709551616")]);
    file(&mut l, "f", b"");
    check(
        &s,
        "pax-size-overflow",
        &end(l),
        Expect::Refused("malformed PAX header"),
    );
}

#[test]
fn pax_and_gnu_long_names() {
    let s = case();
    // PAX wins over a GNU long name; both over the header name.
    let mut l = Vec::new();
    raw_body(&mut l, b"././@LongLink", b'L', b"../../gnu-escape\0");
    pax(&mut l, &[("path", b"pax-name")]);
    file(&mut l, "hdr-name", b"x");
    check(
        &s,
        "pax-over-gnu",
        &end(l),
        Expect::Imported(&["f ./pax-name"]),
    );
    let mut l = Vec::new();
    pax(&mut l, &[("path", b"pax-name")]);
    raw_body(&mut l, b"././@LongLink", b'L', b"../../gnu-escape\0");
    file(&mut l, "hdr-name", b"x");
    check(
        &s,
        "gnu-after-pax",
        &end(l),
        Expect::Imported(&["f ./pax-name"]),
    );
    let mut l = Vec::new();
    raw_body(&mut l, b"././@LongLink", b'L', b"gnu-name\0");
    pax(&mut l, &[("path", b"../pax-escape")]);
    file(&mut l, "hdr-name", b"x");
    check(
        &s,
        "pax-escape-over-gnu",
        &end(l),
        Expect::Refused("escapes the root"),
    );
    // A GNU long link name through `..` on a hard link.
    let mut l = Vec::new();
    raw_body(&mut l, b"././@LongLink", b'K', b"../../victim/x\0");
    hardlink(&mut l, "h", "ignored");
    check(
        &s,
        "gnu-longlink-escape",
        &end(l),
        Expect::Refused("escapes the root"),
    );
    // A long name extension with no entry after it.
    let mut l = Vec::new();
    raw_body(&mut l, b"././@LongLink", b'L', b"dangling\0");
    check(
        &s,
        "gnu-dangling",
        &end(l),
        Expect::Refused("tar is truncated"),
    );
    // Huge records and names.
    let mut l = Vec::new();
    pax(&mut l, &[("comment", &vec![b'a'; 2 << 20])]);
    file(&mut l, "f", b"x");
    check(
        &s,
        "pax-huge",
        &end(l),
        Expect::Refused("over the 1048576-byte limit"),
    );
    let mut l = Vec::new();
    raw_body(&mut l, b"././@LongLink", b'L', &vec![b'a'; 3 << 20]);
    file(&mut l, "f", b"x");
    check(
        &s,
        "gnu-huge",
        &end(l),
        Expect::Refused("over the 1048576-byte limit"),
    );
    let mut l = Vec::new();
    let long = "d/".repeat(3000);
    pax(&mut l, &[("path", long.as_bytes())]);
    file(&mut l, "f", b"x");
    check(
        &s,
        "pax-path-long",
        &end(l),
        Expect::Refused("name is too long"),
    );
    let mut l = Vec::new();
    raw_body(
        &mut l,
        b"././@PaxHeader",
        b'x',
        b"99999999999999999999 path=x\n",
    );
    file(&mut l, "f", b"x");
    check(
        &s,
        "pax-record-len",
        &end(l),
        Expect::Refused("malformed PAX header"),
    );
    let mut l = Vec::new();
    raw_body(&mut l, b"././@PaxHeader", b'x', b"3 a=\n");
    file(&mut l, "f", b"x");
    check(
        &s,
        "pax-record-short",
        &end(l),
        Expect::Refused("malformed PAX header"),
    );
    // Components over NAME_MAX, NUL in names.
    let mut l = Vec::new();
    pax(
        &mut l,
        &[("path", format!("d/{}", "n".repeat(256)).as_bytes())],
    );
    file(&mut l, "f", b"x");
    check(
        &s,
        "component-256",
        &end(l),
        Expect::Refused("name is too long"),
    );
    let mut l = Vec::new();
    pax(&mut l, &[("path", b"a\0/../../x")]);
    file(&mut l, "f", b"x");
    check(
        &s,
        "nul-pax",
        &end(l),
        Expect::Refused("has a NUL byte in its name"),
    );
    let mut l = Vec::new();
    pax(&mut l, &[("linkpath", b"t\0x")]);
    symlink(&mut l, "s", "t");
    check(
        &s,
        "nul-link",
        &end(l),
        Expect::Refused("has a NUL byte in its name"),
    );
    // A NUL in a ustar name field ends the name, as in every tar reader.
    let mut l = Vec::new();
    file(&mut l, "ok\0/../../x", b"x");
    check(&s, "nul-ustar", &end(l), Expect::Imported(&["f ./ok"]));
}

#[test]
fn broken_blocks() {
    let s = case();
    let mut l = Vec::new();
    file(&mut l, "f", b"x");
    l[148..156].copy_from_slice(b"zzzzzzz\0");
    check(
        &s,
        "checksum-garbage",
        &end(l),
        Expect::Refused("has a bad checksum"),
    );
    let mut l = Vec::new();
    file(&mut l, "f", b"x");
    l[0] = b'g';
    check(
        &s,
        "checksum-wrong",
        &end(l),
        Expect::Refused("tar header at byte 0 has a bad checksum"),
    );
    let mut l = Vec::new();
    file(&mut l, "a", b"x");
    file(&mut l, "b", b"y");
    l.truncate(1024 + 300);
    check(
        &s,
        "truncated-header",
        &l,
        Expect::Refused("tar is truncated at byte 1324"),
    );
    let mut l = Vec::new();
    file(&mut l, "a", b"x");
    l.extend_from_slice(&[0u8; 512]);
    l.push(1);
    // One zero block ends the archive (as for GNU tar); what follows is trailing junk.
    check(&s, "half-end-marker", &l, Expect::Imported(&["f ./a"]));
    // Junk after the end marker is kept as bytes of the blob and never read as entries.
    let mut l = Vec::new();
    file(&mut l, "a", b"x");
    let mut l = end(l);
    let mut junk = Vec::new();
    file(&mut junk, "after-end", b"evil");
    l.extend_from_slice(&junk);
    l.extend_from_slice(b"trailing junk");
    check(&s, "trailing-junk", &l, Expect::Imported(&["f ./a"]));
    let m = s.mount("hostile-trailing-junk:1", "junk", &["--read-only"]);
    assert!(!m.join("after-end").exists());
    m.umount();
    // Junk where the next header should be.
    let mut l = Vec::new();
    file(&mut l, "a", b"x");
    l.extend_from_slice(&[0x41; 512]);
    check(
        &s,
        "junk-header",
        &end(l),
        Expect::Refused("has a bad checksum"),
    );
    // An unknown entry type and a sparse file.
    let mut l = Vec::new();
    raw(&mut l, b"s", b'S', b"", b"");
    check(
        &s,
        "sparse",
        &end(l),
        Expect::Refused("unsupported type 'S'"),
    );
}

#[test]
fn wide_and_deep_trees() {
    let s = case();
    // 100,000 entries in one directory.
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..100_000 {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, format!("wide/{i:06}"), &b""[..])
            .unwrap();
    }
    let wide = b.into_inner().unwrap();
    check(
        &s,
        "wide",
        &wide,
        Expect::Imported(&["d ./wide", "f ./wide/000000", "f ./wide/099999"]),
    );
    // 10,000-deep nesting is over PATH_MAX: refused.
    let mut l = Vec::new();
    pax(&mut l, &[("path", "d/".repeat(10_000).as_bytes())]);
    dir(&mut l, "x/");
    check(
        &s,
        "deep-10000",
        &end(l),
        Expect::Refused("name is too long"),
    );
    // As deep as PATH_MAX allows (2,047 levels): stored and walked.
    let mut l = Vec::new();
    let mut p = String::new();
    for _ in 0..2047 {
        p.push_str("d/");
        pax(&mut l, &[("path", p.as_bytes())]);
        dir(&mut l, "x/");
    }
    pax(&mut l, &[("path", format!("{p}f").as_bytes())]);
    file(&mut l, "x", b"bottom");
    check(&s, "deep-2047", &end(l), Expect::Imported(&["d ./d"]));
}

/// A gzip bomb: a few MB of gzip that expands to 8 GiB of zeros in one file. Import streams
/// it; the store caps a layer at `RIMG_MAX_LAYER_SIZE` (and always leaves free space on the
/// disk), so it is refused after the cap and nothing stays behind.
#[test]
fn gzip_bomb_is_capped() {
    let s = case();
    let v = victim(&s);
    let before_victim = tree_hash(&v);
    let total = 8u64 << 30;
    let bomb = zeros_tar_gz(total);
    let p = s.path("bomb.tar.gz");
    fs::write(&p, &bomb).unwrap();
    eprintln!(
        "bomb: {} bytes of gzip for {total} bytes of tar",
        bomb.len()
    );
    let before = store_state(&s.root());
    let (out, rss) = measured(
        s.rimg(["import"])
            .arg(&p)
            .arg("bomb:1")
            .env("RIMG_MAX_LAYER_SIZE", "256M"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error: ") && err.contains("over the 268435456-byte limit"),
        "{err}"
    );
    eprintln!("bomb: refused ({rss} KiB): {err}");
    assert_eq!(store_state(&s.root()), before);
    assert_eq!(tmp_files(&s.root()), Vec::<String>::new());
    assert_eq!(tree_hash(&v), before_victim);
}

/// A tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={size} rimg-test-space '{}'",
            dir.display()
        ));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A gzip stream of a one-file tar whose file is `total` bytes of zeros: one gzip member of
/// the header, then members of 64 MiB of zeros (multi-member gzip is one stream to every
/// gzip reader), so it stays small on disk.
fn zeros_tar_gz(total: u64) -> Vec<u8> {
    let chunk = 64u64 << 20;
    let zeros = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let buf = vec![0u8; 1 << 20];
        for _ in 0..chunk >> 20 {
            e.write_all(&buf).unwrap();
        }
        e.finish().unwrap()
    };
    let mut h = tar::Header::new_gnu();
    h.set_size(total);
    h.set_mode(0o644);
    h.set_path("zeros").unwrap();
    h.set_cksum();
    let mut out = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(h.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    for _ in 0..total / chunk {
        out.extend_from_slice(&zeros);
    }
    out
}

/// The free-space floor scales with the filesystem (issue 21 #6): in a 300 MB store a 2 MB
/// import works, an import that would fill the filesystem is refused with one clear line
/// and leaves nothing behind, and `RIMG_MIN_FREE` moves the floor.
#[test]
fn the_free_space_floor_is_proportional_and_configurable() {
    let s = Store::new();
    let _fs = Tmpfs::mount(&s.root(), "300m");
    s.rimg(["images"]).ok();
    let small: Vec<u8> = (0..2u64 << 20).map(|i| (i * 7919 % 251) as u8).collect();
    let mut l = Vec::new();
    file(&mut l, "small", &small);
    let small_tar = s.path("small.tar");
    fs::write(&small_tar, end(l)).unwrap();
    s.rimg(["import"]).arg(&small_tar).arg("small:1").ok();

    let big = s.path("big.tar.gz");
    fs::write(&big, zeros_tar_gz(512 << 20)).unwrap();
    let before = store_state(&s.root());
    let err = s.rimg(["import"]).arg(&big).arg("big:1").fails();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error: ")
            && err.contains("refusing to write a layer")
            && err.contains("RIMG_MIN_FREE"),
        "{err}"
    );
    assert_eq!(store_state(&s.root()), before);
    assert_eq!(tmp_files(&s.root()), Vec::<String>::new());

    // A floor set above what is free refuses even the small import, and says which.
    let err = s
        .rimg(["import"])
        .arg(&small_tar)
        .arg("small:2")
        .env("RIMG_MIN_FREE", "299M")
        .fails();
    assert!(err.contains("refusing to write"), "{err}");
    assert_eq!(tmp_files(&s.root()), Vec::<String>::new());
    let err = s
        .rimg(["import"])
        .arg(&small_tar)
        .env("RIMG_MIN_FREE", "lots")
        .fails();
    assert!(
        err.contains("RIMG_MIN_FREE=\"lots\" is not a size"),
        "{err}"
    );
    // The store is still usable, and what the refusals started is gone.
    assert!(s.rimg(["images"]).ok().contains("small"));
    s.rimg(["system", "check"]).ok();
}
