//! Staging a blob or layer in `rimg/tmp/` (hashed, indexed, written while a helper thread
//! syncs it) and publishing it under its digest.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::atomic::sync_dir;
use super::space::{guard_err, max_layer_size, SpaceGuard};
use super::{io_err, ContentStore, LayerInfo, Result, StoreError};
use crate::digest::{Digest, HashingReader};
use crate::error::IoError;
use crate::layer_index::IndexBuilder;
use crate::tar_stream::TarStream;

impl ContentStore {
    /// Stores a small blob held in memory; a no-op if it is already present.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        self.check_room(
            &self.blob_path(&d),
            bytes.len() as u64,
            &format!("blob {d}"),
        )?;
        let mut tmp = self.temp_file()?;
        tmp.file
            .write_all(bytes)
            .map_err(io_err("write", &tmp.path))?;
        tmp.persist(&self.blob_path(&d))?;
        Ok(d)
    }

    /// Streams any blob into the store, verifying it against `expected` when given. Used for
    /// blobs that are not layers (layers go through [`ContentStore::ingest_layer`]).
    pub fn put_blob_from(
        &self,
        src: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let staged = self.stage_blob(src)?;
        let (d, n) = (staged.digest, staged.size);
        if let Some(e) = expected {
            if *e != d {
                return Err(StoreError::DigestMismatch {
                    expected: *e,
                    actual: d,
                });
            }
        }
        self.publish_blob(staged)?;
        Ok((d, n))
    }

    /// Streams an uncompressed layer tar into the store: hashes it, indexes every entry in the
    /// same pass, verifies the digest against `expected` (the diff_id) when given, then
    /// publishes the index and the blob. Nothing is published if any step fails.
    pub fn ingest_layer(&self, src: impl Read, expected: Option<&Digest>) -> Result<LayerInfo> {
        let staged = self.stage_layer(src)?;
        if let Some(e) = expected {
            if *e != staged.digest {
                return Err(StoreError::DigestMismatch {
                    expected: *e,
                    actual: staged.digest,
                });
            }
        }
        self.publish_layer(staged)
    }

    /// Streams the layer tar that `write` produces into the store through a pipe: the store
    /// hashes and indexes it from the other end on a thread of its own (no temporary copy of
    /// the tar, nothing buffered whole), and publishes it only if both sides finished. When the
    /// store stops reading first (a bad tar, the size cap, a full disk) the writer only sees a
    /// broken pipe, which `broken_pipe` recognizes in its error: the store's error, which says
    /// why, is returned then. Any other writer error wins over the store's.
    pub fn ingest_layer_from<E>(
        &self,
        write: impl FnOnce(io::PipeWriter) -> Result<(), E>,
        broken_pipe: impl FnOnce(&E) -> bool,
    ) -> Result<LayerInfo, WriteLayerError<E>> {
        let (reader, writer) = io::pipe().map_err(|source| {
            StoreError::from(IoError::new("create pipe", self.tmp_dir(), source))
        })?;
        let (written, staged) = std::thread::scope(|s| {
            let stager = s.spawn(move || self.stage_layer(reader));
            let written = write(writer);
            let staged = stager.join().unwrap_or_else(|_| {
                Err(StoreError::ReadLayer(io::Error::other(
                    "the layer-staging thread panicked",
                )))
            });
            (written, staged)
        });
        match (written, staged) {
            (Ok(()), Ok(staged)) => Ok(self.publish_layer(staged)?),
            (Err(w), Err(s)) if broken_pipe(&w) => Err(s.into()),
            (Err(w), _) => Err(WriteLayerError::Writer(w)),
            (Ok(()), Err(s)) => Err(s.into()),
        }
    }

    /// Streams any blob into `rimg/tmp/`, hashing it; nothing is visible until
    /// [`ContentStore::publish_blob`]. Dropping the result removes the file.
    pub fn stage_blob(&self, src: impl Read) -> Result<StagedBlob> {
        let tmp = self.temp_file()?;
        let mut r = HashingReader::new(src);
        {
            let guard = SpaceGuard::new(&tmp.file, max_layer_size()?);
            let mut w = BufWriter::with_capacity(1 << 20, guard);
            io::copy(&mut r, &mut w).map_err(|e| guard_err(e, io_err("write", &tmp.path)))?;
            w.flush().map_err(io_err("write", &tmp.path))?;
        }
        let (digest, size, _) = r.finish();
        Ok(StagedBlob {
            digest,
            size,
            file: tmp.into_staged(),
        })
    }

    /// Streams an uncompressed layer tar into `rimg/tmp/`, hashing and indexing it in one
    /// pass; nothing is visible until [`ContentStore::publish_layer`]. Dropping the result
    /// removes its files.
    pub fn stage_layer(&self, src: impl Read) -> Result<StagedLayer> {
        let tmp = self.temp_file()?;
        let tmp_path = tmp.path.clone();
        let limit = max_layer_size()?;
        let read_err = |e: crate::tar_stream::TarError| match e {
            crate::tar_stream::TarError::Io(source) => guard_err(source, StoreError::ReadLayer),
            other => StoreError::Layer(other.into()),
        };
        let (digest, size, builder) = {
            let tee = TeeReader {
                src,
                sink: BufWriter::with_capacity(1 << 20, SpaceGuard::new(&tmp.file, limit)),
            };
            let mut stream = TarStream::new(HashingReader::new(tee));
            let mut builder = IndexBuilder::new();
            while let Some(entry) = stream.next_entry().map_err(read_err)? {
                builder.push(entry)?;
            }
            let (size, hashing) = stream.finish().map_err(read_err)?;
            let (digest, _, mut tee) = hashing.finish();
            tee.sink
                .flush()
                .map_err(|e| guard_err(e, io_err("write", &tmp_path)))?;
            (digest, size, builder)
        };
        let index = builder.finish(digest, size);
        let entries = index.entries().len();
        let encoded = index.encode();
        self.check_room(
            &self.index_path(&digest),
            encoded.len() as u64,
            &format!("the index of layer {digest}"),
        )?;
        let mut index_tmp = self.temp_file()?;
        index_tmp
            .file
            .write_all(&encoded)
            .map_err(io_err("write", &index_tmp.path))?;
        Ok(StagedLayer {
            digest,
            size,
            entries,
            blob: tmp.into_staged(),
            index: index_tmp.into_staged(),
        })
    }

    /// Makes a staged blob visible under its digest (fsync, rename, fsync dir). Returns
    /// whether the store already had it.
    pub fn publish_blob(&self, blob: StagedBlob) -> Result<bool> {
        if self.has_blob(&blob.digest) {
            return Ok(true);
        }
        blob.file.publish(&self.blob_path(&blob.digest))?;
        sync_dir(&self.blob_dir())?;
        Ok(false)
    }

    /// Makes a staged layer visible: its index first (an index without its blob is
    /// harmless; a blob without its index is not a usable layer), then the blob.
    pub fn publish_layer(&self, layer: StagedLayer) -> Result<LayerInfo> {
        let mut info = LayerInfo {
            digest: layer.digest,
            size: layer.size,
            entries: layer.entries,
            existed: true,
        };
        if self.has_layer(&layer.digest) {
            return Ok(info);
        }
        layer.index.publish(&self.index_path(&layer.digest))?;
        sync_dir(&self.index_dir())?;
        if !self.has_blob(&layer.digest) {
            layer.blob.publish(&self.blob_path(&layer.digest))?;
            sync_dir(&self.blob_dir())?;
        }
        info.existed = false;
        Ok(info)
    }
}

