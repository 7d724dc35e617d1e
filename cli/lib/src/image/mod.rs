//! The image model over the content store: manifests, configs, tags, and garbage collection.
//!
//! An image is a manifest in `index.json`; its id is the digest of its config, as in Docker.
//! A tag is a descriptor annotated `org.opencontainers.image.ref.name`; an image whose last
//! tag moves away stays in `index.json` without a name (Docker's `<none>` image) until pruned.

pub mod archive;
pub mod change;
pub mod check;
pub mod commit;
pub mod config;
pub mod filter;
pub mod media;
pub mod prune;
pub mod reference;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use rimg_fs::error::{io_err, IoError};
use rimg_fs::store::{GcGuard, StoreError, MAX_JSON_BYTES, REF_NAME};
use rimg_fs::{ContentStore, Digest};

pub use config::{History, ImageConfig, RunConfig};
pub use reference::{Reference, ReferenceError};

/// Pins named with this prefix belong to containers: an image they pin is "in use".
pub const CONTAINER_PIN_PREFIX: &str = "container-";
/// Annotation on index.json descriptors recording registry digests (`repo@sha256:…`).
pub const REPO_DIGESTS: &str = "io.rimg.repo-digests";

/// Errors of the image model.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// No image matches.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An id prefix matches several images.
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// A manifest or config is malformed.
    #[error("{what} {digest}: {message}")]
    BadDocument {
        /// `manifest` or `config`.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        message: String,
    },
    /// A layer has a media type rimg cannot read.
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),
    /// Decompressing a layer failed.
    #[error("decompressing layer {digest}")]
    Decompress {
        /// The compressed blob.
        digest: Digest,
        /// The error.
        source: io::Error,
    },
    /// A layer's uncompressed digest differs from the config's diff_id.
    #[error("layer {layer} does not match diff_id {diff_id} in the image config")]
    DiffIdMismatch {
        /// The layer.
        layer: Digest,
        /// The expected diff_id.
        diff_id: Digest,
    },
    /// I/O outside the store.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Result type of the image model.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Compression of a layer blob, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression a layer media type implies, if rimg knows it.
    pub fn from_media_type(m: &str) -> Option<Self> {
        Some(match m {
            media::OCI_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | media::DOCKER_LAYER_TAR => Compression::None,
            media::OCI_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | media::DOCKER_LAYER_GZIP
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            media::OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | media::DOCKER_LAYER_ZSTD => Compression::Zstd,
            _ => return None,
        })
    }

    /// Sniffs the compression from a blob's first bytes (docker-archive layers carry no type).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Wraps a reader so it yields the uncompressed bytes.
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        match self {
            Compression::None => Ok(Box::new(r)),
            _ => self.buffered_decoder(BufReader::new(r)),
        }
    }

    /// [`Compression::decoder`] for a reader that has its own buffer, which the decoder
    /// reads from in place.
    pub fn buffered_decoder<'a, R: BufRead + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        })
    }
}

/// An image in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// Digest of its manifest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// Digest of its config: the image id.
    pub id: Digest,
    /// The config.
    pub config: ImageConfig,
    /// Tags pointing at it, sorted.
    pub tags: Vec<Reference>,
    /// Registry digests recorded for it (`repo@sha256:…`).
    pub repo_digests: Vec<String>,
}

impl Image {
    /// The layers' diff_ids, bottom first: the blobs a mount reads.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.config.rootfs.diff_ids
    }

    /// The image's size as Docker reports it (SIZE): the sum of its layers' sizes (see
    /// [`layer_size`]).
    pub fn size(&self, store: &ContentStore) -> u64 {
        self.diff_ids().iter().map(|d| layer_size(store, d)).sum()
    }
}

impl Image {
    /// [`Image::size`] from sizes computed beforehand ([`Images::layer_sizes`]).
    pub fn size_from(&self, sizes: &HashMap<Digest, u64>) -> u64 {
        self.diff_ids()
            .iter()
            .map(|d| sizes.get(d).copied().unwrap_or(0))
            .sum()
    }
}

