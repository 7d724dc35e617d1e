//! `rimg commit`: a container's upper dir as one new layer on its image.

use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use rimg::container::{Containers, Status};
use rimg::image::commit::commit_upper;
use rimg::image::{History, Reference};
use rimg_fs::upper::LayerOptions;

use super::{outln, Ctx};

/// Flags of `rimg commit`.
#[derive(Args)]
pub struct CommitArgs {
    /// Author of the new layer ("Jane <jane@example.com>").
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Commit message (the history entry's comment).
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// USER, WORKDIR, VOLUME, STOPSIGNAL.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Pause a running container while its upper dir is read (default true).
    #[arg(short = 'p', long, action = ArgAction::Set, num_args = 0..=1,
          default_value_t = true, default_missing_value = "true")]
    pub pause: bool,
    /// Leave this path (and everything below it) out of the layer.
    #[arg(long, value_name = "PATH")]
    pub exclude: Vec<String>,
    /// The container (name, id or id prefix).
    pub container: String,
    /// The new image's name.
    #[arg(value_name = "NAME[:TAG]")]
    pub name: Option<String>,
}

/// Runs `rimg commit`.
pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<u8> {
    let tags = match &a.name {
        Some(n) => {
            vec![Reference::parse(n).with_context(|| format!("invalid reference format: {n:?}"))?]
        }
        None => Vec::new(),
    };
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let mut c = containers.resolve(&a.container)?;
    let base = images
        .resolve(&c.image_id().to_string())
        .with_context(|| format!("the image of container {}", c.name()))?;
    let mut opts = LayerOptions::for_container();
    opts.mtime_clamp = rimg::units::source_date_epoch();
    opts.exclude = a
        .exclude
        .iter()
        .map(|p| format!("/{}", p.trim_matches('/')))
        .collect();
    let history = History {
        created_by: Some(c.command().join(" ")),
        author: a.author.clone(),
        comment: a.message.clone(),
        ..Default::default()
    };
    let paused = a.pause && c.status() == Status::Running;
    if paused {
        c.pause()
            .with_context(|| format!("pausing container {}", c.name()))?;
    }
    let result = commit_upper(
        &images,
        &base,
        &c.upper_dir(),
        &opts,
        history,
        &a.changes,
        &tags,
    );
    if paused {
        c.unpause()
            .with_context(|| format!("resuming container {}", c.name()))?;
    }
    let image = result.with_context(|| format!("committing container {}", c.name()))?;
    outln(&image.id.to_string())?;
    Ok(0)
}
