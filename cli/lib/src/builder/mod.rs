//! `rimg build`: a Dockerfile builder on the image model.
//!
//! [`dockerfile`] parses the text into instructions; [`ignore`] and [`context`] say which
//! context files a step may read and hash them; [`layer`] writes the layers of COPY, ADD and
//! WORKDIR directly (no container); [`run`] executes RUN on the mounted layer stack; [`cache`]
//! keys every step by its parent state, its expanded instruction and its input files;
//! `stages` walks the stages and creates the image ([`Builder`]), and `steps` holds one
//! module per instruction kind, over a per-stage context that tracks Docker's variable
//! scopes.

pub mod cache;
pub mod cache_io;
pub mod context;
pub mod dockerfile;
pub mod fetch;
pub mod heredoc;
pub mod ignore;
pub mod input;
pub mod layer;
pub mod mounts;
pub mod output;
pub mod run;
mod stages;
mod steps;

pub use stages::{BaseImages, BuildOptions, Builder, Built, Outcome, Progress};

use rimg_fs::error::IoError;
use rimg_fs::StoreError;

use crate::image::ImageError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A config could not be committed.
    #[error(transparent)]
    Commit(#[from] crate::image::commit::CommitError),
    /// The context cannot be read.
    #[error(transparent)]
    Context(#[from] context::ContextError),
    /// A step failed.
    #[error("Dockerfile line {line}: {text}: {message}")]
    Step {
        /// The instruction's line.
        line: usize,
        /// The instruction as written.
        text: String,
        /// What went wrong.
        message: String,
    },
    /// A RUN command exited non-zero (Docker's wording).
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        /// The command as run.
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// The build was interrupted (Ctrl-C) during a RUN step, whose container was killed.
    #[error("build cancelled: {0} during a RUN step")]
    Interrupted(&'static str),
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found")]
    NoTarget(String),
    /// Local I/O.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl BuildError {
    /// The exit code a failed build should end with: a RUN's own code, 128 + the signal for
    /// an interrupted one, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::RunFailed { code, .. } => *code,
            BuildError::Interrupted(sig) => sig
                .parse::<nix::sys::signal::Signal>()
                .map_or(130, |s| 128 + s as i32),
            _ => 1,
        }
    }
}
