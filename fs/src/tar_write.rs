//! A deterministic writer of plain archives (the members of `rimg save` archives): regular
//! files and directories, owned by root, mtime 0, written as the caller streams them.
//!
//! Layer tars are never rewritten here; they are copied into an archive whole, as members.

use std::io::{self, Read, Write};

use crate::tar_stream::{round_up, BLOCK};

/// The largest size an octal ustar size field holds; larger members get a GNU header.
const USTAR_MAX_SIZE: u64 = (1 << 33) - 1;

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
}
