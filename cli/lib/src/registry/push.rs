//! `push`: an image from the store to a registry.
//!
//! Each layer (a few at a time) is, in order of preference:
//! 1. skipped, if the registry already has a compressed form rimg knows of ([`Sources`]; a
//!    `HEAD` decides, nothing is trusted blindly);
//! 2. mounted from another repository of the same registry that has it
//!    (`POST /blobs/uploads/?mount=…&from=…`);
//! 3. compressed (gzip by default, zstd, or none) and uploaded while compressing: one thread
//!    compresses into [`CHUNK`]-sized buffers, the other sends them. A blob that fits in one
//!    buffer goes up in a single `PUT` (monolithic); bigger ones as `PATCH` chunks, then a
//!    `PUT ?digest=`.
//!
//! Then the config (stored byte for byte, so the image id is the same on the other side) and
//! an OCI image manifest. rimg's store is an OCI layout, and skopeo keeps a source's OCI
//! manifest format when the destination accepts it (every current registry does); Docker
//! itself pushes schema 2, which only matters to registries too old to know OCI.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use rimg_fs::digest::HashingWriter;
use rimg_fs::store::MAX_JSON_BYTES;
use rimg_fs::{ContentStore, Digest};

use super::client::{Client, Mount, Upload};
use super::sources::{BlobSource, Sources};
use super::{
    parallel, read_full, BlobEvent, Location, Progress, RegistryError, Result, Retry,
    MAX_MANIFEST_BYTES,
};
use crate::image::media::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_MANIFEST, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use crate::image::{Compression, Image, Images, Reference};

/// How many layers are pushed at once (Docker's default is 5; two cores compress).
pub const PARALLEL_UPLOADS: usize = 3;
/// Upload chunk size; blobs up to this size go up in one request.
pub const CHUNK: usize = 8 << 20;
/// gzip level. Measured on the Debian node layer (312 MB) with zlib-rs in 4 MiB blocks, one
/// core: level 1 takes 2.2 s for 184 MB, level 2 4.5 s for 159 MB, level 3 5.3 s for 155 MB
/// (skopeo's size), level 6 7.4 s for 152 MB. Level 1's blob is 16% larger; level 2 costs
/// twice its CPU but on two cores still compresses about 140 MB/s, faster than a 1 Gbit/s
/// link carries the result, so everywhere but loopback the smaller blob wins.
/// `--compress zstd` is smaller and faster again where the puller reads zstd.
pub const GZIP_LEVEL: u32 = 2;
/// Block size of parallel gzip: each block becomes one gzip member.
pub const GZIP_BLOCK: usize = 4 << 20;

/// How to push.
#[derive(Clone, Copy, Debug)]
pub struct PushOptions {
    /// How layers are compressed on the way out.
    pub compression: Compression,
    /// The manifest format.
    pub format: ManifestFormat,
}

/// The manifest format of a push (podman's `--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// An OCI image manifest (the store's own format).
    Oci,
    /// A Docker v2 schema 2 manifest, for registries and tools that predate OCI.
    DockerV2S2,
}

impl ManifestFormat {
    /// The manifest, config and layer media types; zstd layers have none in Docker's format.
    fn media_types(self, c: Compression) -> Result<(&'static str, &'static str, &'static str)> {
        Ok(match self {
            ManifestFormat::Oci => (OCI_MANIFEST, OCI_CONFIG, layer_media(c)),
            ManifestFormat::DockerV2S2 => (
                DOCKER_MANIFEST,
                DOCKER_CONFIG,
                match c {
                    Compression::Gzip => DOCKER_LAYER_GZIP,
                    Compression::None => DOCKER_LAYER_TAR,
                    Compression::Zstd => {
                        return Err(RegistryError::BadDocument {
                            what: "--format v2s2".into(),
                            message: "Docker v2 schema 2 has no zstd layers: use --format oci, \
                                      or --compress gzip"
                                .into(),
                        })
                    }
                },
            ),
        })
    }
}

