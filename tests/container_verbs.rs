//! The everyday container verbs as Docker documents them: `rename`, `wait`, `restart`,
//! `stop -s`, `container prune`, `system prune`, `cp` (also through hostile symlinks),
//! `export`, `top`, `logs --since/--until`, `exec -d`, and `ps` filters.

use std::process::Output;

use rimg_tests::containers::{assert_no_mounts, Cleanup};
use rimg_tests::Store;

fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `f` until it returns true, failing with `what` after 30 s.
#[track_caller]
fn until(what: &str, f: impl FnMut() -> bool) {
    rimg_tests::containers::wait_until(what, f);
}

fn names(s: &Store) -> Vec<String> {
    let mut v: Vec<String> = s
        .rimg(["ps", "-a", "--format", "{{.Names}}"])
        .ok()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn state_of(s: &Store, name: &str) -> String {
    s.rimg(["ps", "-a", "--filter", &format!("name=^{name}$")])
        .args(["--format", "{{.State}}"])
        .ok()
        .trim()
        .to_string()
}

#[test]
fn rename_follows_dockers_rules() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["create", "--name", "one", "busybox", "true"]).ok();
    s.rimg(["create", "--name", "two", "busybox", "true"]).ok();
    let out = s.rimg(["rename", "one", "two"]).output();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("Conflict. The container name \"/two\" is already in use"),
        "{}",
        stderr(&out)
    );
    let out = s.rimg(["container", "rename", "one", "one"]).output();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("same name"), "{}", stderr(&out));
    let out = s.rimg(["rename", "one", "bad/name"]).output();
    assert_eq!(code(&out), 1);
    let out = s.rimg(["rename", "missing", "x"]).output();
    assert!(
        stderr(&out).contains("No such container: missing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(&s), ["one", "two"]);
    s.rimg(["container", "rename", "one", "three"]).ok();
    assert_eq!(names(&s), ["three", "two"]);
    // The new name is the container's: it starts and runs under it.
    let out = s.rimg(["start", "-a", "three"]).output();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_no_mounts(s.dir.path());
}

#[test]
fn wait_prints_exit_codes_once_containers_stop() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "--name", "done", "busybox", "sh", "-c", "exit 3"])
        .output();
    // A stopped container answers at once.
    assert_eq!(s.rimg(["wait", "done"]).ok(), "3\n");
    s.rimg(["run", "-d", "--name", "slow", "busybox", "sh", "-c"])
        .arg("while [ ! -e /go ]; do sleep 0.05; done; exit 7")
        .ok();
    let mut waiter = s.rimg(["container", "wait", "slow", "done"]).0;
    let child = waiter
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wait");
    s.rimg(["exec", "slow", "touch", "/go"]).ok();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "7\n3\n");
    assert_eq!(code(&out), 0);
    // A missing one is an error, the others still answer.
    let out = s.rimg(["wait", "nope", "done"]).output();
    assert_eq!(stdout(&out), "3\n");
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("No such container: nope"));
    assert_no_mounts(s.dir.path());
}

#[test]
fn restart_stops_and_starts_again_and_stop_takes_a_signal() {
    let s = store();
    let _c = Cleanup(&s);
    // The shell ignores TERM, so only the signal given with -s stops it quickly.
    s.rimg(["run", "-d", "--name", "r", "busybox", "sh", "-c"])
        .arg("trap '' TERM; echo started; while true; do sleep 0.1; done")
        .ok();
    until("the first start", || {
        s.rimg(["logs", "r"]).ok() == "started\n"
    });
    assert_eq!(s.rimg(["container", "restart", "-t", "1", "r"]).ok(), "r\n");
    assert_eq!(state_of(&s, "r"), "running");
    until("the second start", || {
        s.rimg(["logs", "r"]).ok() == "started\nstarted\n"
    });
    assert_eq!(
        s.rimg(["stop", "-s", "KILL", "--timeout", "30", "r"]).ok(),
        "r\n"
    );
    assert_eq!(s.rimg(["wait", "r"]).ok(), "137\n");
    assert_eq!(state_of(&s, "r"), "exited");
    assert_no_mounts(s.dir.path());
}

