//! `rimg build -`: what standard input holds, a context tar (plain or gzip) unpacked into a
//! temporary directory, or a Dockerfile with an empty context (as `docker build -`).

use std::io::{self, Read};
use std::path::Path;

use rimg_fs::error::{io_err, IoError};

/// A build's input read from standard input.
#[derive(Debug)]
pub struct StdinInput {
    /// The context directory (removed when this is dropped).
    pub dir: tempfile::TempDir,
    /// The Dockerfile's text when standard input was one, not a tar.
    pub dockerfile: Option<String>,
}

/// Whether `data` starts like a tar (ustar magic) or a gzip stream.
fn is_archive(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b]) || data.get(257..262) == Some(b"ustar".as_slice())
}

/// Reads `data` (all of standard input) as a build's input.
pub fn from_stdin(data: &[u8]) -> Result<StdinInput, IoError> {
    let dir = tempfile::Builder::new()
        .prefix("rimg-build-context-")
        .tempdir()
        .map_err(io_err("create", Path::new("temporary context")))?;
    if !is_archive(data) {
        return Ok(StdinInput {
            dir,
            dockerfile: Some(String::from_utf8_lossy(data).into_owned()),
        });
    }
    let reader: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    // tar's unpack keeps every entry inside the directory (no `..`, no writing through a
    // symlink it made).
    archive
        .unpack(dir.path())
        .map_err(|e| IoError::new("unpack context from", "standard input", io::Error::other(e)))?;
    Ok(StdinInput {
        dir,
        dockerfile: None,
    })
}
