//! `rimg system check`: verifies the whole store, and repairs what is broken.
//!
//! Checked: every blob hashes to its name; every layer index decodes and equals the index
//! rebuilt from its blob; every `index.json` entry names a readable manifest whose config and
//! layers (and the config's diff_ids) are present and intact; every pin (container and mount
//! records, build cache) names an image that is. Unreferenced blobs and files left in
//! `rimg/tmp/` by interrupted commands are garbage, not damage: they are counted, and
//! `--repair` removes them too.
//!
//! Architecture Invariant: the check holds the garbage-collection guard, so no writer is
//! half-way through a command while the store is read; a repair never removes a blob that an
//! intact image (or pin) uses.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::BufReader;
use std::path::PathBuf;

use rimg_fs::error::io_err;
use rimg_fs::layer_index::IndexBuilder;
use rimg_fs::store::GcGuard;
use rimg_fs::tar_stream::TarStream;
use rimg_fs::{Digest, LayerIndex};

use rimg_fs::store::REF_NAME;

use super::{digest_of, Images, Result};

/// One thing wrong with the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A blob's bytes do not hash to its name.
    CorruptBlob(Digest),
    /// A file under `blobs/sha256/` that is not named by a digest.
    StrayBlobFile(PathBuf),
    /// A layer index that does not decode or differs from its blob's index.
    BadIndex {
        /// The layer.
        layer: Digest,
        /// What is wrong.
        why: String,
    },
    /// A file among the layer indexes not named by a digest.
    OrphanIndex(PathBuf),
    /// A layer an image uses has no index.
    MissingIndex(Digest),
    /// An `index.json` entry whose image is incomplete or damaged.
    DanglingRef {
        /// The entry's name (or `<none>`).
        name: String,
        /// Its manifest.
        manifest: Digest,
        /// What is wrong.
        why: String,
    },
    /// A pin (container, mount, build cache) whose image is incomplete or damaged.
    BrokenPin {
        /// The pin's name (`container-…`, `mount-…`).
        pin: String,
        /// What is wrong.
        why: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob(d) => write!(f, "blob {d}: content does not match its digest"),
            Problem::StrayBlobFile(p) => write!(f, "{}: not a blob name", p.display()),
            Problem::BadIndex { layer, why } => write!(f, "layer index of {layer}: {why}"),
            Problem::OrphanIndex(p) => write!(f, "{}: not a layer index name", p.display()),
            Problem::MissingIndex(d) => write!(f, "layer {d}: no layer index"),
            Problem::DanglingRef {
                name,
                manifest,
                why,
            } => write!(f, "image {name} (manifest {manifest}): {why}"),
            Problem::BrokenPin { pin, why } => write!(f, "record {pin}: {why}"),
        }
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Damage, one entry per thing wrong.
    pub problems: Vec<Problem>,
    /// Blobs nothing references (garbage, not damage).
    pub unreferenced: Vec<Digest>,
    /// Files left in `rimg/tmp/` by interrupted commands.
    pub temp_files: usize,
    /// Layer indexes whose blob was never published: a layer's index is written before its
    /// blob, so a command killed between the two leaves one (garbage, not damage).
    pub stale_indexes: Vec<PathBuf>,
    /// Blobs verified.
    pub blobs: usize,
    /// Images (index.json manifests) verified.
    pub images: usize,
}

