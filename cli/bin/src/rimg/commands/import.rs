//! `rimg import`: a one-layer image from a rootfs tarball, like `docker import`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use rimg::image::change::{apply_change, ChangeState};
use rimg::image::{Compression, History, ImageConfig, Reference};
use rimg::units;

use super::{outln, Ctx};

/// Flags of `rimg import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The tarball (plain, gzip or zstd), or `-` for standard input.
    pub file: PathBuf,
    /// Name of the new image, NAME[:TAG].
    pub name: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENV, …); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message for the history entry.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
}

/// Imports the tarball and prints the new image id.
pub fn run(ctx: &Ctx, a: ImportArgs) -> Result<u8> {
    let tag = a.name.as_deref().map(Reference::parse).transpose()?;
    if let Some(t) = &tag {
        if t.digest.is_some() {
            bail!("invalid image name {}: a tag cannot carry a digest", t);
        }
    }
    let shown = a.file.display().to_string();
    if shown.starts_with("http://") || shown.starts_with("https://") {
        bail!("importing from a URL is not supported: download {shown} and import the file");
    }
    let mut config = ImageConfig::new_for_host();
    let mut state = ChangeState::default();
    for c in &a.changes {
        apply_change(&mut config.config, &mut state, c, &[])
            .with_context(|| format!("invalid --change {c:?}"))?;
    }
    let images = ctx.images()?;
    let _lease = images.store().lease()?;
    let src: Box<dyn Read> = if shown == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&a.file).with_context(|| format!("opening {shown}"))?)
    };
    let mut src = BufReader::with_capacity(1 << 20, src);
    let head = src.fill_buf().with_context(|| format!("reading {shown}"))?;
    let decoder = Compression::sniff(head)
        .decoder(src)
        .with_context(|| format!("reading {shown}"))?;
    let layer = images
        .store()
        .ingest_layer(decoder, None)
        .with_context(|| format!("importing {shown}"))?;

    let created = units::rfc3339(units::source_date_epoch().unwrap_or_else(units::now_unix));
    config.created = Some(created.clone());
    config.history.push(History {
        created: Some(created),
        comment: Some(
            a.message
                .unwrap_or_else(|| format!("Imported from {shown}")),
        ),
        ..Default::default()
    });
    let tags: Vec<Reference> = tag.into_iter().collect();
    let image = images.create(&[layer.digest], config, &tags)?;
    outln(&image.id.to_string())?;
    Ok(0)
}
