//! The content store: an OCI image layout on disk, plus rimg's private state beside it.
//!
//! ```text
//! $RIMG_ROOT/
//!   oci-layout                 {"imageLayoutVersion":"1.0.0"}
//!   index.json                 every image manifest; tags are org.opencontainers.image.ref.name
//!   blobs/sha256/<hex>         immutable blobs; layers are uncompressed tars (digest = diff_id)
//!   rimg/
//!     lock                     flock held while index.json is read-modified-written
//!     gc.lock                  shared by every writer (a lease), exclusive while collecting garbage
//!     tmp/                     in-flight writes; never visible under blobs/
//!     indexes/sha256/<hex>     the layer index of each layer blob
//!     …                        containers, mounts and the build cache (owned by the CLI)
//! ```
//!
//! Architecture Invariant: a file under `blobs/sha256/` always hashes to its name. Every write
//! goes temp file → fsync → rename → fsync(dir), so an interrupted command leaves at worst an
//! orphan in `rimg/tmp/`, never a partial blob or a partial `index.json`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::ImageIndex;

use crate::digest::{Digest, HashingReader};
use crate::layer_index::{IndexBuilder, IndexError, LayerIndex};
use crate::tar_stream::TarStream;

/// The OCI layout version rimg writes.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Free space a write into the store always leaves on its filesystem: a layer that would eat
/// into it (a gzip bomb, a runaway stream) is refused rather than filling the disk.
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// The environment variable that caps one blob written into the store (bytes, or with a
/// `K`/`M`/`G`/`T` suffix). Unset: no cap but [`MIN_FREE_BYTES`].
pub const MAX_LAYER_SIZE_ENV: &str = "RIMG_MAX_LAYER_SIZE";
/// The largest JSON document (manifest, config, index) rimg reads into memory.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The root exists but is not an OCI image layout.
    #[error("{0} is not an OCI image layout (no valid oci-layout file)")]
    NotALayout(PathBuf),
    /// A blob the caller needs is not in the store.
    #[error("blob {0} is missing from the store")]
    BlobMissing(Digest),
    /// Content did not hash to the digest it was expected to have.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller expected.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A blob is larger than a caller's limit.
    #[error("blob {digest} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A layer could not be indexed. (The message includes the cause, so it is not also
    /// reported as a source: error chains print each cause once.)
    #[error("invalid layer: {0}")]
    Layer(IndexError),
    /// A blob being written grew over the `RIMG_MAX_LAYER_SIZE` cap.
    #[error("layer is over the {limit}-byte limit ({MAX_LAYER_SIZE_ENV})")]
    OverLimit {
        /// The cap.
        limit: u64,
    },
    /// Writing on would leave the store's filesystem with less than [`MIN_FREE_BYTES`].
    #[error("the store's filesystem has {free} bytes free: refusing to write a layer past {written} bytes (rimg keeps {MIN_FREE_BYTES} free)")]
    DiskFull {
        /// Bytes free when the write stopped.
        free: u64,
        /// Bytes of the blob written so far.
        written: u64,
    },
    /// The `RIMG_MAX_LAYER_SIZE` value is not a size.
    #[error("{MAX_LAYER_SIZE_ENV}={0:?} is not a size (bytes, or a number with K, M, G or T)")]
    BadLimit(String),
    /// Reading a layer from its source failed (a truncated or corrupt compressed stream).
    #[error("reading layer: {0}")]
    ReadLayer(io::Error),
    /// `index.json` or another JSON document is malformed.
    #[error("{path}: {message}")]
    Json {
        /// The document.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl From<IndexError> for StoreError {
    fn from(e: IndexError) -> Self {
        StoreError::Layer(e)
    }
}

/// Result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`ContentStore::ingest_layer`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the uncompressed tar (its blob name and diff_id).
    pub digest: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// Number of entries in its index.
    pub entries: usize,
    /// Whether the layer was already in the store.
    pub existed: bool,
}

