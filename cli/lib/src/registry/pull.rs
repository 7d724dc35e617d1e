//! `pull`: an image from a registry into the store.
//!
//! 1. The manifest (or index, then the platform's manifest) is fetched with a size cap
//!    ([`MAX_MANIFEST_BYTES`]) and verified against the digest that named it; every media
//!    type is checked before any layer moves.
//! 2. The config is fetched (capped, verified); its diff_ids say which layers the store has.
//! 3. The missing layers are fetched by a few threads. Each blob streams through a hasher
//!    (compressed digest and size), the decompressor, and [`ContentStore::stage_layer`]
//!    (uncompressed digest, layer index, temp file) in one pass.
//! 4. Only when every layer checks out are the layers published, then the config and the
//!    manifest, then the tag and the repo digest, as `load` does. An error or a kill before that
//!    leaves only temp files in `rimg/tmp/`.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use rimg_fs::digest::HashingReader;
use rimg_fs::store::StagedLayer;
use rimg_fs::{ContentStore, Digest};
use serde::Deserialize;

use super::client::{describe_io, Client};
use super::sources::Sources;
use super::{
    parallel, read_full, BlobEvent, Location, Platform, Progress, RegistryError, Result, Retry,
    MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
use crate::image::media::{
    is_index, is_manifest, DOCKER_CONFIG, DOCKER_SCHEMA1, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use crate::image::{Compression, Image, ImageConfig, Images, Reference};

/// How many layers are fetched at once (Docker's default).
pub const PARALLEL_DOWNLOADS: usize = 3;

/// What to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The platform to pick from a manifest list.
    pub platform: Platform,
}

/// What a pull stored.
#[derive(Debug)]
pub struct Pulled {
    /// The image.
    pub image: Image,
    /// The registry's digest of what the reference named (the index for a multi-platform
    /// image): the `Digest:` line and the repo digest.
    pub digest: Digest,
    /// Whether anything changed: false when the tag already named this image and every blob
    /// was present (Docker's "Image is up to date").
    pub changed: bool,
}

/// A descriptor as manifests and indexes carry it.
#[derive(Clone, Debug, Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Plat>,
}

#[derive(Clone, Debug, Deserialize)]
struct Plat {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<Desc>,
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    config: Desc,
    #[serde(default)]
    layers: Vec<Desc>,
}

fn bad(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::BadDocument {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn desc_digest(d: &Desc, what: &str) -> Result<Digest> {
    Digest::parse(&d.digest).map_err(|_| bad(what, format!("unsupported digest {:?}", d.digest)))
}

/// The media type of a manifest document: its own `mediaType`, else the Content-Type the
/// registry sent, else what its fields say.
fn document_media(bytes: &[u8], content_type: &str, what: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(what, e))?;
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(m.to_string());
    }
    if !content_type.is_empty()
        && content_type != "application/json"
        && content_type != "text/plain"
    {
        return Ok(content_type.to_string());
    }
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Ok(DOCKER_SCHEMA1[0].to_string());
    }
    Ok(if v.get("manifests").is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    })
}

/// A layer to fetch.
struct Job {
    blob: Digest,
    size: u64,
    compression: Compression,
    diff_id: Digest,
    media_type: String,
}

