//! Containers and commit against hostile changes and hostile image configs (issue 8): commit
//! stores symlinks as symlinks (never the host they point to), a container cannot forge a
//! whiteout, an untrusted `WorkingDir` or `User` fails clearly without escaping, the runtime
//! resolves an image's `/etc` symlinks inside the container, and no host fd leaks into a
//! container. Issue 21: the directories the runtime creates are 0755, and `/etc` files or a
//! WORKDIR that are links or FIFOs are resolved inside the root.

use std::fs;

use rimg_tests::archives::{store_state, tmp_files};
use rimg_tests::containers::{container_dir, Cleanup};
use rimg_tests::tree::Layer;
use rimg_tests::{busybox_tar, sh, Store};

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

    // Running that image: /etc/hosts resolves inside the container (`/etc -> /` leads to
    // the container's /hosts), never to the host's.
    let before = sh("md5sum /etc/hosts /etc/hostname /etc/resolv.conf; ls / | sort");
    let out = s
        .rimg([
            "run",
            "--rm",
            "--hostname",
            "linked",
            "symlinks:1",
            "cat",
            "/etc/hostname",
            "/hostname",
        ])
        .ok();
    assert_eq!(out, "linked\nlinked\n");
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

/// Busybox with `top` (a layer) on it, tagged `name`.
fn busybox_with(s: &Store, top: Layer, name: &str) {
    let base = fs::read(busybox_tar()).unwrap();
    s.image_from_layers(&[base, top.build()], name);
}

#[test]
fn a_missing_etc_is_created_0755_and_root_owned() {
    let s = store();
    let _c = Cleanup(&s);
    busybox_with(&s, Layer::new().whiteout("etc"), "noetc:1");
    let out = s
        .rimg([
            "run",
            "--rm",
            "-u",
            "1000",
            "noetc:1",
            "sh",
            "-c",
            "touch /etc/ld.so.preload",
        ])
        .output();
    assert!(
        !out.status.success(),
        "a container user wrote /etc/ld.so.preload"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    let out = s
        .rimg([
            "run",
            "--rm",
            "noetc:1",
            "stat",
            "-c",
            "%a %u %g %n",
            "/etc",
            "/etc/hosts",
        ])
        .ok();
    assert_eq!(out, "755 0 0 /etc\n644 0 0 /etc/hosts\n");
}

#[test]
fn etc_files_that_are_links_or_fifos_are_resolved_inside_the_root() {
    let s = store();
    let _c = Cleanup(&s);
    // A relative link that climbs out and an absolute one to a host path: both resolve
    // inside the container's root, where the host path is created.
    let victim = s.path("victim");
    fs::create_dir_all(&victim).unwrap();
    let escape = format!("../../../../..{}/hostname", victim.display());
    busybox_with(
        &s,
        Layer::new()
            .symlink("etc/hosts", "/run/missing/hosts")
            .symlink("etc/hostname", &escape)
            .fifo("etc/resolv.conf"),
        "etclinks:1",
    );
    let before = sh("md5sum /etc/hosts /etc/hostname /etc/resolv.conf");
    let script = "cat /etc/hostname; grep -q localhost /run/missing/hosts && echo hosts; \
                  cmp /etc/hosts /run/missing/hosts && echo same; \
                  stat -c %F /etc/resolv.conf; wc -c < /etc/resolv.conf";
    let out = s
        .rimg([
            "run",
            "--rm",
            "--hostname",
            "inside",
            "etclinks:1",
            "sh",
            "-c",
            script,
        ])
        .ok();
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default().len();
    assert_eq!(
        out,
        format!("inside\nhosts\nsame\nregular file\n{resolv}\n"),
        "{out}"
    );
    assert!(
        !victim.join("hostname").exists(),
        "the runtime wrote through a link to the host"
    );
    assert_eq!(
        sh("md5sum /etc/hosts /etc/hostname /etc/resolv.conf"),
        before
    );

    // A directory, or a link into /proc, cannot take the file: a clear one-line error.
    for (layer, name, says) in [
        (Layer::new().dir("etc/hosts", 0o755), "etcdir:1", "/etc/hosts in the image leads to /etc/hosts, a directory; cannot mount the container's hosts over it"),
        (
            Layer::new().symlink("etc/resolv.conf", "/dev/null"),
            "etcdev:1",
            "/etc/resolv.conf in the image leads to /dev/null; rimg does not mount the container's resolv.conf there",
        ),
        (
            Layer::new().symlink("etc/hostname", "/proc/self/environ"),
            "etcproc:1",
            "resolving /etc/hostname in the image: /proc/self is a link in /proc, which is not followed",
        ),
    ] {
        busybox_with(&s, layer, name);
        let err = s.rimg(["run", "--rm", name, "true"]).fails();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("Error: ") && err.contains(says), "{err}");
    }
}

