//! Read-only memory maps of stored layer tars: the one place that maps files.
//!
//! Layer blobs are immutable once published (they are named by their digest and never
//! rewritten), which is what makes handing out `&[u8]` views of a shared mapping sound.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap};

/// A whole layer tar mapped read-only.
#[derive(Debug)]
pub struct MappedLayer {
    map: Option<Mmap>,
}

impl MappedLayer {
    /// Maps `file`, which must be a published (immutable) layer blob.
    pub fn map(file: &File) -> io::Result<Self> {
        if file.metadata()?.len() == 0 {
            // mmap(2) refuses empty mappings; an empty tar has no file data to serve.
            return Ok(MappedLayer { map: None });
        }
        // SAFETY: the blob is never modified or truncated while mapped: blobs are written to a
        // temp file and renamed into place, and a published blob is only ever unlinked (which
        // keeps the mapped pages alive), never rewritten in place.
        let map = unsafe { Mmap::map(file)? };
        // Data is read in the order the kernel asks for it; plain readahead is what we want.
        let _ = map.advise(Advice::Normal);
        Ok(MappedLayer { map: Some(map) })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// `len` bytes at `offset`, clamped to the mapping.
    pub fn slice(&self, offset: u64, len: u64) -> &[u8] {
        let b = self.bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        let end = usize::try_from(offset.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(b.len());
        &b[start..end]
    }
}
