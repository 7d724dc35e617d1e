//! Isolation (issue 18), from a hostile image author's view: every attack that worked against
//! rimg's containers and not against Docker's defaults, reproduced, and refused now — an
//! unprivileged host user running the image's setuid binary through the store, host devices
//! opened after `mknod` or shipped in the image, the host's keyring, namespaces and mounts
//! without seccomp — plus what `--cap-add`, `--cap-drop` and `--security-opt` change, as
//! `/proc/self/status` shows it under Docker.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rimg_tests::containers::{assert_no_mounts, container_dir, Cleanup};
use rimg_tests::tree::Layer;
use rimg_tests::{busybox_tar, require_tool, sh, Store};

/// Docker's default capability set, as `CapEff`/`CapBnd` show it.
const DOCKER_CAPS: &str = "00000000a80425fb";

/// A store whose parent directory is world-traversable, as `/var/lib` is (a test's temp dir
/// is 0700, which would hide the store from other users whatever rimg does).
fn store() -> Store {
    let s = Store::new();
    let parent = s.root().parent().unwrap().to_path_buf();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
    s.busybox("busybox:latest");
    s
}

/// busybox plus what a hostile image ships: a setuid-root copy of busybox, and `extra`.
fn hostile_image(s: &Store, extra: Layer) {
    let bb = fs::read(busybox_tar()).unwrap();
    let mut busybox_bin = Vec::new();
    for e in tar::Archive::new(&bb[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("bin/busybox") {
            std::io::Read::read_to_end(&mut e, &mut busybox_bin).unwrap();
        }
    }
    assert!(!busybox_bin.is_empty(), "busybox binary in the image tar");
    let top = extra.file("suid-busybox", &busybox_bin, 0o4755).build();
    s.image_from_layers(&[bb, top], "hostile:1");
}

/// Runs `argv` as `nobody` (uid and gid 65534, no groups) on the host.
fn as_nobody(argv: &[&str]) -> std::process::Output {
    require_tool("setpriv");
    Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args(argv)
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[track_caller]
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    rimg_tests::containers::wait_until(what, cond);
}

#[test]
fn an_unprivileged_host_user_cannot_reach_a_running_containers_rootfs() {
    let s = store();
    let _c = Cleanup(&s);
    hostile_image(&s, Layer::new());
    s.rimg(["run", "-d", "--name", "c", "hostile:1", "sleep", "1000"])
        .ok();
    let dir = container_dir(&s, "c");
    let suid = dir.join("rootfs/suid-busybox");
    wait_for("the rootfs to be mounted", || suid.exists());
    assert_eq!(mode(&suid) & 0o4000, 0o4000, "the image's binary is setuid");
    // The method works: nobody runs a binary it can reach.
    let reach = as_nobody(&["/bin/sh", "-c", "id -u"]);
    assert_eq!(String::from_utf8_lossy(&reach.stdout).trim(), "65534");
    // The attack: run the image's setuid-root binary through the container's mounted rootfs
    // (or the FUSE lower below it) to become root on the host.
    let attack = as_nobody(&[suid.to_str().unwrap(), "id", "-u"]);
    assert!(
        !attack.status.success() && attack.stdout.is_empty(),
        "nobody ran the container's setuid binary: {attack:?}"
    );
    let listing = as_nobody(&["ls", s.root().join("rimg/mounts").to_str().unwrap()]);
    assert!(
        !listing.status.success(),
        "nobody listed the store's mounts"
    );
    for d in [s.root(), s.root().join("rimg"), dir.clone()] {
        assert_eq!(mode(&d) & 0o077, 0, "{} is {:o}", d.display(), mode(&d));
    }
    s.rimg(["rm", "-f", "c"]).ok();
    assert_no_mounts(&s.root());
}

#[test]
fn a_store_created_world_readable_is_tightened_when_root_opens_it() {
    let s = store();
    for d in [s.root(), s.root().join("rimg")] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    s.rimg(["images"]).ok();
    assert_eq!(mode(&s.root()), 0o700);
    assert_eq!(mode(&s.root().join("rimg")), 0o700);
}

/// Runs `script` in a new container of `image` with `flags`; returns stdout + stderr.
fn run_script(s: &Store, flags: &[&str], image: &str, script: &str) -> String {
    let out = s
        .rimg(["run", "--rm"])
        .args(flags)
        .args([image, "sh", "-c", script])
        .output();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn status_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"))
        .trim()
        .to_string()
}

#[test]
fn a_default_container_refuses_namespaces_mounts_and_sysrq_as_docker_does() {
    let s = store();
    let _c = Cleanup(&s);
    let out = run_script(
        &s,
        &[],
        "busybox",
        "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status
         unshare -U true; echo unshare-user=$?
         unshare -m true; echo unshare-mount=$?
         mkdir -p /mnt; mount -t tmpfs none /mnt; echo mount=$?
         echo h > /proc/sysrq-trigger; echo sysrq=$?
         echo 1 > /proc/sys/kernel/sysrq; echo sysctl=$?
         echo x > /sys/kernel/uevent_helper; echo sysfs=$?",
    );
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out}");
    assert_eq!(status_field(&out, "CapEff"), DOCKER_CAPS, "{out}");
    assert_eq!(status_field(&out, "CapBnd"), DOCKER_CAPS, "{out}");
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000", "{out}");
    for refused in [
        "unshare-user",
        "unshare-mount",
        "mount",
        "sysrq",
        "sysctl",
        "sysfs",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{refused}=")) && !l.ends_with("=0")),
            "{refused} was not refused:\n{out}"
        );
    }
    assert!(out.contains("Operation not permitted"), "{out}");
    assert_no_mounts(&s.root());
}

