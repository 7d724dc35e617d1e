//! `index.json` under its lock, the leases every writer holds, and garbage collection.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageIndex;

use super::atomic::{sync_dir, write_atomic_in};
use super::{io_err, parse_json, ContentStore, Result, StoreError};
use crate::digest::Digest;

/// Held by every command that writes blobs: garbage collection waits for all leases to end,
/// so a blob written but not yet referenced is never collected.
#[derive(Debug)]
pub struct Lease {
    _file: File,
    root: PathBuf,
}

/// The store roots this process holds leases on, once per lease.
static LEASES_HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn leases_held() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LEASES_HELD.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = leases_held();
        if let Some(i) = held.iter().position(|r| *r == self.root) {
            held.swap_remove(i);
        }
    }
}

/// Held while collecting garbage: no lease exists at the same time.
#[derive(Debug)]
pub struct GcGuard {
    _file: File,
}

/// Held while `index.json` is read, modified and written.
pub(super) struct RefsLock {
    _file: File,
}

impl ContentStore {
    /// Reads `index.json`.
    pub fn refs(&self) -> Result<ImageIndex> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(io_err("read", &p))?;
        parse_json(&p, &bytes)
    }

    /// Reads, modifies and writes `index.json` under the refs lock; `f`'s error leaves it as
    /// it was.
    pub fn update_refs<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut ImageIndex) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = self.lock_refs()?;
        let mut index = self.refs()?;
        let out = f(&mut index)?;
        let p = self.root.join("index.json");
        let bytes = serde_json::to_vec(&index).map_err(|e| StoreError::Json {
            path: p.clone(),
            message: e.to_string(),
        })?;
        self.check_room(&p, bytes.len() as u64, "index.json")?;
        write_atomic_in(&self.tmp_dir(), &p, &bytes, 0o666)?;
        Ok(out)
    }

    pub(super) fn lock_refs(&self) -> Result<RefsLock> {
        let p = self.private_dir().join("lock");
        let file = open_lock_file(&p)?;
        file.lock().map_err(io_err("lock", &p))?;
        Ok(RefsLock { _file: file })
    }

    /// Takes a lease: blocks while garbage is being collected, then holds off collection until
    /// dropped.
    ///
    /// Fair to a waiting collector: a new lease first waits its turn behind one (`gc.turn`),
    /// so overlapping leases cannot hold garbage collection off forever. A process that
    /// already holds a lease on this store takes more without queueing (the collector waits
    /// for it anyway: queueing would deadlock), and so does [`ContentStore::lease_now`].
    pub fn lease(&self) -> Result<Lease> {
        let nested = leases_held().contains(&self.root);
        let turn = match nested {
            true => None,
            false => Some(self.lock_turn(false)?),
        };
        let lease = self.lease_now();
        drop(turn);
        lease
    }

    /// Takes a lease without queueing behind a waiting collector: for a helper process that a
    /// lease holder started and waits for (the mount daemon of a build's RUN step), which
    /// would deadlock in the queue.
    pub fn lease_now(&self) -> Result<Lease> {
        let p = self.private_dir().join("gc.lock");
        let file = open_lock_file(&p)?;
        file.lock_shared().map_err(io_err("lock", &p))?;
        leases_held().push(self.root.clone());
        Ok(Lease {
            _file: file,
            root: self.root.clone(),
        })
    }

    fn lock_turn(&self, exclusive: bool) -> Result<File> {
        let p = self.private_dir().join("gc.turn");
        let file = open_lock_file(&p)?;
        match exclusive {
            true => file.lock(),
            false => file.lock_shared(),
        }
        .map_err(io_err("lock", &p))?;
        Ok(file)
    }

    /// Tries to start garbage collection: `None` while any lease is held.
    pub fn try_gc(&self) -> Result<Option<GcGuard>> {
        let p = self.private_dir().join("gc.lock");
        let file = open_lock_file(&p)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(GcGuard { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &p)(e).into()),
        }
    }

    /// Starts garbage collection, waiting for every lease to end.
    pub fn gc(&self) -> Result<GcGuard> {
        let _turn = self.lock_turn(true)?;
        let p = self.private_dir().join("gc.lock");
        let file = open_lock_file(&p)?;
        file.lock().map_err(io_err("lock", &p))?;
        Ok(GcGuard { _file: file })
    }

    /// Deletes a blob and its layer index. Only allowed while collecting garbage.
    pub fn remove_blob(&self, d: &Digest, _gc: &GcGuard) -> Result<()> {
        for p in [self.index_path(d), self.blob_path(d)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e).into()),
            }
        }
        sync_dir(&self.blob_dir())
    }

    /// Removes what interrupted commands left in `rimg/tmp/` and layer indexes whose blob is
    /// gone. Only allowed while collecting garbage (no writer is active). Returns how many
    /// files were removed.
    pub fn remove_orphans(&self, _gc: &GcGuard) -> Result<usize> {
        let mut removed = 0;
        let tmp = self.tmp_dir();
        for e in fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let e = e.map_err(io_err("list", &tmp))?;
            fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
            removed += 1;
        }
        let idx = self.index_dir();
        for e in fs::read_dir(&idx).map_err(io_err("list", &idx))? {
            let e = e.map_err(io_err("list", &idx))?;
            let orphan = match e.file_name().to_str().and_then(Digest::from_hex) {
                Some(d) => !self.has_blob(&d),
                None => true,
            };
            if orphan {
                fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn open_lock_file(p: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(p)
        .map_err(io_err("open", p))
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn update_refs_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let r: Result<()> = s.update_refs(|idx| {
            idx.set_manifests(Vec::new());
            Err(StoreError::NotALayout(PathBuf::from("x")))
        });
        assert!(r.is_err());
        let lease = s.lease().unwrap();
        assert!(s.try_gc().unwrap().is_none());
        drop(lease);
        assert!(s.try_gc().unwrap().is_some());
    }

    /// A collector waiting for a lease is not overtaken by leases taken after it started
    /// waiting (by another process, or by a thread of one that holds no lease on the store).
    #[test]
    fn a_waiting_collector_goes_before_later_leases() {
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(ContentStore::open(dir.path()).unwrap());
        // The first lease, as another process would hold it: gc.lock shared.
        let held = open_lock_file(&s.private_dir().join("gc.lock")).unwrap();
        held.lock_shared().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (s2, o2) = (s.clone(), order.clone());
        let collector = std::thread::spawn(move || {
            let g = s2.gc().unwrap();
            o2.lock().unwrap().push("gc");
            drop(g);
        });
        // Wait (with a deadline) until the collector holds the turn.
        let turn = open_lock_file(&s.private_dir().join("gc.turn")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while turn.try_lock_shared().is_ok() {
            turn.unlock().unwrap();
            assert!(
                std::time::Instant::now() < deadline,
                "the collector never waited"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (s3, o3) = (s.clone(), order.clone());
        let later = std::thread::spawn(move || {
            let l = s3.lease().unwrap();
            o3.lock().unwrap().push("lease");
            drop(l);
        });
        drop(held);
        collector.join().unwrap();
        later.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["gc", "lease"]);
    }
}
