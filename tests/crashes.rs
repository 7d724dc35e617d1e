//! Crashes and concurrency (issue 8): `kill -9` at many points of `import`, `load`, `commit`,
//! `tag` and `build` (a loop over kill delays spread over a whole run), after each of which every
//! command works, no blob is stored under a name its bytes do not hash to, and
//! `rimg system check` finds no damage (garbage only); then commits, an `rmi` and many `tag`s
//! at once on one store lose no tag and delete no blob an image uses. interrupted.rs kills
//! import and load at a few points while feeding stdin; this file sweeps the kill point over
//! time and adds commit, tag, build and the store check, two builds at once, and a rimgfs
//! daemon killed under a container that writes and syncs.

use std::ffi::OsString;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use rimg_tests::archives::{corrupt_blobs, DockerImage};
use rimg_tests::containers::{assert_no_mounts, Cleanup};
use rimg_tests::{busybox_tar, mounts_under, Store};

/// Budget of killed runs per command.
const BUDGET: Duration = Duration::from_secs(30);

/// `rimg system check` finds no damage; returns its output.
#[track_caller]
fn sound(s: &Store, when: &str) -> String {
    assert_eq!(corrupt_blobs(&s.root()), Vec::<String>::new(), "{when}");
    let out = s.rimg(["system", "check"]).output();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{when}: system check:\n{text}");
    s.rimg(["images"]).ok();
    text
}

/// Runs `args` once to time it, then again and again, each killed (SIGKILL) after a delay
/// that sweeps from 0 to past the run's length, checking the store after each kill; stops
/// after [`BUDGET`]. Returns how many runs were killed before they finished.
fn sweep(s: &Store, args: &[OsString], after_each: &dyn Fn(&Store)) -> usize {
    sweep_for(s, args, BUDGET, after_each)
}

/// [`sweep`] with its own budget. `after_each` runs after each kill, before the check.
fn sweep_for(s: &Store, args: &[OsString], budget: Duration, after_each: &dyn Fn(&Store)) -> usize {
    let t0 = Instant::now();
    s.rimg(args).ok();
    let full = t0.elapsed();
    after_each(s);
    let start = Instant::now();
    let mut killed = 0;
    let mut i = 0u32;
    while start.elapsed() < budget {
        // 0%, 7%, 14%, … 120% of a run, then again with an offset.
        let pct = (i * 7) % 127 + i / 18;
        i += 1;
        let delay = full * pct / 100;
        let mut child = s
            .rimg(args)
            .0
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        after_each(s);
        sound(s, &format!("after a kill at {delay:?} of {args:?}"));
    }
    // And the command still works to the end.
    s.rimg(args).ok();
    sound(s, &format!("after a full {args:?}"));
    killed
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn kill_9_during_import_and_load() {
    let s = Store::new();
    let mut args = os(&["import"]);
    args.push(busybox_tar().into());
    args.push("bb:1".into());
    let n = sweep(&s, &args, &|_| {});
    eprintln!("import: {n} runs killed before the end");
    let layers = [std::fs::read(busybox_tar()).unwrap()];
    let archive = s.path("bb-archive.tar");
    std::fs::write(&archive, DockerImage::new(&layers, "loaded:1").build()).unwrap();
    let mut args = os(&["load", "-i"]);
    args.push(archive.into());
    let n = sweep(&s, &args, &|_| {});
    eprintln!("load: {n} runs killed before the end");
    s.rimg(["run", "--rm", "loaded:1", "true"]).ok();
}

#[test]
fn kill_9_during_commit_and_tag() {
    let s = Store::new();
    let _c = Cleanup(&s);
    s.busybox("busybox:latest");
    s.rimg([
        "run",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "mkdir /data && for i in 1 2 3 4 5 6; do head -c 1048576 /dev/urandom > /data/f$i; done && rm /bin/ls",
    ])
    .ok();
    let n = sweep(&s, &os(&["commit", "c", "snap:1"]), &|_| {});
    eprintln!("commit: {n} runs killed before the end");
    let out = s.rimg([
        "run",
        "--rm",
        "snap:1",
        "sh",
        "-c",
        "ls /data 2>&1; wc -c /data/f6",
    ]);
    let out = out.output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1048576 /data/f6"), "{text}");
    let n = sweep(&s, &os(&["tag", "snap:1", "again:1"]), &|s| {
        // A killed tag leaves either the old or the new index.json, never a broken one.
        let images = s.rimg(["images"]).ok();
        assert!(images.contains("snap"), "{images}");
    });
    eprintln!("tag: {n} runs killed before the end");
    let images = s.rimg(["images"]).ok();
    assert!(images.contains("again"), "{images}");
}

#[test]
fn commits_rmi_and_tags_at_once_lose_nothing() {
    let s = Store::new();
    let _c = Cleanup(&s);
    s.busybox("busybox:latest");
    s.rimg(["tag", "busybox", "victim:1"]).ok();
    s.rimg(["import", "-c", "CMD [\"sh\"]"])
        .arg(busybox_tar())
        .arg("other:1")
        .env("SOURCE_DATE_EPOCH", "1")
        .ok();
    for c in ["c1", "c2"] {
        s.rimg([
            "run",
            "--name",
            c,
            "busybox",
            "sh",
            "-c",
            &format!("head -c 3000000 /dev/urandom > /{c}; echo {c} > /id"),
        ])
        .ok();
    }
    thread::scope(|sc| {
        let mut hs = Vec::new();
        for c in ["c1", "c2"] {
            let s = &s;
            hs.push(sc.spawn(move || {
                s.rimg(["commit", c, &format!("{c}-img:1")]).ok();
            }));
        }
        hs.push(sc.spawn(|| {
            s.rimg(["rmi", "other:1"]).ok();
        }));
        for i in 0..16 {
            let s = &s;
            hs.push(sc.spawn(move || {
                s.rimg(["tag", "busybox", &format!("t{i}:1")]).ok();
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
    });
    let images = s
        .rimg(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok();
    for i in 0..16 {
        assert!(
            images.lines().any(|l| l == format!("t{i}:1")),
            "lost tag t{i}:\n{images}"
        );
    }
    assert!(!images.contains("other:1"), "{images}");
    for c in ["c1", "c2"] {
        let out = s
            .rimg(["run", "--rm", &format!("{c}-img:1"), "cat", "/id"])
            .ok();
        assert_eq!(out.trim(), c);
    }
    s.rimg(["run", "--rm", "victim:1", "true"]).ok();
    let report = sound(&s, "after commits, rmi and tags at once");
    assert!(report.contains("no problems"), "{report}");
}

/// A build context: a Dockerfile with a COPY and a RUN step on busybox, and its file.
fn build_context(s: &Store, name: &str, marker: &str) -> std::path::PathBuf {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.txt"), format!("{marker}\n").repeat(20_000)).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM busybox\nCOPY app.txt /app/\nRUN head -c 2000000 /dev/urandom > /app/blob && echo {marker} > /app/id\n"
        ),
    )
    .unwrap();
    dir
}

/// The `rimgfs ls` rows (mountpoint, pid) of mounts of `s`'s store.
fn rimgfs_mounts(s: &Store) -> Vec<(String, String)> {
    s.rimgfs(["ls"])
        .ok()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.get(1)?.to_string(), w.get(3)?.to_string()))
        })
        .collect()
}

