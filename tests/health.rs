//! Process lifecycle flags of `run`, end to end on the busybox image: `--init` (tini as pid
//! 1, reaping orphans), `--stop-signal`, `--stop-timeout`, `--oom-score-adj`. States are
//! polled with deadlines, never timed.

use rimg_tests::containers::{assert_no_mounts, eventually, Cleanup};
use rimg_tests::{require_tool, Store};

use rimg_tests::containers::{busybox_store as store, inspect_field as inspect};

/// The `STAT` and `COMMAND` columns of `ps` inside the container, one process a line.
fn processes(s: &Store, name: &str) -> Vec<String> {
    let out = s.rimg(["exec", name, "ps", "-o", "stat,comm"]).output();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Starts `name` detached with `flags`, running the shell `trap` then a loop, and waits
/// until the trap is set.
fn start_ready(s: &Store, name: &str, flags: &[&str], trap: &str) {
    s.rimg(["run", "-d", "--name", name])
        .args(flags)
        .args(["busybox", "sh", "-c"])
        .arg(format!("{trap}; echo ready; while :; do sleep 0.1; done"))
        .ok();
    assert!(eventually(60, || s
        .rimg(["logs", name])
        .ok()
        .contains("ready")));
}

/// A program whose orphan (`sleep 1`, left by a subshell) is reparented to pid 1 and dies.
const ORPHAN_MAKER: &str = "(sleep 1 &); exec sleep 60";

#[test]
fn without_init_an_orphan_stays_a_zombie() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "z", "busybox", "sh", "-c"])
        .arg(ORPHAN_MAKER)
        .ok();
    assert!(
        eventually(60, || processes(&s, "z").iter().any(|p| p.starts_with('Z'))),
        "no zombie: {:?}",
        processes(&s, "z")
    );
    s.rimg(["rm", "-f", "z"]).ok();
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn init_reaps_orphans_and_runs_as_pid_1() {
    require_tool("tini-static");
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--init", "--name", "z", "busybox", "sh", "-c"])
        .arg(ORPHAN_MAKER)
        .ok();
    // The orphan `sleep 1` ends and is reaped: one `sleep` left, and no zombie.
    assert!(
        eventually(60, || {
            let ps = processes(&s, "z");
            ps.iter().filter(|p| p.ends_with(" sleep")).count() == 1
                && !ps.iter().any(|p| p.starts_with('Z'))
        }),
        "not reaped: {:?}",
        processes(&s, "z")
    );
    let comm = s.rimg(["exec", "z", "cat", "/proc/1/comm"]).ok();
    assert_eq!(comm.trim(), "init");
    // The init passes the stop signal on: the container stops before any SIGKILL.
    s.rimg(["stop", "-t", "60", "z"]).ok();
    assert_eq!(inspect(&s, "z", "{{.State.ExitCode}}"), "143");
    s.rimg(["rm", "z"]).ok();
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn stop_signal_is_what_the_process_sees() {
    let s = store();
    let _c = Cleanup(&s);
    start_ready(
        &s,
        "sig",
        &["--stop-signal", "SIGUSR1"],
        "trap 'echo got-usr1; exit 7' USR1",
    );
    s.rimg(["stop", "-t", "60", "sig"]).ok();
    assert!(s.rimg(["logs", "sig"]).ok().contains("got-usr1"));
    assert_eq!(inspect(&s, "sig", "{{.State.ExitCode}}"), "7");
    assert_eq!(inspect(&s, "sig", "{{.Config.StopSignal}}"), "SIGUSR1");
    let err = s
        .rimg(["create", "--stop-signal", "NOPE", "busybox", "true"])
        .fails();
    assert!(err.contains("NOPE"), "{err}");
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn stop_timeout_kills_a_process_that_ignores_the_signal() {
    let s = store();
    let _c = Cleanup(&s);
    start_ready(&s, "deaf", &["--stop-timeout", "1"], "trap '' TERM");
    s.rimg(["stop", "deaf"]).ok();
    assert_eq!(inspect(&s, "deaf", "{{.State.ExitCode}}"), "137");
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn oom_score_adj_is_set_and_checked() {
    let s = store();
    let _c = Cleanup(&s);
    let out = s
        .rimg(["run", "--rm", "--oom-score-adj", "500", "busybox"])
        .args(["cat", "/proc/self/oom_score_adj"])
        .ok();
    assert_eq!(out.trim(), "500");
    let out = s
        .rimg(["run", "--oom-score-adj", "1001", "busybox", "true"])
        .output();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[-1000, 1000]"));
    drop(_c);
    assert_no_mounts(s.dir.path());
}
