//! What `docker info` and `docker version` report, gathered from the store and the host:
//! counts of containers and images, the kernel, the operating system, cgroups, CPUs, memory.

use std::path::Path;

use serde::Serialize;

use crate::container::{Containers, Status};
use crate::image::{ImageError, Images};

/// `docker info`'s fields, with Docker's JSON names (for `--format '{{.Containers}}'`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    /// Every container.
    pub containers: usize,
    /// Running.
    pub containers_running: usize,
    /// Paused.
    pub containers_paused: usize,
    /// Created, exited or dead.
    pub containers_stopped: usize,
    /// Images (one per image id).
    pub images: usize,
    /// The storage driver: rimg's lazily mounted layers under overlayfs.
    pub driver: String,
    /// `1` or `2`.
    pub cgroup_version: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub operating_system: String,
    /// `linux`.
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// The machine's architecture as `uname -m` says it (`x86_64`).
    pub architecture: String,
    /// Online CPUs.
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    /// Bytes of memory.
    pub mem_total: u64,
    /// The store.
    pub docker_root_dir: String,
    /// rimg's version.
    pub server_version: String,
    /// The host name.
    pub name: String,
}

impl Info {
    /// Gathers the facts for the store `images`.
    pub fn gather(images: &Images) -> Result<Self, ImageError> {
        let mut info = Info::host(images.store().root());
        info.images = images.list()?.len();
        if let Ok(containers) = Containers::open(images) {
            for c in containers.list().unwrap_or_default() {
                info.containers += 1;
                match c.status() {
                    Status::Running => info.containers_running += 1,
                    Status::Paused => info.containers_paused += 1,
                    _ => info.containers_stopped += 1,
                }
            }
        }
        Ok(info)
    }

    /// The host's facts, with no containers and images counted.
    pub fn host(root: &Path) -> Self {
        let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Info {
            containers: 0,
            containers_running: 0,
            containers_paused: 0,
            containers_stopped: 0,
            images: 0,
            driver: "overlay (rimgfs)".into(),
            cgroup_version: cgroup_version(&text("/proc/self/mountinfo")).into(),
            kernel_version: text("/proc/sys/kernel/osrelease").trim().to_string(),
            operating_system: os_pretty_name(&text("/etc/os-release")),
            os_type: "linux".into(),
            architecture: std::env::consts::ARCH.into(),
            ncpu: std::thread::available_parallelism().map_or(1, usize::from),
            mem_total: mem_total(&text("/proc/meminfo")),
            docker_root_dir: root.display().to_string(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            name: text("/proc/sys/kernel/hostname").trim().to_string(),
        }
    }
}

/// `2` when `/sys/fs/cgroup` is a cgroup2 mount (the unified hierarchy), else `1`.
pub fn cgroup_version(mountinfo: &str) -> &'static str {
    let unified = mountinfo.lines().any(|l| {
        let mut f = l.split(' ');
        let mount_point = f.nth(4);
        let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        mount_point == Some("/sys/fs/cgroup") && fstype == Some("cgroup2")
    });
    if unified {
        "2"
    } else {
        "1"
    }
}

/// `PRETTY_NAME` from os-release text, unquoted.
pub fn os_pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// `MemTotal` of `/proc/meminfo` in bytes.
pub fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_version_is_what_sys_fs_cgroup_is() {
        let v1 = "30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:4 - tmpfs tmpfs ro,mode=755\n\
                  35 30 0:31 / /sys/fs/cgroup/unified rw shared:6 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_version(v1), "1");
        let v2 = "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_version(v2), "2");
    }

    #[test]
    fn os_release_and_meminfo_read_as_docker_shows_them() {
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_pretty_name(os), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_pretty_name(""), "Linux");
        assert_eq!(
            mem_total("MemTotal:       24592000 kB\nMemFree: 1 kB\n"),
            24592000 * 1024
        );
    }
}