/// What a push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// The manifest's digest in the registry.
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
    /// The tag (or digest) the manifest was stored under.
    pub tag: String,
}

/// The OCI media type of a layer compressed this way.
pub fn layer_media(c: Compression) -> &'static str {
    match c {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// One layer as the pushed manifest lists it.
struct Pushed1 {
    digest: Digest,
    size: u64,
}

/// Pushes `image` as `dest` (`registry/repository[:tag]`).
pub fn push(
    images: &Images,
    client: &Client,
    image: &Image,
    dest: &Reference,
    opts: PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let loc = Location::of(dest);
    let store = images.store();
    let _lease = store.lease()?;
    let diff_ids = images.ensure_layers(image)?;
    let sources = Sources::new(store);
    // Blobs are known by their OCI type: a gzip blob is the same under Docker's name.
    let media = layer_media(opts.compression);
    let (manifest_media, docker_config, listed_media) =
        opts.format.media_types(opts.compression)?;

    // Repositories of this registry we may mount from need a pull scope in the token.
    let prefix = format!("{}/", loc.registry);
    let mut scopes = vec![format!("repository:{}:pull,push", loc.repository)];
    for d in &diff_ids {
        for s in sources.get(d) {
            for r in s.repos.iter().filter_map(|r| r.strip_prefix(&prefix)) {
                let scope = format!("repository:{r}:pull");
                if r != loc.repository && !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
    }
    client.authorize(&scopes)?;

    let mut sizes = Vec::with_capacity(diff_ids.len());
    for d in &diff_ids {
        sizes.push((*d, store.blob_size(d)?));
    }
    progress.start(&sizes);
    let layers = parallel(PARALLEL_UPLOADS, diff_ids.len(), |i, abort| {
        let d = &diff_ids[i];
        if diff_ids[..i].contains(d) {
            // The same layer twice: pushed once, by the first.
            return Ok(None);
        }
        let known: Vec<BlobSource> = sources
            .get(d)
            .into_iter()
            .filter(|s| s.media_type == media)
            .collect();
        let l = push_layer(
            store,
            client,
            &loc,
            d,
            &known,
            opts.compression,
            progress,
            abort,
        )?;
        sources.record(d, &l.digest, media, l.size, &loc.full());
        Ok(Some(l))
    })?;
    let mut descs = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let l = match l {
            Some(l) => l,
            None => {
                let first = diff_ids.iter().position(|x| *x == diff_ids[i]).unwrap_or(i);
                layers[first].as_ref().ok_or(RegistryError::Cancelled)?
            }
        };
        descs.push(serde_json::json!({
            "mediaType": listed_media,
            "digest": l.digest.to_string(),
            "size": l.size,
        }));
    }

    // The config, byte for byte.
    let config = store.read_blob(&image.id, MAX_JSON_BYTES)?;
    if !client.has_blob(&loc.repository, &image.id)? {
        client.put_blob(&loc.repository, &image.id, &config)?;
    }
    let config_media = image.manifest.config().media_type().to_string();
    let config_media = match opts.format {
        ManifestFormat::DockerV2S2 => docker_config.to_string(),
        ManifestFormat::Oci if config_media.is_empty() => OCI_CONFIG.to_string(),
        ManifestFormat::Oci => config_media,
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_media,
        "config": {
            "mediaType": config_media,
            "digest": image.id.to_string(),
            "size": config.len(),
        },
        "layers": descs,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| RegistryError::BadDocument {
        what: "manifest".into(),
        message: e.to_string(),
    })?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(RegistryError::TooLarge {
            what: format!("manifest for {dest}"),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let digest = Digest::of(&bytes);
    let tag = match (&dest.tag, &dest.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".into(),
    };
    if let Some(d) = dest.digest {
        if d != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest for {dest}"),
                expected: d,
                actual: digest,
            });
        }
    }
    let reported = client.put_manifest(&loc.repository, &tag, manifest_media, &bytes)?;
    if let Some(r) = reported {
        if r != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {} as the registry stored it", loc.full()),
                expected: digest,
                actual: r,
            });
        }
    }
    images.add_repo_digest(image, &format!("{}@{digest}", dest.repository()))?;
    Ok(Pushed {
        digest,
        size: bytes.len() as u64,
        tag,
    })
}

