//! A deterministic tar writer: the plain archives `rimg save` writes (regular files and
//! directories, owned by root, mtime 0) and, through [`TarWriter::append_entry`], new layers
//! (`commit`) with every entry kind, exact attributes and PAX records for what ustar cannot hold.
//!
//! Stored layer tars are never rewritten here; `save` copies them into an archive whole.

use std::io::{self, Read, Write};

use crate::tar_stream::{round_up, BLOCK};

/// The largest size an octal ustar size field holds; larger members get a GNU header.
const USTAR_MAX_SIZE: u64 = (1 << 33) - 1;

/// The largest number an 8-byte octal ustar field (uid, gid, mode) holds.
const USTAR_MAX_ID: u64 = 0o7_777_777;

/// One member for [`TarWriter::append_entry`]: what a ustar header says, plus xattrs.
#[derive(Clone, Copy, Debug)]
pub struct EntryMeta<'a> {
    /// Relative path without a trailing `/` (one is added for directories).
    pub path: &'a [u8],
    /// The entry type (regular, directory, symlink, hard link, devices, fifo).
    pub kind: tar::EntryType,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Data size (regular files only; zero for everything else).
    pub size: u64,
    /// Symlink target or hard link target path; empty otherwise.
    pub link: &'a [u8],
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Extended attributes, written as PAX `SCHILY.xattr.NAME` records in this order.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes a tar archive member by member.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Appends a directory entry (`path/`).
    pub fn append_dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = header(0, 0o755)?;
        h.set_entry_type(tar::EntryType::Directory);
        let name = format!("{}/", path.trim_end_matches('/'));
        h.set_path(&name)?;
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    /// Appends a regular file held in memory.
    pub fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.append_reader(path, bytes.len() as u64, bytes)
    }

    /// Appends a regular file of exactly `size` bytes read from `src`; fails if `src` holds
    /// fewer.
    pub fn append_reader(&mut self, path: &str, size: u64, src: impl Read) -> io::Result<()> {
        let mut h = header(size, 0o644)?;
        h.set_path(path)?;
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        let copied = io::copy(&mut src.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, read {copied}"),
            ));
        }
        self.pad(size)
    }

    /// Appends any entry: a ustar header, preceded by a PAX header when the path or link is
    /// longer than ustar holds, a number is out of range, or there are xattrs. A regular
    /// file's `meta.size` bytes are read from `data`; fewer is an `UnexpectedEof` error.
    /// Records are written in a fixed order, so equal input gives equal bytes.
    pub fn append_entry(&mut self, meta: &EntryMeta<'_>, data: impl Read) -> io::Result<()> {
        let mut path = meta.path.to_vec();
        if meta.kind == tar::EntryType::Directory {
            path.push(b'/');
        }
        let mut pax: Vec<u8> = Vec::new();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(meta.kind);
        h.set_mode(meta.mode & 0o7777);
        if path.len() > 100 {
            pax_record(&mut pax, b"path", &path);
        }
        put_field(&mut h.as_old_mut().name, &path);
        if meta.link.len() > 100 {
            pax_record(&mut pax, b"linkpath", meta.link);
        }
        put_field(&mut h.as_old_mut().linkname, meta.link);
        for (key, v, set) in [
            (
                &b"uid"[..],
                meta.uid,
                tar::Header::set_uid as fn(&mut tar::Header, u64),
            ),
            (&b"gid"[..], meta.gid, tar::Header::set_gid),
        ] {
            if u64::from(v) > USTAR_MAX_ID {
                pax_record(&mut pax, key, v.to_string().as_bytes());
                set(&mut h, 0);
            } else {
                set(&mut h, u64::from(v));
            }
        }
        match u64::try_from(meta.mtime) {
            Ok(t) if t <= USTAR_MAX_SIZE => h.set_mtime(t),
            _ => {
                pax_record(&mut pax, b"mtime", meta.mtime.to_string().as_bytes());
                h.set_mtime(0);
            }
        }
        let size = if meta.kind == tar::EntryType::Regular {
            meta.size
        } else {
            0
        };
        if size > USTAR_MAX_SIZE {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
            h.set_size(0);
        } else {
            h.set_size(size);
        }
        if matches!(meta.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(meta.dev_major)?;
            h.set_device_minor(meta.dev_minor)?;
        }
        for (k, v) in meta.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        h.set_cksum();
        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(0o644);
            put_field(&mut x.as_old_mut().name, b"././@PaxHeader");
            x.set_mtime(0);
            x.set_uid(0);
            x.set_gid(0);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            self.out.write_all(x.as_bytes())?;
            self.write_padded(&pax)?;
        }
        self.out.write_all(h.as_bytes())?;
        if size > 0 {
            let copied = io::copy(&mut data.take(size), &mut self.out)?;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: expected {size} bytes, read {copied}",
                        String::from_utf8_lossy(meta.path)
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pad(bytes.len() as u64)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = (round_up(size) - size) as usize;
        self.out.write_all(&[0u8; BLOCK as usize][..pad])
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK as usize])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Copies `value` into a NUL-padded header field, truncated to fit (a PAX record then holds
/// the whole value).
fn put_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn header(size: u64, mode: u32) -> io::Result<tar::Header> {
    let mut h = if size > USTAR_MAX_SIZE {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar_stream::{EntryType, TarStream};

    #[test]
    fn members_read_back_with_their_data() {
        let mut short = TarWriter::new(Vec::new());
        assert!(short.append_reader("short", 10, &b"abc"[..]).is_err());

        let mut w = TarWriter::new(Vec::new());
        w.append_dir("blobs").unwrap();
        w.append_bytes("blobs/a.json", b"{}").unwrap();
        w.append_reader("b/layer.tar", 700, &[3u8; 700][..])
            .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut s = TarStream::new(&bytes[..]);
        let mut got = Vec::new();
        while let Some(e) = s.next_entry().unwrap() {
            let mut data = Vec::new();
            s.data().read_to_end(&mut data).unwrap();
            got.push((String::from_utf8(e.path).unwrap(), e.kind, data));
        }
        assert_eq!(
            got,
            [
                ("blobs".to_string(), EntryType::Directory, vec![]),
                (
                    "blobs/a.json".to_string(),
                    EntryType::Regular,
                    b"{}".to_vec()
                ),
                (
                    "b/layer.tar".to_string(),
                    EntryType::Regular,
                    vec![3u8; 700]
                ),
            ]
        );
    }

    #[test]
    fn entries_beyond_ustar_get_pax_records() {
        let long = format!("d/{}/{}", "n".repeat(200), "m".repeat(100));
        let target = "t".repeat(150);
        let xattrs = vec![(b"user.k".to_vec(), b"v\0\n".to_vec())];
        let mut w = TarWriter::new(Vec::new());
        let meta = EntryMeta {
            path: long.as_bytes(),
            kind: tar::EntryType::Regular,
            mode: 0o4755,
            uid: 3_000_000,
            gid: 7,
            mtime: -5,
            size: 3,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &xattrs,
        };
        w.append_entry(&meta, &b"abc"[..]).unwrap();
        let link = EntryMeta {
            path: b"l",
            kind: tar::EntryType::Symlink,
            link: target.as_bytes(),
            size: 0,
            xattrs: &[],
            ..meta
        };
        w.append_entry(&link, io::empty()).unwrap();
        let dev = EntryMeta {
            path: b"null",
            kind: tar::EntryType::Char,
            dev_major: 1,
            dev_minor: 3,
            ..link
        };
        w.append_entry(&dev, io::empty()).unwrap();
        assert!(w.append_entry(&meta, &b"ab"[..]).is_err());
        let bytes = w.finish().unwrap();
        let mut s = TarStream::new(&bytes[..]);
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long.as_bytes());
        assert_eq!(
            (e.mode, e.uid, e.gid, e.mtime, e.size),
            (0o4755, 3_000_000, 7, -5, 3)
        );
        assert_eq!(e.xattrs, xattrs);
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!((e.kind, e.link), (EntryType::Symlink, target.into_bytes()));
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!(
            (e.kind, e.dev_major, e.dev_minor),
            (EntryType::CharDevice, 1, 3)
        );
    }
}
