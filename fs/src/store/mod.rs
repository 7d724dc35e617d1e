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
//!     gc.turn                  exclusive while a collector waits: new leases queue behind it
//!     tmp/                     in-flight writes; never visible under blobs/
//!     indexes/sha256/<hex>     the layer index of each layer blob
//!     …                        containers, mounts and the build cache (owned by the CLI)
//! ```
//!
//! Architecture Invariant: a file under `blobs/sha256/` always hashes to its name. Every write
//! goes temp file → fsync → rename → fsync(dir), so an interrupted command leaves at worst an
//! orphan in `rimg/tmp/`, never a partial blob or a partial `index.json`.

mod atomic;
mod layout;
mod refs;
mod space;
mod staging;

pub use atomic::{sync_dir, write_atomic, write_private, TempFile};
pub use refs::{GcGuard, Lease};
pub use space::Guarded;
pub use staging::{StagedBlob, StagedLayer, WriteLayerError};

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layer_index::IndexError;

/// The OCI layout version rimg writes.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The most free space a write into the store leaves on its filesystem by default: a layer
/// that would eat into the floor (a gzip bomb, a runaway stream) is refused rather than
/// filling the disk. The default floor is [`MIN_FREE_PERCENT`] of the filesystem, at most this.
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// The default floor as a percentage of the store's filesystem (capped at [`MIN_FREE_BYTES`]).
pub const MIN_FREE_PERCENT: u64 = 5;
/// The environment variable that sets the floor: bytes, a number with a `K`/`M`/`G`/`T`
/// suffix, or a percentage of the filesystem (`2%`); `0` turns it off.
pub const MIN_FREE_ENV: &str = "RIMG_MIN_FREE";
/// The environment variable that caps one blob written into the store (bytes, or with a
/// `K`/`M`/`G`/`T` suffix). Unset: no cap but the free-space floor ([`MIN_FREE_ENV`]).
pub const MAX_LAYER_SIZE_ENV: &str = "RIMG_MAX_LAYER_SIZE";
/// The largest JSON document (manifest, config, index) rimg reads into memory.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
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
    /// A layer could not be indexed.
    #[error("invalid layer")]
    Layer(#[source] IndexError),
    /// A blob being written grew over the `RIMG_MAX_LAYER_SIZE` cap.
    #[error("layer is over the {limit}-byte limit ({MAX_LAYER_SIZE_ENV})")]
    OverLimit {
        /// The cap.
        limit: u64,
    },
    /// Writing on would leave the store's filesystem with less than the floor.
    #[error("the store's filesystem has {free} bytes free and rimg keeps {floor} free ({MIN_FREE_ENV}): refusing to write {what}")]
    DiskFull {
        /// Bytes free when the write stopped.
        free: u64,
        /// The floor kept free.
        floor: u64,
        /// What was being written (a layer past N bytes, `index.json`, ...).
        what: String,
    },
    /// The `RIMG_MAX_LAYER_SIZE` value is not a size.
    #[error("{MAX_LAYER_SIZE_ENV}={0:?} is not a size (bytes, or a number with K, M, G or T)")]
    BadLimit(String),
    /// The `RIMG_MIN_FREE` value is not a size or a percentage.
    #[error(
        "{MIN_FREE_ENV}={0:?} is not a size (bytes, a number with K, M, G or T, or a percentage)"
    )]
    BadMinFree(String),
    /// Reading a layer from its source failed (a truncated or corrupt compressed stream).
    #[error("reading layer")]
    ReadLayer(#[source] io::Error),
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

use crate::error::{io_err, IoError};

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

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