#[test]
fn container_prune_removes_only_stopped_containers() {
    let s = store();
    let _c = Cleanup(&s);
    let exited = s
        .rimg(["run", "-d", "--name", "exited", "busybox", "sh", "-c"])
        .arg("head -c 50000 /dev/zero > /big")
        .ok();
    let created = s.rimg(["create", "--name", "created", "busybox"]).ok();
    s.rimg(["run", "-d", "--name", "up", "busybox", "sleep", "60"])
        .ok();
    s.rimg(["wait", "exited"]).ok();
    // Declined: nothing goes.
    let out = s.rimg(["container", "prune"]).stdin_bytes(b"n\n");
    assert!(
        stderr(&out).contains("WARNING! This will remove all stopped containers."),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(&s), ["created", "exited", "up"]);
    // Created before an hour ago: none.
    let out = s
        .rimg(["container", "prune", "-f", "--filter", "until=1h"])
        .ok();
    assert_eq!(out, "Total reclaimed space: 0B\n");
    let out = s.rimg(["container", "prune"]).stdin_bytes(b"y\n");
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Deleted Containers:"));
    let mut deleted: Vec<&str> = lines.by_ref().take(2).collect();
    deleted.sort();
    let mut want = [exited.trim(), created.trim()];
    want.sort();
    assert_eq!(deleted, want);
    assert_eq!(lines.next(), Some(""));
    assert_eq!(lines.next(), Some("Total reclaimed space: 50kB"));
    assert_eq!(names(&s), ["up"]);
    let out = s
        .rimg(["container", "prune", "--filter", "until=soon", "-f"])
        .output();
    assert_eq!(code(&out), 125);
    s.rimg(["rm", "-f", "up"]).ok();
    assert_no_mounts(s.dir.path());
}

#[test]
fn system_prune_removes_containers_then_the_images_they_held() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["tag", "busybox", "kept"]).ok();
    s.rimg(["run", "--name", "old", "busybox", "true"]).ok();
    s.rimg(["run", "-d", "--name", "up", "kept", "sleep", "60"])
        .ok();
    let out = s
        .rimg(["system", "prune", "-a", "--volumes"])
        .stdin_bytes(b"n\n");
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all anonymous volumes not used by at least one container\n  - all images without at least one container associated to them\n  - all build cache\n\nAre you sure you want to continue? [y/N] "
        ),
        "{err}"
    );
    assert_eq!(names(&s), ["old", "up"]);
    let out = s.rimg(["system", "prune", "-f"]).ok();
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(!out.contains("Deleted Images:"), "{out}");
    assert_eq!(names(&s), ["up"]);
    // busybox and kept are one image, and the running container uses it: -a keeps it.
    let out = s.rimg(["system", "prune", "-a", "-f"]).ok();
    assert_eq!(out, "Total reclaimed space: 0B\n");
    s.rimg(["rm", "-f", "up"]).ok();
    let out = s.rimg(["system", "prune", "-af"]).ok();
    assert!(out.starts_with("Deleted Images:\nuntagged: "), "{out}");
    assert!(out.contains("\ndeleted: sha256:"), "{out}");
    assert_eq!(s.rimg(["images", "-q"]).ok(), "");
    assert_no_mounts(s.dir.path());
}

/// Everything under `dir`: paths, kinds and contents, to show nothing changed.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let data = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else if m.is_dir() {
                stack.push(p.clone());
                b"<dir>".to_vec()
            } else {
                b"<other>".to_vec()
            };
            out.push((p.display().to_string(), data));
        }
    }
    out.sort();
    out
}

