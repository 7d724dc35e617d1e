//! `export`: a container's merged tree (image + its changes) as one tar, read from its
//! mounted stack with the walk `cp` uses (nothing followed out of the rootfs).

use std::io::Write;

use super::cp::{tar_tree, Result};
use super::Container;
use crate::image::Images;

impl Container {
    /// Writes the container's filesystem to `out` as a tar, entries named relative to its
    /// root (`bin/`, `etc/passwd`), as Docker's `export` does. A stopped container's stack
    /// is mounted for the walk.
    pub fn export<W: Write>(&self, images: &Images, out: W) -> Result<W> {
        let root = self.open_rootfs(images)?;
        tar_tree(root.path(), out)
    }
}