#[test]
fn a_workdir_linked_to_a_missing_absolute_path_is_created_inside() {
    let s = store();
    let _c = Cleanup(&s);
    busybox_with(
        &s,
        Layer::new().symlink("w", "/missing/abs"),
        "wdlink-base:1",
    );
    s.rimg(["create", "--name", "wl", "wdlink-base:1", "true"])
        .ok();
    s.rimg(["commit", "-c", "WORKDIR /w", "wl", "wdlink:1"])
        .ok();
    let out = s
        .rimg([
            "run",
            "--rm",
            "wdlink:1",
            "sh",
            "-c",
            "pwd; stat -c %a /missing /missing/abs",
        ])
        .ok();
    assert_eq!(out, "/missing/abs\n755\n755\n");
    assert!(!std::path::Path::new("/missing").exists());
}

/// The FUSE daemon's pid of the mount whose mount point is under `dir`, from its record.
fn daemon_pid(s: &Store, dir: &std::path::Path) -> i64 {
    for e in fs::read_dir(s.root().join("rimg/mounts"))
        .unwrap()
        .flatten()
    {
        let Ok(text) = fs::read(e.path().join("record.json")) else {
            continue;
        };
        let rec: serde_json::Value = serde_json::from_slice(&text).unwrap();
        if rec["mountpoint"]
            .as_str()
            .is_some_and(|m| m.starts_with(&*dir.to_string_lossy()))
        {
            return rec["pid"].as_i64().unwrap();
        }
    }
    panic!("no mount record under {}", dir.display());
}

/// Polls `f` until it is true or `secs` pass.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// Issue 21 #8: when the rimgfs daemon of a running container dies, the monitor notices (it
/// watches the daemon by pidfd), kills the container and records why; `ps` stops showing
/// it up, `inspect` has the reason, and `start` remounts it with its upper dir intact.
#[test]
fn a_container_whose_fuse_daemon_died_is_stopped_and_restarts() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "victim", "busybox:latest"])
        .args(["sleep", "300"])
        .ok();
    let dir = container_dir(&s, "victim");
    // Written once, by exec: the restarted container's command does not write it again.
    s.rimg(["exec", "victim", "sh", "-c", "echo kept > /kept"])
        .ok();
    assert!(fs::read(dir.join("upper/kept")).is_ok());
    let pid = daemon_pid(&s, &dir);
    sh(&format!("kill -9 {pid}"));
    let inspect = || -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&s.rimg(["inspect", "victim"]).ok()).unwrap();
        v[0]["State"].clone()
    };
    assert!(
        eventually(30, || inspect()["Running"] == false),
        "still running: {}",
        inspect()
    );
    let st = inspect();
    assert_eq!(st["Status"], "exited", "{st}");
    assert_eq!(st["ExitCode"], 137, "{st}");
    assert!(
        st["Error"]
            .as_str()
            .is_some_and(|e| e.contains("FUSE daemon died")),
        "{st}"
    );
    let ps = s.rimg(["ps", "-a"]).ok();
    let line = ps.lines().find(|l| l.ends_with("victim")).unwrap();
    assert!(line.contains("Exited (137)"), "{ps}");
    assert!(!s.rimg(["ps"]).ok().contains("victim"));

    s.rimg(["start", "victim"]).ok();
    assert!(
        eventually(30, || s
            .rimg(["exec", "victim", "cat", "/kept"])
            .output()
            .stdout
            == b"kept\n"),
        "the restarted container lost its file"
    );
    s.rimg(["rm", "-f", "victim"]).ok();
}