/// A loop device over a file holding a secret, detached on drop.
struct LoopDevice {
    dev: String,
}

impl LoopDevice {
    fn new(dir: &Path) -> Self {
        require_tool("losetup");
        let file = dir.join("secret.img");
        let mut data = b"SECRETDISK".to_vec();
        data.resize(1 << 20, 0);
        fs::write(&file, data).unwrap();
        let dev = sh(&format!("losetup -f --show {}", file.display()))
            .trim()
            .to_string();
        LoopDevice { dev }
    }

    fn major_minor(&self) -> (u64, u64) {
        let rdev = fs::metadata(&self.dev).unwrap().rdev();
        (libc_major(rdev), libc_minor(rdev))
    }
}

fn libc_major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn libc_minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn a_host_disk_made_with_mknod_or_shipped_in_the_image_does_not_open() {
    let s = store();
    let _c = Cleanup(&s);
    let disk = LoopDevice::new(s.root().parent().unwrap());
    let (major, minor) = disk.major_minor();
    hostile_image(
        &s,
        Layer::new().device("shipped-disk", true, major as u32, minor as u32),
    );
    let script = format!(
        "mknod /made-disk b {major} {minor}; echo mknod=$?
         mknod /dev/made-disk b {major} {minor}
         mknod /dev/shm/made-disk b {major} {minor}
         for d in /made-disk /dev/made-disk /dev/shm/made-disk /shipped-disk; do
           head -c 10 $d; echo read $d=$?
         done
         head -c 3 /dev/zero | wc -c; echo hi > /dev/null; echo null=$?"
    );
    let out = run_script(&s, &[], "hostile:1", &script);
    assert!(
        !out.contains("SECRETDISK"),
        "the host disk was read:\n{out}"
    );
    // CAP_MKNOD is Docker's too: making the node works, opening it does not.
    assert!(out.contains("mknod=0"), "{out}");
    for d in [
        "/made-disk",
        "/dev/made-disk",
        "/dev/shm/made-disk",
        "/shipped-disk",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("read {d}=")) && !l.ends_with("=0")),
            "{d} opened:\n{out}"
        );
    }
    // The standard devices still work.
    assert!(out.contains("\n3\n") || out.starts_with("3\n"), "{out}");
    assert!(out.contains("null=0"), "{out}");
    // With SYS_ADMIN the container can mount a tmpfs without nodev; the devices cgroup
    // still refuses the disk there, as Docker's does.
    let out = run_script(
        &s,
        &["--cap-add", "SYS_ADMIN"],
        "hostile:1",
        &format!(
            "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted
             mknod /mnt/disk b {major} {minor}; head -c 10 /mnt/disk; echo read=$?"
        ),
    );
    assert!(out.contains("mounted"), "{out}");
    assert!(
        !out.contains("SECRETDISK"),
        "the host disk was read:\n{out}"
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    assert_no_mounts(&s.root());
}

#[test]
fn every_container_has_a_cgroup_of_its_own_removed_with_it() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["run", "-d", "--name", "c", "busybox", "sleep", "1000"])
        .ok();
    let dir = container_dir(&s, "c");
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    let cgroup = format!("/rimg/{id}");
    let out = s.rimg(["exec", "c", "cat", "/proc/1/cgroup"]).ok();
    assert!(
        out.lines().any(|l| l.ends_with(&cgroup)),
        "pid 1 is not in {cgroup}:\n{out}"
    );
    let out = s.rimg(["exec", "c", "cat", "/proc/self/cgroup"]).ok();
    assert!(
        out.lines().any(|l| l.ends_with(&cgroup)),
        "an exec'd process is not in {cgroup}:\n{out}"
    );
    let devices = Path::new("/sys/fs/cgroup/devices").join(cgroup.trim_start_matches('/'));
    if devices.exists() {
        let list = fs::read_to_string(devices.join("devices.list")).unwrap();
        assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
        assert!(!list.lines().any(|l| l == "a *:* rwm"), "{list}");
    }
    s.rimg(["rm", "-f", "c"]).ok();
    let left: Vec<String> = fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join("rimg").join(&id))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    assert_no_mounts(&s.root());
}

