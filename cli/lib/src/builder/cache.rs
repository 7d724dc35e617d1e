//! The content-addressed build cache.
//!
//! ```text
//! $RIMG_ROOT/rimg/build-cache/<key hex>.json   one entry per step that ran
//! $RIMG_ROOT/rimg/pins/cache-<image id hex>    the layers a build's stages ended with
//! ```
//!
//! A step's key is the sha256 of: the parent state (the digest of the image config the
//! step starts from, which names every layer and setting below it), the timestamp epoch, the
//! instruction after substitution, and for COPY/ADD every source file's relative path, mode
//! and content digest (never its mtime). An entry records those parts and the config the step
//! produced, so a hit needs no other document, and a miss can be explained by comparing the
//! parts with the entries that share the parent or the instruction.
//!
//! Entries are written without fsync: losing one to a crash only costs a cache miss. A hit
//! is honoured only if every layer the entry's config names is still stored.
//! Architecture Invariant: the layers a cache entry uses stay stored while the image of the
//! build that wrote the entry is listed: each build pins its stages' layers under
//! `cache-<image id>`, and `image prune` drops pins whose image is gone.

use std::fs;
use std::io;
use std::path::PathBuf;

use rimg_fs::{ContentStore, Digest};
use serde::{Deserialize, Serialize};

use crate::image::{ImageConfig, Images, Result as ImageResult};

/// Pins of builds are named with this prefix and the image id's hex.
pub const BUILD_PIN_PREFIX: &str = "cache-";
/// Pin-name prefix of a build in progress (`building-<pid>-<start time>`): the layers of its
/// finished stages while a RUN step runs without a lease. Dropped when the build ends, or by
/// `image prune` once its process is gone.
pub const PROGRESS_PIN_PREFIX: &str = "building-";

/// One input file of a COPY/ADD step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    /// Path relative to the context (or the source image's root).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// `sha256:…` of the content, `dir`, or `symlink:TARGET`.
    pub content: String,
}

/// The parts of a step's cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    /// The id (config digest) of the state the step starts from.
    pub parent: Digest,
    /// The timestamp epoch the build writes.
    pub epoch: i64,
    /// The instruction after substitution (plus what else it reads, such as build args).
    pub instruction: String,
    /// Input files, sorted by path.
    pub files: Vec<FileKey>,
}

