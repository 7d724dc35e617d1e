//! Resource limits (`-m`, `--cpus`, `--pids-limit`) through the container's own cgroup (v1
//! on the test machine): the limits land in the cgroup's files and a fork bomb is contained.

use rimg_tests::containers::{assert_no_mounts, Cleanup};
use rimg_tests::Store;

fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

/// A v1 cgroup file of container `id` under `controller`.
fn cg(controller: &str, id: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}/rimg/{id}/{file}"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn a_fork_bomb_under_a_pids_limit_is_contained() {
    let s = store();
    let _c = Cleanup(&s);
    let id = s
        .rimg(["run", "-d", "--pids-limit", "64", "busybox", "sh", "-c"])
        .arg("while true; do sleep 100 & done")
        .ok()
        .trim()
        .to_string();
    // The bomb fills the cgroup's 64 pids; busybox sh then fails to fork and gives up.
    let code = s.rimg(["wait", &id]).ok();
    assert_ne!(code.trim(), "0");
    let logs = s.rimg(["logs", &id]).output();
    let text =
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    assert!(text.contains("can't fork"), "{text}");
    // The host still answers.
    s.rimg(["ps", "-q"]).ok();
    s.rimg(["rm", "-f", &id]).ok();
    assert!(cg("pids", &id, "pids.max").is_none());
    assert_no_mounts(s.dir.path());
}

#[test]
fn memory_and_cpu_limits_land_in_the_cgroup() {
    let s = store();
    let _c = Cleanup(&s);
    let id = s
        .rimg([
            "run", "-d", "-m", "64m", "--cpus", "0.5", "busybox", "sleep", "300",
        ])
        .ok()
        .trim()
        .to_string();
    assert_eq!(
        cg("memory", &id, "memory.limit_in_bytes").as_deref(),
        Some("67108864")
    );
    assert_eq!(cg("cpu", &id, "cpu.cfs_quota_us").as_deref(), Some("50000"));
    assert_eq!(
        cg("cpu", &id, "cpu.cfs_period_us").as_deref(),
        Some("100000")
    );
    s.rimg(["rm", "-f", &id]).ok();
    assert_no_mounts(s.dir.path());
}

#[test]
fn a_bad_memory_size_is_a_usage_error() {
    let s = store();
    let out = s.rimg(["run", "-m", "lots", "busybox", "true"]).output();
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn a_process_over_its_memory_limit_is_killed_with_137() {
    let s = store();
    let _c = Cleanup(&s);
    // The shell holds 200 MB in a variable: far over 64 MiB.
    let script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let out = s
        .rimg(["run", "--rm", "-m", "64m", "busybox", "sh", "-c", script])
        .output();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_no_mounts(s.dir.path());
}
