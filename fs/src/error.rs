//! The error context rimg's libraries share, and their one convention for wrapped causes.
//!
//! The convention: an error's message never repeats its cause's text; the cause is reached
//! only through [`std::error::Error::source`]. [`error_line`] then joins an error and its
//! causes into one line, naming each exactly once (as anyhow's `{:#}` also does).
//!
//! [`IoError`] is the cause most errors wrap: an OS error with what was being done to which
//! path. Each library error enum holds it in a transparent `Io` variant, and [`io_err`] makes
//! one from a failed call: `fs::read(&p).map_err(io_err("reading", &p))?`.

use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};

/// A filesystem operation on a path failed: shown as `{op} {path}`, with the OS error as its
/// source (so an error line reads `opening /x: No such file or directory`).
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}")]
pub struct IoError {
    /// What was being done (`opening`, `read`, ...).
    pub op: &'static str,
    /// On what.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// `op` on `path` failed with `source`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IoError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The OS error's kind.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// A `map_err` adapter: the [`IoError`] of `op` on `path`. Every error enum with an `Io`
/// variant converts from it, so `?` lifts it: `.map_err(io_err("opening", &p))?`.
pub fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IoError + 'a {
    move |source| IoError::new(op, path, source)
}

/// An error and its causes as one line, `outer: cause: root cause`. Under this module's
/// convention (no message repeats its source) each cause appears exactly once. A cause with
/// an empty message (an exit status that prints nothing) adds nothing.
pub fn error_line(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Wrapper {
        #[error(transparent)]
        Io(#[from] IoError),
        #[error("saving {0}")]
        Saving(String, #[source] IoError),
    }

    fn not_found(p: &str) -> Result<(), Wrapper> {
        Err(io::Error::from(io::ErrorKind::NotFound)).map_err(io_err("open", Path::new(p)))?;
        Ok(())
    }

    #[test]
    fn io_error_names_op_and_path_and_leaves_the_os_error_to_its_source() {
        let e = IoError::new("open", "/x", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.to_string(), "open /x");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            error_line(&e),
            "open /x: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn io_err_lifts_through_question_mark_into_a_transparent_variant() {
        let e = not_found("/missing").unwrap_err();
        assert!(
            matches!(&e, Wrapper::Io(io) if io.op == "open" && io.path == Path::new("/missing"))
        );
        assert_eq!(error_line(&e), "open /missing: entity not found");
    }

    #[test]
    fn error_line_names_each_cause_once() {
        let io = IoError::new("create", "/x", io::Error::from(io::ErrorKind::NotFound));
        let e = Wrapper::Saving("/x".into(), io);
        assert_eq!(error_line(&e), "saving /x: create /x: entity not found");
    }
}