impl KeyParts {
    /// The key: sha256 of the parts' canonical JSON.
    pub fn key(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A stored cache entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// What the key was made of.
    pub parts: KeyParts,
    /// The config the step produced (its `rootfs.diff_ids` are the state's layers).
    pub config: ImageConfig,
}

/// The build cache of one store.
#[derive(Clone, Debug)]
pub struct BuildCache {
    store: ContentStore,
    dir: PathBuf,
}

impl BuildCache {
    /// The cache in `store` (the directory is created on first write).
    pub fn new(store: &ContentStore) -> Self {
        BuildCache {
            store: store.clone(),
            dir: store.private_dir().join("build-cache"),
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The entry for `parts`, if it exists and its layers are all stored.
    pub fn get(&self, parts: &KeyParts) -> Option<Entry> {
        let bytes = fs::read(self.path(&parts.key())).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        if entry.parts != *parts {
            return None;
        }
        let complete = entry
            .config
            .rootfs
            .diff_ids
            .iter()
            .all(|d| self.store.has_layer(d));
        complete.then_some(entry)
    }

    /// Records a step's result.
    pub fn put(&self, entry: &Entry) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let dest = self.path(&entry.parts.key());
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            entry.parts.key().hex()
        ));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, dest)
    }

    fn entries(&self) -> Vec<Entry> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Entry>(&b).ok())
            .collect()
    }

    /// Says why `parts` missed: which part differs from the closest earlier entry.
    pub fn explain(&self, parts: &KeyParts) -> String {
        let all = self.entries();
        let same_parent: Vec<&Entry> = all
            .iter()
            .filter(|e| e.parts.parent == parts.parent && e.parts.epoch == parts.epoch)
            .collect();
        if let Some(e) = same_parent
            .iter()
            .find(|e| e.parts.instruction == parts.instruction)
        {
            return explain_files(&e.parts.files, &parts.files);
        }
        if all
            .iter()
            .any(|e| e.parts.instruction == parts.instruction && e.parts.parent != parts.parent)
        {
            return "the parent changed: this instruction was built before on another parent \
                    (an earlier step or the base image differs)"
                .into();
        }
        if all
            .iter()
            .any(|e| e.parts.instruction == parts.instruction && e.parts.epoch != parts.epoch)
        {
            return "the timestamp epoch changed (SOURCE_DATE_EPOCH or the base image's created time)"
                .into();
        }
        let keyword = parts.instruction.split_whitespace().next().unwrap_or("");
        let before = same_parent
            .iter()
            .find(|e| e.parts.instruction.split_whitespace().next() == Some(keyword))
            .or(same_parent.first());
        match before {
            Some(e) => match mounts_changed(&e.parts.instruction, &parts.instruction) {
                Some(why) => why,
                None => format!(
                    "the instruction changed: after this parent the cache has `{}`",
                    e.parts.instruction
                ),
            },
            None => "no earlier build of this step on this parent".into(),
        }
    }

    /// Pins `layers` for the build that produced image `id`.
    pub fn pin_build(&self, images: &Images, id: &Digest, layers: &[Digest]) -> ImageResult<()> {
        images.pin(&format!("{BUILD_PIN_PREFIX}{}", id.hex()), layers)
    }

    /// Drops the pins of builds whose image is no longer listed (and the progress pins of
    /// builds whose process is gone), so garbage collection may
    /// take their layers, and the entries whose layers are gone. Returns how many pins went.
    pub fn release_unused(&self, images: &Images) -> ImageResult<usize> {
        let listed: Vec<String> = images.list()?.iter().map(|i| i.id.hex()).collect();
        let mut released = 0;
        for (name, _) in images.pins()? {
            if let Some(owner) = name.strip_prefix(PROGRESS_PIN_PREFIX) {
                if !build_alive(owner) {
                    images.unpin(&name)?;
                    released += 1;
                }
                continue;
            }
            let Some(hex) = name.strip_prefix(BUILD_PIN_PREFIX) else {
                continue;
            };
            if !listed.iter().any(|l| l == hex) {
                images.unpin(&name)?;
                released += 1;
            }
        }
        Ok(released)
    }

    /// `builder prune`: removes every cache mount (returning the bytes they held), and the
    /// pins of builds whose image is gone, or with `all` every build's pin and every entry.
    /// Garbage collection then takes the layers nothing else holds.
    pub fn prune(&self, images: &Images, all: bool) -> ImageResult<u64> {
        let mounts = self.dir.with_file_name(super::mounts::CACHE_MOUNTS_DIR);
        let freed = dir_size(&mounts);
        match fs::remove_dir_all(&mounts) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(rimg_fs::error::IoError::new("remove", &mounts, e).into()),
        }
        if !all {
            self.release_unused(images)?;
            return Ok(freed);
        }
        for (name, _) in images.pins()? {
            if name.starts_with(BUILD_PIN_PREFIX) {
                images.unpin(&name)?;
            }
        }
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(freed)
    }

    /// Removes entries whose layers are no longer stored (after garbage collection).
    pub fn remove_stale(&self) -> usize {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let stale = match fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            {
                Some(entry) => !entry
                    .config
                    .rootfs
                    .diff_ids
                    .iter()
                    .all(|d| self.store.has_layer(d)),
                None => true,
            };
            if stale && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Whether the build named by a progress pin (`<pid>-<start time>`) still runs.
fn build_alive(owner: &str) -> bool {
    let Some((pid, start)) = owner.split_once('-') else {
        return false;
    };
    match (pid.parse::<i32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => crate::container::process_start_time(pid) == Some(start),
        _ => false,
    }
}

/// When two RUN steps differ only in their `--mount`s, says which mounts differ.
fn mounts_changed(old: &str, new: &str) -> Option<String> {
    let split = |s: &str| -> (Vec<String>, String) {
        let mut mounts = Vec::new();
        let mut rest = Vec::new();
        for w in s.split(' ') {
            if w.starts_with("--mount=") {
                mounts.push(w.to_string());
            } else {
                rest.push(w);
            }
        }
        (mounts, rest.join(" "))
    };
    let (old_m, old_rest) = split(old);
    let (new_m, new_rest) = split(new);
    if old_rest != new_rest || old_m == new_m {
        return None;
    }
    let gone: Vec<&String> = old_m.iter().filter(|m| !new_m.contains(m)).collect();
    let added: Vec<&String> = new_m.iter().filter(|m| !old_m.contains(m)).collect();
    let list = |v: &[&String]| {
        v.iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(match (gone.is_empty(), added.is_empty()) {
        (false, false) => format!(
            "the RUN's mounts changed: {} is now {}",
            list(&gone),
            list(&added)
        ),
        (true, _) => format!("the RUN's mounts changed: {} was added", list(&added)),
        (_, true) => format!("the RUN's mounts changed: {} was removed", list(&gone)),
    })
}

/// The bytes of the files below `dir` (0 when it is missing).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn explain_files(old: &[FileKey], new: &[FileKey]) -> String {
    let mut changes = Vec::new();
    for n in new {
        match old.iter().find(|o| o.path == n.path) {
            None => changes.push(format!("{} was added", n.path)),
            Some(o) if o.content != n.content => {
                changes.push(format!("{} changed content", n.path))
            }
            Some(o) if o.mode != n.mode => changes.push(format!(
                "{} changed mode {:o} -> {:o}",
                n.path, o.mode, n.mode
            )),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.path == o.path) {
            changes.push(format!("{} was removed", o.path));
        }
    }
    if changes.is_empty() {
        return "the source files are the same but the entry is gone (its layers were pruned)"
            .into();
    }
    let more = changes.len().saturating_sub(5);
    changes.truncate(5);
    let mut s = format!("source files changed: {}", changes.join(", "));
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_the_mounts_that_changed() {
        let old = "RUN --mount=type=cache,target=/a,id=/a /bin/sh -c make";
        let new = "RUN --mount=type=cache,target=/b,id=/b /bin/sh -c make";
        let why = mounts_changed(old, new).unwrap();
        assert!(
            why.contains("target=/a") && why.contains("target=/b"),
            "{why}"
        );
        assert!(mounts_changed(old, "RUN /bin/sh -c make")
            .unwrap()
            .contains("was removed"));
        assert_eq!(
            mounts_changed(
                old,
                "RUN --mount=type=cache,target=/a,id=/a /bin/sh -c other"
            ),
            None
        );
    }

    fn parts(parent: &[u8], ins: &str, files: &[(&str, &[u8])]) -> KeyParts {
        KeyParts {
            parent: Digest::of(parent),
            epoch: 0,
            instruction: ins.into(),
            files: files
                .iter()
                .map(|(p, c)| FileKey {
                    path: p.to_string(),
                    mode: 0o644,
                    content: Digest::of(c).to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn hits_misses_and_explanations() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let cache = BuildCache::new(&store);
        let a = parts(b"p", "COPY app.js .", &[("app.js", b"v1")]);
        assert!(cache.get(&a).is_none());
        assert_eq!(
            cache.explain(&a),
            "no earlier build of this step on this parent"
        );
        cache
            .put(&Entry {
                parts: a.clone(),
                config: ImageConfig::new_for_host(),
            })
            .unwrap();
        assert!(cache.get(&a).is_some());
        let b = parts(b"p", "COPY app.js .", &[("app.js", b"v2")]);
        assert!(cache.get(&b).is_none());
        assert_eq!(
            cache.explain(&b),
            "source files changed: app.js changed content"
        );
        let c = parts(b"p", "COPY other.js .", &[]);
        assert!(cache.explain(&c).contains("the instruction changed"));
        let d = parts(b"q", "COPY app.js .", &[("app.js", b"v1")]);
        assert!(cache.explain(&d).contains("the parent changed"));
    }
}
