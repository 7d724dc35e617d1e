//! The container's view of the filesystem, built by the container's first process inside
//! its new mount namespace (so nothing here is visible on the host, and everything goes away
//! with the namespace): the rootfs bind-mounted onto itself, `/proc` (with runc's masked and
//! read-only paths: `/proc/sys` cannot change the host's sysctls), a read-only `/sys`, a
//! minimal `/dev` on a nodev tmpfs (the host's standard device nodes bind-mounted), a nodev
//! rootfs, `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` bind-mounted
//! from files kept outside the rootfs, then `pivot_root` into it.
//!
//! Mount points the image lacks (`/proc`, `/dev`, `/sys`, the three `/etc` files) are created
//! in the rootfs, which with an overlay lands in the upper dir; `diff` and `commit` leave
//! exactly those paths out.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chdir, pivot_root};

/// The files bind-mounted into `/etc`, by name; the runtime writes them in a directory of
/// their own (the container's directory) so they never land in the rootfs.
pub const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

fn mnt(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(src, target, fstype, flags, data)
        .map_err(|e| format!("mounting {}: {e}", target.display()))
}

/// Makes `path` a directory unless it is one; refuses a symlink (it could point outside the
/// rootfs, and we are root on the host).
fn ensure_dir(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "{} in the image is not a directory; cannot mount over it",
            path.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(path)
            .map_err(|e| format!("creating mount point {}: {e}", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Makes `path` a regular file unless it is one; `false` when it is something else (a
/// symlink, say), in which case it is left alone and not mounted over.
fn ensure_file(path: &Path) -> Result<bool, String> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                ensure_dir(parent)?;
            }
            fs::write(path, b"")
                .map_err(|e| format!("creating mount point {}: {e}", path.display()))?;
            Ok(true)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn populate_dev(dev: &Path) -> Result<(), String> {
    // The standard devices are the host's nodes bind-mounted onto files of a nodev /dev
    // (runc does so when it cannot mknod): a node the container makes itself, with the
    // MKNOD capability Docker grants, opens nowhere (its /dev, /dev/shm and rootfs are
    // nodev), so no host disk, loop device or console is reachable.
    for name in STANDARD_DEVICES {
        let p = dev.join(name);
        fs::write(&p, b"").map_err(|e| format!("creating {}: {e}", p.display()))?;
        let host = Path::new("/dev").join(name);
        mnt(Some(&host), &p, None, MsFlags::MS_BIND, None)?;
    }
    for d in ["pts", "shm", "mqueue"] {
        fs::create_dir(dev.join(d)).map_err(|e| format!("mkdir /dev/{d}: {e}"))?;
    }
    mnt(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mnt(
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    fs::set_permissions(dev.join("shm"), fs::Permissions::from_mode(0o1777))
        .map_err(|e| format!("chmod /dev/shm: {e}"))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        symlink(target, dev.join(link)).map_err(|e| format!("symlink /dev/{link}: {e}"))?;
    }
    Ok(())
}

/// The device nodes of the container's `/dev`: Docker's default set (less `console`, which
/// a container gets only with a terminal, and `ptmx`, a link into its own devpts).
const STANDARD_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Makes in `dst` every device node of the host's `/dev` (`src`) it lacks, directories
/// included, as Docker does for `--privileged` (not the host's pts, shm or mqueue).
fn copy_host_devices(src: &Path, dst: &Path) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let entries = fs::read_dir(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if src == Path::new("/dev") && ["pts", "shm", "mqueue"].iter().any(|n| name == *n) {
            continue;
        }
        let (from, to) = (e.path(), dst.join(&name));
        let Ok(m) = fs::symlink_metadata(&from) else {
            continue;
        };
        let ft = m.file_type();
        if ft.is_dir() {
            if ensure_dir(&to).is_ok() {
                copy_host_devices(&from, &to)?;
            }
        } else if (ft.is_char_device() || ft.is_block_device()) && !to.exists() {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else {
                nix::sys::stat::SFlag::S_IFBLK
            };
            nix::sys::stat::mknod(&to, kind, Mode::from_bits_truncate(m.mode()), m.rdev())
                .map_err(|e| format!("mknod {}: {e}", to.display()))?;
        }
    }
    Ok(())
}

/// Makes the bind mount at `path` nodev, keeping its other flags.
fn remount_nodev(path: &Path) -> Result<(), String> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let have = statvfs(path)
        .map_err(|e| format!("statfs {}: {e}", path.display()))?
        .flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV;
    for (f, m) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(f) {
            flags |= m;
        }
    }
    mnt(None, path, None, flags, None)
}

/// What runc hides under /proc (kernel memory, keys, timers) and what it makes read-only
/// (sysctls, which with the host network would change the host's).
const PROC_MASKED: [&str; 8] = [
    "acpi",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

fn protect_proc(proc: &Path, null: &Path) -> Result<(), String> {
    for name in PROC_MASKED {
        let p = proc.join(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => mnt(
                Some(Path::new("tmpfs")),
                &p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )?,
            Ok(_) => mnt(Some(null), &p, None, MsFlags::MS_BIND, None)?,
            Err(_) => {}
        }
    }
    for name in PROC_READ_ONLY {
        let p = proc.join(name);
        if fs::symlink_metadata(&p).is_err() {
            continue;
        }
        mnt(Some(&p), &p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        mnt(
            None,
            &p,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Builds the container's mounts over `rootfs` and pivots into it. `etc_dir` holds the
/// [`ETC_FILES`]. Runs in the container's first process, in its new mount namespace.
/// `privileged` (`--privileged`, as Docker): no `nodev`, the host's device nodes in `/dev`, a
/// writable `/sys`, nothing of `/proc` masked or read-only.
pub(crate) fn enter(rootfs: &Path, etc_dir: &Path, privileged: bool) -> Result<(), String> {
    let old_umask = umask(Mode::empty());
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    mnt(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    // Device nodes the image ships (or the container makes) do not open.
    if !privileged {
        remount_nodev(rootfs)?;
    }
    let proc = rootfs.join("proc");
    ensure_dir(&proc)?;
    mnt(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    let sys = rootfs.join("sys");
    ensure_dir(&sys)?;
    // A read-only sysfs, as Docker gives; not fatal where the kernel refuses it.
    let _ = mnt(
        Some(Path::new("sysfs")),
        &sys,
        Some("sysfs"),
        if privileged {
            MsFlags::empty()
        } else {
            MsFlags::MS_RDONLY
        } | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    );
    let dev = rootfs.join("dev");
    ensure_dir(&dev)?;
    mnt(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        if privileged {
            MsFlags::empty()
        } else {
            MsFlags::MS_NODEV
        } | MsFlags::MS_NOSUID
            | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    populate_dev(&dev)?;
    if privileged {
        copy_host_devices(Path::new("/dev"), &dev)?;
    } else {
        protect_proc(&proc, &dev.join("null"))?;
    }
    for name in ETC_FILES {
        let src = etc_dir.join(name);
        if !src.is_file() {
            continue;
        }
        let target = rootfs.join("etc").join(name);
        if ensure_file(&target)? {
            mnt(Some(&src), &target, None, MsFlags::MS_BIND, None)?;
        }
    }
    umask(old_umask);
    chdir(rootfs).map_err(|e| format!("chdir {}: {e}", rootfs.display()))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root {}: {e}", rootfs.display()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Writes the [`ETC_FILES`] for a container named `hostname` into `dir`: the host's
/// `/etc/hosts` (host network) or a loopback-only one, plus the container's own name; the
/// hostname; the host's `/etc/resolv.conf`.
pub fn write_etc_files(dir: &Path, hostname: &str, host_network: bool) -> io::Result<()> {
    let mut hosts = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        String::new()
    };
    if !hosts
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == "localhost"))
    {
        hosts.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    }
    if !hosts.is_empty() && !hosts.ends_with('\n') {
        hosts.push('\n');
    }
    hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    fs::write(dir.join("hosts"), hosts)?;
    fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    fs::write(dir.join("resolv.conf"), resolv)?;
    Ok(())
}