/// A handle on an OCI image layout directory.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

/// Held by every command that writes blobs: garbage collection waits for all leases to end,
/// so a blob written but not yet referenced is never collected.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// Held while collecting garbage: no lease exists at the same time.
#[derive(Debug)]
pub struct GcGuard {
    _file: File,
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

/// Held while `index.json` is read, modified and written.
struct RefsLock {
    _file: File,
}

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
            Err(e) => return Err(io_err("read", &layout)(e)),
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

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.private_dir().join("tmp")
    }

    fn index_dir(&self) -> PathBuf {
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
            Err(e) => Err(io_err("stat", &p)(e)),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobMissing(*d)
            } else {
                io_err("open", &p)(e)
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

    /// Stores a small blob held in memory; a no-op if it is already present.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let mut tmp = self.temp_file()?;
        tmp.file
            .write_all(bytes)
            .map_err(io_err("write", &tmp.path))?;
        tmp.persist(&self.blob_path(&d))?;
        Ok(d)
    }

    /// Streams any blob into the store, verifying it against `expected` when given. Used for
    /// blobs that are not layers (layers go through [`ContentStore::ingest_layer`]).
    pub fn put_blob_from(
        &self,
        src: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let staged = self.stage_blob(src)?;
        let (d, n) = (staged.digest, staged.size);
        if let Some(e) = expected {
            if *e != d {
                return Err(StoreError::DigestMismatch {
                    expected: *e,
                    actual: d,
                });
            }
        }
        self.publish_blob(staged)?;
        Ok((d, n))
    }

    /// Streams an uncompressed layer tar into the store: hashes it, indexes every entry in the
    /// same pass, verifies the digest against `expected` (the diff_id) when given, then
    /// publishes the index and the blob. Nothing is published if any step fails.
    pub fn ingest_layer(&self, src: impl Read, expected: Option<&Digest>) -> Result<LayerInfo> {
        let staged = self.stage_layer(src)?;
        if let Some(e) = expected {
            if *e != staged.digest {
                return Err(StoreError::DigestMismatch {
                    expected: *e,
                    actual: staged.digest,
                });
            }
        }
        self.publish_layer(staged)
    }

    /// Streams any blob into `rimg/tmp/`, hashing it; nothing is visible until
    /// [`ContentStore::publish_blob`]. Dropping the result removes the file.
    pub fn stage_blob(&self, src: impl Read) -> Result<StagedBlob> {
        let tmp = self.temp_file()?;
        let mut r = HashingReader::new(src);
        {
            let guard = SpaceGuard::new(&tmp.file, max_layer_size()?);
            let mut w = BufWriter::with_capacity(1 << 20, guard);
            io::copy(&mut r, &mut w).map_err(|e| guard_err(e, io_err("write", &tmp.path)))?;
            w.flush().map_err(io_err("write", &tmp.path))?;
        }
        let (digest, size, _) = r.finish();
        Ok(StagedBlob {
            digest,
            size,
            file: tmp.into_staged(),
        })
    }

    /// Streams an uncompressed layer tar into `rimg/tmp/`, hashing and indexing it in one
    /// pass; nothing is visible until [`ContentStore::publish_layer`]. Dropping the result
    /// removes its files.
    pub fn stage_layer(&self, src: impl Read) -> Result<StagedLayer> {
        let tmp = self.temp_file()?;
        let tmp_path = tmp.path.clone();
        let limit = max_layer_size()?;
        let read_err = |e: crate::tar_stream::TarError| match e {
            crate::tar_stream::TarError::Io(source) => guard_err(source, StoreError::ReadLayer),
            other => StoreError::Layer(other.into()),
        };
        let (digest, size, builder) = {
            let tee = TeeReader {
                src,
                sink: BufWriter::with_capacity(1 << 20, SpaceGuard::new(&tmp.file, limit)),
            };
            let mut stream = TarStream::new(HashingReader::new(tee));
            let mut builder = IndexBuilder::new();
            while let Some(entry) = stream.next_entry().map_err(read_err)? {
                builder.push(entry)?;
            }
            let (size, hashing) = stream.finish().map_err(read_err)?;
            let (digest, _, mut tee) = hashing.finish();
            tee.sink
                .flush()
                .map_err(|e| guard_err(e, io_err("write", &tmp_path)))?;
            (digest, size, builder)
        };
        let index = builder.finish(digest, size);
        let entries = index.entries().len();
        let mut index_tmp = self.temp_file()?;
        index_tmp
            .file
            .write_all(&index.encode())
            .map_err(io_err("write", &index_tmp.path))?;
        Ok(StagedLayer {
            digest,
            size,
            entries,
            blob: tmp.into_staged(),
            index: index_tmp.into_staged(),
        })
    }

    /// Makes a staged blob visible under its digest (fsync, rename, fsync dir). Returns
    /// whether the store already had it.
    pub fn publish_blob(&self, blob: StagedBlob) -> Result<bool> {
        if self.has_blob(&blob.digest) {
            return Ok(true);
        }
        blob.file.publish(&self.blob_path(&blob.digest))?;
        sync_dir(&self.blob_dir())?;
        Ok(false)
    }

    /// Makes a staged layer visible: its index first (an index without its blob is
    /// harmless; a blob without its index is not a usable layer), then the blob.
    pub fn publish_layer(&self, layer: StagedLayer) -> Result<LayerInfo> {
        let mut info = LayerInfo {
            digest: layer.digest,
            size: layer.size,
            entries: layer.entries,
            existed: true,
        };
        if self.has_layer(&layer.digest) {
            return Ok(info);
        }
        layer.index.publish(&self.index_path(&layer.digest))?;
        sync_dir(&self.index_dir())?;
        if !self.has_blob(&layer.digest) {
            layer.blob.publish(&self.blob_path(&layer.digest))?;
            sync_dir(&self.blob_dir())?;
        }
        info.existed = false;
        Ok(info)
    }

    /// The persisted index of a stored layer.
    pub fn layer_index(&self, d: &Digest) -> Result<LayerIndex> {
        let p = self.index_path(d);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing(*d));
            }
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        Ok(LayerIndex::decode(&bytes, d)?)
    }

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
        write_atomic_in(&self.tmp_dir(), &p, &bytes, 0o666)?;
        Ok(out)
    }

    fn lock_refs(&self) -> Result<RefsLock> {
        let p = self.private_dir().join("lock");
        let file = open_lock_file(&p)?;
        file.lock().map_err(io_err("lock", &p))?;
        Ok(RefsLock { _file: file })
    }

    /// Takes a lease: blocks while garbage is being collected, then holds off collection until
    /// dropped.
    pub fn lease(&self) -> Result<Lease> {
        let p = self.private_dir().join("gc.lock");
        let file = open_lock_file(&p)?;
        file.lock_shared().map_err(io_err("lock", &p))?;
        Ok(Lease { _file: file })
    }

    /// Tries to start garbage collection: `None` while any lease is held.
    pub fn try_gc(&self) -> Result<Option<GcGuard>> {
        let p = self.private_dir().join("gc.lock");
        let file = open_lock_file(&p)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(GcGuard { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &p)(e)),
        }
    }

    /// Starts garbage collection, waiting for every lease to end.
    pub fn gc(&self) -> Result<GcGuard> {
        let p = self.private_dir().join("gc.lock");
        let file = open_lock_file(&p)?;
        file.lock().map_err(io_err("lock", &p))?;
        Ok(GcGuard { _file: file })
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

    /// Deletes a blob and its layer index. Only allowed while collecting garbage.
    pub fn remove_blob(&self, d: &Digest, _gc: &GcGuard) -> Result<()> {
        for p in [self.index_path(d), self.blob_path(d)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
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

    /// Re-hashes a stored blob; `Ok(false)` if its bytes no longer match its name.
    pub fn verify_blob(&self, d: &Digest) -> Result<bool> {
        let p = self.blob_path(d);
        let mut r = HashingReader::new(self.open_blob(d)?);
        io::copy(&mut r, &mut io::sink()).map_err(io_err("read", &p))?;
        Ok(r.finish().0 == *d)
    }

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
    fn into_staged(mut self) -> Staged {
        self.persisted = true;
        Staged {
            path: std::mem::take(&mut self.path),
            published: false,
        }
    }
}

/// A closed file in `rimg/tmp/`, removed when dropped unless published.
#[derive(Debug)]
struct Staged {
    path: PathBuf,
    published: bool,
}

impl Staged {
    /// fsyncs the file and renames it to `dest` (the caller fsyncs `dest`'s directory).
    fn publish(mut self, dest: &Path) -> Result<()> {
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &self.path))?;
        fs::rename(&self.path, dest).map_err(io_err("rename into", dest))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A blob written to `rimg/tmp/` and hashed, not yet visible in the store.
#[derive(Debug)]
pub struct StagedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    file: Staged,
}

impl StagedBlob {
    /// Opens the staged bytes for reading.
    pub fn open(&self) -> Result<File> {
        File::open(&self.file.path).map_err(io_err("open", &self.file.path))
    }
}

/// A layer tar and its index written to `rimg/tmp/`, not yet visible in the store.
#[derive(Debug)]
pub struct StagedLayer {
    /// Digest of the uncompressed tar (its diff_id).
    pub digest: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// Number of entries in its index.
    pub entries: usize,
    blob: Staged,
    index: Staged,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The `RIMG_MAX_LAYER_SIZE` cap, if set.
fn max_layer_size() -> Result<Option<u64>> {
    let Some(v) = std::env::var_os(MAX_LAYER_SIZE_ENV) else {
        return Ok(None);
    };
    let v = v.to_string_lossy().into_owned();
    let t = v.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(StoreError::BadLimit(v)),
            };
            (&t[..i], 1u64 << shift)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .map(Some)
        .ok_or(StoreError::BadLimit(v))
}

/// Writes into a temp file of the store, refusing to grow it past a cap or to leave the
/// filesystem with less than [`MIN_FREE_BYTES`] (checked every [`SpaceGuard::CHECK_EVERY`]
/// bytes, so a stream that expands without end stops within that much of the limit).
///
/// Every [`SpaceGuard::WRITEBACK_EVERY`] bytes it also asks a helper thread to `fdatasync`
/// what is written so far, so the disk writes while the stream is still being produced and
/// the fsync of publishing only waits for the tail (on a 312 MB layer that fsync went from
/// about 0.5 s to a few ms). [`Write::flush`] waits for the helper and reports its error.
struct SpaceGuard<'a> {
    file: &'a File,
    limit: Option<u64>,
    written: u64,
    next_check: u64,
    next_writeback: u64,
    writeback: Option<Writeback>,
}

