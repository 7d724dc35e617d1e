//! A container's own cgroup, made with youki's `libcgroups` (cgroup v1, hybrid or v2): one per
//! container, `rimg/<id>` under each hierarchy, entered by the runtime's intermediate process
//! before it forks the container process (so nothing of the container runs outside it), with
//! Docker's device allow-list on v1's `devices` controller (everything denied, then null,
//! zero, full, random, urandom, tty, console, ptmx, the pts and `mknod` of any node), and
//! removed — its processes killed — when the container ends. Resource [`Limits`] (`-m`,
//! `--cpus`, `--pids-limit`) are applied right after entering, and the freezer serves `pause`.
//!
//! The runtime sees a cgroup through the small [`Cgroup`] trait, so the v2 path is tested
//! against a fake cgroupfs in a temporary directory.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager_with_root, get_cgroup_setup_with_root, CgroupConfig, CgroupManager,
    CgroupSetup, ControllerOpt, FreezerState,
};
use libcgroups_nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};

/// Where the host's cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What the runtime does with a container's cgroup.
pub trait Cgroup {
    /// Puts process `pid` in the cgroup (creating it) and applies its limits: Docker's
    /// device allow-list, or every device with `all_devices` (`--privileged`).
    fn enter(&self, pid: i32, all_devices: bool) -> Result<(), String>;
    /// Puts process `pid` in the cgroup as it is (an `exec` into a running container).
    fn join(&self, pid: i32) -> Result<(), String>;
    /// Kills what is left in the cgroup and removes it.
    fn remove(&self) -> Result<(), String>;
    /// Freezes (`true`) or thaws every process of the cgroup (v1 `freezer.state`, v2
    /// `cgroup.freeze`), returning once the kernel reports the cgroup frozen (polling with a
    /// deadline) or thawed.
    fn freeze(&self, frozen: bool) -> Result<(), String>;
    /// Applies resource limits (`-m`, `--cpus`, `--pids-limit`); unset ones stay as they are.
    fn limit(&self, limits: &Limits) -> Result<(), String>;
}

/// A container's resource limits, as `run`/`create` take them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (`-m/--memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// CPUs in millionths (`--cpus 1.5` is 1_500_000): a CFS quota per 100 ms period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_micro: Option<i64>,
    /// Maximum number of processes (`--pids-limit`; 0 or less: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Docker's memory size syntax (`64m`, `1g`, `512k`, `100000`, units 1024-based, an
/// optional trailing `b`) in bytes; `None` when it is not one.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