/// Pulls `reference` into the store and tags it (unless it names a digest only).
pub fn pull(
    images: &Images,
    client: &Client,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let loc = Location::of(reference);
    let repo = &loc.repository;
    client.authorize(&[format!("repository:{repo}:pull")])?;
    let tag_or_digest = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let sep = if reference.digest.is_some() { '@' } else { ':' };
    let what = format!("manifest {}{sep}{tag_or_digest}", loc.full());
    let (top, content_type) = client.get_manifest(repo, &tag_or_digest, MAX_MANIFEST_BYTES)?;
    let top_digest = Digest::of(&top);
    if let Some(d) = reference.digest {
        if d != top_digest {
            return Err(RegistryError::DigestMismatch {
                what: what.clone(),
                expected: d,
                actual: top_digest,
            });
        }
    }
    let mut media = document_media(&top, &content_type, &what)?;
    let mut manifest_bytes = top;
    if is_index(&media) {
        let index: IndexDoc = serde_json::from_slice(&manifest_bytes).map_err(|e| bad(&what, e))?;
        let chosen = index
            .manifests
            .iter()
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    opts.platform
                        .matches(&p.os, &p.architecture, p.variant.as_deref())
                })
            })
            .cloned()
            .ok_or_else(|| RegistryError::NoPlatform {
                wanted: opts.platform.clone(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let d = desc_digest(&chosen, &what)?;
        let (bytes, ct) = client.get_manifest(repo, &d.to_string(), MAX_MANIFEST_BYTES)?;
        let actual = Digest::of(&bytes);
        if actual != d {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {}@{d}", loc.full()),
                expected: d,
                actual,
            });
        }
        if bytes.len() as u64 != chosen.size {
            return Err(RegistryError::SizeMismatch {
                what: format!("manifest {}@{d}", loc.full()),
                expected: chosen.size,
                actual: bytes.len() as u64,
            });
        }
        media = document_media(&bytes, &ct, &what)?;
        if is_index(&media) {
            return Err(bad(&what, "an index inside an index"));
        }
        manifest_bytes = bytes;
    }
    if DOCKER_SCHEMA1.contains(&media.as_str()) {
        return Err(RegistryError::UnsupportedMediaType {
            what: "manifest",
            media_type: format!(
                "{media} (Docker schema 1 is deprecated; push the image again with a current tool)"
            ),
        });
    }
    if !is_manifest(&media) {
        return Err(RegistryError::UnsupportedMediaType {
            what: "manifest",
            media_type: media,
        });
    }
    let manifest: ManifestDoc =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(&what, e))?;
    if manifest.schema_version != 2 {
        return Err(bad(
            &what,
            format!("schemaVersion {} (expected 2)", manifest.schema_version),
        ));
    }
    if manifest.config.media_type != OCI_CONFIG && manifest.config.media_type != DOCKER_CONFIG {
        return Err(RegistryError::UnsupportedMediaType {
            what: "config",
            media_type: manifest.config.media_type.clone(),
        });
    }
    let mut jobs = Vec::with_capacity(manifest.layers.len());
    for l in &manifest.layers {
        let compression = Compression::from_media_type(&l.media_type).ok_or_else(|| {
            RegistryError::UnsupportedMediaType {
                what: "layer",
                media_type: l.media_type.clone(),
            }
        })?;
        jobs.push((
            desc_digest(l, &what)?,
            l.size,
            compression,
            l.media_type.clone(),
        ));
    }

    // The config: small, verified, and the list of diff_ids.
    let config_digest = desc_digest(&manifest.config, &what)?;
    let config_what = format!("config {config_digest}");
    let config_bytes =
        client.get_small_blob(repo, &config_digest, &config_what, MAX_CONFIG_BYTES)?;
    if config_bytes.len() as u64 != manifest.config.size {
        return Err(RegistryError::SizeMismatch {
            what: config_what,
            expected: manifest.config.size,
            actual: config_bytes.len() as u64,
        });
    }
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| bad(&config_what, e))?;
    if config.rootfs.diff_ids.len() != jobs.len() {
        return Err(bad(
            &config_what,
            format!(
                "{} layers in the manifest but the config lists {} diff_ids",
                jobs.len(),
                config.rootfs.diff_ids.len()
            ),
        ));
    }

    let store = images.store();
    let _lease = store.lease()?;
    let before = if reference.digest.is_none() {
        images.resolve(&reference.to_string()).ok().map(|i| i.id)
    } else {
        None
    };
    progress.start(&jobs.iter().map(|(d, s, ..)| (*d, *s)).collect::<Vec<_>>());
    let mut wanted: BTreeSet<Digest> = BTreeSet::new();
    let mut todo = Vec::new();
    for ((blob, size, compression, media_type), diff_id) in
        jobs.into_iter().zip(&config.rootfs.diff_ids)
    {
        if store.has_layer(diff_id) || !wanted.insert(*diff_id) {
            progress.event(&blob, BlobEvent::AlreadyExists);
            continue;
        }
        todo.push(Job {
            blob,
            size,
            compression,
            diff_id: *diff_id,
            media_type,
        });
    }
    let fetched = !todo.is_empty();
    let staged = fetch_all(store, client, repo, &todo, progress)?;

    // Everything verified: publish layers, then config and manifest, then names.
    for layer in staged {
        store.publish_layer(layer)?;
    }
    let image = images.write_image(&config_bytes)?;
    let tags: Vec<Reference> = if reference.digest.is_none() {
        vec![reference.clone()]
    } else {
        Vec::new()
    };
    images.add_to_index(&[(&image, &tags)])?;
    let repo_digest = format!("{}@{top_digest}", reference.repository());
    images.add_repo_digest(&image, &repo_digest)?;
    let sources = Sources::new(store);
    for j in &todo {
        sources.record(&j.diff_id, &j.blob, &j.media_type, j.size, &loc.full());
    }
    let image = images.resolve(&image.manifest_digest.to_string())?;
    Ok(Pulled {
        changed: fetched || before != Some(image.id),
        image,
        digest: top_digest,
    })
}

