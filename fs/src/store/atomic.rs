//! Atomic writes: temp file, fsync, rename, fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::staging::Staged;
use super::{io_err, ContentStore, Result};

impl ContentStore {
    /// A new temporary file in `rimg/tmp/`, removed when dropped unless persisted.
    pub fn temp_file(&self) -> Result<TempFile> {
        let dir = self.tmp_dir();
        let path = dir.join(unique_name());
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok(TempFile {
            path,
            file,
            dir,
            persisted: false,
        })
    }

    /// Atomically writes a small file anywhere in the store (state files, build cache).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic_in(&self.tmp_dir(), path, bytes, 0o666)
    }

    /// Atomically replaces a small file that describes runtime state only (mount records and
    /// their pins): readers see the old or the new bytes, never a mix, but nothing is fsynced,
    /// because a crash ends the mounts it describes anyway.
    pub fn write_volatile_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_dir().join(format!(".tmp-{}", unique_name()));
        let result = fs::write(&tmp, bytes)
            .map_err(io_err("write", &tmp))
            .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into", path)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// A file in `rimg/tmp/` that becomes visible only through [`TempFile::persist`].
pub struct TempFile {
    /// Its current path.
    pub path: PathBuf,
    /// The open file.
    pub file: File,
    dir: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// fsyncs the file, renames it to `dest`, and fsyncs `dest`'s directory.
    pub fn persist(mut self, dest: &Path) -> Result<()> {
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        fs::rename(&self.path, dest).map_err(io_err("rename into", dest))?;
        self.persisted = true;
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        let _ = &self.dir;
        Ok(())
    }
}

impl TempFile {
    /// Closes the file, keeping it in `rimg/tmp/` until it is published or dropped. The
    /// fsync waits for the publish, so data that is never published is never synced.
    pub(super) fn into_staged(mut self) -> Staged {
        self.persisted = true;
        Staged {
            path: std::mem::take(&mut self.path),
            published: false,
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// fsyncs a directory, so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync", dir))
}

/// Writes `bytes` to `path` atomically (temp file beside it, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_in(parent_dir(path), path, bytes, 0o666)
}

/// [`write_atomic`] for a file only its owner may read (credentials): mode 0600 from the
/// moment the temp file exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_in(parent_dir(path), path, bytes, 0o600)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

pub(super) fn write_atomic_in(tmp_dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tmp_dir.join(format!(".tmp-{}", unique_name()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        sync_dir(parent_dir(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
