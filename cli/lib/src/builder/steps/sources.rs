//! Files a step downloads or decompresses, kept in the store's temp directory until the
//! layer is written.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rimg_fs::digest::HashingWriter;
use rimg_fs::tar_stream::{EntryType, TarStream};
use rimg_fs::Digest;

use super::super::fetch;
use super::super::layer::{Kind, NewEntry, Source};
use crate::image::{Compression, Images};

/// A downloaded URL.
pub struct Download {
    /// Where it came from.
    pub url: String,
    /// The downloaded file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its digest (the step's cache key holds it).
    pub digest: Digest,
    /// The server's `Last-Modified` (seconds since the epoch): the file's mtime.
    pub modified: Option<i64>,
    _tmp: rimg_fs::store::TempFile,
}

impl Download {
    /// Downloads `url` into a temp file of the store.
    pub fn fetch(images: &Images, url: &str) -> Result<Self, String> {
        let tmp = images
            .store()
            .temp_file()
            .map_err(|e| crate::error_line(&e))?;
        let path = tmp.path.clone();
        let guarded = tmp.guarded().map_err(|e| crate::error_line(&e))?;
        let mut w = HashingWriter::new(guarded);
        let got = fetch::fetch(url, &mut w)?;
        let (digest, _, mut guarded) = w.finish();
        guarded.flush().map_err(|e| e.to_string())?;
        Ok(Download {
            url: url.to_string(),
            path,
            size: got.size,
            digest,
            modified: got.modified,
            _tmp: tmp,
        })
    }
}

/// A local archive ADD extracts: its entries, reading data from the archive (or from a
/// decompressed copy).
pub struct Unpacked {
    /// The archive's entries, by path inside the archive.
    pub entries: Vec<(String, NewEntry)>,
    _tmp: Option<rimg_fs::store::TempFile>,
}

impl Unpacked {
    /// Lists the entries of `archive`, compressed with `comp`.
    pub fn open(images: &Images, archive: &Path, comp: Compression) -> Result<Self, String> {
        let (path, tmp) = if comp == Compression::None {
            (archive.to_path_buf(), None)
        } else {
            let mut tmp = images
                .store()
                .temp_file()
                .map_err(|e| crate::error_line(&e))?;
            let f = File::open(archive).map_err(|e| e.to_string())?;
            let mut dec = comp.decoder(BufReader::new(f)).map_err(|e| e.to_string())?;
            {
                let mut w = tmp.guarded().map_err(|e| crate::error_line(&e))?;
                io::copy(&mut dec, &mut w)
                    .and_then(|_| w.flush())
                    .map_err(|e| format!("decompressing: {e}"))?;
            }
            tmp.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| e.to_string())?;
            (tmp.path.clone(), Some(tmp))
        };
        let f = File::open(&path).map_err(|e| e.to_string())?;
        let mut s = TarStream::new(BufReader::with_capacity(1 << 16, f));
        let mut entries: Vec<(String, NewEntry)> = Vec::new();
        while let Some(e) = s
            .next_entry()
            .map_err(|e| format!("reading archive: {}", crate::error_line(&e)))?
        {
            let rel = String::from_utf8_lossy(&e.path).into_owned();
            if rel.is_empty() {
                continue;
            }
            // What the layer cannot hold as the archive means it is an error naming the
            // member, never a whiteout of the image's files nor a silent drop.
            let refuse = |why: &str| format!("archive member {rel}: {why}");
            if rel.split('/').any(|c| c.starts_with(".wh.")) {
                return Err(refuse(
                    "a name starting with .wh. would be a whiteout in the layer",
                ));
            }
            let kind = match e.kind {
                EntryType::Directory => Kind::Dir,
                EntryType::Regular => Kind::File {
                    source: Source::Range {
                        file: path.clone(),
                        offset: e.data_offset,
                    },
                    size: e.size,
                },
                EntryType::Symlink => Kind::Symlink(e.link.clone()),
                EntryType::Hardlink => {
                    let target = String::from_utf8_lossy(&e.link)
                        .trim_start_matches("./")
                        .trim_start_matches('/')
                        .to_string();
                    match entries.iter().rev().find(|(p, _)| *p == target) {
                        Some((_, t)) if t.kind != Kind::Dir => t.kind.clone(),
                        _ => {
                            return Err(refuse(&format!(
                                "a hard link to {target:?}, which is not an earlier file of the archive"
                            )))
                        }
                    }
                }
                EntryType::CharDevice if (e.dev_major, e.dev_minor) == (0, 0) => {
                    return Err(refuse(
                        "a 0:0 character device would be a whiteout in the layer",
                    ))
                }
                other => {
                    return Err(refuse(&format!(
                        "ADD does not add {} (only files, directories and links)",
                        match other {
                            EntryType::CharDevice => "character devices",
                            EntryType::BlockDevice => "block devices",
                            _ => "FIFOs",
                        }
                    )))
                }
            };
            entries.push((
                rel,
                NewEntry {
                    kind,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: e.mtime,
                    xattrs: e.xattrs.clone(),
                },
            ));
        }
        Ok(Unpacked { entries, _tmp: tmp })
    }
}
