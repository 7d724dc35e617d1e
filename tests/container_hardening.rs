//! Containers and commit against hostile changes and hostile image configs (issue 8): commit
//! stores symlinks as symlinks (never the host they point to), a container cannot forge a
//! whiteout, an untrusted `WorkingDir` or `User` fails clearly without escaping, the runtime
//! refuses an image whose `/etc` is a symlink out, and no host fd leaks into a container.

use std::fs;

use rimg_tests::archives::{store_state, tmp_files};
use rimg_tests::containers::{container_dir, Cleanup};
use rimg_tests::{sh, Store};

fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

/// `(path, kind, link target)` of every entry of the image's top layer, read from the store.
fn top_layer(s: &Store, image: &str) -> (Vec<(String, tar::EntryType, String)>, u64) {
    let v: serde_json::Value = serde_json::from_str(&s.rimg(["inspect", image]).ok()).unwrap();
    let layers = v[0]["RootFS"]["Layers"].as_array().unwrap();
    let top = layers.last().unwrap().as_str().unwrap();
    let blob = s
        .root()
        .join("blobs/sha256")
        .join(top.trim_start_matches("sha256:"));
    let bytes = fs::read(&blob).unwrap();
    let mut out = Vec::new();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let e = e.unwrap();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        out.push((
            e.path().unwrap().display().to_string(),
            e.header().entry_type(),
            link,
        ));
    }
    (out, bytes.len() as u64)
}

#[test]
fn commit_stores_symlinks_to_the_host_as_symlinks() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg([
        "run",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "rm -rf /var && ln -s / /var && ln -s /etc/shadow /shadow && ln -s ../../../.. /up",
    ])
    .ok();
    // /etc holds the runtime's bind mounts while the container runs (as in Docker), so the
    // container turns it into a symlink to / in its upper dir once it has stopped.
    let upper = container_dir(&s, "c").join("upper");
    let _ = fs::remove_dir_all(upper.join("etc"));
    std::os::unix::fs::symlink("/", upper.join("etc")).unwrap();
    s.rimg(["commit", "c", "symlinks:1"]).ok();
    let (entries, size) = top_layer(&s, "symlinks:1");
    let find = |p: &str| {
        entries
            .iter()
            .find(|(path, _, _)| path.trim_end_matches('/') == p)
    };
    for (p, target) in [
        ("etc", "/"),
        ("var", "/"),
        ("shadow", "/etc/shadow"),
        ("up", "../../../.."),
    ] {
        let (_, kind, link) = find(p).unwrap_or_else(|| panic!("{p} not in {entries:?}"));
        assert_eq!(
            (*kind, link.as_str()),
            (tar::EntryType::Symlink, target),
            "{p}"
        );
    }
    assert!(
        !entries
            .iter()
            .any(|(p, _, _)| p.starts_with("etc/") || p.starts_with("var/")),
        "the layer followed a symlink: {entries:?}"
    );
    assert!(size < 64 * 1024, "the layer is {size} bytes: {entries:?}");

    // Running that image: the runtime will not mount /etc/hosts through the symlink.
    let before = sh("md5sum /etc/hosts /etc/hostname /etc/resolv.conf; ls / | sort");
    let err = s.rimg(["run", "--rm", "symlinks:1", "true"]).fails();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error: ") && err.contains("/etc in the image is not a directory"),
        "{err}"
    );
    assert_eq!(
        sh("md5sum /etc/hosts /etc/hostname /etc/resolv.conf; ls / | sort"),
        before
    );
}

#[test]
fn a_container_cannot_forge_a_whiteout() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg([
        "run",
        "--name",
        "w",
        "busybox",
        "sh",
        "-c",
        "touch /.wh.x /tmp/.wh..wh..opq",
    ])
    .ok();
    let before = store_state(&s.root());
    let err = s.rimg(["commit", "w", "forged:1"]).fails();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error: committing container w: cannot commit /")
            && err.contains("file names starting with .wh. are reserved for whiteouts"),
        "{err}"
    );
    assert_eq!(store_state(&s.root()), before);
    assert!(tmp_files(&s.root()).is_empty());
    // Removing the file makes the container committable.
    s.rimg(["rm", "w"]).ok();
    s.rimg([
        "run",
        "--name",
        "w2",
        "busybox",
        "sh",
        "-c",
        "touch /.whx /wh.x",
    ])
    .ok();
    s.rimg(["commit", "w2", "fine:1"]).ok();
}

#[test]
fn untrusted_workdir_and_user_fail_clearly() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["create", "--name", "base", "busybox", "true"]).ok();
    let victim = s.path("victim");
    fs::create_dir_all(&victim).unwrap();
    for n in 3..8 {
        let image = format!("wd{n}:1");
        s.rimg([
            "commit",
            "-c",
            &format!("WORKDIR /proc/self/fd/{n}"),
            "base",
            &image,
        ])
        .ok();
        let out = s
            .rimg(["run", "--rm", &image, "sh", "-c", "pwd; ls"])
            .output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(125),
            "WORKDIR /proc/self/fd/{n} ran:\n{}{err}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("chdir to cwd (\"/proc/self/fd/{n}\")")),
            "{err}"
        );
    }
    // A WORKDIR with `..` stays inside the container.
    let up = format!("/../../../..{}", victim.join("made").display());
    s.rimg(["commit", "-c", &format!("WORKDIR {up}"), "base", "wdup:1"])
        .ok();
    let out = s.rimg(["run", "--rm", "wdup:1", "pwd"]).ok();
    assert_eq!(out.trim(), victim.join("made").display().to_string());
    assert!(
        !victim.join("made").exists(),
        "WORKDIR made a host directory"
    );

    s.rimg(["commit", "-c", "USER nosuchuser", "base", "user:1"])
        .ok();
    let err = s.rimg(["run", "--rm", "user:1", "id"]).fails();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unable to find user nosuchuser"), "{err}");
    s.rimg(["commit", "-c", "USER root:nosuchgroup", "base", "group:1"])
        .ok();
    let err = s.rimg(["run", "--rm", "group:1", "id"]).fails();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuchgroup"), "{err}");
}

#[test]
fn no_host_fd_leaks_into_a_container() {
    let s = store();
    let _c = Cleanup(&s);
    // `ls` sees 0, 1, 2 and the descriptor of the directory it is listing.
    let out = s
        .rimg(["run", "--rm", "busybox", "ls", "/proc/self/fd"])
        .ok();
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{out}"
    );
    let out = s
        .rimg([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls -l /proc/self/fd/ | grep -c -- '->'",
        ])
        .ok();
    assert_eq!(out.trim(), "3", "{out}");
    s.rimg(["run", "-d", "--name", "d", "busybox", "sleep", "60"])
        .ok();
    let out = s.rimg(["exec", "d", "ls", "/proc/self/fd"]).ok();
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "exec: {out}"
    );
    s.rimg(["rm", "-f", "d"]).ok();
}