/// Pushes one layer: skip, mount, or compress and upload.
#[allow(clippy::too_many_arguments)]
fn push_layer(
    store: &ContentStore,
    client: &Client,
    loc: &Location,
    diff_id: &Digest,
    known: &[BlobSource],
    compression: Compression,
    progress: &dyn Progress,
    abort: &AtomicBool,
) -> Result<Pushed1> {
    let repo = &loc.repository;
    let mut candidates: Vec<(Digest, u64, Vec<String>)> = known
        .iter()
        .map(|s| (s.digest, s.size, s.repos.clone()))
        .collect();
    if compression == Compression::None {
        candidates.push((*diff_id, store.blob_size(diff_id)?, Vec::new()));
    }
    let prefix = format!("{}/", loc.registry);
    for (digest, size, repos) in &candidates {
        if client.has_blob(repo, digest)? {
            progress.event(diff_id, BlobEvent::AlreadyExists);
            return Ok(Pushed1 {
                digest: *digest,
                size: *size,
            });
        }
        for from in repos.iter().filter_map(|r| r.strip_prefix(&prefix)) {
            if from == repo {
                continue;
            }
            match client.mount(repo, digest, from)? {
                Mount::Mounted => {
                    progress.event(
                        diff_id,
                        BlobEvent::Mounted {
                            from: from.to_string(),
                        },
                    );
                    return Ok(Pushed1 {
                        digest: *digest,
                        size: *size,
                    });
                }
                Mount::Upload(up) => client.cancel_upload(&up),
            }
        }
    }
    let mut retry = Retry::default();
    let (digest, size) = loop {
        let file = store.open_blob(diff_id)?;
        let sender = Sender {
            client,
            repo,
            diff_id,
            progress,
            abort,
        };
        match upload_compressed(&sender, file, compression, &mut retry) {
            // The retry was counted and waited for: start again.
            Err(RegistryError::UploadLost { .. }) => continue,
            done => break done?,
        }
    };
    progress.event(diff_id, BlobEvent::Done);
    Ok(Pushed1 { digest, size })
}

/// Buffers compressed output into [`CHUNK`]-sized pieces for the uploading thread.
struct ChunkSink {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped"))
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the layer, reporting progress and stopping when another upload failed.
struct Source<'a> {
    inner: BufReader<File>,
    diff_id: Digest,
    done: u64,
    reported: u64,
    abort: &'a AtomicBool,
    progress: &'a dyn Progress,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= 512 << 10 || n == 0 {
            self.reported = self.done;
            self.progress
                .event(&self.diff_id, BlobEvent::Progress { done: self.done });
        }
        Ok(n)
    }
}

/// Compresses `src` and streams it to an upload on `repo`; returns the blob's digest and size.
fn compress_into(
    src: &mut Source<'_>,
    compression: Compression,
    tx: SyncSender<Vec<u8>>,
) -> io::Result<(Digest, u64)> {
    let sink = HashingWriter::new(ChunkSink {
        buf: Vec::with_capacity(CHUNK),
        tx,
    });
    let sink = match compression {
        Compression::None => {
            let mut w = sink;
            io::copy(src, &mut w)?;
            w
        }
        Compression::Gzip => {
            let mut w = sink;
            gzip_parallel(src, &mut w)?;
            w
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(sink, 3)?;
            io::copy(src, &mut enc)?;
            enc.finish()?
        }
    };
    let (digest, size, chunks) = sink.finish();
    chunks.finish()?;
    Ok((digest, size))
}