/// Why [`ContentStore::ingest_layer_from`] failed.
#[derive(Debug)]
pub enum WriteLayerError<E> {
    /// The writer failed on its own (not because the store stopped reading).
    Writer(E),
    /// The store failed: it could not stage or publish the layer.
    Store(StoreError),
}

impl<E> From<StoreError> for WriteLayerError<E> {
    fn from(e: StoreError) -> Self {
        WriteLayerError::Store(e)
    }
}

/// A closed file in `rimg/tmp/`, removed when dropped unless published.
#[derive(Debug)]
pub(super) struct Staged {
    pub(super) path: PathBuf,
    pub(super) published: bool,
}

impl Staged {
    /// fsyncs the file and renames it to `dest` (the caller fsyncs `dest`'s directory).
    fn publish(mut self, dest: &Path) -> Result<()> {
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &self.path))?;
        fs::rename(&self.path, dest).map_err(io_err("rename into", dest))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A blob written to `rimg/tmp/` and hashed, not yet visible in the store.
#[derive(Debug)]
pub struct StagedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    file: Staged,
}

impl StagedBlob {
    /// Opens the staged bytes for reading.
    pub fn open(&self) -> Result<File> {
        Ok(File::open(&self.file.path).map_err(io_err("open", &self.file.path))?)
    }
}

