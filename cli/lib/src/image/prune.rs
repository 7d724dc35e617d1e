//! `image prune`: dangling (or, with `all`, every unused) image removed, the build cache
//! entries nothing listed needs released, and the blobs that leaves unreachable collected.

use super::{Images, Result};

/// What [`Images::prune`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Docker's lines, in order: `untagged: NAME:TAG`, `deleted: sha256:…`.
    pub lines: Vec<String>,
    /// Bytes freed: blobs collected plus the temp files interrupted commands left.
    pub reclaimed: u64,
}

impl Images {
    /// Removes dangling images (with `all`: every image no container uses), releases the
    /// build cache's pins on images no longer listed, and collects garbage under the GC
    /// guard.
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        let gc = self.store().gc()?;
        let mut lines = Vec::new();
        for img in self.list()? {
            if !(all || img.tags.is_empty()) || !self.containers_using(&img)?.is_empty() {
                continue;
            }
            for t in &img.tags {
                lines.push(format!(
                    "untagged: {}:{}",
                    t.repository(),
                    t.tag_or_latest()
                ));
            }
            self.remove_manifest(&img.manifest_digest)?;
            lines.push(format!("deleted: {}", img.id));
        }
        // The build cache keeps what listed images were built with; the rest may go.
        let cache = crate::builder::cache::BuildCache::new(self.store());
        cache.release_unused(self)?;
        let temp = self.temp_bytes(&gc);
        let removed = self.collect_garbage(&gc)?;
        cache.remove_stale();
        let reclaimed = temp + removed.iter().map(|(_, s)| s).sum::<u64>();
        Ok(PruneReport { lines, reclaimed })
    }
}