/// Compresses one block as a complete gzip member.
fn gzip_block(block: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(block.len() / 2),
        flate2::Compression::new(GZIP_LEVEL),
    );
    enc.write_all(block)?;
    enc.finish()
}

/// gzip on every core: the input is cut into [`GZIP_BLOCK`]-sized blocks, each compressed
/// as its own gzip member by one of a few threads, and the members are written in order. A
/// concatenation of gzip members is one valid gzip stream (RFC 1952; Go's, zlib's and
/// flate2's readers read it whole), and the output depends only on the input, not on thread
/// timing, so the blob digest is reproducible. It is what pigz's independent-block mode and
/// containers/image's pgzip do.
fn gzip_parallel<R: Read + Send>(src: &mut R, out: &mut impl Write) -> io::Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    std::thread::scope(|s| -> io::Result<()> {
        let (work_tx, work_rx) = sync_channel::<(usize, Vec<u8>)>(threads);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = sync_channel::<(usize, io::Result<Vec<u8>>)>(threads);
        for _ in 0..threads {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            s.spawn(move || loop {
                let job = work_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((i, block)) = job else { break };
                if done_tx.send((i, gzip_block(&block))).is_err() {
                    break;
                }
            });
        }
        drop((work_rx, done_tx));
        let reader = s.spawn(move || -> io::Result<usize> {
            let mut i = 0;
            loop {
                let mut block = vec![0u8; GZIP_BLOCK];
                let n = read_full(src, &mut block)?;
                if n == 0 {
                    return Ok(i);
                }
                block.truncate(n);
                if work_tx.send((i, block)).is_err() {
                    return Ok(i);
                }
                i += 1;
            }
        });
        let mut pending = BTreeMap::new();
        let mut next = 0;
        for (i, member) in done_rx {
            pending.insert(i, member);
            while let Some(member) = pending.remove(&next) {
                out.write_all(&member?)?;
                next += 1;
            }
        }
        let blocks = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader panicked")))?;
        if blocks == 0 {
            out.write_all(&gzip_block(&[])?)?;
        }
        if next != blocks {
            return Err(io::Error::other("a compressor stopped early"));
        }
        Ok(())
    })
}

/// What an upload needs to retry its requests.
struct Sender<'a> {
    client: &'a Client,
    repo: &'a str,
    diff_id: &'a Digest,
    progress: &'a dyn Progress,
    abort: &'a AtomicBool,
}

