//! Restart policies (`run --restart`, `start --all-restartable`) and `attach`, end to end:
//! real containers on the busybox image, watched through `inspect`, `ps` and `logs`, with
//! deadlines and never with timing asserts.

use rimg_tests::containers::{assert_no_mounts, eventually, wrapped, Cleanup};
use rimg_tests::Store;

use rimg_tests::containers::{busybox_store as store, inspect_field as inspect};

#[test]
fn on_failure_restarts_up_to_the_limit_then_stays_exited() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "flaky", "--restart", "on-failure:3"])
        .args(["busybox", "sh", "-c", "echo run; exit 3"])
        .ok();
    assert!(
        eventually(60, || inspect(&s, "flaky", "{{.State.Status}}") == "exited"),
        "never ended: {}",
        inspect(&s, "flaky", "{{.State.Status}} {{.RestartCount}}")
    );
    assert_eq!(
        inspect(&s, "flaky", "{{.RestartCount}} {{.State.ExitCode}}"),
        "3 3"
    );
    assert_eq!(
        inspect(
            &s,
            "flaky",
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure 3"
    );
    let logs = s.rimg(["logs", "-t", "flaky"]).ok();
    let runs: Vec<&str> = logs.lines().filter(|l| l.ends_with(" run")).collect();
    assert_eq!(runs.len(), 4, "{logs}");
    // One run after the other: each start is logged after the previous one.
    let times: Vec<&str> = runs.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{logs}");
    let ps = s.rimg(["ps", "-a", "--format", "{{.Status}}"]).ok();
    assert!(ps.starts_with("Exited (3) "), "{ps}");
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn always_restarts_after_success_and_stop_ends_it() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "loop", "--restart", "always"])
        .args(["busybox", "sh", "-c", "echo run; exit 0"])
        .ok();
    // The delay doubles, so the container soon spends most of its time waiting.
    let mut seen = String::new();
    assert!(
        eventually(60, || {
            seen = s.rimg(["ps", "--format", "{{.Status}}"]).ok();
            seen.starts_with("Restarting (0) ")
                && inspect(&s, "loop", "{{.RestartCount}}")
                    .parse::<u32>()
                    .unwrap()
                    >= 2
        }),
        "ps showed {seen:?}"
    );
    assert_eq!(
        inspect(&s, "loop", "{{.State.Restarting}} {{.State.Running}}"),
        "true true"
    );
    s.rimg(["stop", "-t", "1", "loop"]).ok();
    assert_eq!(
        inspect(&s, "loop", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    // Its monitor is gone: nothing restarts it any more.
    let ps = s.rimg(["ps", "-q"]).ok();
    assert_eq!(ps, "");
    assert_no_mounts(s.dir.path());
}

#[test]
fn start_all_restartable_starts_always_and_unless_stopped_the_user_did_not_stop() {
    let s = store();
    let _c = Cleanup(&s);
    for (name, policy) in [
        ("keeper", "always"),
        ("quitter", "unless-stopped"),
        ("crashed", "unless-stopped"),
        ("plain", "no"),
    ] {
        s.rimg(["run", "-d", "--name", name, "--restart", policy])
            .args(["busybox", "sleep", "1000"])
            .ok();
    }
    s.rimg(["stop", "-t", "1", "keeper", "quitter", "plain"])
        .ok();
    // A reboot: the monitor and the process of `crashed` die without a word.
    let monitor = inspect(&s, "crashed", "{{.State.Pid}}");
    let dir = s
        .root()
        .join("rimg/containers")
        .join(inspect(&s, "crashed", "{{.Id}}"));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    for pid in [state["monitor_pid"].to_string(), monitor] {
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
    }
    assert!(eventually(30, || inspect(
        &s,
        "crashed",
        "{{.State.Status}}"
    ) == "dead"));

    let started = s.rimg(["start", "--all-restartable"]).ok();
    let mut started: Vec<&str> = started.lines().collect();
    started.sort();
    assert_eq!(started, ["crashed", "keeper"]);
    let running = s.rimg(["ps", "--format", "{{.Names}}"]).ok();
    let mut running: Vec<&str> = running.lines().collect();
    running.sort();
    assert_eq!(running, ["crashed", "keeper"]);
    assert_eq!(inspect(&s, "quitter", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&s, "plain", "{{.State.Status}}"), "exited");
    // Started once by hand, `quitter` is restartable again.
    s.rimg(["start", "quitter"]).ok();
    s.rimg(["stop", "-t", "1", "keeper", "quitter", "crashed"])
        .ok();
    let again = s.rimg(["start", "--all-restartable"]).ok();
    assert_eq!(again.trim(), "keeper");
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn restart_with_rm_is_refused_as_docker_does() {
    let s = store();
    let out = s
        .rimg(["run", "--rm", "--restart", "always", "busybox", "true"])
        .output();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Conflicting options: --restart and --rm")
    );
    let out = s
        .rimg(["create", "--restart", "sometimes", "busybox", "true"])
        .output();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(s.rimg(["ps", "-aq"]).ok(), "");
}

/// Runs `rimg ARGS` on a pseudo-terminal (python3's pty module, as the login test does):
/// for each step, waits until the terminal has shown its text, then types its keys.
/// Returns what the terminal showed and rimg's exit code (`None`: it did not end).
fn on_terminal(s: &Store, args: &[&str], steps: &[(&str, &str)]) -> (String, Option<i32>) {
    const DRIVER: &str = r#"
import json, os, pty, select, signal, sys, time
steps = json.loads(sys.argv[1])
cmd = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
seen = b""
def read(deadline):
    global seen
    left = deadline - time.time()
    if left <= 0:
        return False
    r, _, _ = select.select([fd], [], [], left)
    if not r:
        return True
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    seen += data
    return bool(data)
for text, keys in steps:
    deadline = time.time() + 60
    while text.encode() not in seen and time.time() < deadline:
        if not read(deadline):
            break
    os.write(fd, keys.encode())
deadline = time.time() + 60
while read(deadline):
    pass
# The terminal closes as the process exits: give it the time to be reaped.
done, status = os.waitpid(pid, os.WNOHANG)
while not done and time.time() < deadline:
    time.sleep(0.05)
    done, status = os.waitpid(pid, os.WNOHANG)
code = os.waitstatus_to_exitcode(status) if done else -1000
if not done:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
sys.stdout.write(json.dumps({"seen": seen.decode(errors="replace"), "code": code}))
"#;
    let steps: Vec<[&str; 2]> = steps.iter().map(|(t, k)| [*t, *k]).collect();
    let steps = serde_json::to_string(&steps).unwrap();
    let out = wrapped(&s.rimg(args), "python3", ["-c", DRIVER, &steps])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("driver: {}", String::from_utf8_lossy(&out.stderr)));
    let code = v["code"].as_i64().unwrap();
    (
        v["seen"].as_str().unwrap().to_string(),
        (code != -1000).then_some(code as i32),
    )
}

