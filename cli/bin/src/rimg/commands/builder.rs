//! `rimg builder prune`: the build cache's cache mounts and step entries, as
//! `docker builder prune`.

use anyhow::Result;
use clap::Args;
use rimg::builder::cache::BuildCache;
use rimg::units::human_size;

use super::{confirm, out, Ctx};

/// Flags of `rimg builder prune`.
#[derive(Args)]
pub struct BuilderPruneArgs {
    /// Remove every cached step, not only those of images no longer listed.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Removes the cache mounts and the unused (or, with `-a`, all) cached steps.
pub fn prune(ctx: &Ctx, a: BuilderPruneArgs) -> Result<u8> {
    if !a.force
        && !confirm("WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?")?
    {
        return Ok(0);
    }
    let images = ctx.images()?;
    let gc = images.store().gc()?;
    let cache = BuildCache::new(images.store());
    let mounts = cache.prune(&images, a.all)?;
    let temp = images.temp_bytes(&gc);
    let removed = images.collect_garbage(&gc)?;
    cache.remove_stale();
    let reclaimed = mounts + temp + removed.iter().map(|(_, s)| s).sum::<u64>();
    out(&format!("Total:\t{}\n", human_size(reclaimed)))?;
    Ok(0)
}
