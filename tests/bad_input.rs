//! Bad input to import, tag and load: one clear error line, a non-zero exit, and the store
//! exactly as it was (issue: store, layer index and image commands).

use std::fs;

use rimg_tests::archives::{sha256, store_state, tar_of, tmp_files, DockerImage, OciImage};
use rimg_tests::tree::Layer;
use rimg_tests::{busybox_tar, Cmd, Store};
use serde_json::json;

/// Runs `cmd`, expecting it to be refused with one `Error:` line containing `expect`, and
/// the store untouched.
#[track_caller]
fn refused(s: &Store, cmd: Cmd, expect: &str) {
    let before = store_state(&s.root());
    let err = cmd.fails();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got:\n{err}");
    assert!(
        lines[0].starts_with("Error: ") && lines[0].contains(expect),
        "expected an error naming {expect:?}, got:\n{err}"
    );
    assert!(
        lines[0].matches("(os error").count() <= 1,
        "a cause told twice: {err}"
    );
    assert_eq!(store_state(&s.root()), before, "the store changed");
    assert_eq!(
        tmp_files(&s.root()),
        Vec::<String>::new(),
        "rimg/tmp not empty"
    );
}

/// A store with busybox in it, so "as before" is not trivially empty.
fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

fn write(s: &Store, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = s.path(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// A GNU header written by hand, so names `tar` refuses to write can be tested.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.resize(out.len() + 1024, 0);
    out
}

fn escaping_layers() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut dotdot = Vec::new();
    raw_entry(&mut dotdot, "../x", b'0', "", b"evil");
    let mut hardlink = Vec::new();
    raw_entry(&mut hardlink, "etc/", b'5', "", b"");
    raw_entry(&mut hardlink, "etc/passwd", b'1', "/etc/shadow", b"");
    let mut symlink = Vec::new();
    raw_entry(&mut symlink, "up", b'2', "..", b"");
    raw_entry(&mut symlink, "up/x", b'0', "", b"evil");
    vec![
        ("dotdot", end(dotdot), "\"../x\" escapes the root"),
        (
            "hardlink",
            end(hardlink),
            "hard link \"etc/passwd\" points to \"etc/shadow\"",
        ),
        (
            "symlink",
            end(symlink),
            "tar entry \"up/x\" has a parent \"up\" that is not a directory",
        ),
    ]
}

#[test]
fn import_refuses_broken_and_escaping_tars() {
    let s = store();
    let good = fs::read(busybox_tar()).unwrap();
    let truncated = write(&s, "truncated.tar", &good[..good.len() / 2 + 100]);
    refused(
        &s,
        s.rimg(["import"]).arg(&truncated).arg("t:1"),
        "tar is truncated at byte",
    );
    // Spoil the header of an entry half-way through the stream.
    let at = tar::Archive::new(&good[..])
        .entries()
        .unwrap()
        .nth(100)
        .unwrap()
        .unwrap()
        .raw_header_position() as usize;
    let mut corrupt = good.clone();
    corrupt[at + 3] ^= 0x20;
    let corrupt = write(&s, "corrupt.tar", &corrupt);
    refused(
        &s,
        s.rimg(["import"]).arg(&corrupt).arg("c:1"),
        &format!("tar header at byte {at} has a bad checksum"),
    );
    let gz = write(
        &s,
        "truncated.tar.gz",
        &rimg_tests::archives::gzip(&good)[..2000],
    );
    refused(&s, s.rimg(["import"]).arg(&gz).arg("g:1"), "reading layer");
    for (what, layer, expect) in escaping_layers() {
        let p = write(&s, &format!("{what}.tar"), &layer);
        refused(&s, s.rimg(["import"]).arg(&p).arg("evil:1"), expect);
    }
}

#[test]
fn a_destination_that_cannot_be_written_is_named_with_its_cause_once() {
    let s = store();
    refused(
        &s,
        s.rimg(["save", "-o", "/proc/nope.tar", "busybox"]),
        "saving to /proc/nope.tar: create /proc/",
    );
    let err = s.rimg(["--root", "/proc/nostore", "images"]).fails();
    assert_eq!(
        err.trim(),
        "Error: opening store /proc/nostore: create /proc/nostore: No such file or directory (os error 2)"
    );
}

