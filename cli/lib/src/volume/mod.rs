//! Volumes: directories kept outside every container's upper dir, bind-mounted into
//! containers (`-v NAME:/path`, `--mount type=volume`, an image's `VOLUME`). Laid out as
//! Docker's local driver lays them out:
//!
//! ```text
//! $RIMG_ROOT/rimg/volumes/
//!   .lock              held while a volume is created or removed
//!   <name>/
//!     volume.json      name, creation time, labels, options, anonymous or not
//!     _data/           what the container sees at its mount point
//! ```
//!
//! A container records its mounts (`ContainerConfig::mounts`, [`ContainerMount`]); a volume no
//! container records is dangling. Named volumes outlive their containers; anonymous ones go
//! with `rm -v` and `--rm`.

pub mod copy;
pub mod inspect;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rimg_fs::error::{io_err, IoError};
use serde::{Deserialize, Serialize};

use crate::container::{ContainerError, Containers};
use crate::image::Images;
use crate::random::{self, RandomError};
use crate::runtime::mounts::{MountKind, MountSpec};
use crate::units::rfc3339_nanos_now;

pub use spec::{plan_mounts, MountArgs};

/// The label Docker puts on an anonymous volume.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// Not a valid volume name.
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    /// The volume is used by containers.
    #[error("remove {name}: volume is in use - [{}]", .containers.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The containers using it (full ids).
        containers: Vec<String>,
    },
    /// A `-v`, `--mount`, `--tmpfs` or `--volumes-from` argument is wrong.
    #[error("{0}")]
    Spec(String),
    /// A volume's metadata is malformed.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The container store failed.
    #[error(transparent)]
    Container(#[from] Box<ContainerError>),
    /// The random source failed (an anonymous volume's name).
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A volume's files could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl From<ContainerError> for VolumeError {
    fn from(e: ContainerError) -> Self {
        VolumeError::Container(Box::new(e))
    }
}

/// Result type of the volume store.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// What is recorded about a volume (`volume.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMeta {
    /// The name (64 hex digits for an anonymous volume).
    pub name: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// `--label` pairs.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--opt` / `volume-opt` pairs (recorded; the local driver takes none of them).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Created for one container (`-v /path`, an image's `VOLUME`).
    #[serde(default)]
    pub anonymous: bool,
}

/// One volume.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Its metadata.
    pub meta: VolumeMeta,
    /// Its `_data` directory: what containers mount.
    pub mountpoint: PathBuf,
}

/// What one mount of a container is, as it records it and `inspect` shows it (Docker's
/// `MountPoint`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerMount {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// The host path mounted (a volume's `_data`; empty for tmpfs).
    #[serde(default)]
    pub source: PathBuf,
    /// The path in the container.
    pub destination: String,
    /// The mode as given (`ro`, `z`, …; empty when none).
    #[serde(default)]
    pub mode: String,
    /// Writable.
    pub rw: bool,
    /// A volume created for this container only (removed by `rm -v`).
    #[serde(default)]
    pub anonymous: bool,
    /// Fill an empty volume with the image's files at the destination first.
    #[serde(default)]
    pub copy_up: bool,
    /// Filesystem options (tmpfs `size=`, `mode=`; `noexec`…).
    #[serde(default)]
    pub options: Vec<String>,
}

impl ContainerMount {
    /// The mount as the runtime makes it.
    pub fn spec(&self) -> MountSpec {
        MountSpec {
            kind: if self.kind == "tmpfs" {
                MountKind::Tmpfs
            } else {
                MountKind::Bind
            },
            source: self.source.clone(),
            target: self.destination.clone(),
            readonly: !self.rw,
            options: self.options.clone(),
        }
    }
}

/// Whether `name` is a valid local volume name (Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn is_valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    name.len() >= 2
        && b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// What [`Volumes::prune`] removed.
#[derive(Debug, Default)]
pub struct Pruned {
    /// The names of the removed volumes.
    pub names: Vec<String>,
    /// The bytes their files took.
    pub reclaimed: u64,
}

/// One volume's disk usage (`system df -v`).
#[derive(Clone, Debug)]
pub struct VolumeUsage {
    /// The name.
    pub name: String,
    /// How many containers use it.
    pub links: usize,
    /// The bytes of its files.
    pub size: u64,
}

/// The volumes of one store.
#[derive(Clone, Debug)]
pub struct Volumes {
    dir: PathBuf,
    images: Images,
}

