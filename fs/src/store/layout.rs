//! The layout on disk: opening it, where each blob and index lives, reading blobs back.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::atomic::write_atomic;
use super::{io_err, ContentStore, Result, StoreError, LAYOUT_VERSION};
use crate::digest::{Digest, HashingReader};
use crate::layer_index::LayerIndex;

impl ContentStore {
    /// Opens the layout at `root`, creating it (and rimg's private directories) if needed.
    pub fn open(root: &Path) -> Result<Self> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        let layout = root.join("oci-layout");
        match fs::read(&layout) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|_| StoreError::NotALayout(root.to_path_buf()))?;
                if v.get("imageLayoutVersion")
                    .and_then(|v| v.as_str())
                    .is_none()
                {
                    return Err(StoreError::NotALayout(root.to_path_buf()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(root).map_err(io_err("create", root))?;
                write_atomic(
                    &layout,
                    format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}").as_bytes(),
                )?;
            }
            Err(e) => return Err(io_err("read", &layout)(e).into()),
        }
        for dir in [store.blob_dir(), store.tmp_dir(), store.index_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        if nix::unistd::geteuid().is_root() {
            for dir in [root.to_path_buf(), store.private_dir()] {
                restrict_to_owner(&dir)?;
            }
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _lock = store.lock_refs()?;
            if !index.exists() {
                write_atomic(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
            }
        }
        Ok(store)
    }

    /// The layout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// rimg's private directory inside the layout (`rimg/`).
    pub fn private_dir(&self) -> PathBuf {
        self.root.join("rimg")
    }

    pub(super) fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(super) fn tmp_dir(&self) -> PathBuf {
        self.private_dir().join("tmp")
    }

    pub(super) fn index_dir(&self) -> PathBuf {
        self.private_dir().join("indexes").join("sha256")
    }

    /// Where the blob named `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blob_dir().join(d.hex())
    }

    /// Where the layer index of layer `d` lives.
    pub fn index_path(&self, d: &Digest) -> PathBuf {
        self.index_dir().join(d.hex())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Whether the blob is present and indexed as a layer.
    pub fn has_layer(&self, d: &Digest) -> bool {
        self.has_blob(d) && self.index_path(d).is_file()
    }

    /// Size of a stored blob.
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobMissing(*d)),
            Err(e) => Err(io_err("stat", &p)(e).into()),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobMissing(*d)
            } else {
                io_err("open", &p)(e).into()
            }
        })
    }

    /// Reads a small blob (a manifest or config) whole, checking that it hashes to its name.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        let size = self.blob_size(d)?;
        if size > limit {
            return Err(StoreError::TooLarge {
                digest: *d,
                size,
                limit,
            });
        }
        let p = self.blob_path(d);
        let mut bytes = Vec::with_capacity(size as usize);
        self.open_blob(d)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("read", &p))?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                expected: *d,
                actual,
            });
        }
        Ok(bytes)
    }

    /// The persisted index of a stored layer.
    pub fn layer_index(&self, d: &Digest) -> Result<LayerIndex> {
        let p = self.index_path(d);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing(*d));
            }
            Err(e) => return Err(io_err("read", &p)(e).into()),
        };
        Ok(LayerIndex::decode(&bytes, d)?)
    }

    /// Every blob in the store, and the size of each.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let dir = self.blob_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            let name = e.file_name();
            let Some(d) = name.to_str().and_then(Digest::from_hex) else {
                continue;
            };
            let len = e.metadata().map_err(io_err("stat", &e.path()))?.len();
            out.push((d, len));
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a stored blob; `Ok(false)` if its bytes no longer match its name.
    pub fn verify_blob(&self, d: &Digest) -> Result<bool> {
        let p = self.blob_path(d);
        let mut r = HashingReader::new(self.open_blob(d)?);
        io::copy(&mut r, &mut io::sink()).map_err(io_err("read", &p))?;
        Ok(r.finish().0 == *d)
    }
}

/// Makes `dir` reachable by its owner only (0700), as Docker keeps `/var/lib/docker`: a root
/// store holds containers' root filesystems, mounted with their images' setuid binaries and
/// device nodes, which no other host user may reach. A store created 0755 by an older rimg
/// is tightened the next time root opens it.
fn restrict_to_owner(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::metadata(dir).map_err(io_err("stat", dir))?;
    if m.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_a_valid_layout() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        assert!(dir.path().join("oci-layout").is_file());
        assert_eq!(s.refs().unwrap().manifests().len(), 0);
        ContentStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("oci-layout"), "junk").unwrap();
        assert!(matches!(
            ContentStore::open(dir.path()),
            Err(StoreError::NotALayout(_))
        ));
    }
}