#[test]
fn names_that_are_not_references_are_refused() {
    let s = store();
    let tar = busybox_tar();
    for bad in ["Busybox", "bad name", "a:b:c", "x@sha256:1234"] {
        refused(
            &s,
            s.rimg(["import"]).arg(&tar).arg(bad),
            &format!("{bad:?}"),
        );
        refused(&s, s.rimg(["tag", "busybox", bad]), &format!("{bad:?}"));
    }
    refused(&s, s.rimg(["tag", "nope", "ok:1"]), "no such image: nope");
    let mut img = DockerImage::new(&[fs::read(&tar).unwrap()], "fine:1");
    img.repo_tags.push("Not A Reference".into());
    let p = write(&s, "badtag.tar", &img.build());
    refused(
        &s,
        s.rimg(["load", "-i"]).arg(&p),
        "invalid image name \"Not A Reference\" in manifest.json",
    );
    let img = OciImage::new(&[fs::read(&tar).unwrap()], Some("UPPER:case"));
    let p = write(&s, "badref.tar", &img.build());
    refused(
        &s,
        s.rimg(["load", "-i"]).arg(&p),
        "invalid image name \"UPPER:case\" in index.json",
    );
}

fn small_layer(tag: &str) -> Vec<u8> {
    Layer::new()
        .dir("etc", 0o755)
        .file("etc/tag", tag.as_bytes(), 0o644)
        .build()
}

#[test]
fn load_refuses_broken_archives() {
    let s = store();
    let good = OciImage::new(&[small_layer("a"), small_layer("b")], Some("x:1")).build();
    let p = write(&s, "truncated.tar", &good[..good.len() - 3000]);
    refused(
        &s,
        s.rimg(["load", "-i"]).arg(&p),
        "archive is truncated at byte",
    );
    let mut corrupt = good.clone();
    corrupt[5] ^= 1;
    let p = write(&s, "corrupt.tar", &corrupt);
    refused(
        &s,
        s.rimg(["load", "-i"]).arg(&p),
        "tar header at byte 0 has a bad checksum",
    );
    let p = write(
        &s,
        "plain.tar",
        &tar_of(&[("hello.txt".into(), b"hi".to_vec())]),
    );
    refused(&s, s.rimg(["load", "-i"]).arg(&p), "not an image archive");
}

#[test]
fn load_refuses_archives_whose_parts_disagree() {
    let s = store();
    let layers = [small_layer("a"), small_layer("b")];

    // A layer member whose content is not what its digest says.
    let mut img = OciImage::new(&layers, Some("x:1"));
    let other = small_layer("c");
    img.layers[1].digest = sha256(&other);
    let wrong = img.layers[1].digest.clone();
    refused(
        &s,
        load(&s, "digest.tar", &img.build()),
        &format!("blobs/sha256/{}: digest mismatch", &wrong[7..]),
    );

    // The config's diff_id does not match the uncompressed layer (gzip and plain).
    for gz in [false, true] {
        let mut img = OciImage::new(&layers, Some("x:1"));
        if gz {
            img = img.gzipped();
        }
        let claimed = sha256(b"something else");
        img.config["rootfs"]["diff_ids"][0] = json!(claimed);
        refused(
            &s,
            load(&s, "diffid.tar", &img.build()),
            &format!("diff_id mismatch: the image config lists {claimed}"),
        );
    }
    let mut img = DockerImage::new(&layers, "d:1");
    img.config["rootfs"]["diff_ids"][1] = json!(sha256(b"x"));
    refused(
        &s,
        load(&s, "docker-diffid.tar", &img.build()),
        "layer layer1/layer.tar: diff_id mismatch",
    );

    // A blob the manifest names is not in the archive.
    let mut img = OciImage::new(&layers, Some("x:1"));
    let missing = format!("blobs/sha256/{}", &img.layers[0].digest[7..]);
    img.omit.push(missing.clone());
    refused(
        &s,
        load(&s, "missing.tar", &img.build()),
        &format!("layer {missing} is missing from the archive"),
    );

    // A media type rimg does not know.
    let mut img = OciImage::new(&layers, Some("x:1"));
    img.layers[0].media_type = "application/vnd.example.unknown".into();
    refused(
        &s,
        load(&s, "media.tar", &img.build()),
        "unsupported media type \"application/vnd.example.unknown\"",
    );

    // The manifest and config disagree on the layer count.
    let mut img = OciImage::new(&layers, Some("x:1"));
    img.config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .pop();
    refused(
        &s,
        load(&s, "count.tar", &img.build()),
        "2 layers but the config lists 1 diff_ids",
    );
}

#[test]
fn load_refuses_layers_that_escape_the_root() {
    let s = store();
    for (what, layer, expect) in escaping_layers() {
        let img = DockerImage::new(&[small_layer("ok"), layer], "evil:1");
        refused(
            &s,
            load(&s, &format!("{what}-archive.tar"), &img.build()),
            expect,
        );
    }
}

fn load(s: &Store, name: &str, bytes: &[u8]) -> Cmd {
    let p = write(s, name, bytes);
    s.rimg(["load", "-i"]).arg(p)
}
