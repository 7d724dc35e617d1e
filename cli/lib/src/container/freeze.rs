//! `pause`/`unpause`: the container's cgroup freezer (v1 `freezer.state`, v2 `cgroup.freeze`),
//! which stops every process of the cgroup (children forked meanwhile too) and reports when
//! it is done, so `pause` returns only once the container is frozen. Without a cgroupfs
//! (nothing mounted at [`CGROUP_ROOT`]) each process of the container's pid namespace gets
//! SIGSTOP/SIGCONT instead.

use std::path::Path;

use nix::sys::signal::{kill, Signal};

use super::{Container, ContainerError, Result};
use crate::runtime::cgroup::{self, CGROUP_ROOT};

/// Freezes (`true`) or thaws container `c`.
pub(super) fn set(c: &Container, frozen: bool) -> Result<()> {
    let path = cgroup::container_path(c.id());
    match cgroup::open(Path::new(CGROUP_ROOT), &path).map_err(ContainerError::Cgroup)? {
        Some(cg) => cg.freeze(frozen).map_err(ContainerError::Cgroup),
        None => {
            let sig = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            for p in c.processes() {
                let _ = kill(p, sig);
            }
            Ok(())
        }
    }
}