/// The OCI resources `limits` stands for.
fn resources(limits: &Limits) -> Result<LinuxResources, String> {
    let mut b = LinuxResourcesBuilder::default();
    if let Some(m) = limits.memory {
        b = b.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(c) = limits.cpus_micro {
        const PERIOD: u64 = 100_000;
        b = b.cpu(
            LinuxCpuBuilder::default()
                .period(PERIOD)
                .quota(c * PERIOD as i64 / 1_000_000)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(p) = limits.pids {
        let max = if p <= 0 { -1 } else { p };
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(max)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

struct Managed<M>(M);

impl<M> Cgroup for Managed<M>
where
    M: CgroupManager,
    M::Error: Display,
{
    fn join(&self, pid: i32) -> Result<(), String> {
        self.0
            .add_task(Pid::from_raw(pid))
            .map_err(|e| format!("joining the container's cgroup: {e}"))
    }

    fn enter(&self, pid: i32, all_devices: bool) -> Result<(), String> {
        self.join(pid)?;
        // Docker's allow-list: libcgroups adds runc's defaults after this deny-all.
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(all_devices)
            .access("rwm")
            .build()
            .map_err(|e| e.to_string())?;
        let resources = LinuxResourcesBuilder::default()
            .devices(vec![deny_all])
            .build()
            .map_err(|e| e.to_string())?;
        self.0
            .apply(&ControllerOpt {
                resources: &resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| format!("setting the container's cgroup: {e}"))
    }

    fn remove(&self) -> Result<(), String> {
        self.0
            .remove()
            .map_err(|e| format!("removing the container's cgroup: {e}"))
    }

    fn freeze(&self, frozen: bool) -> Result<(), String> {
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.0
            .freeze(state)
            .map_err(|e| format!("freezing the container's cgroup: {e}"))
    }

    fn limit(&self, limits: &Limits) -> Result<(), String> {
        if limits.is_empty() {
            return Ok(());
        }
        self.0
            .apply(&ControllerOpt {
                resources: &resources(limits)?,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| format!("setting the container's limits: {e}"))
    }
}

/// The cgroup path of container `id`, relative to each hierarchy's root.
pub fn container_path(id: &str) -> PathBuf {
    Path::new("rimg").join(id)
}

/// The cgroup `path` (relative) under the cgroupfs mounted at `root`; `None` when nothing is
/// mounted there (no cgroups to use).
pub fn open(root: &Path, path: &Path) -> Result<Option<Box<dyn Cgroup>>, String> {
    let mounted = std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_some());
    if !mounted {
        return Ok(None);
    }
    if let Ok(CgroupSetup::Unified) = get_cgroup_setup_with_root(root) {
        return v2_at(root, path).map(Some);
    }
    let manager = create_cgroup_manager_with_root(
        Some(root),
        CgroupConfig {
            cgroup_path: path.to_path_buf(),
            systemd_cgroup: false,
            container_name: String::new(),
        },
    )
    .map_err(|e| format!("cgroup {}: {e}", path.display()))?;
    Ok(Some(Box::new(Managed(manager))))
}

/// A cgroup v2 `path` under `root` (a unified cgroupfs, or a fake one in tests).
fn v2_at(root: &Path, path: &Path) -> Result<Box<dyn Cgroup>, String> {
    let m = libcgroups::v2::manager::Manager::new(root.to_path_buf(), path.to_path_buf())
        .map_err(|e| format!("cgroup {}: {e}", path.display()))?;
    Ok(Box::new(Managed(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake cgroup2 root with container `id`'s cgroup holding `files` (cgroupfs makes a
    /// cgroup's files with its directory; a fake one has them made): root, cgroup dir, cgroup.
    fn fake_v2(id: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, Box<dyn Cgroup>) {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let dir = root.path().join("rimg").join(id);
        fs::create_dir_all(&dir).unwrap();
        for (f, content) in files {
            fs::write(dir.join(f), content).unwrap();
        }
        let cg = v2_at(root.path(), &container_path(id)).unwrap();
        (root, dir, cg)
    }

    #[test]
    fn a_process_enters_a_v2_cgroup_in_a_fake_cgroupfs() {
        let (_root, dir, cg) = fake_v2("abc", &[("cgroup.procs", "")]);
        let me = std::process::id() as i32;
        cg.enter(me, false).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("cgroup.procs")).unwrap().trim(),
            me.to_string()
        );
    }

    #[test]
    fn removing_a_cgroup_that_is_gone_is_not_an_error() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "memory\n").unwrap();
        let cg = v2_at(root.path(), &container_path("gone")).unwrap();
        cg.remove().unwrap();
    }

    #[test]
    fn a_v2_cgroup_freezes_once_its_events_say_frozen_and_thaws() {
        // The kernel reports the freeze done in cgroup.events; the fake one says so already.
        let events = ("cgroup.events", "populated 1\nfrozen 1\n");
        let (_root, dir, cg) = fake_v2("frz", &[("cgroup.freeze", "0"), events]);
        cg.freeze(true).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
        cg.freeze(false).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "0");
    }

    #[test]
    fn limits_go_to_a_v2_cgroups_files() {
        let files = [
            "pids.max",
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "cpu.max",
        ];
        let files: Vec<_> = files.iter().map(|f| (*f, "")).collect();
        let (_root, dir, cg) = fake_v2("lim", &files);
        let limits = Limits {
            memory: Some(64 << 20),
            cpus_micro: Some(1_500_000),
            pids: Some(64),
        };
        cg.limit(&limits).unwrap();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("memory.max"), (64 << 20).to_string());
        assert_eq!(read("cpu.max"), "150000 100000");
    }

    #[test]
    fn memory_sizes_parse_as_dockers() {
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("512kb"), Some(512 << 10));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn no_cgroupfs_means_no_cgroup() {
        let root = tempfile::tempdir().unwrap();
        assert!(open(root.path(), &container_path("abc")).unwrap().is_none());
    }
}
