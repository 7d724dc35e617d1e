//! `rimg run` and the container commands, end to end: the real binaries, the busybox image
//! mounted by rimgfs, Docker's exit codes and output. Every test force-removes its
//! containers and checks that nothing stays mounted.

use std::path::PathBuf;
use std::time::Duration;

use rimg_tests::containers::{assert_no_mounts, eventually, Cleanup};
use rimg_tests::{bin, busybox_tar, require_tool, sh, Store};

/// A store with busybox, plus `app`: busybox with ENV and WORKDIR defaults.
fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s.rimg([
        "import",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV GREETING=hello INTERVAL=5",
    ])
    .args(["-c", "WORKDIR /srv/app"])
    .arg(busybox_tar())
    .arg("app")
    .ok();
    s
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn containers_dir(s: &Store) -> PathBuf {
    s.root().join("rimg/containers")
}

fn container_dirs(s: &Store) -> Vec<String> {
    std::fs::read_dir(containers_dir(s))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 64)
                .collect()
        })
        .unwrap_or_default()
}

fn state(s: &Store, id: &str) -> serde_json::Value {
    let p = containers_dir(s).join(id).join("state.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// `rimg run -d ARGS...`: the container's full id.
fn detached(s: &Store, args: &[&str]) -> String {
    s.rimg(["run", "-d"]).args(args).ok().trim().to_string()
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn run_returns_the_exit_code_and_applies_env_workdir_user_entrypoint() {
    let s = store();
    let _c = Cleanup(&s);
    let out = s
        .rimg(["run", "--rm", "busybox", "sh", "-c", "exit 3"])
        .output();
    assert_eq!(code(&out), 3, "{}", stderr(&out));

    let out = s
        .rimg([
            "run",
            "--rm",
            "app",
            "sh",
            "-c",
            "echo $GREETING $INTERVAL; pwd",
        ])
        .ok();
    assert_eq!(out, "hello 5\n/srv/app\n");
    let out = s
        .rimg(["run", "--rm", "-e", "GREETING=bye", "-e", "NEW=1", "app"])
        .args([
            "sh",
            "-c",
            "echo $GREETING $INTERVAL $NEW; echo $PATH; echo $HOSTNAME",
        ])
        .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "bye 5 1");
    assert_eq!(
        lines[1],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(lines[2].len(), 12, "HOSTNAME is the short id: {out}");

    let env_file = s.path("env");
    std::fs::write(&env_file, "# comment\nGREETING=from-file\n\n").unwrap();
    let out = s
        .rimg(["run", "--rm", "--env-file"])
        .arg(&env_file)
        .args(["app", "sh", "-c", "echo $GREETING"])
        .ok();
    assert_eq!(out, "from-file\n");

    let out = s
        .rimg(["run", "--rm", "-w", "/made/by/run", "busybox", "pwd"])
        .ok();
    assert_eq!(out, "/made/by/run\n");

    let out = s
        .rimg([
            "run",
            "--rm",
            "-u",
            "user",
            "busybox",
            "sh",
            "-c",
            "id; echo $HOME",
        ])
        .ok();
    assert_eq!(
        out,
        "uid=1000(user) gid=1000(user) groups=100(users),1000(user)\n/home/user\n"
    );
    let out = s
        .rimg(["run", "--rm", "-u", "4242:100", "busybox", "id"])
        .ok();
    assert_eq!(out, "uid=4242 gid=100(users) groups=100(users)\n");

    let out = s
        .rimg(["run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"])
        .ok();
    assert_eq!(out, "a b\n");
    let out = s
        .rimg(["run", "--rm", "--hostname", "web1", "busybox", "sh", "-c"])
        .arg("hostname; cat /etc/hostname; grep -c web1 /etc/hosts")
        .ok();
    assert_eq!(out, "web1\nweb1\n1\n");
    let out = s
        .rimg(["run", "--rm", "--network", "none", "busybox", "sh", "-c"])
        .arg("ls /sys/class/net")
        .ok();
    assert_eq!(out, "lo\n");
    assert!(container_dirs(&s).is_empty());
    assert_no_mounts(s.dir.path());
}

#[test]
fn the_container_sees_only_stdio_and_its_own_processes() {
    let s = store();
    let _c = Cleanup(&s);
    let out = s
        .rimg(["run", "--rm", "busybox", "sh", "-c"])
        .arg("ls /proc/self/fd; echo $$; ps -o pid,comm | wc -l; ls /dev | tr '\\n' ' '")
        .ok();
    let lines: Vec<&str> = out.lines().collect();
    // `ls` has its directory open as fd 3; nothing of rimg's is inherited.
    assert_eq!(lines[..4], ["0", "1", "2", "3"], "{out}");
    assert_eq!(lines[4], "1", "the container's shell is pid 1");
    assert_eq!(lines[5], "4", "header + sh + ps + wc: {out}");
    for d in [
        "full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero",
    ] {
        assert!(lines[6].split(' ').any(|x| x == d), "/dev/{d}: {out}");
    }
    assert_no_mounts(s.dir.path());
}

#[test]
fn bad_input_gets_dockers_errors_and_exit_codes() {
    let s = store();
    let _c = Cleanup(&s);
    let out = s.rimg(["run", "--rm", "busybox", "nosuchcmd"]).output();
    assert_eq!(code(&out), 127);
    assert_eq!(
        stderr(&out),
        "Error: unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH\n"
    );
    let out = s.rimg(["run", "busybox", "/etc/passwd"]).output();
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    assert!(stderr(&out).contains("permission denied"));

    let out = s
        .rimg(["run", "--rm", "-e", "=x", "busybox", "true"])
        .output();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("invalid environment variable: =x"));

    let out = s.rimg(["run", "--rm", "nosuchimage", "true"]).output();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("nosuchimage"), "{}", stderr(&out));

    let out = s
        .rimg(["run", "--rm", "-u", "nobody2", "busybox", "true"])
        .output();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("unable to find user nobody2"));

    s.rimg(["create", "--name", "taken", "busybox"]).ok();
    let out = s
        .rimg(["run", "--name", "taken", "busybox", "true"])
        .output();
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("The container name \"/taken\" is already in use"),
        "{}",
        stderr(&out)
    );
    for verb in [&["logs"][..], &["stop"], &["rm"], &["kill"], &["start"]] {
        let err = s.rimg(verb).arg("nosuchcontainer").fails();
        assert!(
            err.contains("No such container: nosuchcontainer"),
            "{verb:?}: {err}"
        );
    }
    let err = s.rimg(["exec", "taken", "true"]).fails();
    assert!(err.contains("is not running"), "{err}");
    // The failed start of `/etc/passwd` left its container as Created, unmounted.
    let ps = s.rimg(["ps", "-a", "--format", "{{.Status}}"]).ok();
    assert_eq!(ps, "Created\nCreated\n", "{ps}");
    assert_no_mounts(s.dir.path());
}

