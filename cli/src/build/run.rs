//! RUN steps: the parent state mounted with a fresh upper directory (`rimgfs mount`), the
//! command run in it by the runtime, and the upper directory turned into the step's layer.

use rimg_fs::Digest;

use super::BuildError;
use crate::image::{ImageConfig, Images};

/// What a RUN step executes.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The command line (shell form already wrapped in the shell).
    pub argv: Vec<String>,
    /// The environment: the image's Env, then build args not overridden by it.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user (`name`, `uid`, `uid:gid`), empty for root.
    pub user: String,
    /// The command as Docker reports a failure (`/bin/sh -c false`).
    pub shown: String,
    /// Timestamps in the layer are clamped to this (seconds since the epoch).
    pub epoch: i64,
}

/// Executes RUN steps.
pub trait Runner {
    /// Runs `req` on the state `parent` and returns the layer of its changes (`None` when it
    /// changed nothing).
    fn run(
        &self,
        images: &Images,
        parent: &ImageConfig,
        req: &RunRequest,
    ) -> Result<Option<Digest>, BuildError>;
}

/// Runs RUN steps on a `rimgfs` mount of the parent state.
#[derive(Clone, Debug)]
pub struct MountRunner {
    root: std::path::PathBuf,
    quiet: bool,
}

impl MountRunner {
    /// A runner for the store at `root`; `quiet` discards the commands' output.
    pub fn new(root: &std::path::Path, quiet: bool) -> Self {
        MountRunner {
            root: root.to_path_buf(),
            quiet,
        }
    }
}

impl Runner for MountRunner {
    fn run(
        &self,
        _images: &Images,
        _parent: &ImageConfig,
        _req: &RunRequest,
    ) -> Result<Option<Digest>, BuildError> {
        let _ = (&self.root, self.quiet);
        Err(BuildError::NoTarget("RUN: runtime not merged yet".into()))
    }
}