impl Sender<'_> {
    /// Runs `op` until it succeeds or [`Retry`] gives up.
    fn retrying<T>(&self, retry: &mut Retry, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        loop {
            match op() {
                Ok(t) => return Ok(t),
                Err(e) => retry.wait(e, self.diff_id, self.progress, self.abort)?,
            }
        }
    }

    /// Sends one chunk. When a request fails, asks the session how much of the chunk arrived
    /// and sends the rest.
    fn chunk(&self, session: &mut Upload, chunk: &[u8], retry: &mut Retry) -> Result<()> {
        let what = format!("layer {}", self.diff_id);
        let start = session.offset;
        let end = start + chunk.len() as u64;
        let mut sent = self.client.upload_chunk(session, chunk, &what);
        loop {
            let failure = match sent {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            retry.wait(failure, self.diff_id, self.progress, self.abort)?;
            let status = match self.client.upload_status(session) {
                Err(e) if !e.is_transient() => {
                    return Err(RegistryError::UploadLost {
                        what: format!("uploading {what}"),
                        message: crate::error_line(&e),
                    })
                }
                status => status,
            };
            sent = status.and_then(|now| {
                if now.offset < start || now.offset > end {
                    // Not a failure another attempt can cure.
                    return Err(RegistryError::BadDocument {
                        what: format!("uploading {what}"),
                        message: format!(
                            "the registry holds {} bytes of the upload, expected {start} to {end}",
                            now.offset
                        ),
                    });
                }
                *session = now;
                let rest = &chunk[(session.offset - start) as usize..];
                if rest.is_empty() {
                    return Ok(());
                }
                self.client.upload_chunk(session, rest, &what)
            });
        }
    }

    /// Sends the chunks as they come: the first alone is a monolithic upload, more are
    /// PATCHes. Returns the held chunk when it was the only one.
    fn chunks(
        &self,
        rx: Receiver<Vec<u8>>,
        up: &mut Option<Upload>,
        retry: &mut Retry,
    ) -> Result<Option<Vec<u8>>> {
        let Ok(mut held) = rx.recv() else {
            return Ok(Some(Vec::new()));
        };
        loop {
            match rx.recv() {
                Ok(next) => {
                    let session = match up {
                        Some(u) => u,
                        None => {
                            up.insert(self.retrying(retry, || self.client.start_upload(self.repo))?)
                        }
                    };
                    self.chunk(session, &held, retry)?;
                    held = next;
                }
                Err(_) => {
                    let Some(session) = up.as_mut() else {
                        return Ok(Some(held));
                    };
                    self.chunk(session, &held, retry)?;
                    return Ok(None);
                }
            }
        }
    }

    /// Completes the upload: the monolithic `PUT` of `rest`, or the final `PUT ?digest=`
    /// of the session. A retry after a lost answer finds the blob there already.
    fn finish(
        &self,
        digest: &Digest,
        rest: Option<Vec<u8>>,
        up: &Option<Upload>,
        retry: &mut Retry,
    ) -> Result<()> {
        let mut first = true;
        self.retrying(retry, || {
            if !std::mem::take(&mut first) && self.client.has_blob(self.repo, digest)? {
                return Ok(());
            }
            match (&rest, up) {
                (Some(bytes), _) => self.client.put_blob(self.repo, digest, bytes),
                (None, Some(session)) => self.client.finish_upload(session, digest, &[]),
                (None, None) => Err(RegistryError::Cancelled),
            }
        })
    }
}

/// Compresses a layer and uploads it while compressing, [`Sender`] retrying what fails.
fn upload_compressed(
    sender: &Sender,
    file: File,
    compression: Compression,
    retry: &mut Retry,
) -> Result<(Digest, u64)> {
    let (client, diff_id, abort) = (sender.client, sender.diff_id, sender.abort);
    let (tx, rx) = sync_channel::<Vec<u8>>(1);
    let mut src = Source {
        inner: BufReader::with_capacity(1 << 20, file),
        diff_id: *diff_id,
        done: 0,
        reported: 0,
        abort,
        progress: sender.progress,
    };
    let mut up: Option<Upload> = None;
    let (compressed, sent) = std::thread::scope(|s| {
        let producer = s.spawn(move || compress_into(&mut src, compression, tx));
        let sent = sender.chunks(rx, &mut up, retry);
        let compressed = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("compressor panicked")));
        (compressed, sent)
    });
    let result = (|| {
        let rest = sent?;
        let (digest, size) = compressed.map_err(|e| RegistryError::Transport {
            what: format!("reading layer {diff_id}"),
            message: e.to_string(),
        })?;
        sender.finish(&digest, rest, &up, retry)?;
        Ok((digest, size))
    })();
    if result.is_err() {
        if let Some(u) = &up {
            client.cancel_upload(u);
        }
        if abort.load(Ordering::SeqCst) {
            return Err(RegistryError::Cancelled);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_gzip_is_one_reproducible_gzip_stream() {
        let mut data = Vec::new();
        for i in 0..(GZIP_BLOCK * 2 + 12345) {
            data.push((i % 251) as u8 ^ (i / 7919) as u8);
        }
        let mut a = Vec::new();
        gzip_parallel(&mut &data[..], &mut a).unwrap();
        let mut b = Vec::new();
        gzip_parallel(&mut &data[..], &mut b).unwrap();
        assert_eq!(a, b);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut empty = Vec::new();
        gzip_parallel(&mut &b""[..], &mut empty).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
