//! A streaming, bounded reader of tar headers.
//!
//! Layers are indexed in one pass while they stream into the store, so this reader never
//! seeks: it reads each header block, records where the entry's data starts, and reads past
//! the data (the bytes still flow through whatever the caller wrapped around the source, such
//! as a hasher and the blob file). It understands ustar, GNU (`L`/`K` long names, base-256
//! numbers) and PAX (`x`/`g` records, `SCHILY.xattr.*`), and it is strict: anything it cannot
//! represent exactly, or that could escape the root, is an error rather than a guess.

use std::io::{self, Read};

/// Size of a tar block.
pub const BLOCK: u64 = 512;

/// The longest extended header (PAX record set or GNU long name) accepted.
pub const MAX_EXTENSION_BYTES: u64 = 1 << 20;
/// The longest normalized path accepted (Linux `PATH_MAX` minus the terminator).
pub const MAX_PATH_BYTES: usize = 4095;
/// The longest single path component accepted (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// The largest device major number that `st_rdev` can carry.
pub const MAX_DEV_MAJOR: u32 = (1 << 12) - 1;
/// The largest device minor number that `st_rdev` can carry.
pub const MAX_DEV_MINOR: u32 = (1 << 20) - 1;

/// Why a tar stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the source failed.
    #[error("reading tar")]
    Io(#[source] io::Error),
    /// The stream ended inside a header or inside file data.
    #[error("tar is truncated at byte {0}")]
    Truncated(u64),
    /// A header block's checksum does not match its contents.
    #[error("tar header at byte {0} has a bad checksum")]
    BadChecksum(u64),
    /// A numeric header field is not octal or base-256.
    #[error("tar header at byte {offset} has an invalid {field} field")]
    BadNumber {
        /// Offset of the header.
        offset: u64,
        /// The field's name.
        field: &'static str,
    },
    /// A PAX record set is malformed.
    #[error("malformed PAX header at byte {0}")]
    BadPax(u64),
    /// A PAX record set or GNU long name is larger than [`MAX_EXTENSION_BYTES`].
    #[error("extended header at byte {offset} is {size} bytes, over the {MAX_EXTENSION_BYTES}-byte limit")]
    ExtensionTooLarge {
        /// Offset of the header.
        offset: u64,
        /// Its declared size.
        size: u64,
    },
    /// A PAX `size` record disagrees with the size in the ustar header.
    #[error("tar entry {path:?}: PAX size {pax} disagrees with header size {ustar}")]
    SizeMismatch {
        /// The entry's path.
        path: String,
        /// Size from the PAX record.
        pax: u64,
        /// Size from the ustar header.
        ustar: u64,
    },
    /// A path has a `..` component, which would escape the root.
    #[error("tar entry {0:?} escapes the root (has a '..' component)")]
    Escapes(String),
    /// A path contains a NUL byte.
    #[error("tar entry {0:?} has a NUL byte in its name")]
    NulInName(String),
    /// A path is longer than [`MAX_PATH_BYTES`] or has a component longer than [`MAX_NAME_BYTES`].
    /// (The name is shown cut to its first 100 bytes, so the error stays one short line.)
    #[error("tar entry name is too long ({len} bytes): {shown:?}")]
    NameTooLong {
        /// The start of the name.
        shown: String,
        /// Its full length.
        len: usize,
    },
    /// An entry type rimg does not store (sparse, multi-volume, unknown).
    #[error("tar entry {path:?} has unsupported type {typeflag:?}")]
    UnsupportedType {
        /// The entry's path.
        path: String,
        /// Its type flag.
        typeflag: char,
    },
    /// A numeric attribute does not fit what Linux can represent.
    #[error("tar entry {path:?}: {what} out of range")]
    OutOfRange {
        /// The entry's path.
        path: String,
        /// Which attribute.
        what: &'static str,
    },
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

/// The kind of a tar entry, after extension headers are folded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    /// A regular file (types `0`, `\0`, `7`).
    Regular,
    /// A hard link to an earlier entry (type `1`).
    Hardlink,
    /// A symbolic link (type `2`).
    Symlink,
    /// A character device (type `3`).
    CharDevice,
    /// A block device (type `4`).
    BlockDevice,
    /// A directory (type `5`, or an old-style regular entry whose name ends in `/`).
    Directory,
    /// A named pipe (type `6`).
    Fifo,
}