/// Fetches every job with [`PARALLEL_DOWNLOADS`] threads; the first error stops the others
/// and is returned (their staged files are removed as they drop).
fn fetch_all(
    store: &ContentStore,
    client: &Client,
    repo: &str,
    jobs: &[Job],
    progress: &dyn Progress,
) -> Result<Vec<StagedLayer>> {
    parallel(PARALLEL_DOWNLOADS, jobs.len(), |i, abort| {
        fetch_layer(store, client, repo, &jobs[i], progress, abort)
    })
}

/// What a download needs to open (and reopen) its blob.
struct Fetch<'a> {
    client: &'a Client,
    repo: &'a str,
    job: &'a Job,
    progress: &'a dyn Progress,
    abort: &'a AtomicBool,
}

impl Fetch<'_> {
    /// The blob's body from byte `from` on, limited to one byte more than the blob should
    /// have (so a longer one is noticed). A registry that ignores the range sends the whole
    /// blob; its first `from` bytes are skipped.
    fn open(&self, from: u64) -> Result<Box<dyn Read + Send>> {
        let job = self.job;
        let what = format!("layer {}", job.blob);
        let (mut body, start, announced) = self.client.get_blob_from(self.repo, &job.blob, from)?;
        if let Some(len) = announced {
            if start + len != job.size {
                return Err(RegistryError::SizeMismatch {
                    what,
                    expected: job.size,
                    actual: start + len,
                });
            }
        }
        if start < from {
            let skipped = io::copy(&mut (&mut body).take(from - start), &mut io::sink());
            if skipped.as_ref().ok() != Some(&(from - start)) {
                return Err(RegistryError::Transport {
                    what: format!("downloading {what}"),
                    message: match skipped {
                        Err(e) => describe_io(&e),
                        Ok(_) => "the connection closed".into(),
                    },
                });
            }
        }
        Ok(Box::new(body.take(job.size + 1 - from)))
    }

    /// [`Fetch::open`] again after `failure`, as [`Retry`] allows.
    fn reopen(
        &self,
        from: u64,
        mut failure: RegistryError,
        retry: &mut Retry,
    ) -> Result<Box<dyn Read + Send>> {
        loop {
            retry.wait(failure, &self.job.blob, self.progress, self.abort)?;
            match self.open(from) {
                Ok(body) => return Ok(body),
                Err(e) => failure = e,
            }
        }
    }
}

/// The network side of a blob download: counts bytes, reports progress, resumes the
/// download where it broke off when the connection fails (see [`Retry`]), keeps the
/// error that ended it (so it is told apart from a decompression error), and stops when
/// another download failed.
struct NetReader<'a> {
    fetch: &'a Fetch<'a>,
    inner: Box<dyn Read + Send>,
    done: u64,
    reported: u64,
    retry: Retry,
    error: Option<RegistryError>,
}

impl Read for NetReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.fetch.job.size;
        loop {
            if self.fetch.abort.load(Ordering::Relaxed) {
                return Err(io::Error::other("cancelled"));
            }
            let message = match self.inner.read(buf) {
                Ok(0) if self.done < size && !buf.is_empty() => {
                    format!("the connection closed after {} of {size} bytes", self.done)
                }
                Ok(n) => {
                    self.done += n as u64;
                    if self.done - self.reported >= 512 << 10 || n == 0 {
                        self.reported = self.done;
                        self.fetch.progress.event(
                            &self.fetch.job.blob,
                            BlobEvent::Progress { done: self.done },
                        );
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => describe_io(&e),
            };
            let failure = RegistryError::Transport {
                what: format!("downloading layer {}", self.fetch.job.blob),
                message,
            };
            match self.fetch.reopen(self.done, failure, &mut self.retry) {
                Ok(body) => self.inner = body,
                Err(e) => {
                    let message = crate::error_line(&e);
                    self.error = Some(e);
                    return Err(io::Error::other(message));
                }
            }
        }
    }
}

/// The size of the chunks that move between the stages of a download.
const CHUNK: usize = 256 << 10;

/// A bounded channel of chunks between two stages of a download. Buffers the reader is done
/// with go back to the sender, so a download allocates and zeroes a handful of chunks rather
/// than one per 256 KiB.
fn chunk_channel(depth: usize) -> (ChunkSender, ChannelReader) {
    let (tx, rx) = sync_channel(depth);
    let (back, free) = std::sync::mpsc::channel();
    (
        ChunkSender { tx, free },
        ChannelReader {
            rx,
            back,
            buf: Vec::new(),
            at: 0,
        },
    )
}

/// The sending end of [`chunk_channel`].
struct ChunkSender {
    tx: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
}

