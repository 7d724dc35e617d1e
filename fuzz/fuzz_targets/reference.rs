//! Docker's reference grammar on arbitrary strings: never a panic, and a parsed reference
//! prints to a string that parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rimg::image::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let shown = r.to_string();
        let again = Reference::parse(&shown).expect("a printed reference parses");
        assert_eq!(again.to_string(), shown);
        let _ = Reference::from_ref_name(&r.ref_name());
    }
});