#[test]
fn cp_copies_both_ways_with_dockers_path_rules() {
    let s = store();
    let _c = Cleanup(&s);
    let host = s.path("host");
    std::fs::create_dir_all(host.join("src/sub")).unwrap();
    std::fs::write(host.join("src/a.txt"), "a\n").unwrap();
    std::fs::write(host.join("src/sub/b.txt"), "b\n").unwrap();
    s.rimg(["run", "-d", "--name", "c", "busybox", "sh", "-c"])
        .arg("mkdir -p /d/e && echo f > /d/f && echo g > /d/e/g && chown 7:8 /d/f && sleep 60")
        .ok();
    until("the container's files", || {
        s.rimg(["exec", "c", "test", "-e", "/d/e/g"])
            .output()
            .status
            .success()
    });
    // Out: a file to a new name, into a directory, a directory and its contents.
    s.rimg(["cp", "c:/d/f", host.join("f1").to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(host.join("f1")).unwrap(), "f\n");
    s.rimg(["container", "cp", "c:/d/f", host.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "f\n");
    s.rimg(["cp", "c:/d", host.join("d1").to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(host.join("d1/e/g")).unwrap(), "g\n");
    std::fs::create_dir(host.join("d2")).unwrap();
    s.rimg(["cp", "c:/d", host.join("d2").to_str().unwrap()])
        .ok();
    assert!(host.join("d2/d/e/g").is_file());
    std::fs::create_dir(host.join("d3")).unwrap();
    s.rimg(["cp", "c:/d/.", host.join("d3").to_str().unwrap()])
        .ok();
    assert!(host.join("d3/e/g").is_file());
    // -a keeps the owner; without it the copy is the copier's.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(host.join("f1")).unwrap().uid(), 0);
    s.rimg(["cp", "-a", "c:/d/f", host.join("f2").to_str().unwrap()])
        .ok();
    let m = std::fs::metadata(host.join("f2")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8));
    // In: a directory, a file into a directory, and a tar on stdin.
    s.rimg(["cp", host.join("src").to_str().unwrap(), "c:/in"])
        .ok();
    s.rimg(["cp", host.join("src/a.txt").to_str().unwrap(), "c:/in/sub/"])
        .ok();
    let found = s.rimg(["exec", "c", "find", "/in"]).ok();
    let mut found: Vec<&str> = found.lines().collect();
    found.sort();
    assert_eq!(
        found,
        [
            "/in",
            "/in/a.txt",
            "/in/sub",
            "/in/sub/a.txt",
            "/in/sub/b.txt"
        ]
    );
    let tar = s.rimg(["cp", "c:/d", "-"]).output();
    assert!(tar.status.success());
    let out = s.rimg(["cp", "-", "c:/in"]).stdin_bytes(&tar.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.rimg(["exec", "c", "cat", "/in/d/e/g"]).ok(), "g\n");
    // Docker's errors.
    let out = s.rimg(["cp", "c:/nope", host.to_str().unwrap()]).output();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("Could not find the file /nope in container c"),
        "{}",
        stderr(&out)
    );
    let out = s
        .rimg(["cp", "c:/d", host.join("f1").to_str().unwrap()])
        .output();
    assert!(
        stderr(&out).contains("cannot copy a directory to a file"),
        "{}",
        stderr(&out)
    );
    let out = s
        .rimg(["cp", host.join("f1").to_str().unwrap(), "c:/no/such/dir/"])
        .output();
    assert_eq!(code(&out), 1);
    let out = s.rimg(["cp", "-", "c:/d/f"]).stdin_bytes(&tar.stdout);
    assert!(
        stderr(&out).contains("must be a directory"),
        "{}",
        stderr(&out)
    );
    s.rimg(["rm", "-f", "c"]).ok();
    assert_no_mounts(s.dir.path());
}

#[test]
fn cp_reaches_a_stopped_container_through_its_stack() {
    let s = store();
    let _c = Cleanup(&s);
    let host = s.path("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("conf"), "setting=1\n").unwrap();
    s.rimg(["create", "--name", "st", "busybox", "cat", "/etc/conf"])
        .ok();
    s.rimg(["cp", host.join("conf").to_str().unwrap(), "st:/etc/"])
        .ok();
    // Nothing stays mounted after a copy into a stopped container.
    assert_no_mounts(s.dir.path());
    assert_eq!(s.rimg(["start", "-a", "st"]).ok(), "setting=1\n");
    let diff = s.rimg(["diff", "st"]).ok();
    assert!(diff.lines().any(|l| l == "A /etc/conf"), "{diff}");
    s.rimg(["cp", "st:/etc/conf", host.join("back").to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(host.join("back")).unwrap(),
        "setting=1\n"
    );
    assert_no_mounts(s.dir.path());
}

#[test]
fn cp_through_hostile_symlinks_stays_inside_the_container() {
    let s = store();
    let _c = Cleanup(&s);
    let victim = s.path("host-victim-dir");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("secret"), "host secret\n").unwrap();
    let host = s.path("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("payload"), "pwned\n").unwrap();
    let before_victim = snapshot(&victim);
    let up = "../../../../../../../../..";
    // The container's own copy of the victim's path, and links that would lead out of it.
    let script = format!(
        "ln -s / /data && ln -s {up}{v} /escape && mkdir -p {v} && echo inside > {v}/mine \
         && ln -s {up}{v}/secret /secretlink && touch /ready && sleep 60",
        v = victim.display()
    );
    for name in ["running", "stopped"] {
        s.rimg(["run", "-d", "--name", name, "busybox", "sh", "-c", &script])
            .ok();
        until("the hostile links", || {
            s.rimg(["exec", name, "test", "-e", "/ready"])
                .output()
                .status
                .success()
        });
    }
    s.rimg(["stop", "-t", "0", "stopped"]).ok();
    for name in ["running", "stopped"] {
        let ctr = |p: &str| format!("{name}:{p}");
        // Into the container through the links: the files land inside it.
        s.rimg([
            "cp",
            host.join("payload").to_str().unwrap(),
            &ctr("/data/pwned"),
        ])
        .ok();
        s.rimg([
            "cp",
            host.join("payload").to_str().unwrap(),
            &ctr("/escape/"),
        ])
        .ok();
        let tar = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, "link", &victim).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(6);
            h.set_mode(0o644);
            b.append_data(&mut h, "link/fromtar", &b"pwned\n"[..])
                .unwrap();
            b.into_inner().unwrap()
        };
        let out = s.rimg(["cp", "-", &ctr("/")]).stdin_bytes(&tar);
        assert!(out.status.success(), "{}", stderr(&out));
        // Out of the container through the links: the container's files, not the host's.
        let got = host.join(format!("mine-{name}"));
        s.rimg(["cp", &ctr("/escape/mine"), got.to_str().unwrap()])
            .ok();
        assert_eq!(std::fs::read_to_string(&got).unwrap(), "inside\n");
        let out = s
            .rimg([
                "cp",
                "-L",
                &ctr("/secretlink"),
                host.join("stolen").to_str().unwrap(),
            ])
            .output();
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(!host.join("stolen").exists());
        let passwd = s.rimg(["cp", &ctr("/data/etc/passwd"), "-"]).output();
        assert!(passwd.status.success());
        assert!(
            !String::from_utf8_lossy(&passwd.stdout).contains("host secret"),
            "read the host"
        );
    }
    assert_eq!(
        snapshot(&victim),
        before_victim,
        "the host's directory changed"
    );
    assert!(!std::path::Path::new("/pwned").exists());
    let inside = s
        .rimg([
            "exec",
            "running",
            "ls",
            "/pwned",
            &format!("{}/payload", victim.display()),
        ])
        .ok();
    assert_eq!(inside.lines().count(), 2, "{inside}");
    let fromtar = s
        .rimg([
            "exec",
            "running",
            "cat",
            &format!("{}/fromtar", victim.display()),
        ])
        .ok();
    assert_eq!(fromtar, "pwned\n");
    s.rimg(["rm", "-f", "running", "stopped"]).ok();
    assert_no_mounts(s.dir.path());
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn export_writes_the_merged_tree_as_one_tar() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "--name", "ex", "busybox", "sh", "-c"])
        .arg("echo new > /new && rm /etc/group")
        .ok();
    let out = s.rimg(["export", "ex"]).output();
    assert!(out.status.success(), "{}", stderr(&out));
    let names = tar_names(&out.stdout);
    assert!(names.iter().any(|n| n == "new"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    assert!(names.iter().any(|n| n == "etc/passwd"), "{names:?}");
    assert!(!names.iter().any(|n| n == "etc/group"), "{names:?}");
    let file = s.path("ex.tar");
    s.rimg(["container", "export", "-o", file.to_str().unwrap(), "ex"])
        .ok();
    assert_eq!(std::fs::read(&file).unwrap(), out.stdout);
    // The tar imports as the container's filesystem.
    s.rimg(["import"]).arg(&file).arg("exported").ok();
    assert_eq!(
        s.rimg(["run", "--rm", "exported", "cat", "/new"]).ok(),
        "new\n"
    );
    let out = s.rimg(["export", "nope"]).output();
    assert_eq!(code(&out), 1);
    assert_no_mounts(s.dir.path());
}

#[test]
fn top_lists_the_containers_processes_with_ps_columns() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "t", "busybox", "sh", "-c"])
        .arg("sleep 61 & sleep 62 & wait")
        .ok();
    until("both sleeps", || {
        let out = s.rimg(["top", "t"]).ok();
        out.lines()
            .filter(|l| l.ends_with(" sleep 61") || l.ends_with(" sleep 62"))
            .count()
            == 2
    });
    let out = s.rimg(["top", "t"]).ok();
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("UID") && header.contains("PID") && header.ends_with("CMD"));
    let rows: Vec<&str> = lines.collect();
    // sh and its two sleeps: nothing of the host's.
    assert_eq!(rows.len(), 3, "{out}");
    let out = s.rimg(["container", "top", "t", "-o", "pid,comm"]).ok();
    let mut comms: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    comms.sort();
    assert_eq!(comms, ["sh", "sleep", "sleep"], "{out}");
    s.rimg(["stop", "-t", "0", "t"]).ok();
    let out = s.rimg(["top", "t"]).output();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    // A mistyped verb suggests the right one.
    let out = s.rimg(["topp", "t"]).output();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("'top'"), "{}", stderr(&out));
    let out = s.rimg(["container", "renam", "t", "u"]).output();
    assert!(stderr(&out).contains("'rename'"), "{}", stderr(&out));
    assert_no_mounts(s.dir.path());
}

