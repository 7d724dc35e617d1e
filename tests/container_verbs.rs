//! The everyday container verbs as Docker documents them: `rename`, `wait`, `restart`,
//! `stop -s`, `container prune`, `system prune`, `cp` (also through hostile symlinks),
//! `export`, `top`, `logs --since/--until`, `exec -d`, and `ps` filters.

use std::process::Output;
use std::time::{Duration, Instant};

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
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
            "WARNING! This will remove:\n  - all stopped containers\n  - all anonymous volumes not used by at least one container\n  - all images without at least one container associated to them\n  - all build cache\n\nAre you sure you want to continue? [y/N] "
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
