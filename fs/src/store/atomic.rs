//! Atomic writes: temp file, fsync, rename, fsync of the directory.

use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::staging::Staged;
use super::{io_err, ContentStore, Result};

impl ContentStore {
    /// A new temporary file in `rimg/tmp/`, removed when dropped unless persisted.
    pub fn temp_file(&self) -> Result<TempFile> {
        let dir = self.tmp_dir();
        // Kept at once: TempFile removes it itself, unless it is persisted or staged.
        let (file, path) = create_temp(&dir, "", 0o666)?
            .keep()
            .map_err(|e| io_err("create in", &dir)(e.error))?;
        Ok(TempFile {
            path,
            file,
            persisted: false,
        })
    }

    /// Atomically writes a small file anywhere in the store (state files, build cache),
    /// keeping the free-space floor when it grows the file.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.check_room(path, bytes.len() as u64, &path.display().to_string())?;
        write_atomic_in(&self.tmp_dir(), path, bytes, 0o666)
    }

    /// Atomically replaces a small file that describes runtime state only (mount records and
    /// their pins): readers see the old or the new bytes, never a mix, but nothing is fsynced,
    /// because a crash ends the mounts it describes anyway.
    pub fn write_volatile_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.check_room(path, bytes.len() as u64, &path.display().to_string())?;
        let mut tmp = create_temp(&self.tmp_dir(), ".tmp-", 0o666)?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| io_err("rename into", path)(e.error))?;
        Ok(())
    }
}

/// A file in `rimg/tmp/` that becomes visible only through [`TempFile::persist`].
pub struct TempFile {
    /// Its current path.
    pub path: PathBuf,
    /// The open file.
    pub file: File,
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
        Ok(())
    }

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

/// A new file in `dir` with a fresh random name (created with `O_EXCL`, so never an existing
/// file) and permission bits `mode` (less the umask) from the moment it exists. Removed when
/// dropped unless persisted or kept.
fn create_temp(dir: &Path, prefix: &str, mode: u32) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io_err("create in", dir))
        .map_err(super::StoreError::from)
}

/// fsyncs a directory, so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync", dir))
        .map_err(super::StoreError::from)
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

/// Writes `bytes` to `path` through a temp file in `tmp_dir` (on `path`'s filesystem): the
/// file is fsynced before the rename and `path`'s directory after it (tempfile does neither).
/// A failed write leaves no temp file behind.
pub(super) fn write_atomic_in(tmp_dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut tmp = create_temp(tmp_dir, ".tmp-", mode)?;
    tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("sync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_err("rename into", path)(e.error))?;
    sync_dir(parent_dir(path))
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

    #[test]
    fn failed_atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory in the way: the rename fails after the temp file was written.
        let p = dir.path().join("state");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("x"), b"x").unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state"]);
    }

    #[test]
    fn store_temp_files_are_new_and_removed_unless_persisted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let (a, b) = (s.temp_file().unwrap(), s.temp_file().unwrap());
        assert_ne!(a.path, b.path);
        drop(b);
        let dest = dir.path().join("kept");
        let mut a = a;
        a.file.write_all(b"data").unwrap();
        a.persist(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        // Blobs are shared read-only files: created as any file is (0666 less the umask), not
        // 0600 like tempfile's default.
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), mode(&plain));
        assert_eq!(
            fs::read_dir(s.private_dir().join("tmp")).unwrap().count(),
            0
        );
    }
}