#[test]
fn a_pty_is_allocated_with_t() {
    require_tool("script");
    let s = store();
    let _c = Cleanup(&s);
    let out = sh(&format!(
        "RIMG_ROOT={} script -qec '{} run --rm -t busybox sh -c \"tty; echo \\$TERM; test -t 0 && echo stdin-tty\"' /dev/null",
        s.root().display(),
        bin("rimg").display()
    ));
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines, ["/dev/pts/0", "xterm", "stdin-tty"], "{out:?}");
    // exec -t gets its pty from the container's own devpts too.
    detached(&s, &["--name", "ttyless", "busybox", "sleep", "300"]);
    let out = sh(&format!(
        "RIMG_ROOT={} script -qec '{} exec -t ttyless sh -c \"tty; ls -1 /dev/pts\"' /dev/null",
        s.root().display(),
        bin("rimg").display()
    ));
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines, ["/dev/pts/0", "0", "ptmx"], "{out:?}");
    s.rimg(["rm", "-f", "ttyless"]).ok();
    // Without -t the output is a pipe.
    let out = s
        .rimg(["run", "--rm", "busybox", "sh", "-c", "tty; true"])
        .ok();
    assert_eq!(out, "not a tty\n");
    assert_no_mounts(s.dir.path());
}

#[test]
fn a_detached_counter_logs_lists_stops_and_is_removed() {
    let s = store();
    let _c = Cleanup(&s);
    let id = detached(
        &s,
        &[
            "--name",
            "counter",
            "-e",
            "INTERVAL=0.1",
            "app",
            "sh",
            "-c",
            "i=0; while true; do echo \"count $i\"; i=$((i+1)); sleep $INTERVAL; done",
        ],
    );
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    // With the image's INTERVAL=5 there would be one line in this time.
    assert!(
        eventually(20, || s.rimg(["logs", "counter"]).ok().lines().count() >= 4),
        "logs: {}",
        s.rimg(["logs", "counter"]).ok()
    );
    let logs = s.rimg(["logs", "counter"]).ok();
    assert!(logs.starts_with("count 0\ncount 1\ncount 2\n"), "{logs}");
    let tail = s.rimg(["logs", "--tail", "1", "-t", "counter"]).ok();
    assert_eq!(tail.lines().count(), 1);
    let (time, text) = tail.trim_end().split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.len() == 30, "{tail}");
    assert!(text.starts_with("count "), "{tail}");

    let ps = s.rimg(["ps"]).ok();
    let lines: Vec<&str> = ps.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND                  CREATED"),
        "{ps}"
    );
    assert!(
        lines[0].contains("   STATUS   ") && lines[0].ends_with("PORTS     NAMES"),
        "{ps}"
    );
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(lines[1].contains("   app   "), "{ps}");
    assert!(lines[1].contains("\"sh -c i=0; while tr…\""), "{ps}");
    assert!(
        lines[1].contains("   Up ") && lines[1].ends_with("counter"),
        "{ps}"
    );
    assert_eq!(s.rimg(["ps", "-q"]).ok(), format!("{}\n", &id[..12]));
    let json: serde_json::Value =
        serde_json::from_str(&s.rimg(["ps", "--format", "json"]).ok()).unwrap();
    assert_eq!(json["Names"], "counter");
    assert_eq!(json["State"], "running");

    let mounted = s.root().join("rimg/containers").join(&id).join("rootfs");
    assert_eq!(
        sh(&format!(
            "grep -c ' {} ' /proc/mounts || true",
            mounted.display()
        ))
        .trim(),
        "1"
    );
    // sh as pid 1 ignores SIGTERM, so stop kills it after the timeout, as Docker does.
    assert_eq!(s.rimg(["stop", "-t", "1", "counter"]).ok(), "counter\n");
    let ps = s
        .rimg(["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
        .ok();
    assert!(ps.starts_with("counter Exited (137) "), "{ps}");
    assert_eq!(s.rimg(["ps"]).ok().lines().count(), 1, "only the header");
    assert_no_mounts(s.dir.path());
    // The log survives the stop and stops growing.
    let n = s.rimg(["logs", "counter"]).ok().lines().count();
    assert!(n >= 4);

    assert_eq!(s.rimg(["rm", "counter"]).ok(), "counter\n");
    assert!(!s.root().join("rimg/containers").join(&id).exists());
    assert!(s.rimg(["ps", "-a", "-q"]).ok().is_empty());
    assert_no_mounts(s.dir.path());
}

#[test]
fn names_and_id_prefixes_resolve_and_rm_of_a_running_container_needs_f() {
    let s = store();
    let _c = Cleanup(&s);
    let id = detached(
        &s,
        &[
            "--name",
            "sleeper",
            "busybox",
            "sh",
            "-c",
            "echo up; sleep 300",
        ],
    );
    assert!(eventually(10, || s.rimg(["logs", &id[..5]]).ok() == "up\n"));
    assert_eq!(s.rimg(["logs", &id]).ok(), "up\n");
    assert_eq!(s.rimg(["logs", "sleeper"]).ok(), "up\n");
    // exec joins its namespaces: pid 1 is the container's command (sh exec'd the sleep).
    let out = s
        .rimg([
            "exec",
            &id[..8],
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; hostname; exit 7",
        ])
        .output();
    assert_eq!(code(&out), 7);
    assert_eq!(stdout(&out), format!("sleep 300 {}\n", &id[..12]));

    let err = s.rimg(["rm", "sleeper"]).fails();
    assert_eq!(
        err,
        "Error: cannot remove container \"/sleeper\": container is running: stop the container before removing or force remove\n"
    );
    assert!(s.rimg(["ps", "-q"]).ok().contains(&id[..12]));
    let err = s.rimg(["rmi", "busybox"]).fails();
    assert!(err.contains("is using its referenced image"), "{err}");

    assert_eq!(s.rimg(["kill", "-s", "TERM", "sleeper"]).ok(), "sleeper\n");
    // pid 1 without a handler ignores TERM: still running.
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.rimg(["ps", "-q"]).ok().contains(&id[..12]));
    assert_eq!(
        s.rimg(["rm", "-f", &id[..6]]).ok(),
        format!("{}\n", &id[..6])
    );
    assert!(s.rimg(["ps", "-aq"]).ok().is_empty());
    assert_no_mounts(s.dir.path());
    // No container uses busybox any more.
    s.rimg(["rmi", "busybox"]).ok();
}