/// Waits (up to 15 s) until no process of a killed build is left: a `rimgfs mount` it started
/// (still stacking its overlay) or a RUN command whose root is in the store.
fn wait_for_strays(root: &std::path::Path) {
    let root_s = root.to_string_lossy().into_owned();
    let stray = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let p = e.path();
            let args = std::fs::read(p.join("cmdline")).unwrap_or_default();
            let args: Vec<String> = args
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let mounting = args.first().is_some_and(|a| a.ends_with("rimgfs"))
                && args.iter().any(|a| a == &root_s)
                && args.iter().any(|a| a == "mount");
            let inside = std::fs::read_link(p.join("root")).is_ok_and(|r| r.starts_with(root));
            mounting || inside
        })
    };
    let t0 = Instant::now();
    while stray() && t0.elapsed() < Duration::from_secs(15) {
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_during_build() {
    let s = Store::new();
    let _c = Cleanup(&s);
    s.busybox("busybox:latest");
    let ctx = build_context(&s, "ctx", "built");
    let mut args = os(&["build", "--no-cache", "-q", "-t", "app:1"]);
    args.push(ctx.into());
    let left_behind = std::cell::Cell::new(0);
    let n = sweep_for(&s, &args, Duration::from_secs(20), &|s| {
        // A killed build may leave its RUN step's mount: `rimgfs umount` must clean it.
        wait_for_strays(&s.root());
        for (mountpoint, _) in rimgfs_mounts(s) {
            left_behind.set(left_behind.get() + 1);
            s.rimgfs(["umount", &mountpoint]).ok();
        }
        assert_eq!(rimgfs_mounts(s), Vec::new());
        assert_no_mounts(&s.root());
    });
    eprintln!(
        "build: {n} runs killed before the end, {} step mounts left",
        left_behind.get()
    );
    let out = s.rimg(["run", "--rm", "app:1", "cat", "/app/id"]).ok();
    assert_eq!(out.trim(), "built");
    let out = s
        .rimg(["run", "--rm", "app:1", "wc", "-c", "/app/blob"])
        .ok();
    assert!(out.contains("2000000"), "{out}");
}

#[test]
fn two_builds_a_commit_and_an_rmi_at_once_lose_nothing() {
    let s = Store::new();
    let _c = Cleanup(&s);
    s.busybox("busybox:latest");
    s.rimg(["import", "-c", "CMD [\"sh\"]"])
        .arg(busybox_tar())
        .arg("other:1")
        .env("SOURCE_DATE_EPOCH", "1")
        .ok();
    // Warm the shared cache: both builds below share their COPY step with this one.
    let ctx = build_context(&s, "ctx", "shared");
    s.rimg(["build", "-q", "-t", "warm:1"]).arg(&ctx).ok();
    s.rimg([
        "run",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "echo committed > /id",
    ])
    .ok();
    let extra = s.path("ctx").join("Dockerfile");
    let base = std::fs::read_to_string(&extra).unwrap();
    for tag in ["b1", "b2"] {
        let dir = s.path(tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(ctx.join("app.txt"), dir.join("app.txt")).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            format!("{base}RUN echo {tag} > /app/tag\n"),
        )
        .unwrap();
    }
    thread::scope(|sc| {
        let mut hs = Vec::new();
        for tag in ["b1", "b2"] {
            let s = &s;
            hs.push(sc.spawn(move || {
                s.rimg(["build", "-q", "-t", &format!("{tag}:1")])
                    .arg(s.path(tag))
                    .ok();
            }));
        }
        hs.push(sc.spawn(|| {
            s.rimg(["commit", "c", "committed:1"]).ok();
        }));
        hs.push(sc.spawn(|| {
            s.rimg(["rmi", "other:1"]).ok();
        }));
        for h in hs {
            h.join().unwrap();
        }
    });
    let images = s
        .rimg(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok();
    for tag in ["b1:1", "b2:1", "committed:1", "warm:1", "busybox:latest"] {
        assert!(images.lines().any(|l| l == tag), "lost {tag}:\n{images}");
    }
    assert!(!images.lines().any(|l| l == "other:1"), "{images}");
    for tag in ["b1", "b2"] {
        let out = s
            .rimg([
                "run",
                "--rm",
                &format!("{tag}:1"),
                "cat",
                "/app/tag",
                "/app/id",
            ])
            .ok();
        assert_eq!(out, format!("{tag}\nshared\n"));
    }
    let out = s.rimg(["run", "--rm", "committed:1", "cat", "/id"]).ok();
    assert_eq!(out.trim(), "committed");
    let report = sound(&s, "after two builds, a commit and an rmi at once");
    assert!(report.contains("no problems"), "{report}");
    assert_no_mounts(&s.root().join("rimg/build"));
}

#[test]
fn rimgfs_daemon_killed_under_a_writing_container_keeps_synced_lines() {
    let s = Store::new();
    let _c = Cleanup(&s);
    s.busybox("busybox:latest");
    let id = s
        .rimg([
            "run",
            "-d",
            "--name",
            "w",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo line$i >> /log; sync; done",
        ])
        .ok();
    let id = id.trim();
    let upper = s.root().join("rimg/containers").join(id).join("upper/log");
    let read_lines = || -> Vec<String> {
        std::fs::read_to_string(&upper)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let t0 = Instant::now();
    while read_lines().len() < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the container wrote nothing"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mounts = rimgfs_mounts(&s);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let before = read_lines();
    let status = std::process::Command::new("kill")
        .args(["-9", &mounts[0].1])
        .status()
        .unwrap();
    assert!(status.success());
    thread::sleep(Duration::from_millis(300));
    s.rimg(["stop", "-t", "1", "w"]).ok();
    // The upper dir (what `commit` and the next start read) keeps every synced line, in order.
    let after = read_lines();
    assert!(
        after.len() >= before.len(),
        "{} < {}",
        after.len(),
        before.len()
    );
    for (i, l) in after.iter().enumerate() {
        // The last line may be cut where the writer stopped.
        if i + 1 < after.len() {
            assert_eq!(l, &format!("line{}", i + 1));
        }
    }
    eprintln!(
        "{} lines before the kill, {} after",
        before.len(),
        after.len()
    );
    s.rimg(["rm", "-f", "w"]).ok();
    assert_eq!(rimgfs_mounts(&s), Vec::new());
    assert!(
        mounts_under(s.dir.path()).is_empty(),
        "{:?}",
        mounts_under(s.dir.path())
    );
}
