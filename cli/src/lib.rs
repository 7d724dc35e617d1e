//! The library half of the `rimg` CLI: the image model, archives, and (as they land) the
//! builder, runtime and registry client. The binaries in `src/bin/` parse flags, call into
//! this library, and print.

pub mod build;
pub mod image;
pub mod table;
pub mod units;