const KEY_HELPER: &str = r#"
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#define KEY_SPEC_SESSION_KEYRING -3
#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_SEARCH 10
#define KEYCTL_UNLINK 9
int main(int argc, char **argv) {
    long r;
    if (argc > 1 && !strcmp(argv[1], "ses")) {
        r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
    } else if (argc > 2 && !strcmp(argv[1], "add")) {
        r = syscall(SYS_add_key, "user", argv[2], "hostsecret", 10, KEY_SPEC_SESSION_KEYRING);
    } else if (argc > 2 && !strcmp(argv[1], "find")) {
        r = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", argv[2], 0);
    } else if (argc > 2 && !strcmp(argv[1], "unlink")) {
        r = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", argv[2], 0);
        if (r >= 0) r = syscall(SYS_keyctl, KEYCTL_UNLINK, r, KEY_SPEC_SESSION_KEYRING);
    } else if (argc > 1 && !strcmp(argv[1], "forbidden")) {
        /* Calls Docker's profile refuses: each prints its errno. */
        struct { const char *name; long nr; long a, b, c; } calls[] = {
            {"kexec_load", SYS_kexec_load, 0, 0, 0},
            {"open_by_handle_at", SYS_open_by_handle_at, -100, 0, 0},
            {"bpf", SYS_bpf, 5, 0, 0},
            {"init_module", SYS_init_module, 0, 0, (long)""},
            {"finit_module", SYS_finit_module, 0, (long)"", 0},
            {"unshare", SYS_unshare, 0x10000000, 0, 0},
            {"setns", SYS_setns, 0, 0, 0},
        };
        for (unsigned i = 0; i < sizeof calls / sizeof calls[0]; i++) {
            errno = 0;
            long x = syscall(calls[i].nr, calls[i].a, calls[i].b, calls[i].c, 0, 0);
            printf("%s %s\n", calls[i].name, x < 0 ? strerror(errno) : "succeeded");
        }
        return 0;
    } else {
        return 2;
    }
    if (r < 0) { printf("error %s\n", strerror(errno)); return 1; }
    printf("%ld\n", r);
    return 0;
}
"#;

/// A static helper that makes the keyring calls (busybox has no `keyctl`) and the system
/// calls Docker's profile refuses.
fn key_helper(dir: &Path) -> Vec<u8> {
    require_tool("gcc");
    let src = dir.join("keys.c");
    let exe = dir.join("keys");
    fs::write(&src, KEY_HELPER).unwrap();
    sh(&format!(
        "gcc -static -O -o {} {}",
        exe.display(),
        src.display()
    ));
    fs::read(&exe).unwrap()
}

#[test]
fn the_hosts_keyring_is_out_of_reach() {
    let s = store();
    let _c = Cleanup(&s);
    let dir = s.root().parent().unwrap().to_path_buf();
    let helper = key_helper(&dir);
    hostile_image(&s, Layer::new().file("keys", &helper, 0o755));
    // Host root keeps a key in the session keyring the container would inherit.
    let name = format!("rimg-isolation-{}", std::process::id());
    let host = dir.join("keys");
    let added = Command::new(&host).args(["add", &name]).output().unwrap();
    assert!(added.status.success(), "{added:?}");
    let host_ring = sh(&format!("{} ses", host.display()));
    let _unlink = KeyOnHost(host.clone(), name.clone());
    // Docker's profile refuses the keyring calls outright.
    let out = run_script(
        &s,
        &[],
        "hostile:1",
        &format!("/keys add x; /keys find {name}"),
    );
    assert_eq!(
        out.matches("error Operation not permitted").count(),
        2,
        "{out}"
    );
    // Without seccomp the container is in a session keyring of its own: the host's key is
    // not found.
    let out = run_script(
        &s,
        &["--security-opt", "seccomp=unconfined"],
        "hostile:1",
        &format!("/keys ses; /keys find {name}"),
    );
    let mut lines = out.lines();
    let ring = lines.next().unwrap_or_default();
    assert_ne!(ring.trim(), host_ring.trim(), "{out}");
    assert!(ring.trim().parse::<i64>().is_ok(), "{out}");
    assert_eq!(
        lines.next(),
        Some("error Required key not available"),
        "{out}"
    );
}

/// Unlinks the test's key from the host's session keyring on drop.
struct KeyOnHost(PathBuf, String);

impl Drop for KeyOnHost {
    fn drop(&mut self) {
        let _ = Command::new(&self.0).args(["unlink", &self.1]).output();
    }
}

