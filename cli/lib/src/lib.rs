//! rimg's container side as a library: the image model ([`image`]), the builder
//! ([`builder`]), the runtime ([`runtime`]), containers ([`container`]), the registry client
//! ([`registry`]) and mounted stacks ([`mount`]); [`random`] makes their random ids and names.
//!
//! It knows no command line: it does not depend on clap, anyhow or indicatif, and it prints
//! nothing. The binaries (`rimg`, `rimgfs`, in the `rimg-cli` package) parse flags, call into
//! it, and print; Cargo enforces the split.

pub mod builder;
pub mod container;
pub mod glob;
pub mod image;
pub mod info;
pub mod mount;
pub mod network;
pub mod prune;
pub mod random;
pub mod registry;
pub mod runtime;
pub mod table;
pub mod template;
pub mod units;
pub mod volume;

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

    /// Every error that wraps a cause leaves the cause's text to `source()`.
    #[test]
    fn no_message_repeats_its_source() {
        use rimg_fs::error::IoError;
        use rimg_fs::layer_index::IndexError;
        use rimg_fs::overlay::MountError;
        use rimg_fs::tar_stream::TarError;
        use rimg_fs::upper::UpperError;

        let io = || std::io::Error::from_raw_os_error(libc::EIO);
        let errno = nix::errno::Errno::EIO;
        let samples: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(IoError::new("reading", "/x", io())),
            Box::new(StoreError::ReadLayer(io())),
            Box::new(StoreError::Layer(IndexError::RootNotDirectory)),
            Box::new(TarError::Io(io())),
            Box::new(UpperError::Write(io())),
            Box::new(MountError::Unmount {
                target: "/m".into(),
                cause: errno,
            }),
            Box::new(ArchiveError::Tar(TarError::Truncated(1))),
            Box::new(ImageError::Decompress {
                digest: rimg_fs::Digest::of(b""),
                source: io(),
            }),
            Box::new(crate::runtime::RuntimeError::Sys {
                op: "poll",
                source: errno,
            }),
            Box::new(crate::mount::StackError::Fuse {
                path: "/m".into(),
                cause: io(),
            }),
        ];
        for e in samples {
            let cause = e.source().expect("a wrapped cause").to_string();
            assert!(!e.to_string().contains(&cause), "{e} repeats {cause}");
            assert_eq!(super::error_line(e.as_ref()), format!("{e}: {cause}"));
        }
    }
}