impl ChunkSender {
    /// A [`CHUNK`]-long buffer, recycled when one has come back.
    fn buffer(&self) -> Vec<u8> {
        let mut buf = self.free.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    /// Sends a chunk or an error; false once the reader has gone.
    fn send(&self, chunk: io::Result<Vec<u8>>) -> bool {
        self.tx.send(chunk).is_ok()
    }
}

/// The receiving end of [`chunk_channel`]: reads the chunks (or the error) it sends, in
/// order; the end of the channel is the end of the stream.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    back: std::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    let used = std::mem::replace(&mut self.buf, b?);
                    if used.capacity() > 0 {
                        let _ = self.back.send(used);
                    }
                    self.at = 0;
                }
                Err(_) => break,
            }
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.buf.len());
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Reads `src` to its end in [`CHUNK`]s and sends them (then its error, if any) down `tx`,
/// until the receiver goes away.
fn pump(mut src: impl Read, tx: &ChunkSender) {
    loop {
        let mut buf = tx.buffer();
        match read_full(&mut src, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if !tx.send(Ok(buf)) {
                    return;
                }
            }
            Err(e) => {
                tx.send(Err(e));
                return;
            }
        }
    }
}

/// Fetches one layer blob into `rimg/tmp/`: compressed digest and size checked while it
/// streams, decompressed, indexed and hashed in the same pass, diff_id checked at the end.
fn fetch_layer(
    store: &ContentStore,
    client: &Client,
    repo: &str,
    job: &Job,
    progress: &dyn Progress,
    abort: &AtomicBool,
) -> Result<StagedLayer> {
    let what = format!("layer {}", job.blob);
    let fetch = Fetch {
        client,
        repo,
        job,
        progress,
        abort,
    };
    let mut retry = Retry::default();
    let body = match fetch.open(0) {
        Ok(body) => body,
        Err(e) => fetch.reopen(0, e, &mut retry)?,
    };
    let net = NetReader {
        fetch: &fetch,
        inner: body,
        done: 0,
        reported: 0,
        retry,
        error: None,
    };
    // Two stages on two threads: the network side (receive, count, hash the blob) feeds the
    // store side (decompress, index, hash the layer, write) through a bounded channel.
    let (tx, chunks) = chunk_channel(8);
    let (staged, received) = std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            let mut hashing = HashingReader::new(net);
            let mut failed = None;
            loop {
                let mut buf = tx.buffer();
                match hashing.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if !tx.send(Ok(buf)) {
                            // The store side stopped: keep hashing what is left.
                            let rest = io::copy(&mut hashing, &mut io::sink());
                            if let Err(e) = rest {
                                failed = Some(describe_io(&e));
                            }
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(describe_io(&e));
                        break;
                    }
                }
            }
            let (digest, size, net) = hashing.finish();
            let failed = failed.map(|message| RegistryError::Transport {
                what: format!("downloading layer {}", job.blob),
                message,
            });
            (digest, size, net.error.or(failed))
        });
        // A third stage inflates, so hashing, indexing and writing the tar get their own.
        let (tx2, mut tar) = chunk_channel(8);
        let compression = job.compression;
        let inflater = s.spawn(move || match compression.buffered_decoder(chunks) {
            Ok(decoder) => pump(decoder, &tx2),
            Err(e) => {
                tx2.send(Err(e));
            }
        });
        let staged = store.stage_layer(&mut tar);
        drop(tar);
        let _ = inflater.join();
        let received = receiver.join().unwrap_or_else(|_| {
            let panicked = RegistryError::Transport {
                what: format!("downloading layer {}", job.blob),
                message: "the receiving thread panicked".into(),
            };
            (job.blob, 0, Some(panicked))
        });
        (staged, received)
    });
    let (actual, size, net_error) = received;
    if abort.load(Ordering::SeqCst) {
        return Err(RegistryError::Cancelled);
    }
    if let Some(e) = net_error {
        return Err(e);
    }
    if size != job.size {
        return Err(RegistryError::SizeMismatch {
            what,
            expected: job.size,
            actual: size,
        });
    }
    if actual != job.blob {
        return Err(RegistryError::DigestMismatch {
            what,
            expected: job.blob,
            actual,
        });
    }
    let staged = staged.map_err(|e| RegistryError::BadLayer {
        layer: job.blob,
        message: crate::error_line(&e),
    })?;
    if staged.digest != job.diff_id {
        return Err(RegistryError::DiffIdMismatch {
            layer: job.blob,
            expected: job.diff_id,
            actual: staged.digest,
        });
    }
    progress.event(&job.blob, BlobEvent::Done);
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_come_from_the_document_first() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            document_media(m, "application/json", "x").unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let m = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(document_media(m, "", "x").unwrap(), OCI_INDEX);
        assert_eq!(
            document_media(m, "application/vnd.oci.image.index.v1+json", "x").unwrap(),
            OCI_INDEX
        );
        let m = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert_eq!(document_media(m, "", "x").unwrap(), DOCKER_SCHEMA1[0]);
        assert!(document_media(b"not json", "", "x").is_err());
    }
}
