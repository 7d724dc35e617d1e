//! `container prune`: every stopped container the filter selects removed, and what their
//! upper dirs held counted; the sizes `ps -s` shows.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::filter::PruneFilter;
use super::{Container, ContainerError, Containers, Result};

/// What [`Containers::prune`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerPruneReport {
    /// The full ids of the removed containers, in the order removed.
    pub deleted: Vec<String>,
    /// The bytes their upper dirs held.
    pub reclaimed: u64,
}

/// The bytes of the regular files under `dir` (not following symlinks): what Docker calls
/// a container's `SizeRw` when `dir` is its upper dir.
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

impl Container {
    /// The bytes the container wrote (its upper dir's files).
    pub fn size_rw(&self) -> u64 {
        tree_size(&self.upper_dir())
    }
}

impl Containers {
    /// The container's labels: its image's `LABEL`s (empty when the image cannot be read).
    pub fn labels(&self, c: &Container) -> BTreeMap<String, String> {
        self.images
            .read_config(c.image_id())
            .ok()
            .and_then(|cfg| cfg.config.labels)
            .unwrap_or_default()
    }

    /// Removes every stopped (created, exited or dead) container `filter` selects; a dead
    /// one's leftovers are cleaned up first. Running and paused ones stay.
    pub fn prune(&self, filter: &PruneFilter) -> Result<ContainerPruneReport> {
        let mut report = ContainerPruneReport::default();
        for mut c in self.list()? {
            if c.status().is_running() {
                continue;
            }
            let labels = if filter.needs_labels() {
                self.labels(&c)
            } else {
                BTreeMap::new()
            };
            if !filter.matches(&c, &labels) {
                continue;
            }
            c.clean_up_after_monitor()?;
            let size = c.size_rw();
            match self.remove(&c) {
                // Started since it was listed: it stays, as a running one does.
                Err(ContainerError::Running(_)) => continue,
                r => r?,
            }
            report.deleted.push(c.id().to_string());
            report.reclaimed += size;
        }
        Ok(report)
    }
}
