//! The container's view of the filesystem, built by the container's first process inside
//! its new mount namespace (so nothing here is visible on the host, and everything goes away
//! with the namespace): the rootfs bind-mounted onto itself, `/proc` (with runc's masked and
//! read-only paths: `/proc/sys` cannot change the host's sysctls), a read-only `/sys`, a
//! minimal `/dev` on tmpfs, `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` bind-mounted
//! from files kept outside the rootfs, then `pivot_root` into it.
//!
//! Mount points the image lacks (`/proc`, `/dev`, `/sys`, the three `/etc` files) are created
//! in the rootfs, which with an overlay lands in the upper dir; `diff` and `commit` leave
//! exactly those paths out. Directories the runtime creates are 0755 and files 0644, owned by
//! root, as Docker's. An `/etc` file that is a symlink in the image is resolved inside the
//! rootfs (as if it were `/`, as runc's securejoin does) and mounted where it leads; one that
//! is a FIFO, socket or device is mounted over.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(path).map_err(|e| format!("creating mount point {}: {e}", path.display()))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Creates the directory `path` 0755 whatever the umask, as Docker's runtime does (a
/// world-writable `/etc` would let any container user plant `/etc/ld.so.preload`).
fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// How many symlinks [`resolve_in_root`] follows before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// Where `path` leads inside `root`, as a path relative to `root` with every symlink of it
/// resolved as if `root` were `/`: an absolute target starts again at `root` and `..` never
/// climbs above it, so the result is always inside. Components that do not exist are kept as
/// written. What `filepath-securejoin` does for runc; a link inside `/proc` is an error.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    fn parts(p: &Path) -> impl Iterator<Item = OsString> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
    }
    let mut pending: VecDeque<OsString> = parts(path).collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                // procfs links are magic (`/proc/self/fd/N` is whatever file N is, the host's
                // included): never followed, as openat2's RESOLVE_NO_MAGICLINKS.
                if resolved.starts_with("proc") {
                    return Err(io::Error::other(format!(
                        "/{} is a link in /proc, which is not followed",
                        candidate.display()
                    )));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for part in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// Creates every missing directory of `rel` (as [`resolve_in_root`] returns it) under `root`,
/// 0755 and root-owned.
pub(crate) fn make_dirs_in_root(root: &Path, rel: &Path) -> io::Result<()> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bind-mounts `src` (one of the [`ETC_FILES`]) on `/etc/NAME` of the rootfs, wherever that
/// leads inside it: created (0644) when missing, mounted over when a file, FIFO, socket or
/// device; an error when it is a directory or leads into `/proc`, `/sys` or `/dev`.
fn mount_etc_file(
    rootfs: &Path,
    root: &impl rustix::fd::AsFd,
    src: &Path,
    name: &str,
) -> Result<(), String> {
    use rustix::fs::{openat2, Mode as RMode, OFlags, ResolveFlags};
    let wanted = Path::new("/etc").join(name);
    let shown = wanted.display();
    let rel = resolve_in_root(rootfs, &wanted)
        .map_err(|e| format!("resolving {shown} in the image: {e}"))?;
    let leads = || format!("{shown} in the image leads to /{}", rel.display());
    if let Some(Component::Normal(top)) = rel.components().next() {
        if ["proc", "sys", "dev"].iter().any(|d| top == *d) {
            return Err(format!(
                "{}; rimg does not mount the container's {name} there",
                leads()
            ));
        }
    }
    if let Some(parent) = rel.parent() {
        make_dirs_in_root(rootfs, parent)
            .map_err(|e| format!("{}; creating its directory: {e}", leads()))?;
    }
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    match fs::symlink_metadata(rootfs.join(&rel)) {
        Ok(m) if m.is_dir() => {
            return Err(format!(
                "{}, a directory; cannot mount the container's {name} over it",
                leads()
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            openat2(
                root,
                &rel,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                RMode::from_raw_mode(0o644),
                resolve,
            )
            .map_err(|e| format!("{}; creating it: {e}", leads()))?;
        }
        Err(e) => return Err(format!("{}: {e}", leads())),
    }
    let target = openat2(
        root,
        &rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        RMode::empty(),
        resolve,
    )
    .map_err(|e| format!("{}: {e}", leads()))?;
    // The descriptor, not a path: what is mounted over is exactly what was resolved inside.
    let via = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
    mount(
        Some(src),
        &via,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("mounting the container's {name} on {}: {e}", leads()))
}

fn populate_dev(dev: &Path) -> Result<(), String> {
    let nodes: [(&str, u64, u64); 6] = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    for (name, major, minor) in nodes {
        let p = dev.join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| format!("mknod {}: {e}", p.display()))?;
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
/// [`ETC_FILES`]; `extra` are the spec's own mounts. Runs in the container's first process, in its new mount namespace.
pub(crate) fn enter(
    rootfs: &Path,
    etc_dir: &Path,
    extra: &[super::mounts::MountSpec],
) -> Result<(), String> {
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
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );
    let dev = rootfs.join("dev");
    ensure_dir(&dev)?;
    mnt(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    populate_dev(&dev)?;
    protect_proc(&proc, &dev.join("null"))?;
    let root = rustix::fs::open(
        rootfs,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", rootfs.display()))?;
    for name in ETC_FILES {
        let src = etc_dir.join(name);
        if src.is_file() {
            mount_etc_file(rootfs, &root, &src, name)?;
        }
    }
    super::mounts::apply(rootfs, &root, extra)?;
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