/// Verifies the whole store while `gc` keeps every writer out.
pub fn check(images: &Images, _gc: &GcGuard) -> Result<Report> {
    let store = images.store();
    let mut report = Report::default();

    // Blobs.
    let blob_dir = store.root().join("blobs/sha256");
    let mut present = BTreeSet::new();
    let mut corrupt = BTreeSet::new();
    for e in fs::read_dir(&blob_dir).map_err(io_err("list", &blob_dir))? {
        let e = e.map_err(io_err("list", &blob_dir))?;
        let Some(d) = e.file_name().to_str().and_then(Digest::from_hex) else {
            report.problems.push(Problem::StrayBlobFile(e.path()));
            continue;
        };
        report.blobs += 1;
        present.insert(d);
        if !store.verify_blob(&d)? {
            corrupt.insert(d);
            report.problems.push(Problem::CorruptBlob(d));
        }
    }

    // Layer indexes.
    let index_dir = store.private_dir().join("indexes/sha256");
    let mut indexed = BTreeSet::new();
    if let Ok(entries) = fs::read_dir(&index_dir) {
        for e in entries {
            let e = e.map_err(io_err("list", &index_dir))?;
            match e.file_name().to_str().and_then(Digest::from_hex) {
                Some(d) if present.contains(&d) => {
                    indexed.insert(d);
                    if corrupt.contains(&d) {
                        continue;
                    }
                    if let Some(why) = index_problem(images, &d) {
                        report.problems.push(Problem::BadIndex { layer: d, why });
                    }
                }
                Some(_) => report.stale_indexes.push(e.path()),
                None => report.problems.push(Problem::OrphanIndex(e.path())),
            }
        }
    }

    // index.json entries and pins: every blob an image needs is present and intact.
    let intact = |d: &Digest| present.contains(d) && !corrupt.contains(d);
    let mut missing_index = BTreeSet::new();
    let mut image_problem = |manifest: &Digest| -> Option<String> {
        if !intact(manifest) {
            return Some(missing_or_corrupt("manifest", manifest, &present));
        }
        let m = match images.read_manifest(manifest) {
            Ok(m) => m,
            Err(e) => return Some(crate::error_line(&e)),
        };
        let Ok(config) = Digest::try_from(m.config().digest()) else {
            return Some("the manifest's config digest is invalid".into());
        };
        if !intact(&config) {
            return Some(missing_or_corrupt("config", &config, &present));
        }
        let cfg = match images.read_config(&config) {
            Ok(c) => c,
            Err(e) => return Some(crate::error_line(&e)),
        };
        for l in m.layers() {
            let Ok(d) = Digest::try_from(l.digest()) else {
                return Some(format!("layer digest {:?} is invalid", l.digest()));
            };
            if !intact(&d) {
                return Some(missing_or_corrupt("layer", &d, &present));
            }
        }
        for d in &cfg.rootfs.diff_ids {
            if !intact(d) {
                return Some(missing_or_corrupt("layer", d, &present));
            }
            if !indexed.contains(d) {
                missing_index.insert(*d);
            }
        }
        None
    };
    let refs = store.refs()?;
    let mut seen = BTreeSet::new();
    let mut dangling: BTreeMap<Digest, String> = BTreeMap::new();
    for desc in refs.manifests() {
        let name = desc
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME).cloned())
            .unwrap_or_else(|| "<none>".into());
        let Some(manifest) = digest_of(desc) else {
            report.problems.push(Problem::DanglingRef {
                name,
                manifest: Digest::of(b""),
                why: format!("invalid digest {:?}", desc.digest().to_string()),
            });
            continue;
        };
        if seen.insert(manifest) {
            report.images += 1;
        }
        let why = match dangling.get(&manifest) {
            Some(w) => Some(w.clone()),
            None => image_problem(&manifest),
        };
        if let Some(why) = why {
            dangling.insert(manifest, why.clone());
            report.problems.push(Problem::DanglingRef {
                name,
                manifest,
                why,
            });
        }
    }
    for (pin, digests) in images.pins()? {
        for d in digests {
            // Pins name a manifest (containers, mounts) or single blobs (build cache).
            let why = if present.contains(&d) && images.read_manifest(&d).is_err() {
                (!intact(&d)).then(|| missing_or_corrupt("blob", &d, &present))
            } else {
                image_problem(&d).map(|w| format!("image {d}: {w}"))
            };
            if let Some(why) = why {
                report.problems.push(Problem::BrokenPin {
                    pin: pin.clone(),
                    why,
                });
            }
        }
    }
    for d in missing_index {
        report.problems.push(Problem::MissingIndex(d));
    }

    // Garbage.
    let keep = images.reachable()?;
    report.unreferenced = present.difference(&keep).copied().collect();
    report.temp_files = fs::read_dir(store.private_dir().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    Ok(report)
}

fn missing_or_corrupt(what: &str, d: &Digest, present: &BTreeSet<Digest>) -> String {
    if present.contains(d) {
        format!("{what} {d} is corrupt")
    } else {
        format!("{what} {d} is missing")
    }
}