/// The helper thread of [`SpaceGuard`]: one `fdatasync` per request, requests that arrive
/// while one runs are merged into the next.
struct Writeback {
    tx: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Writeback {
    fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("rimg-writeback".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Writeback { tx, thread })
    }

    /// Stops the thread once its current sync is done; the first error it met, if any.
    fn finish(self) -> io::Result<()> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writeback thread panicked")))
    }
}

impl<'a> SpaceGuard<'a> {
    const CHECK_EVERY: u64 = 64 << 20;
    const WRITEBACK_EVERY: u64 = 32 << 20;

    fn new(file: &'a File, limit: Option<u64>) -> Self {
        SpaceGuard {
            file,
            limit,
            written: 0,
            next_check: 0,
            next_writeback: Self::WRITEBACK_EVERY,
            writeback: None,
        }
    }

    fn start_writeback(&mut self) -> io::Result<()> {
        self.next_writeback = self.written + Self::WRITEBACK_EVERY;
        let wb = match &mut self.writeback {
            Some(wb) => wb,
            None => self.writeback.insert(Writeback::start(self.file)?),
        };
        match wb.tx.try_send(()) {
            // Full: a sync is already queued and will cover these bytes too.
            Ok(()) | Err(std::sync::mpsc::TrySendError::Full(())) => Ok(()),
            // The thread stopped on an error: flush reports it.
            Err(std::sync::mpsc::TrySendError::Disconnected(())) => Ok(()),
        }
    }
}

