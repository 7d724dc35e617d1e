//! `kill -9` during `import` and `load`: afterwards every command still reads the store, every
//! blob hashes to its name, and nothing partial is visible (issue: store, layer index and
//! image commands).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rimg_tests::archives::{corrupt_blobs, tmp_files, DockerImage};
use rimg_tests::tree::Layer;
use rimg_tests::{bin, busybox_tar, Store};

/// A layer of `files` files of 1 MiB each, pseudo-random so nothing about it is trivial.
fn big_layer(files: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut layer = Layer::new().dir("data", 0o755);
    for i in 0..files {
        let mut data = vec![0u8; 1 << 20];
        for chunk in data.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        layer = layer.file(&format!("data/f{i:03}"), &data, 0o644);
    }
    layer.build()
}

/// Starts `rimg ARGS` reading stdin, feeds it `upto` bytes of `input`, then kills it with
/// SIGKILL.
fn kill_while_feeding(s: &Store, args: &[&str], input: &[u8], upto: usize) {
    let mut child = Command::new(bin("rimg"))
        .env("RIMG_ROOT", s.root())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rimg");
    let mut stdin = child.stdin.take().expect("stdin");
    // The child may finish (or die) before everything is written; a broken pipe is fine.
    let _ = stdin.write_all(&input[..upto]);
    if upto == input.len() {
        drop(stdin);
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
}

/// Starts `rimg ARGS`, lets it run for `ms`, then kills it with SIGKILL.
fn kill_after(s: &Store, args: &[&std::ffi::OsStr], ms: u64) {
    let mut child = Command::new(bin("rimg"))
        .env("RIMG_ROOT", s.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rimg");
    std::thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    child.wait().expect("wait");
}

/// The bytes of the files in the store's `rimg/tmp/`.
fn tmp_bytes(s: &Store) -> u64 {
    std::fs::read_dir(s.root().join("rimg/tmp"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Everything a user would try after a crash works, and nothing partial is visible.
#[track_caller]
fn store_is_sound(s: &Store, when: &str) {
    assert_eq!(corrupt_blobs(&s.root()), Vec::<String>::new(), "{when}");
    let ids = s.rimg(["images", "-q", "--no-trunc"]).ok();
    assert!(!ids.trim().is_empty(), "{when}: busybox is gone");
    for id in ids.lines() {
        s.rimg(["inspect", id]).ok();
        s.rimg(["history", id]).ok();
    }
    s.rimg(["images"]).ok();
    s.rimg(["inspect", "busybox"]).ok();
    s.rimg(["history", "busybox"]).ok();
    s.rimg(["system", "df", "-v"]).ok();
}

#[test]
fn kill_during_import_leaves_a_sound_store() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let layer = big_layer(48);
    for (i, frac) in [0.05, 0.5, 0.95, 1.0].into_iter().enumerate() {
        let upto = (layer.len() as f64 * frac) as usize;
        kill_while_feeding(&s, &["import", "-", &format!("big:{i}")], &layer, upto);
        store_is_sound(&s, &format!("import killed after {frac} of the input"));
    }
    let file = s.path("big.tar");
    std::fs::write(&file, &layer).unwrap();
    for ms in [2, 20, 60, 150, 400] {
        // A tag of its own for each: an import that finished before its kill must not leave
        // the previous one's image dangling (prune would then count that too).
        let tag = format!("timed:{ms}");
        kill_after(&s, &["import".as_ref(), file.as_os_str(), tag.as_ref()], ms);
        store_is_sound(&s, &format!("import killed after {ms} ms"));
    }
    assert!(
        !tmp_files(&s.root()).is_empty(),
        "no kill landed mid-import: the test proves nothing"
    );
    // Another import works, and garbage collection clears what the killed ones left, and
    // says how much that was.
    s.rimg(["import"]).arg(busybox_tar()).arg("again:1").ok();
    let left = tmp_bytes(&s);
    assert!(left > 0);
    let out = s.rimg(["image", "prune", "-f"]).ok();
    assert_eq!(
        out,
        format!("Total reclaimed space: {}\n", rimg::units::human_size(left))
    );
    assert_eq!(tmp_files(&s.root()), Vec::<String>::new());
    store_is_sound(&s, "after prune");
}

#[test]
fn kill_during_load_leaves_a_sound_store() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let archive = DockerImage::new(
        &[
            Layer::new().file("small", b"x", 0o644).build(),
            big_layer(48),
        ],
        "big:1",
    )
    .build();
    for frac in [0.05, 0.5, 0.95, 1.0] {
        let upto = (archive.len() as f64 * frac) as usize;
        kill_while_feeding(&s, &["load"], &archive, upto);
        store_is_sound(&s, &format!("load killed after {frac} of the input"));
        if frac < 1.0 {
            // manifest.json comes last: the load could not have finished.
            assert!(!s.rimg(["images"]).ok().contains("big"), "{frac}");
        }
    }
    let file = s.path("big-archive.tar");
    std::fs::write(&file, &archive).unwrap();
    for ms in [2, 20, 60, 150, 400] {
        kill_after(&s, &["load".as_ref(), "-i".as_ref(), file.as_os_str()], ms);
        store_is_sound(&s, &format!("load killed after {ms} ms"));
    }
    assert!(
        !tmp_files(&s.root()).is_empty(),
        "no kill landed mid-load: the test proves nothing"
    );
    assert_eq!(
        s.rimg(["load", "-i"]).arg(&file).ok(),
        "Loaded image: big:1\n"
    );
    s.rimg(["import"]).arg(busybox_tar()).arg("again:1").ok();
    store_is_sound(&s, "after a full load");
}

#[test]
fn prune_counts_the_temp_files_a_killed_commit_left() {
    let s = Store::new();
    s.busybox("busybox:latest");
    // What a commit killed midway leaves: its half-written layer in `rimg/tmp/`.
    let tmp = s.root().join("rimg/tmp");
    std::fs::write(tmp.join("killed-commit-1"), vec![7u8; 2_500_000]).unwrap();
    std::fs::write(tmp.join("killed-commit-2"), vec![7u8; 1_300_000]).unwrap();
    assert_eq!(
        s.rimg(["image", "prune", "-f"]).ok(),
        "Total reclaimed space: 3.8MB\n"
    );
    assert_eq!(tmp_files(&s.root()), Vec::<String>::new());
    store_is_sound(&s, "after prune");
}
