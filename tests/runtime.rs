//! The runtime library (`rimg::runtime`) on a plain directory: the busybox rootfs extracted
//! by GNU tar with kernel overlayfs on top, as a container's mount would be.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rimg::runtime::{
    spawn, write_etc_files, Launch, Network, OutputSink, ProcessSpec, RuntimeError, Stdio, Stream,
    Supervisor, Target,
};
use rimg_tests::{busybox_tar, sh};

/// An overlay over the extracted busybox rootfs; unmounted on drop.
struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    fn new() -> Rootfs {
        let dir = tempfile::Builder::new()
            .prefix("rimg-rt-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for s in ["lower", "upper", "work", "merged", "etc"] {
            std::fs::create_dir(d.join(s)).unwrap();
        }
        sh(&format!(
            "tar -xf {} -C {}",
            busybox_tar().display(),
            d.join("lower").display()
        ));
        sh(&format!(
            "mount -t overlay overlay -o lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work {0}/merged",
            d.display()
        ));
        write_etc_files(&d.join("etc"), "testhost", true).unwrap();
        Rootfs { dir }
    }
    fn path(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.path("merged"))
            .status();
    }
}

#[derive(Default)]
struct Capture {
    out: Vec<u8>,
    err: Vec<u8>,
}

impl OutputSink for Capture {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        match stream {
            Stream::Stdout => self.out.extend_from_slice(data),
            Stream::Stderr => self.err.extend_from_slice(data),
        }
    }
}

fn spec(argv: &[&str]) -> ProcessSpec {
    ProcessSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cwd: "/".into(),
        hostname: "testhost".into(),
        ..Default::default()
    }
}

fn run(root: &Rootfs, spec: &ProcessSpec) -> Result<(i32, String, String), RuntimeError> {
    let mut sup = Supervisor::new()?;
    let merged = root.path("merged");
    let etc = root.path("etc");
    let p = spawn(&Launch {
        spec,
        target: Target::Rootfs {
            rootfs: &merged,
            etc_dir: &etc,
        },
        stdin: Stdio::Null,
        output: Stdio::Piped,
    })?;
    let mut cap = Capture::default();
    let code = sup.wait(p, None, &mut cap)?;
    Ok((
        code,
        String::from_utf8_lossy(&cap.out).into_owned(),
        String::from_utf8_lossy(&cap.err).into_owned(),
    ))
}

fn mounts_under(p: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(1)
                .is_some_and(|m| m.starts_with(&*p.to_string_lossy()))
        })
        .map(String::from)
        .collect()
}

#[test]
fn exit_codes_and_signals_come_back() {
    let r = Rootfs::new();
    assert_eq!(run(&r, &spec(&["sh", "-c", "exit 3"])).unwrap().0, 3);
    assert_eq!(run(&r, &spec(&["true"])).unwrap().0, 0);
    // pid 1 ignores signals it has no handler for, even SIGKILL from inside; from the
    // host, SIGKILL ends it.
    assert_eq!(
        run(&r, &spec(&["sh", "-c", "kill -9 $$; exit 4"]))
            .unwrap()
            .0,
        4
    );
    let mut sup = Supervisor::new().unwrap();
    let (merged, etc) = (r.path("merged"), r.path("etc"));
    let sleeper = spec(&["sleep", "100"]);
    let p = spawn(&Launch {
        spec: &sleeper,
        target: Target::Rootfs {
            rootfs: &merged,
            etc_dir: &etc,
        },
        stdin: Stdio::Null,
        output: Stdio::Piped,
    })
    .unwrap();
    sh(&format!("kill -9 {}", p.pid));
    assert_eq!(sup.wait(p, None, &mut Capture::default()).unwrap(), 137);
    let (code, out, err) = run(&r, &spec(&["sh", "-c", "echo out; echo err >&2; exit 1"])).unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (1, "out\n", "err\n"));
}

