//! The free-space floor and the size cap every write into the store keeps.
//!
//! The floor is what a write into the store always leaves free on the store's filesystem:
//! [`MIN_FREE_ENV`] when set (bytes, `K`/`M`/`G`/`T`, or a percentage of the filesystem),
//! else [`MIN_FREE_PERCENT`] of the filesystem, at most [`MIN_FREE_BYTES`]. Layers and blobs
//! are checked while they stream ([`SpaceGuard`]); small files (`index.json`, pins, records,
//! layer indexes, configs) before they are written ([`ContentStore::check_room`]). A write that
//! does not grow a file is never refused, so `rmi` and `prune` still work at the floor.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::staging::Writeback;
use super::TempFile;
use super::{
    io_err, ContentStore, Result, StoreError, MAX_LAYER_SIZE_ENV, MIN_FREE_BYTES, MIN_FREE_ENV,
    MIN_FREE_PERCENT,
};

/// The `RIMG_MAX_LAYER_SIZE` cap, if set.
pub(super) fn max_layer_size() -> Result<Option<u64>, StoreError> {
    let Some(v) = std::env::var_os(MAX_LAYER_SIZE_ENV) else {
        return Ok(None);
    };
    let v = v.to_string_lossy().into_owned();
    parse_size(&v).map(Some).ok_or(StoreError::BadLimit(v))
}

/// Bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers of 1024).
fn parse_size(v: &str) -> Option<u64> {
    let t = v.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return None,
            };
            (&t[..i], 1u64 << shift)
        }
        _ => (t, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
}

/// The floor on a filesystem of `fs_bytes`: `RIMG_MIN_FREE` if set (a size, or `N%` of the
/// filesystem), else [`MIN_FREE_PERCENT`] % of it, at most [`MIN_FREE_BYTES`].
pub(super) fn min_free(fs_bytes: u64) -> Result<u64> {
    let v = std::env::var_os(MIN_FREE_ENV).map(|v| v.to_string_lossy().into_owned());
    floor_for(fs_bytes, v.as_deref())
}

/// [`min_free`] with the variable's value given.
fn floor_for(fs_bytes: u64, setting: Option<&str>) -> Result<u64> {
    let percent = |p: u64| fs_bytes / 100 * p + fs_bytes % 100 * p / 100;
    let Some(v) = setting else {
        return Ok(percent(MIN_FREE_PERCENT).min(MIN_FREE_BYTES));
    };
    let parsed = match v.trim().strip_suffix('%') {
        Some(p) => p
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|p| *p <= 100)
            .map(percent),
        None => parse_size(v),
    };
    parsed.ok_or_else(|| StoreError::BadMinFree(v.to_string()))
}

/// Free bytes (for unprivileged users) and the floor of the filesystem holding `fd`.
fn room(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstatvfs(fd)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let size = st.f_blocks.saturating_mul(st.f_frsize);
    let floor = min_free(size).map_err(io::Error::other)?;
    Ok((free, floor))
}

impl ContentStore {
    /// Refuses to write `len` bytes to `dest` (a small file, written whole) when what it adds
    /// to the store's filesystem would leave less than the floor free. `what` names the file in
    /// the refusal. A write that does not grow `dest` always passes.
    pub(super) fn check_room(&self, dest: &Path, len: u64, what: &str) -> Result<()> {
        let old = fs::symlink_metadata(dest).map(|m| m.len()).unwrap_or(0);
        let growth = len.saturating_sub(old);
        if growth == 0 {
            return Ok(());
        }
        let dir = self.tmp_dir();
        let d = File::open(&dir).map_err(io_err("open", &dir))?;
        let (free, floor) = room(&d).map_err(|e| guard_err(e, io_err("statvfs", &dir)))?;
        if free < floor.saturating_add(growth) {
            return Err(StoreError::DiskFull {
                free,
                floor,
                what: format!("{what} ({len} bytes)"),
            });
        }
        Ok(())
    }
}

/// Writes into a temp file of the store, refusing to grow it past a cap or to leave the
/// filesystem with less than the floor ([`min_free`]), checked every half floor (at least
/// every MiB, at most every 64 MiB), so a stream that expands without end stops before it
/// has eaten half the floor.
///
/// Every [`SpaceGuard::WRITEBACK_EVERY`] bytes it also asks a helper thread to `fdatasync`
/// what is written so far, so the disk writes while the stream is still being produced and
/// the fsync of publishing only waits for the tail (on a 312 MB layer that fsync went from
/// about 0.5 s to a few ms). [`Write::flush`] waits for the helper and reports its error.
pub(super) struct SpaceGuard<'a> {
    file: &'a File,
    limit: Option<u64>,
    written: u64,
    next_check: u64,
    check_every: u64,
    next_writeback: u64,
    writeback: Option<Writeback>,
}