#[test]
fn a_container_whose_monitor_was_killed_is_cleaned_up_by_rm_f() {
    let s = store();
    let _c = Cleanup(&s);
    let id = detached(&s, &["--name", "orphan", "busybox", "sleep", "300"]);
    let st = state(&s, &id);
    let monitor = st["monitor_pid"].as_i64().unwrap();
    let pid = st["pid"].as_i64().unwrap();
    assert!(alive(monitor) && alive(pid));
    sh(&format!("kill -9 {monitor}"));
    assert!(eventually(5, || !alive(monitor)));
    // The process lives on without its monitor: still running, so rm needs -f.
    let err = s.rimg(["rm", "orphan"]).fails();
    assert!(err.contains("container is running"), "{err}");
    s.rimg(["rm", "-f", "orphan"]).ok();
    assert!(
        eventually(5, || !alive(pid)),
        "the container process was killed"
    );
    assert!(!containers_dir(&s).join(&id).exists());
    assert_no_mounts(s.dir.path());
    let ls = s.rimgfs(["ls"]).ok();
    assert!(ls.lines().count() <= 1, "no rimgfs mount left: {ls}");
}

#[test]
fn run_rm_true_leaves_nothing_and_logs_record_foreground_runs() {
    let s = store();
    let _c = Cleanup(&s);
    let out = s.rimg(["run", "--rm", "busybox", "true"]).output();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).is_empty() && stderr(&out).is_empty());
    assert!(container_dirs(&s).is_empty());
    assert_no_mounts(s.dir.path());

    // Without --rm the container stays, exited, with its output in the log and its
    // changes in the upper dir; start runs it again over the same upper dir.
    let out = s
        .rimg(["run", "--name", "fg", "busybox", "sh", "-c"])
        .arg("echo out; echo err >&2; echo x >> /count; wc -l < /count")
        .output();
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("out\n1\n", "err\n")
    );
    assert_eq!(s.rimg(["logs", "fg"]).ok(), "out\n1\n");
    let ps = s.rimg(["ps", "-a", "--format", "{{.Status}}"]).ok();
    assert!(ps.starts_with("Exited (0) "), "{ps}");
    let id = container_dirs(&s).pop().unwrap();
    let upper = containers_dir(&s).join(&id).join("upper");
    assert_eq!(std::fs::read_to_string(upper.join("count")).unwrap(), "x\n");
    let out = s.rimg(["start", "-a", "fg"]).output();
    assert_eq!(stdout(&out), "out\n2\n");
    assert_eq!(
        std::fs::read_to_string(upper.join("count")).unwrap(),
        "x\nx\n"
    );
    s.rimg(["rm", "fg"]).ok();
    assert!(container_dirs(&s).is_empty());
    assert_no_mounts(s.dir.path());
}