/// The size of one stored layer as Docker reports it: the bytes its files take once
/// extracted ([`rimg_fs::LayerIndex::content_size`]), not the length of the tar with its
/// headers and padding. A layer without an index counts as its blob's length.
pub fn layer_size(store: &ContentStore, d: &Digest) -> u64 {
    match store.layer_index(d) {
        Ok(index) => index.content_size(),
        Err(_) => store.blob_size(d).unwrap_or(0),
    }
}

/// A manifest listed in `index.json`, before its config is read.
#[derive(Clone, Debug)]
struct Listed {
    manifest: Digest,
    names: Vec<String>,
    repo_digests: Vec<String>,
}

/// The images of one store.
#[derive(Clone, Debug)]
pub struct Images {
    store: ContentStore,
}

impl Images {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        Ok(Images {
            store: ContentStore::open(root)?,
        })
    }

    /// The content store underneath.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    fn listed(&self) -> Result<Vec<Listed>> {
        let index = self.store.refs()?;
        let mut by_manifest: BTreeMap<Digest, Listed> = BTreeMap::new();
        let mut order = Vec::new();
        for desc in index.manifests() {
            let Ok(d) = Digest::try_from(desc.digest()) else {
                continue;
            };
            let media = desc.media_type().to_string();
            if !media::is_manifest(&media) {
                continue;
            }
            let entry = by_manifest.entry(d).or_insert_with(|| {
                order.push(d);
                Listed {
                    manifest: d,
                    names: Vec::new(),
                    repo_digests: Vec::new(),
                }
            });
            if let Some(ann) = desc.annotations() {
                if let Some(name) = ann.get(REF_NAME) {
                    entry.names.push(name.clone());
                }
                if let Some(rd) = ann.get(REPO_DIGESTS) {
                    for r in rd.split(',').filter(|s| !s.is_empty()) {
                        if !entry.repo_digests.iter().any(|x| x == r) {
                            entry.repo_digests.push(r.to_string());
                        }
                    }
                }
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|d| by_manifest.remove(&d))
            .collect())
    }

    fn load(&self, l: Listed) -> Result<Image> {
        let manifest = self.read_manifest(&l.manifest)?;
        let id =
            Digest::try_from(manifest.config().digest()).map_err(|e| ImageError::BadDocument {
                what: "manifest",
                digest: l.manifest,
                message: e.to_string(),
            })?;
        let config = self.read_config(&id)?;
        let mut tags: Vec<Reference> = l
            .names
            .iter()
            .filter_map(|n| Reference::from_ref_name(n))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(Image {
            manifest_digest: l.manifest,
            manifest,
            id,
            config,
            tags,
            repo_digests: l.repo_digests,
        })
    }

    /// Reads and parses a stored manifest.
    pub fn read_manifest(&self, d: &Digest) -> Result<ImageManifest> {
        let bytes = self.store.read_blob(d, MAX_JSON_BYTES)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::BadDocument {
            what: "manifest",
            digest: *d,
            message: e.to_string(),
        })
    }

    /// Reads and parses a stored config.
    pub fn read_config(&self, d: &Digest) -> Result<ImageConfig> {
        let bytes = self.store.read_blob(d, MAX_JSON_BYTES)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::BadDocument {
            what: "config",
            digest: *d,
            message: e.to_string(),
        })
    }

    /// Every image, in `index.json` order. Images whose documents cannot be read are skipped.
    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(self
            .listed()?
            .into_iter()
            .filter_map(|l| self.load(l).ok())
            .collect())
    }

    /// Finds an image by reference (`name[:tag]`, `name@digest`), by image id or id prefix
    /// (`3f8a4339aadd`, `sha256:3f8a…`), or by manifest digest.
    pub fn resolve(&self, name: &str) -> Result<Image> {
        let listed = self.listed()?;
        if let Ok(r) = Reference::parse(name) {
            if let Some(d) = r.digest {
                if let Some(l) = listed.iter().find(|l| l.manifest == d) {
                    return self.load(l.clone());
                }
                // A registry digest recorded by pull or push (`repo@sha256:…`).
                let repo_digest = format!("{}@{d}", r.repository());
                if let Some(l) = listed
                    .iter()
                    .find(|l| l.repo_digests.contains(&repo_digest))
                {
                    return self.load(l.clone());
                }
            } else {
                let want = r.ref_name();
                if let Some(l) = listed.iter().find(|l| {
                    l.names
                        .iter()
                        .any(|n| n == &want || Reference::from_ref_name(n).is_some_and(|x| x == r))
                }) {
                    return self.load(l.clone());
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let mut found: Vec<Image> = Vec::new();
            for l in listed {
                if l.manifest.hex().starts_with(&hex) {
                    if let Ok(img) = self.load(l) {
                        found.push(img);
                    }
                    continue;
                }
                if let Ok(img) = self.load(l) {
                    if img.id.hex().starts_with(&hex) {
                        found.push(img);
                    }
                }
            }
            found.dedup_by(|a, b| a.id == b.id);
            match found.len() {
                0 => {}
                1 => return Ok(found.remove(0)),
                _ => return Err(ImageError::Ambiguous(name.to_string())),
            }
        }
        // An image stored but not listed (a build step's state being mounted): by its full
        // manifest digest, or by its full id when a pin holds its manifest.
        if let Ok(d) = Digest::parse(name) {
            let unlisted = |manifest: Digest| {
                self.load(Listed {
                    manifest,
                    names: Vec::new(),
                    repo_digests: Vec::new(),
                })
                .ok()
            };
            if self.store.has_blob(&d) && !self.store.has_layer(&d) {
                if let Some(img) = unlisted(d) {
                    return Ok(img);
                }
                for (_, pinned) in self.pins()? {
                    for m in pinned.into_iter().filter(|m| !self.store.has_layer(m)) {
                        if let Some(img) = unlisted(m).filter(|i| i.id == d) {
                            return Ok(img);
                        }
                    }
                }
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// Makes sure every layer of `image` is stored uncompressed with its layer index (images
    /// written into the layout by other tools may carry compressed layers), and returns the
    /// diff_ids.
    pub fn ensure_layers(&self, image: &Image) -> Result<Vec<Digest>> {
        let diff_ids = image.diff_ids().to_vec();
        if image.manifest.layers().len() != diff_ids.len() {
            return Err(ImageError::BadDocument {
                what: "manifest",
                digest: image.manifest_digest,
                message: format!(
                    "{} layers but the config lists {} diff_ids",
                    image.manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        // Not queued behind a waiting collector: the mount daemon of a build's RUN step runs
        // this while the build, which waits for it, holds a lease.
        let _lease = self.store.lease_now()?;
        for (desc, diff_id) in image.manifest.layers().iter().zip(&diff_ids) {
            if self.store.has_layer(diff_id) {
                continue;
            }
            let blob = Digest::try_from(desc.digest()).map_err(|e| ImageError::BadDocument {
                what: "manifest",
                digest: image.manifest_digest,
                message: e.to_string(),
            })?;
            let media = desc.media_type().to_string();
            let comp = Compression::from_media_type(&media)
                .ok_or(ImageError::UnsupportedMediaType(media))?;
            let file = self.store.open_blob(&blob)?;
            let reader = comp
                .decoder(file)
                .map_err(|source| ImageError::Decompress {
                    digest: blob,
                    source,
                })?;
            match self.store.ingest_layer(reader, Some(diff_id)) {
                Ok(_) => {}
                Err(StoreError::DigestMismatch { .. }) => {
                    return Err(ImageError::DiffIdMismatch {
                        layer: blob,
                        diff_id: *diff_id,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(diff_ids)
    }

    /// Writes a new image from stored layers (bottom first) and a config whose
    /// `rootfs.diff_ids` the layers replace, and tags it with each of `tags`.
    pub fn create(
        &self,
        layers: &[Digest],
        mut config: ImageConfig,
        tags: &[Reference],
    ) -> Result<Image> {
        let _lease = self.store.lease()?;
        config.rootfs.diff_ids = layers.to_vec();
        let config_bytes = serde_json::to_vec(&config).map_err(|e| ImageError::BadDocument {
            what: "config",
            digest: Digest::of(b""),
            message: e.to_string(),
        })?;
        let mut image = self.write_image(&config_bytes)?;
        self.add_to_index(&[(&image, tags)])?;
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        image.tags = tags;
        Ok(image)
    }

    /// Stores `config_bytes` verbatim (so the image id is the digest of exactly these bytes)
    /// and an OCI manifest over the uncompressed layers its `rootfs.diff_ids` name, which
    /// must already be in the store. The image is not listed in `index.json` yet (see
    /// [`Images::add_to_index`]); the caller holds a lease until it is.
    pub fn write_image(&self, config_bytes: &[u8]) -> Result<Image> {
        let id = Digest::of(config_bytes);
        let config: ImageConfig =
            serde_json::from_slice(config_bytes).map_err(|e| ImageError::BadDocument {
                what: "config",
                digest: id,
                message: e.to_string(),
            })?;
        let mut layer_descs = Vec::with_capacity(config.rootfs.diff_ids.len());
        for d in &config.rootfs.diff_ids {
            let size = self.store.blob_size(d)?;
            layer_descs.push(descriptor(media::OCI_LAYER_TAR, size, d)?);
        }
        self.store.put_blob(config_bytes)?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(
                media::OCI_CONFIG,
                config_bytes.len() as u64,
                &id,
            )?)
            .layers(layer_descs)
            .build()
            .map_err(|e| ImageError::BadDocument {
                what: "manifest",
                digest: id,
                message: e.to_string(),
            })?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::BadDocument {
                what: "manifest",
                digest: id,
                message: e.to_string(),
            })?;
        let manifest_digest = self.store.put_blob(&manifest_bytes)?;
        Ok(Image {
            manifest_digest,
            manifest,
            id,
            config,
            tags: Vec::new(),
            repo_digests: Vec::new(),
        })
    }

    /// Lists each image in `index.json` and moves each of its tags to it, all in one update
    /// of `index.json`.
    pub fn add_to_index(&self, entries: &[(&Image, &[Reference])]) -> Result<()> {
        let mut sized = Vec::with_capacity(entries.len());
        for (image, tags) in entries {
            let size = self.store.blob_size(&image.manifest_digest)?;
            sized.push((image.manifest_digest, size, *tags));
        }
        self.store.update_refs(|index| -> Result<()> {
            let mut manifests = index.manifests().clone();
            for (manifest_digest, size, tags) in &sized {
                if !manifests
                    .iter()
                    .any(|m| digest_of(m) == Some(*manifest_digest))
                {
                    manifests.push(descriptor(media::OCI_MANIFEST, *size, manifest_digest)?);
                }
                for t in *tags {
                    move_tag(&mut manifests, t, *manifest_digest, *size)?;
                }
            }
            index.set_manifests(manifests);
            Ok(())
        })
    }

    /// Points `tag` at `image` (Docker's `tag`).
    pub fn tag(&self, image: &Image, tag: &Reference) -> Result<()> {
        let _lease = self.store.lease()?;
        let size = self.store.blob_size(&image.manifest_digest)?;
        self.store.update_refs(|index| -> Result<()> {
            let mut manifests = index.manifests().clone();
            if !manifests
                .iter()
                .any(|m| digest_of(m) == Some(image.manifest_digest))
            {
                manifests.push(descriptor(
                    media::OCI_MANIFEST,
                    size,
                    &image.manifest_digest,
                )?);
            }
            move_tag(&mut manifests, tag, image.manifest_digest, size)?;
            index.set_manifests(manifests);
            Ok(())
        })
    }

    /// Records that `image` is known in a registry as `repo@digest`.
    pub fn add_repo_digest(&self, image: &Image, repo_digest: &str) -> Result<()> {
        self.store.update_refs(|index| -> Result<()> {
            let mut manifests = index.manifests().clone();
            for m in manifests
                .iter_mut()
                .filter(|m| digest_of(m) == Some(image.manifest_digest))
            {
                let mut ann = m.annotations().clone().unwrap_or_default();
                let mut all: Vec<String> = ann
                    .get(REPO_DIGESTS)
                    .map(|s| s.split(',').map(String::from).collect())
                    .unwrap_or_default();
                if !all.iter().any(|x| x == repo_digest) {
                    all.push(repo_digest.to_string());
                }
                ann.insert(REPO_DIGESTS.into(), all.join(","));
                m.set_annotations(Some(ann));
            }
            index.set_manifests(manifests);
            Ok(())
        })
    }

    /// Removes one tag. The image stays (as `<none>`) if this was its last tag and
    /// `keep_dangling`; otherwise an image left with no tag leaves `index.json`.
    /// Returns the manifest the tag pointed at.
    pub fn untag(&self, tag: &Reference, keep_dangling: bool) -> Result<Option<Digest>> {
        let want = tag.ref_name();
        self.store.update_refs(|index| -> Result<Option<Digest>> {
            let mut manifests = index.manifests().clone();
            let Some(pos) = manifests
                .iter()
                .position(|m| ref_name(m) == Some(want.as_str()))
            else {
                return Ok(None);
            };
            let removed = manifests.remove(pos);
            let digest = digest_of(&removed);
            let still_listed = manifests.iter().any(|m| digest_of(m) == digest);
            if !still_listed && keep_dangling {
                let mut plain = removed.clone();
                let mut ann = removed.annotations().clone().unwrap_or_default();
                ann.remove(REF_NAME);
                plain.set_annotations(if ann.is_empty() { None } else { Some(ann) });
                manifests.insert(pos, plain);
            }
            index.set_manifests(manifests);
            Ok(digest)
        })
    }

    /// Removes every `index.json` entry for a manifest.
    pub fn remove_manifest(&self, manifest: &Digest) -> Result<()> {
        self.store.update_refs(|index| -> Result<()> {
            let mut manifests = index.manifests().clone();
            manifests.retain(|m| digest_of(m) != Some(*manifest));
            index.set_manifests(manifests);
            Ok(())
        })
    }

    /// Pins `digests` (manifests, configs or layers) under `name` so garbage collection keeps
    /// them: containers pin their image, mounts their layers, the build cache its layers.
    pub fn pin(&self, name: &str, digests: &[Digest]) -> Result<()> {
        self.write_pin(name, digests, true)
    }

    /// [`Images::pin`] for runtime state (mounts): atomic but not fsynced, since a crash
    /// ends what it protects.
    pub fn pin_volatile(&self, name: &str, digests: &[Digest]) -> Result<()> {
        self.write_pin(name, digests, false)
    }

    fn write_pin(&self, name: &str, digests: &[Digest], durable: bool) -> Result<()> {
        let dir = self.pins_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let text: String = digests.iter().map(|d| format!("{d}\n")).collect();
        let path = dir.join(pin_file_name(name));
        if durable {
            self.store.write_file(&path, text.as_bytes())?;
        } else {
            self.store.write_volatile_file(&path, text.as_bytes())?;
        }
        Ok(())
    }

    /// Removes a pin.
    pub fn unpin(&self, name: &str) -> Result<()> {
        let p = self.pins_dir().join(pin_file_name(name));
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IoError::new("remove", p, source).into()),
        }
    }

    /// Every pin: its name and digests.
    pub fn pins(&self) -> Result<Vec<(String, Vec<Digest>)>> {
        let dir = self.pins_dir();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(IoError::new("list", dir, source).into()),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            let ds = text
                .lines()
                .filter_map(|l| Digest::parse(l.trim()).ok())
                .collect();
            out.push((name, ds));
        }
        out.sort();
        Ok(out)
    }

    /// The containers (by pin name, without the prefix) whose pin holds this image's manifest.
    pub fn containers_using(&self, image: &Image) -> Result<Vec<String>> {
        Ok(self
            .pins()?
            .into_iter()
            .filter(|(name, ds)| {
                name.starts_with(CONTAINER_PIN_PREFIX)
                    && (ds.contains(&image.manifest_digest) || ds.contains(&image.id))
            })
            .map(|(name, _)| name[CONTAINER_PIN_PREFIX.len()..].to_string())
            .collect())
    }

    fn pins_dir(&self) -> PathBuf {
        self.store.private_dir().join("pins")
    }

    /// Every blob an image needs: manifest, config, layer blobs and their uncompressed
    /// forms (diff_ids).
    pub fn blobs_of(&self, manifest: &Digest) -> BTreeSet<Digest> {
        let mut out = BTreeSet::from([*manifest]);
        if self.store.has_layer(manifest) {
            // A pinned layer (the build cache pins layers): nothing else to read.
            return out;
        }
        if let Ok(m) = self.read_manifest(manifest) {
            if let Ok(c) = Digest::try_from(m.config().digest()) {
                out.insert(c);
                if let Ok(cfg) = self.read_config(&c) {
                    out.extend(cfg.rootfs.diff_ids.iter().copied());
                }
            }
            out.extend(
                m.layers()
                    .iter()
                    .filter_map(|l| Digest::try_from(l.digest()).ok()),
            );
        }
        out
    }

    /// The blobs reachable from `index.json` and from every pin.
    pub fn reachable(&self) -> Result<BTreeSet<Digest>> {
        let mut keep = BTreeSet::new();
        for l in self.listed()? {
            keep.extend(self.blobs_of(&l.manifest));
        }
        for (_, ds) in self.pins()? {
            for d in ds {
                keep.extend(self.blobs_of(&d));
            }
        }
        Ok(keep)
    }

    /// Deletes every unreachable blob (and orphans of interrupted commands) while `gc` is
    /// held. Returns the digests and sizes removed.
    pub fn collect_garbage(&self, gc: &GcGuard) -> Result<Vec<(Digest, u64)>> {
        let keep = self.reachable()?;
        let mut removed = Vec::new();
        for (d, size) in self.store.list_blobs()? {
            if !keep.contains(&d) {
                self.store.remove_blob(&d, gc)?;
                removed.push((d, size));
            }
        }
        self.store.remove_orphans(gc)?;
        Ok(removed)
    }

    /// The bytes of the files interrupted commands left in `rimg/tmp/` (a killed commit's
    /// half-written layer), which [`Images::collect_garbage`] removes: what a prune reclaims
    /// besides blobs. Counted while `gc` is held, so no live command's file is among them.
    pub fn temp_bytes(&self, _gc: &GcGuard) -> u64 {
        let Ok(dir) = fs::read_dir(self.store.private_dir().join("tmp")) else {
            return 0;
        };
        dir.filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// The size of every layer of `images` ([`layer_size`]), each computed once.
    pub fn layer_sizes(&self, images: &[Image]) -> HashMap<Digest, u64> {
        let mut sizes = HashMap::new();
        for d in images.iter().flat_map(|i| i.diff_ids()) {
            sizes
                .entry(*d)
                .or_insert_with(|| layer_size(&self.store, d));
        }
        sizes
    }
}

fn pin_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn descriptor(media: &str, size: u64, d: &Digest) -> Result<Descriptor> {
    let digest = d.to_oci().map_err(|e| ImageError::BadDocument {
        what: "manifest",
        digest: *d,
        message: e.to_string(),
    })?;
    Ok(Descriptor::new(MediaType::from(media), size, digest))
}

pub(crate) fn digest_of(m: &Descriptor) -> Option<Digest> {
    Digest::try_from(m.digest()).ok()
}

fn ref_name(m: &Descriptor) -> Option<&str> {
    m.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

/// Moves `tag` to `manifest`: removes it from any other descriptor (which stays as a
/// dangling entry if it was that manifest's last name) and adds a named descriptor.
fn move_tag(
    manifests: &mut Vec<Descriptor>,
    tag: &Reference,
    manifest: Digest,
    size: u64,
) -> Result<()> {
    let name = tag.ref_name();
    if let Some(pos) = manifests
        .iter()
        .position(|m| ref_name(m) == Some(name.as_str()))
    {
        if digest_of(&manifests[pos]) == Some(manifest) {
            return Ok(());
        }
        let old = manifests.remove(pos);
        let old_digest = digest_of(&old);
        if !manifests.iter().any(|m| digest_of(m) == old_digest) {
            let mut plain = old.clone();
            plain.set_annotations(None);
            manifests.insert(pos, plain);
        }
    }
    let mut desc = descriptor(media::OCI_MANIFEST, size, &manifest)?;
    desc.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name)])));
    // A dangling entry for the same manifest is replaced by the named one.
    if let Some(pos) = manifests
        .iter()
        .position(|m| digest_of(m) == Some(manifest) && ref_name(m).is_none())
    {
        manifests[pos] = desc;
    } else {
        manifests.push(desc);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    fn image(images: &Images, data: &[u8], tag: &str) -> Image {
        let l = images
            .store()
            .ingest_layer(&layer("f", data)[..], None)
            .unwrap();
        images
            .create(
                &[l.digest],
                ImageConfig::new_for_host(),
                &[Reference::parse(tag).unwrap()],
            )
            .unwrap()
    }

    #[test]
    fn create_resolve_tag_and_untag() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(dir.path()).unwrap();
        let a = image(&images, b"a", "app");
        assert_eq!(images.resolve("app").unwrap().id, a.id);
        assert_eq!(images.resolve("app:latest").unwrap().id, a.id);
        assert_eq!(images.resolve(&a.id.short()).unwrap().id, a.id);
        assert_eq!(images.resolve(&a.id.to_string()).unwrap().id, a.id);
        assert!(matches!(
            images.resolve("nope"),
            Err(ImageError::NotFound(_))
        ));

        // Moving the tag leaves the old image dangling.
        let b = image(&images, b"b", "app");
        let list = images.list().unwrap();
        assert_eq!(list.len(), 2);
        let old = list.iter().find(|i| i.id == a.id).unwrap();
        assert!(old.tags.is_empty());
        assert_eq!(images.resolve("app").unwrap().id, b.id);

        images
            .tag(&b, &Reference::parse("other:v1").unwrap())
            .unwrap();
        assert_eq!(images.resolve("other:v1").unwrap().tags.len(), 2);
        images
            .untag(&Reference::parse("other:v1").unwrap(), true)
            .unwrap();
        assert!(images.resolve("other:v1").is_err());
        assert_eq!(images.resolve("app").unwrap().tags.len(), 1);
    }

    #[test]
    fn garbage_collection_keeps_reachable_and_pinned_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(dir.path()).unwrap();
        let a = image(&images, b"a", "a");
        let b = image(&images, b"b", "b");
        images.pin("container-x", &[b.manifest_digest]).unwrap();
        images
            .untag(&Reference::parse("a").unwrap(), false)
            .unwrap();
        images
            .untag(&Reference::parse("b").unwrap(), false)
            .unwrap();
        let gc = images.store().gc().unwrap();
        let removed: Vec<Digest> = images
            .collect_garbage(&gc)
            .unwrap()
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert!(removed.contains(&a.id));
        assert!(removed.contains(&a.diff_ids()[0]));
        assert!(!removed.contains(&b.id));
        assert!(images.store().has_layer(&b.diff_ids()[0]));
    }
}
