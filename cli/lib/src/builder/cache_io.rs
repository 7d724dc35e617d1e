//! `--cache-to type=local,dest=DIR` and `--cache-from type=local,src=DIR`: the layer cache
//! of a build exported to a directory and imported into another store, so a fresh store (a
//! CI machine) gets the steps another built as CACHED.
//!
//! ```text
//! DIR/index.json                 {"entries": [cache entry, ...]}  (key parts + config)
//! DIR/blobs/sha256/<diff_id>     each layer an entry names, an uncompressed tar
//! ```
//!
//! An import checks each layer against its diff_id as the store ingests it, and records an
//! entry only when all its layers are in. Exporting into a directory that holds an earlier
//! export adds to it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rimg_fs::error::{io_err, IoError};
use serde::{Deserialize, Serialize};

use super::cache::{BuildCache, Entry};
use super::BuildError;
use crate::image::Images;

/// The index of an exported cache.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: Vec<Entry>,
}

/// Parses `--cache-to`/`--cache-from`: `type=local,dest=DIR` (or `src=DIR`), or a bare
/// directory. Other types are refused with a clear message.
pub fn parse_local(spec: &str, key: &str) -> Result<PathBuf, String> {
    if !spec.contains('=') {
        return Ok(PathBuf::from(spec));
    }
    let (mut ty, mut path) = (None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => ty = Some(v.to_string()),
            Some((k, v)) if k == key => path = Some(PathBuf::from(v)),
            // BuildKit's options rimg has no use for (mode=max, compression=…) are accepted.
            Some(_) => {}
            None => return Err(format!("invalid cache option {field:?}")),
        }
    }
    match ty.as_deref() {
        Some("local") | None => path.ok_or_else(|| format!("type=local needs {key}=DIR")),
        Some(o) => Err(format!(
            "cache type {o} is not supported (use type=local,{key}=DIR)"
        )),
    }
}

fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.json")
}

fn blob_path(dir: &Path, hex: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(hex)
}

fn read_index(dir: &Path) -> Result<Index, IoError> {
    let p = index_path(dir);
    match fs::read(&p) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| IoError::new("parse", &p, io::Error::other(e)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
        Err(e) => Err(IoError::new("read", &p, e)),
    }
}

/// Writes `entries` and their layers into `dir`, keeping what an earlier export left there.
pub fn export(images: &Images, entries: &[Entry], dir: &Path) -> Result<(), BuildError> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
    let mut index = read_index(dir)?;
    let store = images.store();
    for e in entries {
        for d in &e.config.rootfs.diff_ids {
            let dest = blob_path(dir, &d.hex());
            if dest.is_file() {
                continue;
            }
            let src = store.blob_path(d);
            let tmp = dest.with_extension("tmp");
            fs::copy(&src, &tmp).map_err(io_err("copy", &src))?;
            fs::rename(&tmp, &dest).map_err(io_err("rename", &tmp))?;
        }
        let key = e.parts.key();
        index.entries.retain(|x| x.parts.key() != key);
        index.entries.push(e.clone());
    }
    let bytes = serde_json::to_vec_pretty(&index)
        .map_err(|e| IoError::new("serialize", dir, io::Error::other(e)))?;
    let p = index_path(dir);
    let tmp = p.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, &p).map_err(io_err("rename", &tmp))?;
    Ok(())
}

/// Imports the entries of an exported cache (and their layers) into the store's build
/// cache. Returns how many entries were added.
pub fn import(images: &Images, cache: &BuildCache, dir: &Path) -> Result<usize, BuildError> {
    let index = read_index(dir)?;
    if !index_path(dir).is_file() {
        return Err(IoError::new(
            "import cache from",
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "no index.json: not an exported cache",
            ),
        )
        .into());
    }
    let store = images.store();
    let mut added = 0;
    for e in index.entries {
        if cache.get(&e.parts).is_some() {
            continue;
        }
        for d in &e.config.rootfs.diff_ids {
            if store.has_layer(d) {
                continue;
            }
            let p = blob_path(dir, &d.hex());
            let f = fs::File::open(&p).map_err(io_err("open", &p))?;
            store.ingest_layer(io::BufReader::new(f), Some(d))?;
        }
        cache
            .put(&e)
            .map_err(|err| IoError::new("write build cache entry", dir, err))?;
        added += 1;
    }
    Ok(added)
}
