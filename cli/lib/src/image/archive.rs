//! Image archives: `load` reads OCI archives (a tar of an OCI image layout) and
//! docker-archives (`docker save`: `manifest.json`, config JSON files, layer tars); `save`
//! writes either.
//!
//! Loading is one pass over the archive, whatever order its members come in. Each member is
//! staged in `rimg/tmp/` as it streams past: members whose first bytes are a tar header or a
//! gzip/zstd magic number are decompressed and staged as layers (hashed twice — compressed and
//! uncompressed — and indexed in the same pass), everything else as plain blobs. Memory stays
//! bounded by one layer index at a time; nothing is written twice. When the archive ends, the
//! metadata (read back from the staged blobs, each capped at [`MAX_JSON_BYTES`]) is checked
//! against the staged members: every blob digest and size, every diff_id, every media type,
//! every name. Only when all of it holds are the layers and configs published and the tags
//! moved, in one update of `index.json`; on any error the staged files are removed and the
//! store is as it was.
//!
//! Images are stored as OCI manifests over uncompressed layers; their configs are stored byte
//! for byte, so image ids survive a load.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use rimg_fs::error::{io_err, IoError};
use rimg_fs::path::clean_rel;
use rimg_fs::store::{StagedBlob, StagedLayer, StoreError, MAX_JSON_BYTES, REF_NAME};
use rimg_fs::tar_stream::{is_header_block, EntryType, TarError, TarStream};
use rimg_fs::tar_write::TarWriter;
use rimg_fs::Digest;
use serde::{Deserialize, Serialize};

use super::config::{host_arch, ImageConfig};
use super::reference::Reference;
use super::{media, Compression, Image, ImageError, Images};

/// The annotation containerd, Docker and podman use for an image's full name in an OCI
/// archive's `index.json` (`org.opencontainers.image.ref.name` often holds only the tag).
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// How many symlinks between archive members are followed before giving up.
const MAX_LINK_DEPTH: usize = 16;