#[test]
fn signals_reach_the_container_and_stdin_flows_with_i() {
    use std::io::{BufRead, BufReader};
    let s = store();
    let _c = Cleanup(&s);
    let out = s
        .rimg(["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"])
        .stdin_bytes(b"hello\n");
    assert_eq!(stdout(&out), "HELLO\n", "{}", stderr(&out));
    // Without -i the container's stdin is /dev/null.
    let out = s
        .rimg(["run", "--rm", "busybox", "cat"])
        .stdin_bytes(b"ignored\n");
    assert_eq!(stdout(&out), "");

    let mut child = std::process::Command::new(bin("rimg"))
        .env("RIMG_ROOT", s.root())
        .args(["run", "--rm", "busybox", "sh", "-c"])
        .arg("trap 'echo got TERM; exit 5' TERM; echo ready; while true; do sleep 0.1; done")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    sh(&format!("kill -TERM {}", child.id()));
    assert_eq!(lines.next().unwrap().unwrap(), "got TERM");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert!(container_dirs(&s).is_empty());
    assert_no_mounts(s.dir.path());
}

#[test]
fn the_library_resolves_a_container_and_pauses_it() {
    let s = store();
    let _c = Cleanup(&s);
    let id = detached(
        &s,
        &[
            "--name",
            "paused",
            "busybox",
            "sh",
            "-c",
            "echo x > /made; sleep 300",
        ],
    );
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let containers = rimg::container::Containers::open(&images).unwrap();
    let mut c = containers.resolve("paused").unwrap();
    assert_eq!(c.id(), id);
    assert_eq!(containers.resolve(&id[..4]).unwrap().id(), id);
    assert_eq!(c.command(), ["sh", "-c", "echo x > /made; sleep 300"]);
    assert_eq!(c.image_id(), &images.resolve("busybox").unwrap().id);
    assert!(eventually(10, || c.upper_dir().join("made").is_file()));
    c.pause().unwrap();
    // pause returns only once the container's cgroup is frozen.
    let freezer = format!("/sys/fs/cgroup/freezer/rimg/{id}/freezer.state");
    let frozen = || {
        std::fs::read_to_string(&freezer)
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(frozen(), "FROZEN");
    let ps = s.rimg(["ps", "--format", "{{.Status}}"]).ok();
    assert!(ps.ends_with("(Paused)\n"), "{ps}");
    c.unpause().unwrap();
    assert_eq!(frozen(), "THAWED");
    assert_eq!(c.status(), rimg::container::Status::Running);
    s.rimg(["rm", "-f", "paused"]).ok();
    assert_no_mounts(s.dir.path());
}
