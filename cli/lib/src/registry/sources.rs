//! Where each layer is known to live in registries, compressed.
//!
//! The store keeps layers uncompressed, named by diff_id; registries hold them compressed,
//! named by the compressed digest. A push can only skip a blob (`HEAD`) or mount it from
//! another repository if it knows that digest without compressing the layer again, so every
//! pull and push records, per diff_id, the compressed blobs it moved and the repositories
//! (`registry/repository`) that have them — what containers/image calls its blob info cache.
//!
//! ```text
//! $RIMG_ROOT/rimg/registry/layers/<diff_id hex>.json
//!     [{"digest":"sha256:…","mediaType":"…+gzip","size":123,"repos":["127.0.0.1:5000/x"]}]
//! ```
//!
//! It is a cache: a missing or unreadable file only means more work, never a wrong result
//! (the registry is always asked before a blob is skipped or mounted).

use std::fs;
use std::path::PathBuf;

use rimg_fs::{ContentStore, Digest};
use serde::{Deserialize, Serialize};

/// One compressed form of a layer and the repositories known to hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSource {
    /// The compressed blob's digest.
    pub digest: Digest,
    /// Its media type (which says the compression).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// `registry/repository` names that have it.
    pub repos: Vec<String>,
}

/// The known sources of the layers of one store.
pub struct Sources {
    dir: PathBuf,
    store: ContentStore,
}

impl Sources {
    /// The sources recorded in `store`.
    pub fn new(store: &ContentStore) -> Self {
        Sources {
            dir: store.private_dir().join("registry").join("layers"),
            store: store.clone(),
        }
    }

    fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", diff_id.hex()))
    }

    /// Every known compressed form of the layer.
    pub fn get(&self, diff_id: &Digest) -> Vec<BlobSource> {
        fs::read(self.path(diff_id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records that `repo` (`registry/repository`) has `blob` as a form of layer `diff_id`.
    /// Best effort: failing to record only costs a later push some work.
    pub fn record(&self, diff_id: &Digest, blob: &Digest, media_type: &str, size: u64, repo: &str) {
        let mut all = self.get(diff_id);
        match all.iter_mut().find(|s| s.digest == *blob) {
            Some(s) => {
                if !s.repos.iter().any(|r| r == repo) {
                    s.repos.push(repo.to_string());
                }
            }
            None => all.push(BlobSource {
                digest: *blob,
                media_type: media_type.to_string(),
                size,
                repos: vec![repo.to_string()],
            }),
        }
        if fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(&all) {
            let _ = self.store.write_file(&self.path(diff_id), &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_accumulate_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let s = Sources::new(&store);
        let layer = Digest::of(b"layer");
        let blob = Digest::of(b"blob");
        assert!(s.get(&layer).is_empty());
        s.record(&layer, &blob, "gz", 4, "r/a");
        s.record(&layer, &blob, "gz", 4, "r/b");
        s.record(&layer, &blob, "gz", 4, "r/a");
        let got = s.get(&layer);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].repos, vec!["r/a".to_string(), "r/b".to_string()]);
    }
}