fn read_meta(path: &Path) -> Result<VolumeMeta> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|e| VolumeError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The bytes of every regular file under `dir` (symlinks not followed), as Docker counts a
/// volume's size.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

impl Volumes {
    /// The volumes of the store `images` is open on.
    pub fn open(images: &Images) -> Result<Self> {
        let dir = images.store().private_dir().join("volumes");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(Volumes {
            dir,
            images: images.clone(),
        })
    }

    /// The directory of the volume `name`.
    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn lock(&self) -> Result<fs::File> {
        Ok(crate::container::lock_exclusive(&self.dir.join(".lock"))?)
    }

    /// Creates the volume `name` (a random 64-hex name when `None`, marked anonymous when
    /// `anonymous`), or returns it when it exists (Docker's `volume create` of an existing
    /// name, and a named volume's first use).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume> {
        let name = match name {
            Some(n) if !is_valid_name(n) => return Err(VolumeError::InvalidName(n.to_string())),
            Some(n) => n.to_string(),
            None => random::hex_id(32)?,
        };
        let _lock = self.lock()?;
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let dir = self.volume_dir(&name);
        let data = dir.join("_data");
        fs::create_dir_all(&data).map_err(io_err("creating", &data))?;
        let mut labels = labels;
        if anonymous {
            labels.entry(ANONYMOUS_LABEL.into()).or_default();
        }
        let meta = VolumeMeta {
            name: name.clone(),
            created_at: rfc3339_nanos_now(),
            labels,
            options,
            anonymous,
        };
        let path = dir.join("volume.json");
        let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| VolumeError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tmp = dir.join("volume.json.tmp");
        fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("renaming", &path))?;
        Ok(Volume {
            meta,
            mountpoint: data,
        })
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        if !is_valid_name(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let dir = self.volume_dir(name);
        let path = dir.join("volume.json");
        if !path.exists() {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        Ok(Volume {
            meta: read_meta(&path)?,
            mountpoint: dir.join("_data"),
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(v) = self.get(&name) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        Ok(out)
    }

    /// Which containers (full ids) use each volume, by volume name.
    pub fn users(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let containers = Containers::open(&self.images)?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in containers.list()? {
            for m in &c.config.mounts {
                if m.kind == "volume" {
                    out.entry(m.name.clone())
                        .or_default()
                        .insert(c.id().to_string());
                }
            }
        }
        Ok(out)
    }

    /// Removes the volume `name`; an error while a container (in any state) uses it, as
    /// Docker's, `-f` included. `force` makes a missing volume no error.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let v = match self.get(name) {
            Ok(v) => v,
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(users) = self.users()?.remove(name) {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                containers: users.into_iter().collect(),
            });
        }
        let _lock = self.lock()?;
        self.delete(&v.meta.name)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let dir = self.volume_dir(name);
        // The metadata goes first: a half-deleted volume is no volume.
        let meta = dir.join("volume.json");
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(IoError::new("removing", meta, e).into()),
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new("removing", dir, e).into()),
        }
    }

    /// Removes the unused volumes: the anonymous ones, or with `all` every one no container
    /// uses (Docker's `volume prune [-a]`; `system prune --volumes` calls this).
    pub fn prune(&self, all: bool) -> Result<Pruned> {
        let users = self.users()?;
        let mut pruned = Pruned::default();
        let _lock = self.lock()?;
        for v in self.list()? {
            if users.contains_key(&v.meta.name) || !(all || v.meta.anonymous) {
                continue;
            }
            pruned.reclaimed += dir_size(&v.mountpoint);
            self.delete(&v.meta.name)?;
            pruned.names.push(v.meta.name);
        }
        Ok(pruned)
    }

    /// What `system check` finds wrong with the volumes: a container mount naming a volume
    /// that is gone, a volume without its `_data`, and directories without `volume.json`
    /// (left by an interrupted create or remove; [`Volumes::repair`] removes them).
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for (name, users) in self.users()? {
            if self.get(&name).is_err() {
                for id in users {
                    problems.push(format!(
                        "container {}: volume {name} is missing",
                        &id[..12.min(id.len())]
                    ));
                }
            }
        }
        for v in self.list()? {
            if !v.mountpoint.is_dir() {
                problems.push(format!(
                    "volume {}: {} is missing",
                    v.meta.name,
                    v.mountpoint.display()
                ));
            }
        }
        for dir in self.leftovers()? {
            problems.push(format!(
                "leftover volume directory {} (no volume.json)",
                dir.display()
            ));
        }
        Ok(problems)
    }

    fn leftovers(&self) -> Result<Vec<PathBuf>> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        Ok(entries
            .flatten()
            .filter(|e| e.path().is_dir() && !e.path().join("volume.json").exists())
            .map(|e| e.path())
            .collect())
    }

    /// Removes what [`Volumes::check`] calls leftovers; returns what it removed.
    pub fn repair(&self) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let mut done = Vec::new();
        for dir in self.leftovers()? {
            fs::remove_dir_all(&dir).map_err(io_err("removing", &dir))?;
            done.push(format!(
                "removed leftover volume directory {}",
                dir.display()
            ));
        }
        Ok(done)
    }

    /// Every volume's usage (`system df`): the containers using it and its size.
    pub fn usage(&self) -> Result<Vec<VolumeUsage>> {
        let users = self.users()?;
        Ok(self
            .list()?
            .into_iter()
            .map(|v| VolumeUsage {
                links: users.get(&v.meta.name).map_or(0, BTreeSet::len),
                size: dir_size(&v.mountpoint),
                name: v.meta.name,
            })
            .collect())
    }

    /// Removes the anonymous volumes among `mounts` that no container uses any more
    /// (`rm -v`, `--rm`, after the container is gone).
    pub fn remove_anonymous(&self, mounts: &[ContainerMount]) -> Result<()> {
        let users = self.users()?;
        for m in mounts {
            if m.kind == "volume" && m.anonymous && !users.contains_key(&m.name) {
                let _lock = self.lock()?;
                self.delete(&m.name)?;
            }
        }
        Ok(())
    }
}