#[test]
fn cap_add_and_cap_drop_change_what_the_process_holds_as_in_docker() {
    let s = store();
    let _c = Cleanup(&s);
    let status = "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status";
    let out = run_script(&s, &["--cap-drop", "ALL"], "busybox", status);
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000000", "{out}");
    let out = run_script(
        &s,
        &["--cap-add", "SYS_ADMIN"],
        "busybox",
        "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted",
    );
    assert!(out.contains("mounted"), "{out}");
    let out = run_script(
        &s,
        &["--cap-drop", "chown", "--cap-add", "CAP_NET_ADMIN"],
        "busybox",
        status,
    );
    // a80425fb less CHOWN (bit 0), plus NET_ADMIN (bit 12).
    assert_eq!(status_field(&out, "CapEff"), "00000000a80435fa", "{out}");
    // Another user execs with no capabilities, the bounding set unchanged (Docker's).
    let out = run_script(&s, &["-u", "1000"], "busybox", status);
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(status_field(&out, "CapBnd"), DOCKER_CAPS, "{out}");
    let err = s
        .rimg(["run", "--rm", "--cap-add", "FLY", "busybox", "true"])
        .fails();
    assert!(err.contains("unknown capability: \"FLY\""), "{err}");
    assert_no_mounts(&s.root());
}

#[test]
fn security_opt_sets_no_new_privileges_and_seccomp_profiles() {
    let s = store();
    let _c = Cleanup(&s);
    let status = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status";
    let out = run_script(
        &s,
        &["--security-opt", "no-new-privileges"],
        "busybox",
        status,
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    let out = run_script(
        &s,
        &["--security-opt", "seccomp=unconfined"],
        "busybox",
        status,
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    // A profile of one's own, in Docker's format: mkdir refused with EACCES.
    let profile = s.root().parent().unwrap().join("profile.json");
    fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let out = run_script(
        &s,
        &["--security-opt", &format!("seccomp={}", profile.display())],
        "busybox",
        "mkdir /x; echo mkdir=$?; touch /y; echo touch=$?",
    );
    assert!(out.contains("mkdir=1") && out.contains("touch=0"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    let err = s
        .rimg([
            "run",
            "--rm",
            "--security-opt",
            "seccomp=/no/such.json",
            "busybox",
            "true",
        ])
        .fails();
    assert!(err.contains("seccomp profile"), "{err}");
    assert_no_mounts(&s.root());
}

#[test]
fn an_exec_is_confined_as_the_container() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg([
        "run",
        "-d",
        "--name",
        "c",
        "--cap-drop",
        "ALL",
        "busybox",
        "sleep",
        "1000",
    ])
    .ok();
    let out = s
        .rimg([
            "exec",
            "c",
            "grep",
            "-E",
            "^(CapEff|Seccomp):",
            "/proc/self/status",
        ])
        .ok();
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
    let out = s.rimg(["exec", "c", "unshare", "-m", "true"]).output();
    assert!(!out.status.success(), "{out:?}");
    s.rimg(["rm", "-f", "c"]).ok();
    assert_no_mounts(&s.root());
}

#[test]
fn privileged_gets_every_capability_no_seccomp_and_the_host_devices_as_in_docker() {
    let s = store();
    let _c = Cleanup(&s);
    let disk = LoopDevice::new(s.root().parent().unwrap());
    let name = Path::new(&disk.dev).file_name().unwrap().to_str().unwrap();
    let out = run_script(
        &s,
        &["--privileged"],
        "busybox",
        &format!(
            "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; head -c 10 /dev/{name}; echo"
        ),
    );
    let eff = status_field(&out, "CapEff");
    assert_eq!(eff, status_field(&out, "CapBnd"), "{out}");
    let bits = u64::from_str_radix(&eff, 16).unwrap();
    assert_ne!(bits & (1 << 21), 0, "no CAP_SYS_ADMIN: {out}");
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert!(
        out.contains("SECRETDISK"),
        "the host's devices are not there:\n{out}"
    );
    assert_no_mounts(&s.root());
}

#[test]
fn the_calls_dockers_profile_refuses_are_refused() {
    let s = store();
    let _c = Cleanup(&s);
    let helper = key_helper(s.root().parent().unwrap());
    hostile_image(&s, Layer::new().file("keys", &helper, 0o755));
    let out = run_script(&s, &[], "hostile:1", "/keys forbidden");
    for call in [
        "kexec_load",
        "open_by_handle_at",
        "bpf",
        "init_module",
        "finit_module",
        "unshare",
        "setns",
    ] {
        assert!(
            out.lines()
                .any(|l| l == format!("{call} Operation not permitted")),
            "{call} was not refused with EPERM:\n{out}"
        );
    }
}