/// Why an archive could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The image model failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The archive ends early.
    #[error("archive is truncated at byte {0}")]
    Truncated(u64),
    /// The archive itself is not a valid tar.
    #[error("archive is not a valid tar")]
    Tar(#[source] TarError),
    /// Reading the archive failed (a corrupt compressed archive, an I/O error).
    #[error("reading archive")]
    Read(#[source] io::Error),
    /// Neither `manifest.json` nor `index.json` is in the archive.
    #[error("not an image archive: it has neither manifest.json (docker-archive) nor index.json (OCI archive)")]
    NotAnArchive,
    /// A member the metadata names is not in the archive.
    #[error("{what} {path} is missing from the archive")]
    Missing {
        /// What the member should have been (`layer`, `config`, `blob`).
        what: &'static str,
        /// Its path in the archive.
        path: String,
    },
    /// A member does not hash to the digest it is named or referenced by.
    #[error("{path}: digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch {
        /// The member.
        path: String,
        /// The digest the archive claims.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// A member's size differs from its descriptor's.
    #[error("{path}: size mismatch: descriptor says {expected} bytes, member has {actual}")]
    SizeMismatch {
        /// The member.
        path: String,
        /// The descriptor's size.
        expected: u64,
        /// The member's size.
        actual: u64,
    },
    /// A layer's uncompressed digest differs from the config's diff_id.
    #[error("layer {path}: diff_id mismatch: the image config lists {expected}, the uncompressed layer is {actual}")]
    DiffIdMismatch {
        /// The layer member.
        path: String,
        /// The config's diff_id.
        expected: Digest,
        /// The uncompressed digest.
        actual: Digest,
    },
    /// The manifest and the config disagree on the number of layers.
    #[error("image {config}: {layers} layers but the config lists {diff_ids} diff_ids")]
    LayerCount {
        /// The config member.
        config: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A media type rimg does not read.
    #[error("{path}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// Where it was found.
        path: String,
        /// The media type.
        media_type: String,
    },
    /// A member used as a layer is not a (possibly compressed) tar.
    #[error("layer {0} is not a tar (nor a gzip or zstd compressed tar)")]
    NotALayer(String),
    /// A member used as a layer could not be read as one.
    #[error("layer {path}: {message}")]
    BadLayer {
        /// The member.
        path: String,
        /// Why.
        message: String,
    },
    /// A JSON document is malformed or too large.
    #[error("{path}: {message}")]
    BadDocument {
        /// The member.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An image name in the archive is not a valid reference.
    #[error("invalid image name {name:?} in {path}: {message}")]
    BadName {
        /// The name.
        name: String,
        /// The metadata file it came from.
        path: String,
        /// Why it is invalid.
        message: String,
    },
    /// An image index has no manifest for this machine's platform.
    #[error("{path}: no image for linux/{arch}")]
    NoPlatform {
        /// The index.
        path: String,
        /// This machine's architecture.
        arch: &'static str,
    },
    /// I/O outside the store (the archive file, the output file).
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Result type of archive operations.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// The archive formats `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s format: `manifest.json`, `<id>.json`, `<diff_id>/layer.tar`.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// One image a load stored, with the tags it received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image id (config digest).
    pub id: Digest,
    /// Its tags from the archive, in archive order.
    pub tags: Vec<Reference>,
}

/// One staged archive member.
enum Member {
    /// A layer tar (decompressed), with the digest and size of the member as stored.
    Layer {
        layer: StagedLayer,
        blob_digest: Digest,
        blob_size: u64,
    },
    /// Anything that is not a tar.
    Blob(StagedBlob),
    /// Looked like a layer but could not be read as one.
    Bad(String),
    /// A symlink or hard link to another member (normalized archive path).
    Link(String),
}

/// Every regular member of an archive, staged, by normalized path.
struct Members {
    by_path: HashMap<String, Member>,
}

impl Members {
    /// Follows links to the member's real path.
    fn resolve<'a>(&'a self, path: &'a str) -> Option<(&'a str, &'a Member)> {
        let mut p = path;
        for _ in 0..MAX_LINK_DEPTH {
            match self.by_path.get(p)? {
                Member::Link(target) => p = target,
                m => return Some((p, m)),
            }
        }
        None
    }

    /// Reads a JSON member whole (at most [`MAX_JSON_BYTES`]); returns it and its digest.
    fn json(&self, what: &'static str, path: &str) -> Result<(Vec<u8>, Digest)> {
        let missing = || ArchiveError::Missing {
            what,
            path: path.to_string(),
        };
        let (real, member) = self.resolve(path).ok_or_else(missing)?;
        let blob = match member {
            Member::Blob(b) => b,
            _ => {
                return Err(ArchiveError::BadDocument {
                    path: real.to_string(),
                    message: format!("{what} is not JSON"),
                })
            }
        };
        if blob.size > MAX_JSON_BYTES {
            return Err(ArchiveError::BadDocument {
                path: real.to_string(),
                message: format!(
                    "{what} is {} bytes, over the {MAX_JSON_BYTES}-byte limit",
                    blob.size
                ),
            });
        }
        let mut bytes = Vec::with_capacity(blob.size as usize);
        blob.open()?
            .read_to_end(&mut bytes)
            .map_err(io_err("read staged", Path::new(real)))?;
        Ok((bytes, blob.digest))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ArchiveError::BadDocument {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Reads into `buf` until it is full or the source ends; returns the byte count.
fn read_up_to(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Resolves a symlink target found at `at` to a normalized archive path, refusing targets
/// outside the archive.
fn resolve_link(at: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return clean_rel(target);
    }
    let dir = at.rsplit_once('/').map_or("", |(dir, _)| dir);
    clean_rel(&format!("{dir}/{target}"))
}

/// Streams the archive, staging every regular member.
fn stage_members(images: &Images, src: impl Read) -> Result<Members> {
    let mut stream = TarStream::new(src);
    let mut by_path = HashMap::new();
    loop {
        let entry = match stream.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(TarError::Truncated(at)) => return Err(ArchiveError::Truncated(at)),
            Err(TarError::Io(e)) => return Err(ArchiveError::Read(e)),
            Err(e) => return Err(ArchiveError::Tar(e)),
        };
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        match entry.kind {
            EntryType::Regular => {
                let staged = stage_member(images, &mut stream);
                if let Some(at) = stream.truncated_at() {
                    return Err(ArchiveError::Truncated(at));
                }
                by_path.insert(path, staged?);
            }
            EntryType::Symlink => {
                let target = String::from_utf8_lossy(&entry.link).into_owned();
                if let Some(t) = resolve_link(&path, &target) {
                    by_path.insert(path, Member::Link(t));
                }
            }
            EntryType::Hardlink => {
                let target = String::from_utf8_lossy(&entry.link).into_owned();
                if let Some(t) = resolve_link("", &target) {
                    by_path.insert(path, Member::Link(t));
                }
            }
            _ => {}
        }
    }
    match stream.finish() {
        Ok(_) => {}
        Err(TarError::Truncated(at)) => return Err(ArchiveError::Truncated(at)),
        Err(TarError::Io(e)) => return Err(ArchiveError::Read(e)),
        Err(e) => return Err(ArchiveError::Tar(e)),
    }
    Ok(Members { by_path })
}

/// Stages the data of the member the stream is at: as a layer if it starts like a tar or a
/// compressed stream, else as a plain blob.
fn stage_member<R: Read>(images: &Images, stream: &mut TarStream<R>) -> Result<Member> {
    let store = images.store();
    let mut data = stream.data();
    let mut head = [0u8; 512];
    let n = read_up_to(&mut data, &mut head).map_err(StoreError::ReadLayer)?;
    let head = &head[..n];
    let compression = Compression::sniff(head);
    let src = io::Cursor::new(head).chain(data);
    if compression == Compression::None && !is_header_block(head) {
        return Ok(Member::Blob(store.stage_blob(src)?));
    }
    if compression == Compression::None {
        return Ok(match store.stage_layer(src) {
            Ok(layer) => Member::Layer {
                blob_digest: layer.digest,
                blob_size: layer.size,
                layer,
            },
            Err(e) => Member::Bad(crate::error_line(&e)),
        });
    }
    let mut hashing = rimg_fs::digest::HashingReader::new(src);
    let staged = match compression.decoder(&mut hashing) {
        Ok(decoder) => store.stage_layer(decoder),
        Err(e) => Err(StoreError::ReadLayer(e)),
    };
    // Whatever the decoder left (padding after the compressed stream) still counts.
    io::copy(&mut hashing, &mut io::sink()).map_err(StoreError::ReadLayer)?;
    let (blob_digest, blob_size, _) = hashing.finish();
    Ok(match staged {
        Ok(layer) => Member::Layer {
            layer,
            blob_digest,
            blob_size,
        },
        Err(e) => Member::Bad(crate::error_line(&e)),
    })
}

/// An image found in the archive's metadata and checked against its members.
struct Planned {
    config_path: String,
    config_digest: Digest,
    layer_paths: Vec<String>,
    tags: Vec<Reference>,
}

/// `docker save`'s `manifest.json` entries.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// If `path` names its content (`blobs/sha256/<hex>`, `<hex>.json`), that digest.
fn digest_in_name(path: &str) -> Option<Digest> {
    if let Some(hex) = path.strip_prefix("blobs/sha256/") {
        return Digest::from_hex(hex);
    }
    path.strip_suffix(".json").and_then(Digest::from_hex)
}

fn parse_tag(name: &str, path: &str) -> Result<Reference> {
    let bad = |message: String| ArchiveError::BadName {
        name: name.to_string(),
        path: path.to_string(),
        message,
    };
    let r = Reference::parse(name).map_err(|e| bad(e.to_string()))?;
    if r.digest.is_some() {
        return Err(bad("a tag cannot carry a digest".into()));
    }
    Ok(r)
}

/// Checks one image's config and layers against the staged members.
fn plan_image(
    members: &Members,
    config_path: &str,
    expected_config: Option<Digest>,
    layers: &[(String, Option<&Descriptor>)],
    tags: Vec<Reference>,
) -> Result<Planned> {
    let (bytes, config_digest) = members.json("config", config_path)?;
    if let Some(expected) = expected_config.or_else(|| digest_in_name(config_path)) {
        if expected != config_digest {
            return Err(ArchiveError::DigestMismatch {
                path: config_path.to_string(),
                expected,
                actual: config_digest,
            });
        }
    }
    let config: ImageConfig = parse_json(config_path, &bytes)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(ArchiveError::LayerCount {
            config: config_path.to_string(),
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut layer_paths = Vec::with_capacity(layers.len());
    for ((path, desc), diff_id) in layers.iter().zip(diff_ids) {
        if let Some(d) = desc {
            let media = d.media_type().to_string();
            if Compression::from_media_type(&media).is_none() {
                return Err(ArchiveError::UnsupportedMediaType {
                    path: path.clone(),
                    media_type: media,
                });
            }
        }
        let (real, member) = members.resolve(path).ok_or_else(|| ArchiveError::Missing {
            what: "layer",
            path: path.clone(),
        })?;
        let (layer, blob_digest, blob_size) = match member {
            Member::Layer {
                layer,
                blob_digest,
                blob_size,
            } => (layer, *blob_digest, *blob_size),
            Member::Bad(message) => {
                return Err(ArchiveError::BadLayer {
                    path: path.clone(),
                    message: message.clone(),
                })
            }
            _ => return Err(ArchiveError::NotALayer(path.clone())),
        };
        let claimed = match desc {
            Some(d) => Some(descriptor_digest(d, path)?),
            None => digest_in_name(real).or_else(|| digest_in_name(path)),
        };
        if let Some(expected) = claimed {
            if expected != blob_digest {
                return Err(ArchiveError::DigestMismatch {
                    path: path.clone(),
                    expected,
                    actual: blob_digest,
                });
            }
        }
        if let Some(d) = desc {
            if d.size() != blob_size {
                return Err(ArchiveError::SizeMismatch {
                    path: path.clone(),
                    expected: d.size(),
                    actual: blob_size,
                });
            }
        }
        if layer.digest != *diff_id {
            return Err(ArchiveError::DiffIdMismatch {
                path: path.clone(),
                expected: *diff_id,
                actual: layer.digest,
            });
        }
        layer_paths.push(real.to_string());
    }
    Ok(Planned {
        config_path: config_path.to_string(),
        config_digest,
        layer_paths,
        tags,
    })
}

fn descriptor_digest(d: &Descriptor, path: &str) -> Result<Digest> {
    Digest::try_from(d.digest()).map_err(|_| ArchiveError::BadDocument {
        path: path.to_string(),
        message: format!("unsupported digest {}", d.digest()),
    })
}

/// The archive path of the blob a descriptor names, and its digest.
fn oci_blob(d: &Descriptor, from: &str) -> Result<(String, Digest)> {
    let digest = descriptor_digest(d, from)?;
    Ok((format!("blobs/sha256/{}", digest.hex()), digest))
}

/// The images of a docker-archive.
fn plan_docker(members: &Members) -> Result<Vec<Planned>> {
    let (bytes, _) = members.json("manifest", "manifest.json")?;
    let entries: Vec<DockerManifestEntry> = parse_json("manifest.json", &bytes)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let tags = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| parse_tag(t, "manifest.json"))
            .collect::<Result<Vec<_>>>()?;
        let layers: Vec<(String, Option<&Descriptor>)> =
            e.layers.iter().map(|l| (normalize(l), None)).collect();
        out.push(plan_image(
            members,
            &normalize(&e.config),
            None,
            &layers,
            tags,
        )?);
    }
    Ok(out)
}

/// Normalizes a path written in archive metadata the way member names are normalized.
fn normalize(path: &str) -> String {
    clean_rel(path).unwrap_or_else(|| path.to_string())
}

/// The name an OCI index descriptor gives its image, if any.
fn oci_tag(d: &Descriptor) -> Result<Option<Reference>> {
    let Some(ann) = d.annotations() else {
        return Ok(None);
    };
    let name = ann
        .get(CONTAINERD_IMAGE_NAME)
        .or_else(|| ann.get(REF_NAME))
        .filter(|n| !n.is_empty());
    name.map(|n| parse_tag(n, "index.json")).transpose()
}

/// Reads an OCI manifest or index blob named by a descriptor, verified.
fn oci_document(
    members: &Members,
    d: &Descriptor,
    what: &'static str,
) -> Result<(String, Vec<u8>)> {
    let (path, digest) = oci_blob(d, "index.json")?;
    let (bytes, actual) = members.json(what, &path)?;
    if actual != digest {
        return Err(ArchiveError::DigestMismatch {
            path,
            expected: digest,
            actual,
        });
    }
    if bytes.len() as u64 != d.size() {
        return Err(ArchiveError::SizeMismatch {
            path,
            expected: d.size(),
            actual: bytes.len() as u64,
        });
    }
    Ok((path, bytes))
}

fn is_index_media(m: &MediaType) -> bool {
    media::is_index(m.as_ref())
}

fn is_manifest_media(m: &MediaType) -> bool {
    media::is_manifest(m.as_ref())
}

/// The images of an OCI archive.
fn plan_oci(members: &Members) -> Result<Vec<Planned>> {
    let (bytes, _) = members.json("index", "index.json")?;
    let index: ImageIndex = parse_json("index.json", &bytes)?;
    // One image per manifest, with the tags of every descriptor naming it.
    let mut order: Vec<Digest> = Vec::new();
    let mut found: HashMap<Digest, (Descriptor, Vec<Reference>)> = HashMap::new();
    for d in index.manifests() {
        let tag = oci_tag(d)?;
        let manifest_desc = if is_index_media(d.media_type()) {
            let (path, bytes) = oci_document(members, d, "image index")?;
            let nested: ImageIndex = parse_json(&path, &bytes)?;
            let arch = host_arch();
            nested
                .manifests()
                .iter()
                .find(|m| {
                    m.platform().as_ref().is_some_and(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == arch
                    })
                })
                .cloned()
                .ok_or(ArchiveError::NoPlatform { path, arch })?
        } else {
            d.clone()
        };
        if !is_manifest_media(manifest_desc.media_type()) {
            return Err(ArchiveError::UnsupportedMediaType {
                path: "index.json".into(),
                media_type: manifest_desc.media_type().to_string(),
            });
        }
        let digest = descriptor_digest(&manifest_desc, "index.json")?;
        let slot = found.entry(digest).or_insert_with(|| {
            order.push(digest);
            (manifest_desc, Vec::new())
        });
        if let Some(t) = tag {
            if !slot.1.contains(&t) {
                slot.1.push(t);
            }
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for digest in order {
        let Some((desc, tags)) = found.remove(&digest) else {
            continue;
        };
        let (path, bytes) = oci_document(members, &desc, "manifest")?;
        let manifest: ImageManifest = parse_json(&path, &bytes)?;
        let config = manifest.config();
        let config_digest = descriptor_digest(config, &path)?;
        let config_path = format!("blobs/sha256/{}", config_digest.hex());
        let layers: Vec<(String, Option<&Descriptor>)> = manifest
            .layers()
            .iter()
            .map(|l| {
                descriptor_digest(l, &path).map(|d| (format!("blobs/sha256/{}", d.hex()), Some(l)))
            })
            .collect::<Result<_>>()?;
        let planned = plan_image(members, &config_path, Some(config_digest), &layers, tags)?;
        let staged_size = match members.resolve(&config_path) {
            Some((_, Member::Blob(b))) => b.size,
            _ => config.size(),
        };
        if staged_size != config.size() {
            return Err(ArchiveError::SizeMismatch {
                path: config_path,
                expected: config.size(),
                actual: staged_size,
            });
        }
        out.push(planned);
    }
    Ok(out)
}

/// Loads every image of an archive (plain, gzip or zstd compressed) into the store. On any
/// error nothing becomes visible: no blob, no layer index, no tag.
pub fn load(images: &Images, src: impl Read) -> Result<Vec<LoadedImage>> {
    let store = images.store();
    let _lease = store.lease()?;
    let mut src = BufReader::with_capacity(1 << 20, src);
    let head = src
        .fill_buf()
        .map_err(io_err("read", Path::new("archive")))?;
    let decoder = Compression::sniff(head)
        .decoder(src)
        .map_err(io_err("decompress", Path::new("archive")))?;
    let mut members = stage_members(images, decoder)?;
    let planned = if members.by_path.contains_key("manifest.json") {
        plan_docker(&members)?
    } else if members.by_path.contains_key("index.json") {
        plan_oci(&members)?
    } else {
        return Err(ArchiveError::NotAnArchive);
    };

    // Everything checked: publish layers, then configs and manifests, then the tags.
    let used: BTreeSet<&String> = planned.iter().flat_map(|p| &p.layer_paths).collect();
    let used: Vec<String> = used.into_iter().cloned().collect();
    for path in used {
        if let Some(Member::Layer { layer, .. }) = members.by_path.remove(&path) {
            store.publish_layer(layer)?;
        }
    }
    let mut written: Vec<(Image, Vec<Reference>)> = Vec::with_capacity(planned.len());
    for p in &planned {
        let (bytes, digest) = members.json("config", &p.config_path)?;
        if digest != p.config_digest {
            return Err(ArchiveError::DigestMismatch {
                path: p.config_path.clone(),
                expected: p.config_digest,
                actual: digest,
            });
        }
        let image = images.write_image(&bytes)?;
        written.push((image, p.tags.clone()));
    }
    let entries: Vec<(&Image, &[Reference])> =
        written.iter().map(|(i, t)| (i, t.as_slice())).collect();
    images.add_to_index(&entries)?;
    Ok(written
        .into_iter()
        .map(|(image, tags)| LoadedImage { id: image.id, tags })
        .collect())
}

/// Writes `items` (each image with the tags to record for it) as an archive to `out`.
pub fn save(
    images: &Images,
    items: &[(Image, Vec<Reference>)],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<()> {
    let _lease = images.store().lease()?;
    let mut w = TarWriter::new(out);
    match format {
        ArchiveFormat::DockerArchive => save_docker(images, items, &mut w)?,
        ArchiveFormat::OciArchive => save_oci(images, items, &mut w)?,
    }
    w.finish().map_err(write_err)?;
    Ok(())
}

/// Saves to `path` atomically: a temp file beside it, fsynced and renamed over it.
pub fn save_to_path(
    images: &Images,
    items: &[(Image, Vec<Reference>)],
    format: ArchiveFormat,
    path: &Path,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = dir.join(format!(".{name}.rimg-tmp-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let mut buf = BufWriter::with_capacity(1 << 20, file);
        save(images, items, format, &mut buf)?;
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &dir))
            .map_err(ArchiveError::from)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_err(source: io::Error) -> ArchiveError {
    IoError::new("write", "archive", source).into()
}

fn to_json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Copies a stored blob into the archive as `path`.
fn copy_blob<W: Write>(
    images: &Images,
    w: &mut TarWriter<W>,
    path: &str,
    d: &Digest,
) -> Result<()> {
    let store = images.store();
    let size = store.blob_size(d)?;
    let file = store.open_blob(d)?;
    w.append_reader(path, size, file).map_err(write_err)
}

fn save_docker<W: Write>(
    images: &Images,
    items: &[(Image, Vec<Reference>)],
    w: &mut TarWriter<W>,
) -> Result<()> {
    let mut manifest = Vec::with_capacity(items.len());
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, tags) in items {
        let diff_ids = images.ensure_layers(image)?;
        let repo_tags: Vec<String> = tags
            .iter()
            .map(|t| format!("{}:{}", t.repository(), t.tag_or_latest()))
            .collect();
        if let Some(top) = diff_ids.last() {
            for t in tags {
                repositories
                    .entry(t.repository())
                    .or_default()
                    .insert(t.tag_or_latest().to_string(), top.hex());
            }
        }
        manifest.push(DockerManifestEntry {
            config: format!("{}.json", image.id.hex()),
            repo_tags: (!repo_tags.is_empty()).then_some(repo_tags),
            layers: diff_ids
                .iter()
                .map(|d| format!("{}/layer.tar", d.hex()))
                .collect(),
        });
    }
    w.append_bytes("manifest.json", &to_json(&manifest))
        .map_err(write_err)?;
    if !repositories.is_empty() {
        w.append_bytes("repositories", &to_json(&repositories))
            .map_err(write_err)?;
    }
    let mut done = BTreeSet::new();
    for (image, _) in items {
        if done.insert(image.id) {
            copy_blob(images, w, &format!("{}.json", image.id.hex()), &image.id)?;
        }
    }
    for (image, _) in items {
        for d in image.diff_ids() {
            if done.insert(*d) {
                w.append_dir(&d.hex()).map_err(write_err)?;
                w.append_bytes(&format!("{}/VERSION", d.hex()), b"1.0")
                    .map_err(write_err)?;
                copy_blob(images, w, &format!("{}/layer.tar", d.hex()), d)?;
            }
        }
    }
    Ok(())
}

fn save_oci<W: Write>(
    images: &Images,
    items: &[(Image, Vec<Reference>)],
    w: &mut TarWriter<W>,
) -> Result<()> {
    let store = images.store();
    let mut descriptors = Vec::new();
    let mut blobs: Vec<Digest> = Vec::new();
    let mut seen = BTreeSet::new();
    for (image, tags) in items {
        let size = store.blob_size(&image.manifest_digest)?;
        let media = image
            .manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        let base = serde_json::json!({
            "mediaType": media,
            "digest": image.manifest_digest.to_string(),
            "size": size,
        });
        if tags.is_empty() {
            descriptors.push(base.clone());
        }
        for t in tags {
            let name = format!("{}:{}", t.repository(), t.tag_or_latest());
            let mut d = base.clone();
            d["annotations"] = serde_json::json!({
                CONTAINERD_IMAGE_NAME: name,
                REF_NAME: name,
            });
            descriptors.push(d);
        }
        let mut wanted = vec![image.manifest_digest, image.id];
        for l in image.manifest.layers() {
            wanted.push(
                Digest::try_from(l.digest()).map_err(|e| ImageError::BadDocument {
                    what: "manifest",
                    digest: image.manifest_digest,
                    message: e.to_string(),
                })?,
            );
        }
        for d in wanted {
            if seen.insert(d) {
                blobs.push(d);
            }
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    });
    w.append_bytes(
        "oci-layout",
        format!(
            "{{\"imageLayoutVersion\":\"{}\"}}",
            rimg_fs::store::LAYOUT_VERSION
        )
        .as_bytes(),
    )
    .map_err(write_err)?;
    w.append_bytes("index.json", &to_json(&index))
        .map_err(write_err)?;
    w.append_dir("blobs").map_err(write_err)?;
    w.append_dir("blobs/sha256").map_err(write_err)?;
    for d in blobs {
        copy_blob(images, w, &format!("blobs/sha256/{}", d.hex()), &d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_link("abc/layer.tar", "../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_link("x", "/a/./b").as_deref(), Some("a/b"));
        assert_eq!(resolve_link("a/b", "../../../etc/passwd"), None);
        assert_eq!(normalize("./manifest.json"), "manifest.json");
    }

    #[test]
    fn names_that_carry_digests() {
        let d = Digest::of(b"x");
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{}", d.hex())),
            Some(d)
        );
        assert_eq!(digest_in_name(&format!("{}.json", d.hex())), Some(d));
        assert_eq!(digest_in_name("manifest.json"), None);
        assert_eq!(digest_in_name("abc/layer.tar"), None);
    }
}