impl<'a> SpaceGuard<'a> {
    const WRITEBACK_EVERY: u64 = 32 << 20;

    pub(super) fn new(file: &'a File, limit: Option<u64>) -> Self {
        SpaceGuard {
            file,
            limit,
            written: 0,
            next_check: 0,
            check_every: 64 << 20,
            next_writeback: Self::WRITEBACK_EVERY,
            writeback: None,
        }
    }

    fn start_writeback(&mut self) -> io::Result<()> {
        self.next_writeback = self.written + Self::WRITEBACK_EVERY;
        let wb = match &mut self.writeback {
            Some(wb) => wb,
            None => self.writeback.insert(Writeback::start(self.file)?),
        };
        match wb.tx.try_send(()) {
            // Full: a sync is already queued and will cover these bytes too.
            Ok(()) | Err(std::sync::mpsc::TrySendError::Full(())) => Ok(()),
            // The thread stopped on an error: flush reports it.
            Err(std::sync::mpsc::TrySendError::Disconnected(())) => Ok(()),
        }
    }
}

impl Write for SpaceGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.written + buf.len() as u64;
        if let Some(limit) = self.limit {
            if after > limit {
                return Err(io::Error::other(StoreError::OverLimit { limit }));
            }
        }
        if after >= self.next_check {
            let (free, floor) = room(self.file)?;
            if free < floor.saturating_add(buf.len() as u64) {
                return Err(io::Error::other(StoreError::DiskFull {
                    free,
                    floor,
                    what: format!("a layer or blob past {} bytes", self.written),
                }));
            }
            self.check_every = (floor / 2).clamp(1 << 20, 64 << 20);
            self.next_check = after + self.check_every;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written >= self.next_writeback {
            self.start_writeback()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(wb) = self.writeback.take() {
            wb.finish()?;
        }
        self.file.flush()
    }
}

/// A writer into a store temp file ([`TempFile::guarded`]) that keeps the free-space floor
/// and the `RIMG_MAX_LAYER_SIZE` cap, as layers do: for what the builder downloads or
/// decompresses into `rimg/tmp/`. A refusal is an `io::Error` whose message is the store's.
pub struct Guarded<'a>(SpaceGuard<'a>);

impl Write for Guarded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl TempFile {
    /// A writer of this file that keeps the store's floor and cap (see [`Guarded`]).
    pub fn guarded(&self) -> Result<Guarded<'_>> {
        Ok(Guarded(SpaceGuard::new(&self.file, max_layer_size()?)))
    }
}

/// A [`SpaceGuard`] refusal carried through an `io::Error` becomes its own store error;
/// anything else goes through `other`.
pub(super) fn guard_err<E: Into<StoreError>>(
    e: io::Error,
    other: impl FnOnce(io::Error) -> E,
) -> StoreError {
    match e.get_ref().and_then(|i| i.downcast_ref::<StoreError>()) {
        Some(StoreError::OverLimit { limit }) => StoreError::OverLimit { limit: *limit },
        Some(StoreError::DiskFull { free, floor, what }) => StoreError::DiskFull {
            free: *free,
            floor: *floor,
            what: what.clone(),
        },
        Some(StoreError::BadMinFree(v)) => StoreError::BadMinFree(v.clone()),
        _ => other(e).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_a_share_of_the_filesystem_at_most_a_gib() {
        const MB: u64 = 1_000_000;
        assert_eq!(floor_for(300 * MB, None).unwrap(), 15 * MB);
        assert_eq!(floor_for(1 << 40, None).unwrap(), MIN_FREE_BYTES);
        assert_eq!(floor_for(300 * MB, Some("0")).unwrap(), 0);
        assert_eq!(floor_for(300 * MB, Some("2M")).unwrap(), 2 << 20);
        assert_eq!(floor_for(300 * MB, Some("10%")).unwrap(), 30 * MB);
        assert_eq!(floor_for(1 << 40, Some("2G")).unwrap(), 2 << 30);
        for bad in ["lots", "101%", "-1", "5X"] {
            assert!(
                matches!(floor_for(MB, Some(bad)), Err(StoreError::BadMinFree(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn small_writes_that_grow_nothing_always_pass() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let p = dir.path().join("index.json");
        let len = fs::metadata(&p).unwrap().len();
        // Whatever the disk's state, a write no larger than the file passes.
        s.check_room(&p, len, "index.json").unwrap();
    }
}
