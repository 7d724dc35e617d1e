//! rimg's container side as a library: the image model ([`image`]), the builder
//! ([`build`]), the runtime ([`runtime`]), containers ([`container`]), the registry client
//! ([`registry`]) and mounted stacks ([`mount`]).
//!
//! It knows no command line: it does not depend on clap, anyhow or indicatif, and it prints
//! nothing. The binaries (`rimg`, `rimgfs`, in the `rimg-cli` package) parse flags, call into
//! it, and print; Cargo enforces the split.

pub mod build;
pub mod container;
pub mod image;
pub mod mount;
pub mod registry;
pub mod runtime;
pub mod table;
pub mod units;

/// An error and its causes as one line, `outer: cause: root cause`: every error here
/// leaves its cause out of its own message and returns it from `source()` (the convention
/// of [`rimg_fs::error`]), so each cause appears exactly once.
pub use rimg_fs::error::error_line;

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::image::archive::ArchiveError;
    use crate::image::ImageError;
    use rimg_fs::error::io_err;
    use rimg_fs::StoreError;

    /// An error from the store, wrapped by the image model and then by the archive code,
    /// reads as one line that names the OS error once.
    #[test]
    fn error_line_names_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let store: StoreError = io_err("create", Path::new("/x"))(io).into();
        let e = ArchiveError::from(ImageError::from(store));
        assert_eq!(
            super::error_line(&e),
            "create /x: No such file or directory (os error 2)"
        );
        let read = ArchiveError::Read(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(
            super::error_line(&read),
            "reading archive: unexpected end of file"
        );
    }
}