/// A layer tar and its index written to `rimg/tmp/`, not yet visible in the store.
#[derive(Debug)]
pub struct StagedLayer {
    /// Digest of the uncompressed tar (its diff_id).
    pub digest: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// Number of entries in its index.
    pub entries: usize,
    blob: Staged,
    index: Staged,
}

/// The helper thread of [`SpaceGuard`]: one `fdatasync` per request, requests that arrive
/// while one runs are merged into the next.
pub(super) struct Writeback {
    pub(super) tx: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Writeback {
    pub(super) fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("rimg-writeback".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Writeback { tx, thread })
    }

    /// Stops the thread once its current sync is done; the first error it met, if any.
    pub(super) fn finish(self) -> io::Result<()> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writeback thread panicked")))
    }
}

struct TeeReader<R, W> {
    src: R,
    sink: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "etc/hello", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn ingest_layer_stores_blob_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let bytes = layer();
        let info = s.ingest_layer(&bytes[..], None).unwrap();
        assert_eq!(info.digest, Digest::of(&bytes));
        assert!(!info.existed);
        assert!(s.verify_blob(&info.digest).unwrap());
        let idx = s.layer_index(&info.digest).unwrap();
        let e = idx.find(b"etc/hello").unwrap();
        let blob = fs::read(s.blob_path(&info.digest)).unwrap();
        assert_eq!(&blob[e.offset as usize..][..5], b"hello");
        assert!(s.ingest_layer(&bytes[..], None).unwrap().existed);
        assert_eq!(
            fs::read_dir(dir.path().join("rimg/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn large_layer_written_while_syncing_is_intact() {
        // Past several WRITEBACK_EVERY marks, so the writeback thread syncs while the
        // stream is still being written, in odd-sized pieces.
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(72u32 << 20) / 4)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "big", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let info = s.ingest_layer(&tar[..], None).unwrap();
        assert_eq!(info.digest, Digest::of(&tar));
        assert!(s.verify_blob(&info.digest).unwrap());
        let blob = s.stage_blob(&data[..]).unwrap();
        assert_eq!(blob.digest, Digest::of(&data));
        assert_eq!(fs::read(&blob.file.path).unwrap(), data);
    }

    #[test]
    fn failed_ingest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let bytes = layer();
        let wrong = Digest::of(b"not it");
        assert!(matches!(
            s.ingest_layer(&bytes[..], Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(matches!(
            s.ingest_layer(&bytes[..700], None),
            Err(StoreError::Layer(_))
        ));
        assert!(s.list_blobs().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("rimg/tmp")).unwrap().count(),
            0
        );
        assert_eq!(fs::read_dir(s.index_dir()).unwrap().count(), 0);
    }

    #[test]
    fn ingest_layer_from_reports_why_the_store_stopped_reading() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let bytes = layer();
        let broken = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
        let info = s
            .ingest_layer_from(|mut w| w.write_all(&bytes), broken)
            .unwrap();
        assert_eq!(info.digest, Digest::of(&bytes));
        assert!(s.has_layer(&info.digest));
        // Not a tar: the store stops reading and says so; the writer's broken pipe is not
        // what is reported.
        let junk = vec![0xa5u8; 4 << 20];
        let got = s.ingest_layer_from(|mut w| w.write_all(&junk), broken);
        assert!(
            matches!(got, Err(WriteLayerError::Store(StoreError::Layer(_)))),
            "{got:?}"
        );
        // The writer's own failure wins, and nothing is published.
        let got = s.ingest_layer_from(
            |mut w| {
                w.write_all(&bytes[..512])?;
                Err(io::Error::other("source vanished"))
            },
            broken,
        );
        assert!(
            matches!(&got, Err(WriteLayerError::Writer(e)) if e.to_string() == "source vanished"),
            "{got:?}"
        );
        assert_eq!(s.list_blobs().unwrap().len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join("rimg/tmp")).unwrap().count(),
            0
        );
    }
}
