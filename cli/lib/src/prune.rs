//! `system prune`: stopped containers, then unused images and build cache, in one call that
//! later kinds of objects (volumes, networks) extend with a step of their own.

use crate::container::filter::PruneFilter;
use crate::container::prune::ContainerPruneReport;
use crate::container::{ContainerError, Containers};
use crate::image::prune::PruneReport;
use crate::image::{ImageError, Images};

/// What `system prune` removes beyond stopped containers and dangling images.
#[derive(Clone, Debug, Default)]
pub struct SystemPrune {
    /// `-a`: every image no container uses, not only dangling ones.
    pub all: bool,
    /// `--volumes`: also anonymous volumes no container uses.
    pub volumes: bool,
    /// `--filter`: which containers go.
    pub filter: PruneFilter,
}

/// What [`system_prune`] removed, by kind.
#[derive(Clone, Debug, Default)]
pub struct SystemPruneReport {
    /// Stopped containers.
    pub containers: ContainerPruneReport,
    /// Images and the blobs collected after them (build cache included).
    pub images: PruneReport,
    /// Volumes removed (`--volumes`), by name.
    pub volumes: Vec<String>,
    /// Bytes the volumes held.
    pub volumes_reclaimed: u64,
    /// User networks no container was on, by name.
    pub networks: Vec<String>,
}

impl SystemPruneReport {
    /// Every byte freed.
    pub fn reclaimed(&self) -> u64 {
        self.containers.reclaimed + self.images.reclaimed + self.volumes_reclaimed
    }
}

/// Why `system prune` stopped.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Removing containers failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// Removing images or collecting garbage failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Removing volumes failed.
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// Removing networks failed.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

/// The warning `system prune` asks to confirm: one line per kind of object it removes.
pub fn warning_lines(opts: &SystemPrune) -> Vec<&'static str> {
    let mut lines = vec![
        "all stopped containers",
        "all networks not used by at least one container",
    ];
    if opts.volumes {
        lines.push("all anonymous volumes not used by at least one container");
    }
    if opts.all {
        lines.push("all images without at least one container associated to them");
        lines.push("all build cache");
    } else {
        lines.push("all dangling images");
        lines.push("unused build cache");
    }
    lines
}

/// Removes stopped containers first (so the images only they used become unused), then
/// images, build cache and unreachable blobs. With `--volumes`, the anonymous volumes no
/// container uses go between containers and images, as Docker's `system prune` does.
pub fn system_prune(images: &Images, opts: &SystemPrune) -> Result<SystemPruneReport, PruneError> {
    let all_containers = Containers::open(images)?;
    let containers = all_containers.prune(&opts.filter)?;
    let networks = crate::network::prune(&all_containers.networks(), &all_containers.list()?)?;
    let volumes = if opts.volumes {
        crate::volume::Volumes::open(images)?.prune(false)?
    } else {
        crate::volume::Pruned::default()
    };
    let images = images.prune(opts.all)?;
    Ok(SystemPruneReport {
        containers,
        images,
        volumes: volumes.names,
        volumes_reclaimed: volumes.reclaimed,
        networks,
    })
}
