//! The library half of the `rimg` CLI: the image model, archives, and (as they land) the
//! builder, runtime and registry client ([`registry`]). The binaries in `src/bin/` parse flags, call into
//! this library, and print.

pub mod build;
pub mod container;
pub mod image;
pub mod mount;
pub mod registry;
pub mod runtime;
pub mod table;
pub mod units;

/// The default store: `/var/lib/rimg` as root; `$XDG_DATA_HOME/rimg` (or
/// `~/.local/share/rimg`) otherwise.
pub fn default_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/rimg");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("rimg");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/rimg")
}
