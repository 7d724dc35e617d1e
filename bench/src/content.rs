//! Deterministic pseudo-random file content. Byte `i` of a file is a pure function of the
//! file's seed and `i` (splitmix64 of a counter), so any range of any file can be produced
//! without reading it: the generator writes layers at memory speed, and every read a variant
//! makes can be checked against the source, wherever in the file it lands.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// One 64-bit word of the stream `seed`, word number `index` (splitmix64's finaliser).
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed from a name (FNV-1a), so each path gets its own stream.
pub fn seed_of(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    word(h, 0)
}

/// A small number in `1..=max` derived from `seed` (file sizes).
pub fn small(seed: u64, max: u64) -> u64 {
    1 + word(seed, u64::MAX) % max
}

/// Fills `buf` with the bytes of stream `seed` starting at byte `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut out = 0;
    // Unaligned head.
    while out < buf.len() && !pos.is_multiple_of(8) {
        buf[out] = word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize];
        out += 1;
        pos += 1;
    }
    let mut chunks = buf[out..].chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&word(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let w = word(seed, pos / 8).to_le_bytes();
        let n = tail.len();
        tail.copy_from_slice(&w[..n]);
    }
}

/// A file's content: `len` bytes of stream `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    /// The stream.
    pub seed: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Content {
    /// A reader over the whole content.
    pub fn reader(self) -> ContentReader {
        ContentReader {
            content: self,
            pos: 0,
        }
    }

    /// The sha256 of the whole content.
    pub fn sha256(self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < self.len {
            let n = (self.len - pos).min(buf.len() as u64) as usize;
            fill(self.seed, pos, &mut buf[..n]);
            h.update(&buf[..n]);
            pos += n as u64;
        }
        h.finalize().into()
    }
}

/// Reads a [`Content`] from the start.
pub struct ContentReader {
    content: Content,
    pos: u64,
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.content.len - self.pos;
        let n = left.min(buf.len() as u64) as usize;
        fill(self.content.seed, self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_range_matches_the_stream() {
        let c = Content {
            seed: seed_of("bench/big"),
            len: 1000,
        };
        let mut all = Vec::new();
        c.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 1000);
        for (start, end) in [(0, 1000), (3, 17), (8, 16), (9, 9), (995, 1000), (5, 6)] {
            let mut part = vec![0u8; end - start];
            fill(c.seed, start as u64, &mut part);
            assert_eq!(part, &all[start..end], "{start}..{end}");
        }
        let mut h = Sha256::new();
        h.update(&all);
        assert_eq!(<[u8; 32]>::from(h.finalize()), c.sha256());
    }

    #[test]
    fn streams_differ() {
        assert_ne!(seed_of("a"), seed_of("b"));
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        fill(seed_of("a"), 0, &mut a);
        fill(seed_of("b"), 0, &mut b);
        assert_ne!(a, b);
    }
}
