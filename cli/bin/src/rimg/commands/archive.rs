//! `rimg load` and `rimg save`: image archives in and out.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rimg::image::archive::{self, ArchiveFormat};
use rimg::image::{Image, Reference};

use super::{outln, Ctx};

/// Flags of `rimg load`.
#[derive(Args)]
pub struct LoadArgs {
    /// Read from a tar archive file (plain, gzip or zstd) instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress progress output (rimg prints none; the loaded names are still printed).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Loads every image of an OCI archive or docker-archive and prints what it loaded.
pub fn load(ctx: &Ctx, a: LoadArgs) -> Result<u8> {
    let (src, shown): (Box<dyn Read>, String) = match &a.input {
        Some(p) if p.as_os_str() != "-" => (
            Box::new(File::open(p).with_context(|| format!("opening {}", p.display()))?),
            p.display().to_string(),
        ),
        _ => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            (Box::new(io::stdin().lock()), "standard input".to_string())
        }
    };
    let images = ctx.images()?;
    let loaded = archive::load(&images, src).with_context(|| format!("loading {shown}"))?;
    for img in loaded {
        if img.tags.is_empty() {
            outln(&format!("Loaded image ID: {}", img.id))?;
        }
        for t in img.tags {
            outln(&format!(
                "Loaded image: {}:{}",
                t.repository(),
                t.tag_or_latest()
            ))?;
        }
    }
    Ok(0)
}

/// Archive formats of `rimg save`.
#[derive(Clone, Copy, ValueEnum)]
pub enum SaveFormat {
    /// `docker save`'s format (the default, as Docker).
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// Flags of `rimg save`.
#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The archive format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    pub format: SaveFormat,
    /// Images to save: names (their tag is recorded) or ids (no tag is recorded).
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Writes the images to one archive.
pub fn save(ctx: &Ctx, a: SaveArgs) -> Result<u8> {
    let images = ctx.images()?;
    let mut items: Vec<(Image, Vec<Reference>)> = Vec::new();
    for name in &a.images {
        let img = ctx.resolve(&images, name)?;
        let tag = Reference::parse(name)
            .ok()
            .filter(|r| r.digest.is_none() && img.tags.contains(r));
        let pos = match items.iter().position(|(i, _)| i.id == img.id) {
            Some(pos) => pos,
            None => {
                items.push((img, Vec::new()));
                items.len() - 1
            }
        };
        if let Some(t) = tag {
            if !items[pos].1.contains(&t) {
                items[pos].1.push(t);
            }
        }
    }
    let format = match a.format {
        SaveFormat::DockerArchive => ArchiveFormat::DockerArchive,
        SaveFormat::OciArchive => ArchiveFormat::OciArchive,
    };
    match &a.output {
        Some(p) if p.as_os_str() != "-" => archive::save_to_path(&images, &items, format, p)
            .with_context(|| format!("saving to {}", p.display()))?,
        _ => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            archive::save(&images, &items, format, &mut out)
                .context("saving to standard output")?;
        }
    }
    Ok(0)
}
