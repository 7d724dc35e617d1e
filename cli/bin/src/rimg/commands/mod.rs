//! One module per group of commands. Each command takes the parsed flags, calls the library,
//! prints, and returns the process exit code.

pub mod archive;
pub mod attach;
pub mod build;
pub mod builder;
pub mod cgroup_cmds;
pub mod commit;
pub mod container_verbs;
pub mod containers;
pub mod diff;
pub mod images;
pub mod import;
pub mod info;
pub mod init_flags;
pub mod inspect;
pub mod network;
pub mod registry;
pub mod system;
pub mod volumes;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rimg::image::{Image, Images};

/// What every command needs: where the store is.
pub struct Ctx {
    root: PathBuf,
}

impl Ctx {
    /// The store at `root`.
    pub fn new(root: PathBuf) -> Self {
        Ctx { root }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the image store.
    pub fn images(&self) -> Result<Images> {
        Images::open(&self.root).with_context(|| format!("opening store {}", self.root.display()))
    }

    /// Resolves an image name, id or digest.
    pub fn resolve(&self, images: &Images, name: &str) -> Result<Image> {
        Ok(images.resolve(name)?)
    }
}

/// Writes to stdout; a closed pipe surfaces as an error that `main` turns into exit 0.
pub fn out(s: &str) -> Result<()> {
    let mut o = io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// Writes one line to stdout.
pub fn outln(s: &str) -> Result<()> {
    let mut o = io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.write_all(b"\n")?;
    Ok(())
}

/// An error that carries a specific exit code (a container's status, Docker's 125/126/127).
#[derive(Debug)]
pub struct ExitStatus {
    /// The exit code.
    pub code: u8,
    /// The message, if any ("" prints nothing).
    pub message: String,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}

/// The exit code for an error: its [`ExitStatus`] if it has one, else 1.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<ExitStatus>())
        .map_or(1, |s| s.code)
}

/// Whether the error is a write to a closed pipe (`rimg images | head -1`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Asks a yes/no question on stderr and reads the answer from stdin (default no).
pub fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}
