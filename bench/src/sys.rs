//! The host: commands, mounts, the page cache, and a description of the machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

/// Runs a command, failing with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        let mut line = cmd.get_program().to_string_lossy().into_owned();
        for a in cmd.get_args() {
            line.push(' ');
            line.push_str(&a.to_string_lossy());
        }
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a program is on `PATH`.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Whether we run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Kernel overlayfs of `lowers` (bottom first) at `mnt`; read-only without `upper_work`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    mnt: &Path,
) -> Result<()> {
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let mut data = format!("lowerdir={}", lowerdir.join(":"));
    let mut flags = MsFlags::empty();
    match upper_work {
        Some((u, w)) => data.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        )),
        None => flags |= MsFlags::MS_RDONLY,
    }
    mount(
        Some("overlay"),
        mnt,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .with_context(|| format!("mounting overlayfs at {} ({data})", mnt.display()))
}

/// Unmounts `mnt` (lazily if it is busy).
pub fn umount(mnt: &Path) -> Result<()> {
    match umount2(mnt, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(mnt, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", mnt.display())),
        Err(e) => Err(e).with_context(|| format!("unmounting {}", mnt.display())),
    }
}

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    rimg_fs::mountinfo::under(&rimg_fs::mountinfo::read().unwrap_or_default(), &dir)
}

/// Unmounts everything left mounted under `dir` (by an interrupted earlier run).
pub fn unmount_under(dir: &Path) -> Result<()> {
    for m in mounts_under(dir) {
        umount(&m)?;
    }
    Ok(())
}

/// An overlayfs whiteout (character device 0:0) at `path`.
pub fn whiteout(path: &Path) -> Result<()> {
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0)
        .with_context(|| format!("mknod {} c 0 0", path.display()))
}

/// Writes dirty pages back and drops the page cache, dentries and inodes.
pub fn drop_caches() -> Result<()> {
    nix::unistd::sync();
    fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")
}

/// One line about the machine: CPU, cores, memory, the work dir's filesystem, kernel.
pub fn machine(work: &Path) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| (kb + (1 << 19)) >> 20);
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let fs_type = run(Command::new("findmnt")
        .args(["-no", "FSTYPE", "-T"])
        .arg(work))
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|_| "?".into());
    format!("{cpu}, {cores} cores, {mem_gib} GiB RAM, {fs_type} work dir, Linux {kernel}")
}

/// The line of `program --version` that names it (else the first), or None.
pub fn version(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.starts_with(program))
        .or(lines.first())
        .map(|l| l.to_string())
}