#[test]
fn the_process_is_pid_1_in_its_own_namespaces_with_only_stdio_open() {
    let r = Rootfs::new();
    let (code, out, err) = run(
        &r,
        &spec(&[
            "sh",
            "-c",
            "echo $$; hostname; cat /etc/hostname; ls /proc/self/fd; ls /dev; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -c testhost /etc/hosts",
        ]),
    )
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "testhost");
    assert_eq!(lines[2], "testhost");
    // ls opens its directory as fd 3; nothing else of the parent's is inherited.
    assert_eq!(lines[3..7], ["0", "1", "2", "3"], "{out}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(lines.contains(&dev), "/dev/{dev} missing: {out}");
    }
    assert!(out.contains("sh -c echo $$"), "{out}");
    assert_eq!(lines.last(), Some(&"1"));
    // Nothing the runtime mounted is visible on the host; the /etc files' contents stayed
    // out of the upper dir.
    assert_eq!(
        mounts_under(&r.path("merged")).len(),
        1,
        "{:?}",
        mounts_under(&r.path("merged"))
    );
    let hosts = r.path("upper/etc/hosts");
    assert!(!hosts.exists() || std::fs::metadata(&hosts).unwrap().len() == 0);
}

#[test]
fn user_workdir_and_env_are_applied() {
    let r = Rootfs::new();
    let mut s = spec(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; pwd; echo $HOME $FOO; touch f",
    ]);
    s.user = "user".into();
    s.cwd = "/home/user/new/dir".into();
    s.env.push("FOO=bar".into());
    let (code, out, err) = run(&r, &s).unwrap();
    // The working directory is made by root, as Docker makes it.
    assert_eq!(code, 1, "{out} {err}");
    assert!(err.contains("Permission denied"), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "1000",
            "1000",
            "1000 100",
            "/home/user/new/dir",
            "/home/user bar"
        ]
    );
    let mut s = spec(&["sh", "-c", "id -u; id -g; id -G"]);
    s.user = "4242:7".into();
    let (_, out, _) = run(&r, &s).unwrap();
    assert_eq!(out, "4242\n7\n7\n");
    let mut s = spec(&["true"]);
    s.user = "nosuch".into();
    let e = run(&r, &s).unwrap_err();
    assert_eq!(e.exit_code(), 125);
    assert!(e.to_string().contains("unable to find user nosuch"), "{e}");
}

#[test]
fn missing_and_non_executable_commands_fail_as_docker_says() {
    let r = Rootfs::new();
    let e = run(&r, &spec(&["nosuchcmd", "x"])).unwrap_err();
    assert_eq!(e.exit_code(), 127);
    assert_eq!(
        e.to_string(),
        "unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH"
    );
    let e = run(&r, &spec(&["/etc/passwd"])).unwrap_err();
    assert_eq!(e.exit_code(), 126, "{e}");
    let e = run(&r, &spec(&["/no/such"])).unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
    assert_eq!(mounts_under(&r.path("merged")).len(), 1);
}

#[test]
fn network_none_has_only_loopback_up() {
    let r = Rootfs::new();
    let mut s = spec(&["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/operstate; ping -c1 -W1 127.0.0.1 >/dev/null && echo pong"]);
    s.network = Network::None;
    let (code, out, err) = run(&r, &s).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().next(), Some("lo"), "{out}");
    assert!(out.contains("pong"), "{out}{err}");
}

#[test]
fn a_tty_is_allocated_inside_the_container() {
    let r = Rootfs::new();
    let mut s = spec(&["sh", "-c", "tty; echo $TERM; stty size"]);
    s.tty = true;
    s.env.push("TERM=xterm".into());
    let (code, out, _) = run(&r, &s).unwrap();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines[0], "/dev/pts/0", "{out}");
    assert_eq!(lines[1], "xterm");
    let _ = std::io::stdin().as_fd();
}

#[test]
fn proc_sys_is_read_only_and_kernel_files_are_masked() {
    let r = Rootfs::new();
    let (code, out, err) = run(
        &r,
        &spec(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/kernel/printk_ratelimit || echo refused; wc -c < /proc/keys; wc -c < /proc/timer_list; cat /proc/sys/kernel/ostype",
        ]),
    )
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "refused\n0\n0\nLinux\n", "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn root_in_the_container_has_only_dockers_default_capabilities() {
    let r = Rootfs::new();
    let (code, out, err) = run(
        &r,
        &spec(&[
            "sh",
            "-c",
            "grep -E '^Cap(Eff|Bnd)' /proc/self/status; mount -t tmpfs t /mnt || echo no-mount",
        ]),
    )
    .unwrap();
    assert_eq!(code, 0, "{err}");
    // Docker's default set: 0x00000000a80425fb.
    assert_eq!(
        out, "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nno-mount\n",
        "{err}"
    );
}