impl Write for SpaceGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.written + buf.len() as u64;
        if let Some(limit) = self.limit {
            if after > limit {
                return Err(io::Error::other(StoreError::OverLimit { limit }));
            }
        }
        if after >= self.next_check {
            let st = rustix::fs::fstatvfs(self.file)?;
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            if free < MIN_FREE_BYTES + buf.len() as u64 {
                return Err(io::Error::other(StoreError::DiskFull {
                    free,
                    written: self.written,
                }));
            }
            self.next_check = after + Self::CHECK_EVERY;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written >= self.next_writeback {
            self.start_writeback()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(wb) = self.writeback.take() {
            wb.finish()?;
        }
        self.file.flush()
    }
}

/// A [`SpaceGuard`] refusal carried through an `io::Error` becomes its own store error;
/// anything else goes through `other`.
fn guard_err(e: io::Error, other: impl FnOnce(io::Error) -> StoreError) -> StoreError {
    match e.get_ref().and_then(|i| i.downcast_ref::<StoreError>()) {
        Some(StoreError::OverLimit { limit }) => StoreError::OverLimit { limit: *limit },
        Some(StoreError::DiskFull { free, written }) => StoreError::DiskFull {
            free: *free,
            written: *written,
        },
        _ => other(e),
    }
}

struct TeeReader<R, W> {
    src: R,
    sink: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
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

fn open_lock_file(p: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(p)
        .map_err(io_err("open", p))
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

fn write_atomic_in(tmp_dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
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

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "etc/hello", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

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

    #[test]
    fn ingest_layer_stores_blob_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let bytes = layer();
        let info = s.ingest_layer(&bytes[..], None).unwrap();
        assert_eq!(info.digest, Digest::of(&bytes));
        assert!(!info.existed);
        assert!(s.verify_blob(&info.digest).unwrap());
        let idx = s.layer_index(&info.digest).unwrap();
        let e = idx.find(b"etc/hello").unwrap();
        let blob = fs::read(s.blob_path(&info.digest)).unwrap();
        assert_eq!(&blob[e.offset as usize..][..5], b"hello");
        assert!(s.ingest_layer(&bytes[..], None).unwrap().existed);
        assert_eq!(
            fs::read_dir(dir.path().join("rimg/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn large_layer_written_while_syncing_is_intact() {
        // Past several WRITEBACK_EVERY marks, so the writeback thread syncs while the
        // stream is still being written, in odd-sized pieces.
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(72u32 << 20) / 4)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "big", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let info = s.ingest_layer(&tar[..], None).unwrap();
        assert_eq!(info.digest, Digest::of(&tar));
        assert!(s.verify_blob(&info.digest).unwrap());
        let blob = s.stage_blob(&data[..]).unwrap();
        assert_eq!(blob.digest, Digest::of(&data));
        assert_eq!(fs::read(&blob.file.path).unwrap(), data);
    }

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
    fn failed_ingest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let bytes = layer();
        let wrong = Digest::of(b"not it");
        assert!(matches!(
            s.ingest_layer(&bytes[..], Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(matches!(
            s.ingest_layer(&bytes[..700], None),
            Err(StoreError::Layer(_))
        ));
        assert!(s.list_blobs().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("rimg/tmp")).unwrap().count(),
            0
        );
        assert_eq!(fs::read_dir(s.index_dir()).unwrap().count(), 0);
    }

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
}