/// Why the stored index of layer `d` is wrong, if it is: it must decode and equal the index
/// rebuilt from the blob.
fn index_problem(images: &Images, d: &Digest) -> Option<String> {
    let store = images.store();
    let stored = match fs::read(store.index_path(d)) {
        Ok(b) => b,
        Err(e) => return Some(format!("reading: {e}")),
    };
    if let Err(e) = LayerIndex::decode(&stored, d) {
        return Some(crate::error_line(&e));
    }
    match reindex(images, d) {
        Ok(fresh) if fresh.encode() == stored => None,
        Ok(_) => Some("does not match its blob".into()),
        Err(why) => Some(format!("its blob is not a valid layer: {why}")),
    }
}

/// The index of a stored layer blob, built afresh.
fn reindex(images: &Images, d: &Digest) -> std::result::Result<LayerIndex, String> {
    let f = images
        .store()
        .open_blob(d)
        .map_err(|e| crate::error_line(&e))?;
    let mut stream = TarStream::new(BufReader::with_capacity(1 << 20, f));
    let mut b = IndexBuilder::new();
    while let Some(e) = stream.next_entry().map_err(|e| crate::error_line(&e))? {
        b.push(e).map_err(|e| crate::error_line(&e))?;
    }
    let (size, _) = stream.finish().map_err(|e| crate::error_line(&e))?;
    Ok(b.finish(*d, size))
}

/// Removes what `report` found broken, then the garbage; returns one line per thing done.
/// Corrupt blobs and the `index.json` entries of damaged images go; bad or missing layer
/// indexes of intact blobs are rebuilt; broken pins (records of containers and mounts) are
/// only reported, since removing them is `rimg rm`'s and `rimgfs umount`'s job.
pub fn repair(images: &Images, report: &Report, gc: &GcGuard) -> Result<Vec<String>> {
    let store = images.store();
    let mut done = Vec::new();
    let mut dangling = BTreeSet::new();
    for p in &report.problems {
        match p {
            Problem::CorruptBlob(d) => {
                store.remove_blob(d, gc)?;
                done.push(format!("removed corrupt blob {d}"));
            }
            Problem::StrayBlobFile(path) | Problem::OrphanIndex(path) => {
                fs::remove_file(path).map_err(io_err("remove", path))?;
                done.push(format!("removed {}", path.display()));
            }
            Problem::BadIndex { layer, .. } | Problem::MissingIndex(layer) => {
                match reindex(images, layer) {
                    Ok(index) => {
                        store.write_file(&store.index_path(layer), &index.encode())?;
                        done.push(format!("rebuilt the layer index of {layer}"));
                    }
                    Err(_) => {
                        store.remove_blob(layer, gc)?;
                        done.push(format!("removed invalid layer blob {layer}"));
                    }
                }
            }
            Problem::DanglingRef { manifest, why, .. } if !why.starts_with("invalid digest") => {
                dangling.insert(*manifest);
            }
            Problem::DanglingRef { .. } | Problem::BrokenPin { .. } => {}
        }
    }
    for m in &dangling {
        let names: Vec<String> = store
            .refs()?
            .manifests()
            .iter()
            .filter(|desc| digest_of(desc) == Some(*m))
            .map(|desc| {
                desc.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME).cloned())
                    .unwrap_or_else(|| "<none>".into())
            })
            .collect();
        images.remove_manifest(m)?;
        done.push(format!(
            "removed index.json entry {} ({m})",
            names.join(", ")
        ));
    }
    if report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::DanglingRef { why, .. } if why.starts_with("invalid digest")))
    {
        store.update_refs(|index| -> Result<()> {
            let mut ms = index.manifests().clone();
            ms.retain(|desc| digest_of(desc).is_some());
            index.set_manifests(ms);
            Ok(())
        })?;
        done.push("removed index.json entries with invalid digests".into());
    }
    for path in &report.stale_indexes {
        fs::remove_file(path).map_err(io_err("remove", path))?;
        done.push(format!(
            "removed the layer index of an unpublished blob {}",
            path.display()
        ));
    }
    for (d, size) in images.collect_garbage(gc)? {
        done.push(format!("removed unreferenced blob {d} ({size} bytes)"));
    }
    if report.temp_files > 0 {
        done.push(format!(
            "removed {} temporary files of interrupted commands",
            report.temp_files
        ));
    }
    Ok(done)
}