#[test]
fn exec_detached_and_env_files() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "x", "busybox", "sleep", "60"])
        .ok();
    let env = s.path("env");
    std::fs::write(&env, "# settings\nCOLOUR=blue\nSIZE=9\n").unwrap();
    let out = s
        .rimg([
            "exec",
            "--env-file",
            env.to_str().unwrap(),
            "-e",
            "SIZE=10",
            "x",
        ])
        .args(["sh", "-c", "echo $COLOUR $SIZE"])
        .ok();
    assert_eq!(out, "blue 10\n");
    // -d returns before the command ends; the command runs on.
    let out = s
        .rimg(["container", "exec", "-d", "x", "sh", "-c"])
        .arg("while [ ! -e /go ]; do sleep 0.05; done; touch /done")
        .output();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    s.rimg(["exec", "x", "touch", "/go"]).ok();
    until("the detached command", || {
        s.rimg(["exec", "x", "test", "-e", "/done"])
            .output()
            .status
            .success()
    });
    let out = s
        .rimg(["exec", "--env-file", "/nonexistent", "x", "true"])
        .output();
    assert_eq!(code(&out), 125);
    s.rimg(["rm", "-f", "x"]).ok();
    assert_no_mounts(s.dir.path());
}

#[test]
fn logs_since_and_until_select_by_time() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg([
        "run",
        "--name",
        "l",
        "busybox",
        "sh",
        "-c",
        "echo early; echo late",
    ])
    .ok();
    let stamped = s.rimg(["logs", "-t", "l"]).ok();
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(times.len(), 2);
    // Since is inclusive, until exclusive, as Docker's.
    assert_eq!(
        s.rimg(["logs", "--since", times[1], "l"]).ok(),
        if times[0] == times[1] {
            "early\nlate\n"
        } else {
            "late\n"
        }
    );
    assert_eq!(s.rimg(["logs", "--until", times[0], "l"]).ok(), "");
    assert_eq!(s.rimg(["logs", "--since", "1h", "l"]).ok(), "early\nlate\n");
    assert_eq!(s.rimg(["logs", "--until", "1h", "l"]).ok(), "");
    assert_eq!(
        s.rimg(["logs", "--since", "2000-01-01", "l"]).ok(),
        "early\nlate\n"
    );
    assert_eq!(s.rimg(["logs", "--until", "946684800", "l"]).ok(), "");
    let out = s.rimg(["logs", "--since", "soon", "l"]).output();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("failed to parse value as time or duration"));
    assert_no_mounts(s.dir.path());
}