/// After a container is gone (`--rm`): removes its anonymous volumes no other container
/// uses, best effort (the container is gone either way; `volume prune` catches the rest).
pub fn remove_anonymous_of(images: &Images, mounts: &[ContainerMount]) {
    if mounts.iter().any(|m| m.anonymous) {
        if let Ok(v) = Volumes::open(images) {
            let _ = v.remove_anonymous(mounts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_docker() {
        assert!(is_valid_name("data"));
        assert!(is_valid_name("my_vol.1-x"));
        assert!(!is_valid_name("a"));
        assert!(!is_valid_name("_data"));
        assert!(!is_valid_name("foo/bar"));
        assert!(!is_valid_name("./x"));
    }

    #[test]
    fn create_list_prune_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(&dir.path().join("store")).unwrap();
        let vols = Volumes::open(&images).unwrap();
        let labels = BTreeMap::from([("team".to_string(), "db".to_string())]);
        let named = vols
            .create(Some("data"), labels, BTreeMap::new(), false)
            .unwrap();
        assert!(named.mountpoint.ends_with("volumes/data/_data"));
        assert!(named.mountpoint.is_dir());
        // Creating an existing name returns it unchanged.
        let again = vols
            .create(Some("data"), BTreeMap::new(), BTreeMap::new(), false)
            .unwrap();
        assert_eq!(again.meta, named.meta);
        let anon = vols
            .create(None, BTreeMap::new(), BTreeMap::new(), true)
            .unwrap();
        assert_eq!(anon.meta.name.len(), 64);
        assert!(anon.meta.labels.contains_key(ANONYMOUS_LABEL));
        fs::write(anon.mountpoint.join("f"), b"12345").unwrap();
        assert!(matches!(
            vols.create(Some("a/b"), BTreeMap::new(), BTreeMap::new(), false),
            Err(VolumeError::InvalidName(_))
        ));
        let names: Vec<String> = vols
            .list()
            .unwrap()
            .into_iter()
            .map(|v| v.meta.name)
            .collect();
        assert_eq!(names.len(), 2);
        // Without `all` only the anonymous one goes.
        let pruned = vols.prune(false).unwrap();
        assert_eq!(pruned.names, vec![anon.meta.name.clone()]);
        assert_eq!(pruned.reclaimed, 5);
        assert!(vols.check().unwrap().is_empty());
        // A directory without metadata is a leftover `repair` removes.
        fs::create_dir_all(dir.path().join("store/rimg/volumes/half/_data")).unwrap();
        assert_eq!(vols.check().unwrap().len(), 1);
        vols.repair().unwrap();
        assert!(vols.check().unwrap().is_empty());
        vols.remove("data", false).unwrap();
        assert!(matches!(vols.get("data"), Err(VolumeError::NotFound(_))));
        assert!(vols.remove("data", false).is_err());
        vols.remove("data", true).unwrap();
    }
}
