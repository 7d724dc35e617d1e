//! The streaming tar reader and the layer indexer on arbitrary bytes: never a panic, and an
//! index that is built always encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rimg_fs::layer_index::index_tar_bytes;
use rimg_fs::{Digest, LayerIndex};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = index_tar_bytes(data) {
        let digest = Digest::of(data);
        let bytes = index.encode();
        let again = LayerIndex::decode(&bytes, &digest).expect("an index decodes");
        assert_eq!(again.encode(), bytes);
        let _ = index.content_size();
    }
    // Any bytes as a persisted index: refused or decoded, never a panic.
    let _ = LayerIndex::decode(data, &Digest::of(b""));
});
