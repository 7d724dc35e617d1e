//! The manifest, config and index parsers on arbitrary bytes: never a panic, and a config
//! that parses serializes and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageIndex, ImageManifest};
use rimg::image::ImageConfig;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ImageManifest>(data);
    let _ = serde_json::from_slice::<ImageIndex>(data);
    if let Ok(c) = serde_json::from_slice::<ImageConfig>(data) {
        let bytes = serde_json::to_vec(&c).expect("a config serializes");
        serde_json::from_slice::<ImageConfig>(&bytes).expect("a serialized config parses");
    }
});