const DETACH: &str = "\u{10}\u{11}";

#[test]
fn attach_relays_a_shell_and_ctrl_p_ctrl_q_leaves_it_running() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-dit", "--name", "shell", "busybox", "sh"])
        .ok();
    let (seen, code) = on_terminal(
        &s,
        &["attach", "shell"],
        &[("", "echo hi-$((1+2))\r"), ("hi-3", DETACH)],
    );
    assert!(seen.contains("hi-3"), "{seen:?}");
    assert_eq!(code, Some(0), "{seen:?}");
    assert_eq!(inspect(&s, "shell", "{{.State.Status}}"), "running");
    assert!(s.rimg(["logs", "shell"]).ok().contains("hi-3"));

    // Other keys, and the container's exit code when its shell exits.
    let (seen, code) = on_terminal(
        &s,
        &["container", "attach", "--detach-keys", "ctrl-x", "shell"],
        &[("", "echo again-$((2+2))\r"), ("again-4", "exit 7\r")],
    );
    assert!(seen.contains("again-4"), "{seen:?}");
    assert_eq!(code, Some(7), "{seen:?}");
    assert!(eventually(30, || inspect(&s, "shell", "{{.State.Status}}") == "exited"));
    assert_eq!(inspect(&s, "shell", "{{.State.ExitCode}}"), "7");
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn attach_shows_the_output_of_a_running_container_and_leaving_keeps_it() {
    use std::io::{BufRead, BufReader};
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "ticker", "busybox", "sh", "-c"])
        .arg("i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done")
        .ok();
    let mut cmd = s.rimg(["attach", "ticker"]).0;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(first.starts_with("tick "), "{first}");
    let n = |l: &str| l["tick ".len()..].parse::<u64>().unwrap();
    assert_eq!(n(&second), n(&first) + 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(inspect(&s, "ticker", "{{.State.Status}}"), "running");
    let out = s.rimg(["attach", "ticker-none"]).fails();
    assert!(out.contains("No such container"), "{out}");
    s.rimg(["stop", "-t", "1", "ticker"]).ok();
    let out = s.rimg(["attach", "ticker"]).fails();
    assert!(
        out.contains("You cannot attach to a stopped container"),
        "{out}"
    );
    drop(_c);
    assert_no_mounts(s.dir.path());
}

#[test]
fn run_it_detaches_on_ctrl_p_ctrl_q_and_the_container_runs_on() {
    let s = store();
    let _c = Cleanup(&s);
    let (seen, code) = on_terminal(
        &s,
        &["run", "-it", "--name", "it", "busybox", "sh"],
        &[("", "echo in-$((3+4))\r"), ("in-7", DETACH)],
    );
    assert!(seen.contains("in-7"), "{seen:?}");
    assert_eq!(code, Some(0), "{seen:?}");
    assert_eq!(inspect(&s, "it", "{{.State.Status}}"), "running");
    let (seen, code) = on_terminal(&s, &["attach", "it"], &[("", "exit 5\r")]);
    assert_eq!(code, Some(5), "{seen:?}");
    // `start -ai` of a tty container detaches the same way.
    let (seen, code) = on_terminal(
        &s,
        &["start", "-ai", "it"],
        &[("", "echo back-$((4+4))\r"), ("back-8", DETACH)],
    );
    assert!(seen.contains("back-8"), "{seen:?}");
    assert_eq!(code, Some(0), "{seen:?}");
    assert_eq!(inspect(&s, "it", "{{.State.Status}}"), "running");

    // Without the keys, `run -it` ends with its container, and `--rm` removes it first.
    let (seen, code) = on_terminal(
        &s,
        &[
            "run",
            "-it",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo bye; exit 4",
        ],
        &[],
    );
    assert!(seen.contains("bye"), "{seen:?}");
    assert_eq!(code, Some(4), "{seen:?}");
    let left = s.rimg(["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(left.trim(), "it");
    let (seen, code) = on_terminal(&s, &["run", "-it", "busybox", "no-such-command"], &[]);
    assert_eq!(code, Some(127), "{seen:?}");
    drop(_c);
    assert_no_mounts(s.dir.path());
}