#[test]
fn ps_filters_last_and_sizes() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "--name", "failed", "busybox", "sh", "-c", "exit 2"])
        .output();
    s.rimg(["run", "--name", "fine", "busybox", "touch", "/changed"])
        .ok();
    // `other` is built on busybox: one more layer.
    s.rimg(["commit", "fine", "other"]).ok();
    s.rimg(["create", "--name", "fresh", "other"]).ok();
    s.rimg(["run", "-d", "--name", "up", "busybox", "sh", "-c"])
        .arg("head -c 20000 /dev/zero > /blob; sleep 60")
        .ok();
    let ps = |args: &[&str]| -> Vec<String> {
        s.rimg(["ps", "--format", "{{.Names}}"])
            .args(args)
            .ok()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ps(&[]), ["up"]);
    assert_eq!(ps(&["-f", "status=exited"]), ["fine", "failed"]);
    assert_eq!(ps(&["-f", "exited=2"]), ["failed"]);
    assert_eq!(ps(&["-a", "-f", "status=created"]), ["fresh"]);
    assert_eq!(ps(&["-a", "-f", "name=f"]), ["fresh", "fine", "failed"]);
    assert_eq!(ps(&["-a", "-f", "name=^fi"]), ["fine"]);
    assert_eq!(ps(&["-a", "-f", "ancestor=other"]), ["fresh"]);
    assert_eq!(ps(&["-a", "-f", "ancestor=busybox"]).len(), 4);
    assert_eq!(ps(&["-a", "-f", "since=fine"]), ["up", "fresh"]);
    assert_eq!(ps(&["-a", "-f", "before=fine"]), ["failed"]);
    assert_eq!(
        ps(&["-a", "-f", "status=exited", "-f", "status=created"]),
        ["fresh", "fine", "failed"]
    );
    assert_eq!(
        ps(&["-a", "-f", "status=exited", "-f", "name=fail"]),
        ["failed"]
    );
    let id = s.rimg(["ps", "-aq", "-f", "name=fresh"]).ok();
    assert_eq!(ps(&["-a", "-f", &format!("id={}", &id[..6])]), ["fresh"]);
    assert_eq!(ps(&["-n", "2"]), ["up", "fresh"]);
    assert_eq!(ps(&["-l"]), ["up"]);
    let out = s.rimg(["ps", "-f", "status=sleeping"]).output();
    assert_eq!(code(&out), 125);
    // -s: the upper dir's bytes and, virtual, with the image's.
    until("the blob", || {
        s.rimg(["exec", "up", "test", "-s", "/blob"])
            .output()
            .status
            .success()
    });
    let out = s.rimg(["ps", "-s"]).ok();
    let header = out.lines().next().unwrap();
    assert!(header.ends_with("NAMES     SIZE"), "{out}");
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains("20kB (virtual "), "{out}");
    s.rimg(["rm", "-f", "up"]).ok();
    assert_no_mounts(s.dir.path());
}