/// One tar entry's header, with extension headers applied and its path normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// Normalized relative path: no leading `/`, no `.` or empty components; empty for the root.
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: EntryType,
    /// The link name as stored: a symlink's target, or a hard link's target path.
    pub link: Vec<u8>,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time (from PAX).
    pub mtime_nsec: u32,
    /// Size of the data that follows (zero for header-only types).
    pub size: u64,
    /// Offset in the stream of the first data byte.
    pub data_offset: u64,
    /// Offset in the stream of the entry's first header block (extension headers included).
    pub header_offset: u64,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Extended attributes from `SCHILY.xattr.*` records, in stream order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads tar headers one entry at a time from any byte source.
pub struct TarStream<R> {
    src: R,
    pos: u64,
    skip: u64,
    data_left: u64,
    truncated_at: Option<u64>,
    finished: bool,
}

#[derive(Default, Clone)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> TarStream<R> {
    /// Starts reading at byte 0 of `src`.
    pub fn new(src: R) -> Self {
        TarStream {
            src,
            pos: 0,
            skip: 0,
            data_left: 0,
            truncated_at: None,
            finished: false,
        }
    }

    /// Bytes consumed from the source so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// A reader of the data of the entry [`TarStream::next_entry`] returned last (regular
    /// files only; other kinds have none). Reading it is optional: the next call to
    /// `next_entry` skips whatever is left. If the source ends inside the data, the reader
    /// fails with `UnexpectedEof` and [`TarStream::truncated_at`] says where.
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { stream: self }
    }

    /// Where the source ended inside an entry's data, if it did while reading through
    /// [`TarStream::data`].
    pub fn truncated_at(&self) -> Option<u64> {
        self.truncated_at
    }

    /// The next entry, or `None` at the end-of-archive marker (or a clean end of input at a
    /// header boundary). The previous entry's data is read past first.
    pub fn next_entry(&mut self) -> Result<Option<RawEntry>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip_pending()?;
        self.data_left = 0;
        let mut local = Pax::default();
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut gnu_link: Option<Vec<u8>> = None;
        let mut first_header: Option<u64> = None;
        loop {
            let offset = self.pos;
            let mut block = [0u8; BLOCK as usize];
            if !self.read_block(&mut block)? {
                if first_header.is_some() {
                    return Err(TarError::Truncated(self.pos));
                }
                self.finished = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                if first_header.is_some() {
                    return Err(TarError::Truncated(offset));
                }
                self.finished = true;
                return Ok(None);
            }
            first_header.get_or_insert(offset);
            verify_checksum(&block, offset)?;
            let typeflag = block[156];
            let size = parse_number(&block[124..136], offset, "size")?;
            match typeflag {
                b'x' => {
                    let data = self.read_extension(size, offset)?;
                    parse_pax(&data, offset, &mut local)?;
                    continue;
                }
                b'g' => {
                    // A global header is ignored, as Go's archive/tar (Docker) does: Go
                    // returns it as an entry of its own that Docker skips, so it applies to
                    // no later entry and also ends any `x`/`L`/`K` headers before it.
                    let data = self.read_extension(size, offset)?;
                    parse_pax(&data, offset, &mut Pax::default())?;
                    local = Pax::default();
                    gnu_name = None;
                    gnu_link = None;
                    first_header = None;
                    continue;
                }
                b'L' | b'K' => {
                    let mut data = self.read_extension(size, offset)?;
                    if let Some(nul) = data.iter().position(|&b| b == 0) {
                        data.truncate(nul);
                    }
                    if typeflag == b'L' {
                        gnu_name = Some(data);
                    } else {
                        gnu_link = Some(data);
                    }
                    continue;
                }
                _ => {}
            }
            let header_offset = first_header.unwrap_or(offset);
            return self
                .finish_entry(
                    &block,
                    offset,
                    header_offset,
                    size,
                    local,
                    gnu_name,
                    gnu_link,
                )
                .map(Some);
        }
    }

    /// Reads the rest of the source (padding and anything after the end marker) so that a
    /// wrapping hasher sees every byte. Returns the total byte count.
    pub fn finish(mut self) -> Result<(u64, R), TarError> {
        if !self.finished {
            while self.next_entry()?.is_some() {}
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match self.src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.pos += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((self.pos, self.src))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_entry(
        &mut self,
        block: &[u8; 512],
        offset: u64,
        header_offset: u64,
        ustar_size: u64,
        local: Pax,
        gnu_name: Option<Vec<u8>>,
        gnu_link: Option<Vec<u8>>,
    ) -> Result<RawEntry, TarError> {
        let ustar = &block[257..263] == b"ustar\0";
        let raw_name = if let Some(p) = local.path.clone() {
            p
        } else if let Some(n) = gnu_name {
            n
        } else {
            let name = cstr(&block[0..100]);
            let prefix = if ustar { cstr(&block[345..500]) } else { &[] };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(name);
                p
            }
        };
        let shown = show(&raw_name);
        if raw_name.contains(&0) {
            return Err(TarError::NulInName(shown));
        }
        let link = match local.link.clone().or(gnu_link) {
            Some(l) => l,
            None => cstr(&block[157..257]).to_vec(),
        };
        if link.contains(&0) {
            return Err(TarError::NulInName(show(&link)));
        }
        let typeflag = block[156];
        let kind = match typeflag {
            b'0' | 0 | b'7' if raw_name.ends_with(b"/") => EntryType::Directory,
            b'0' | 0 | b'7' => EntryType::Regular,
            b'1' => EntryType::Hardlink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::CharDevice,
            b'4' => EntryType::BlockDevice,
            b'5' => EntryType::Directory,
            b'6' => EntryType::Fifo,
            other => {
                return Err(TarError::UnsupportedType {
                    path: shown,
                    typeflag: other as char,
                })
            }
        };
        let path = normalize_path(&raw_name)?;

        let size = match local.size {
            Some(pax) if ustar_size != 0 && pax != ustar_size => {
                return Err(TarError::SizeMismatch {
                    path: shown,
                    pax,
                    ustar: ustar_size,
                })
            }
            Some(pax) => pax,
            None => ustar_size,
        };
        let data_size = if kind == EntryType::Regular { size } else { 0 };

        let mode = parse_number(&block[100..108], offset, "mode")? & 0o7777;
        let uid = local
            .uid
            .map_or_else(|| parse_number(&block[108..116], offset, "uid"), Ok)?;
        let gid = local
            .gid
            .map_or_else(|| parse_number(&block[116..124], offset, "gid"), Ok)?;
        let (mtime, mtime_nsec) = match local.mtime {
            Some(t) => t,
            None => (parse_signed(&block[136..148], offset, "mtime")?, 0),
        };
        let (dev_major, dev_minor) =
            if matches!(kind, EntryType::CharDevice | EntryType::BlockDevice) {
                let major = parse_number(&block[329..337], offset, "devmajor")?;
                let minor = parse_number(&block[337..345], offset, "devminor")?;
                if major > u64::from(MAX_DEV_MAJOR) || minor > u64::from(MAX_DEV_MINOR) {
                    return Err(TarError::OutOfRange {
                        path: shown,
                        what: "device number",
                    });
                }
                (major as u32, minor as u32)
            } else {
                (0, 0)
            };
        let uid = u32::try_from(uid).map_err(|_| TarError::OutOfRange {
            path: shown.clone(),
            what: "uid",
        })?;
        let gid = u32::try_from(gid).map_err(|_| TarError::OutOfRange {
            path: shown.clone(),
            what: "gid",
        })?;
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (k, v) in local.xattrs {
            xattrs.retain(|(ek, _)| *ek != k);
            xattrs.push((k, v));
        }

        let data_offset = offset + BLOCK;
        self.skip = round_up(data_size);
        self.data_left = data_size;
        Ok(RawEntry {
            path,
            kind,
            link,
            mode: mode as u32,
            uid,
            gid,
            mtime,
            mtime_nsec,
            size: data_size,
            data_offset,
            header_offset,
            dev_major,
            dev_minor,
            xattrs,
        })
    }

    fn read_extension(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION_BYTES {
            return Err(TarError::ExtensionTooLarge { offset, size });
        }
        let mut data = vec![0u8; size as usize];
        self.read_exact_counted(&mut data)?;
        let pad = round_up(size) - size;
        self.skip = pad;
        self.skip_pending()?;
        Ok(data)
    }

    fn skip_pending(&mut self) -> Result<(), TarError> {
        let mut buf = [0u8; 64 * 1024];
        while self.skip > 0 {
            let want = self.skip.min(buf.len() as u64) as usize;
            let n = match self.src.read(&mut buf[..want]) {
                Ok(0) => return Err(TarError::Truncated(self.pos)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.pos += n as u64;
            self.skip -= n as u64;
        }
        Ok(())
    }

    /// Reads one block; `Ok(false)` on a clean end of input before its first byte.
    fn read_block(&mut self, block: &mut [u8; 512]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < block.len() {
            match self.src.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Truncated(self.pos + filled as u64)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += BLOCK;
        Ok(true)
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        match self.src.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(TarError::Truncated(self.pos))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The data of one tar entry, read straight from the stream (see [`TarStream::data`]).
pub struct EntryData<'a, R> {
    stream: &'a mut TarStream<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &mut *self.stream;
        if s.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = s.data_left.min(buf.len() as u64) as usize;
        let n = s.src.read(&mut buf[..want])?;
        if n == 0 {
            s.truncated_at = Some(s.pos);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                TarError::Truncated(s.pos),
            ));
        }
        s.pos += n as u64;
        s.data_left -= n as u64;
        s.skip -= n as u64;
        Ok(n)
    }
}

/// Rounds `n` up to a whole number of blocks.
pub fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// Normalizes a tar path: drops leading `/`, empty and `.` components; refuses `..`,
/// over-long names and NUL bytes. The root is the empty path. Stricter than
/// [`crate::path::clean_rel`], which resolves `..`: a layer entry named through its parent is
/// refused whole, as a hostile layer's `a/../../etc` must never be read as some other path.
pub fn normalize_path(raw: &[u8]) -> Result<Vec<u8>, TarError> {
    let shown = || show(raw);
    if raw.contains(&0) {
        return Err(TarError::NulInName(shown()));
    }
    let too_long = || TarError::NameTooLong {
        shown: shown(),
        len: raw.len(),
    };
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(TarError::Escapes(shown())),
            c if c.len() > MAX_NAME_BYTES => return Err(too_long()),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.len() > MAX_PATH_BYTES {
        return Err(too_long());
    }
    Ok(out)
}

/// A name for an error message: lossy UTF-8, cut after 100 bytes so that a hostile name of
/// megabytes still makes a one-line error.
pub fn show(raw: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&raw[..raw.len().min(100)]).into_owned();
    if raw.len() > 100 {
        s.push('…');
    }
    s
}

fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

/// Whether `block` could start a tar stream: a header whose checksum is right, or the zero
/// block that ends an empty archive. Used to tell layer tars from other files by their first
/// bytes.
pub fn is_header_block(block: &[u8]) -> bool {
    let Ok(block) = <&[u8; 512]>::try_from(block) else {
        return false;
    };
    block.iter().all(|&b| b == 0) || verify_checksum(block, 0).is_ok()
}

fn verify_checksum(block: &[u8; 512], offset: u64) -> Result<(), TarError> {
    let stored = parse_number(&block[148..156], offset, "checksum")
        .map_err(|_| TarError::BadChecksum(offset))?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).ok() == Some(signed) {
        Ok(())
    } else {
        Err(TarError::BadChecksum(offset))
    }
}

/// Parses an octal (space/NUL padded) or GNU base-256 numeric field.
fn parse_number(field: &[u8], offset: u64, name: &'static str) -> Result<u64, TarError> {
    let bad = || TarError::BadNumber {
        offset,
        field: name,
    };
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(bad());
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(bad)? | u64::from(b);
        }
        return Ok(v);
    }
    let trimmed: &[u8] = {
        let start = field
            .iter()
            .position(|&b| b != b' ' && b != 0)
            .unwrap_or(field.len());
        let rest = &field[start..];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == 0)
            .unwrap_or(rest.len());
        if rest[end..].iter().any(|&b| b != b' ' && b != 0) {
            return Err(bad());
        }
        &rest[..end]
    };
    let mut v: u64 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return Err(bad());
        }
        v = v.checked_mul(8).ok_or_else(bad)? + u64::from(b - b'0');
    }
    Ok(v)
}

fn parse_signed(field: &[u8], offset: u64, name: &'static str) -> Result<i64, TarError> {
    if field.first().is_some_and(|b| b & 0xc0 == 0xc0) {
        // Negative base-256 (two's complement).
        let mut v: i64 = -1;
        for &b in field {
            v = v.checked_mul(256).ok_or(TarError::BadNumber {
                offset,
                field: name,
            })? | i64::from(b);
        }
        return Ok(v);
    }
    let v = parse_number(field, offset, name)?;
    i64::try_from(v).map_err(|_| TarError::BadNumber {
        offset,
        field: name,
    })
}

fn parse_pax(data: &[u8], offset: u64, out: &mut Pax) -> Result<(), TarError> {
    let bad = || TarError::BadPax(offset);
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let num = || -> Result<u64, TarError> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        match key {
            b"path" => out.path = Some(value.to_vec()),
            b"linkpath" => out.link = Some(value.to_vec()),
            b"size" => out.size = Some(num()?),
            b"uid" => out.uid = Some(num()?),
            b"gid" => out.gid = Some(num()?),
            b"mtime" => out.mtime = Some(parse_pax_time(value).ok_or_else(bad)?),
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = k[b"SCHILY.xattr.".len()..].to_vec();
                if name.is_empty() {
                    return Err(bad());
                }
                out.xattrs.retain(|(n, _)| *n != name);
                out.xattrs.push((name, value.to_vec()));
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(TarError::UnsupportedType {
                    path: String::from_utf8_lossy(out.path.as_deref().unwrap_or_default())
                        .into_owned(),
                    typeflag: 'S',
                })
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut nsec: u32 = digits.parse().ok()?;
    let mut secs = secs;
    if s.starts_with('-') && nsec > 0 {
        // "-1.5" means 1.5 s before the epoch.
        secs -= 1;
        nsec = 1_000_000_000 - nsec;
    }
    Some((secs, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(bytes: &[u8]) -> Result<Vec<RawEntry>, TarError> {
        let mut s = TarStream::new(bytes);
        let mut out = Vec::new();
        while let Some(e) = s.next_entry()? {
            out.push(e);
        }
        let (n, _) = s.finish()?;
        assert_eq!(n, bytes.len() as u64);
        Ok(out)
    }

    fn builder() -> tar::Builder<Vec<u8>> {
        tar::Builder::new(Vec::new())
    }

    #[test]
    fn reads_every_entry_kind_with_offsets() {
        let mut b = builder();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "d/", io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1234);
        h.set_size(5);
        b.append_data(&mut h, "d/f", &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "d/s", "f").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "d/h", "d/f").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_size(0);
        b.append_data(&mut h, "d/null", io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        b.append_data(&mut h, "d/p", io::empty()).unwrap();
        let long = format!("d/{}", "x".repeat(200));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();

        let es = entries(&bytes).unwrap();
        let kinds: Vec<_> = es.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EntryType::Directory,
                EntryType::Regular,
                EntryType::Symlink,
                EntryType::Hardlink,
                EntryType::CharDevice,
                EntryType::Fifo,
                EntryType::Regular
            ]
        );
        let f = &es[1];
        assert_eq!(
            (f.mode, f.uid, f.gid, f.mtime, f.size),
            (0o4755, 7, 8, 1234, 5)
        );
        assert_eq!(&bytes[f.data_offset as usize..][..5], b"hello");
        assert_eq!(es[2].link, b"f");
        assert_eq!(es[3].link, b"d/f");
        assert_eq!((es[4].dev_major, es[4].dev_minor), (1, 3));
        assert_eq!(es[6].path, long.as_bytes());
        assert_eq!(&bytes[es[6].data_offset as usize..][..3], b"abc");
    }

    #[test]
    fn pax_path_size_and_xattrs_apply() {
        let mut b = builder();
        b.append_pax_extensions([
            ("SCHILY.xattr.user.k", &b"v\0x"[..]),
            ("mtime", b"100.25"),
            ("path", b"a/pax-name"),
        ])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        b.append_data(&mut h, "short", &b"hi"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let es = entries(&bytes).unwrap();
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].path, b"a/pax-name");
        assert_eq!(es[0].xattrs, vec![(b"user.k".to_vec(), b"v\0x".to_vec())]);
        assert_eq!((es[0].mtime, es[0].mtime_nsec), (100, 250_000_000));
        assert_eq!(&bytes[es[0].data_offset as usize..][..2], b"hi");
    }

    /// A global PAX header (`g`) applies to no entry, as in Go's archive/tar (Docker), so
    /// every tool reads the same names from the same layer. Go's reader yields, for these
    /// bytes (Python's `tarfile` writes them with `pax_headers=` set): an entry of type `g`
    /// that Docker skips, then `a` and `b` with their own names, sizes and owners.
    #[test]
    fn global_pax_header_is_ignored() {
        fn pax_record(key: &str, value: &str) -> Vec<u8> {
            let body = format!(" {key}={value}\n");
            let mut n = body.len() + 1;
            while format!("{n}{body}").len() != n {
                n += 1;
            }
            format!("{n}{body}").into_bytes()
        }
        let mut data = pax_record("path", "GLOBAL");
        data.extend(pax_record("uid", "4242"));
        data.extend(pax_record("size", "1"));
        data.extend(pax_record("SCHILY.xattr.user.g", "v"));
        let mut b = builder();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, "pax_global_header", &data[..])
            .unwrap();
        for (name, body) in [("a", &b"first"[..]), ("b", b"second")] {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_uid(7);
            b.append_data(&mut h, name, body).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let es = entries(&bytes).unwrap();
        let got: Vec<_> = es
            .iter()
            .map(|e| (e.path.clone(), e.size, e.uid, e.xattrs.len()))
            .collect();
        assert_eq!(got, [(b"a".to_vec(), 5, 7, 0), (b"b".to_vec(), 6, 7, 0)]);

        // A global header between an `x` header and its entry ends that header, as in Go.
        let mut b = builder();
        b.append_pax_extensions([("path", &b"from-x"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, "pax_global_header", &data[..])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        b.append_data(&mut h, "c", &b"c"[..]).unwrap();
        let es = entries(&b.into_inner().unwrap()).unwrap();
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].path, b"c");

        // A malformed global header is still refused.
        let mut b = builder();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_size(5);
        b.append_data(&mut h, "g", &b"junk\n"[..]).unwrap();
        assert!(matches!(
            entries(&b.into_inner().unwrap()),
            Err(TarError::BadPax(0))
        ));
    }

    #[test]
    fn refuses_escapes_truncation_and_bad_checksums() {
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"../evil\0");
        h.set_cksum();
        let mut b = builder();
        b.append(&h, &b"evil"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(matches!(entries(&bytes), Err(TarError::Escapes(_))));

        let mut b = builder();
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        b.append_data(&mut h, "f", &vec![1u8; 1000][..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(matches!(
            entries(&bytes[..900]),
            Err(TarError::Truncated(_))
        ));
        let mut corrupt = bytes.clone();
        corrupt[10] ^= 0x55;
        assert!(matches!(entries(&corrupt), Err(TarError::BadChecksum(0))));
    }

    #[test]
    fn entry_data_reads_each_file_and_detects_truncation() {
        let mut b = builder();
        for (name, data) in [("a", &b"first"[..]), ("b", &[7u8; 1500][..]), ("c", b"")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let mut s = TarStream::new(&bytes[..]);
        let mut got = Vec::new();
        while let Some(e) = s.next_entry().unwrap() {
            let mut data = Vec::new();
            // Read only part of "b": the rest is skipped by next_entry.
            let limit = if e.path == b"b" { 100 } else { u64::MAX };
            s.data().take(limit).read_to_end(&mut data).unwrap();
            got.push((e.path, data.len()));
        }
        assert_eq!(
            got,
            [(b"a".to_vec(), 5), (b"b".to_vec(), 100), (b"c".to_vec(), 0)]
        );
        let mut s = TarStream::new(&bytes[..2000]);
        s.next_entry().unwrap();
        s.next_entry().unwrap();
        let err = io::copy(&mut s.data(), &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(s.truncated_at(), Some(2000));
    }

    #[test]
    fn normalize_strips_and_refuses() {
        assert_eq!(normalize_path(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize_path(b"/abs").unwrap(), b"abs");
        assert_eq!(normalize_path(b"./").unwrap(), b"");
        assert!(normalize_path(b"a/../../b").is_err());
        assert!(normalize_path(&[b'a'; 256]).is_err());
        assert!(normalize_path(b"a\0b").is_err());
    }

    #[test]
    fn numbers_octal_and_base256() {
        assert_eq!(parse_number(b"0000644\0", 0, "m").unwrap(), 0o644);
        assert_eq!(parse_number(b"   12 \0\0", 0, "m").unwrap(), 0o12);
        assert_eq!(
            parse_number(&[0x80, 0, 0, 0, 0, 0, 1, 0], 0, "m").unwrap(),
            256
        );
        assert!(parse_number(b"12x4\0\0\0\0", 0, "m").is_err());
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
    }
}
