//! `rimg diff`: file-level changes as `docker diff` prints them (`A /path`, `C /path`,
//! `D /path`), for a container (its upper dir against its image), for an image (its top
//! layer against the layers below), or from one image to another.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use rimg::container::{ContainerError, Containers};
use rimg::image::commit::{image_tree, layers_tree};
use rimg::image::{Image, ImageError, Images};
use rimg::units::human_size;
use rimg_fs::changes::{tree_changes, Change, ChangeKind};
use rimg_fs::upper::{upper_changes, LayerOptions};
use serde_json::{json, Value};

use super::{out, Ctx};

/// Flags of `rimg diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// A container; or an image, whose top layer is compared with the layers below it.
    pub first: String,
    /// A second image: the changes that turn image FIRST into this one.
    pub second: Option<String>,
    /// Show each change's size (bytes added, changed or deleted) and a summary line.
    #[arg(long)]
    pub stat: bool,
    /// `json`: `{"changed": [...], "added": [...], "deleted": [...]}`, as `podman diff` prints.
    #[arg(long)]
    pub format: Option<String>,
}

/// What a container's diff reads: its upper dir and the image below it.
pub struct ContainerLayers {
    /// The container's overlayfs upper dir.
    pub upper: PathBuf,
    /// The image the container runs.
    pub image: Image,
}

/// The container named `name` (name, id or id prefix), if one is.
fn resolve_container(_ctx: &Ctx, images: &Images, name: &str) -> Result<Option<ContainerLayers>> {
    let containers = Containers::open(images)?;
    let c = match containers.resolve(name) {
        Ok(c) => c,
        Err(ContainerError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let image = images
        .resolve(&c.image_id().to_string())
        .with_context(|| format!("the image of container {}", c.name()))?;
    Ok(Some(ContainerLayers {
        upper: c.upper_dir(),
        image,
    }))
}

/// Lists the changes.
pub fn diff(ctx: &Ctx, a: DiffArgs) -> Result<u8> {
    if let Some(f) = a.format.as_deref() {
        if f != "json" {
            bail!("unsupported --format {f:?}: only json is supported");
        }
    }
    let images = ctx.images()?;
    let changes = match &a.second {
        None => match resolve_container(ctx, &images, &a.first)? {
            Some(c) => {
                let lower = image_tree(&images, &c.image)
                    .with_context(|| format!("reading the layers of container {}", a.first))?;
                upper_changes(&c.upper, &lower, &LayerOptions::for_container())
                    .with_context(|| format!("reading the changes of container {}", a.first))?
            }
            None => {
                let image = resolve_image(&images, &a.first)?;
                let ids = images.ensure_layers(&image)?;
                let below = ids.len().saturating_sub(1);
                let old = layers_tree(&images, &ids[..below])?;
                let new = layers_tree(&images, &ids)?;
                tree_changes(&old, &new, images.store())?
            }
        },
        Some(second) => {
            let from = resolve_image(&images, &a.first)?;
            let to = resolve_image(&images, second)?;
            let old = image_tree(&images, &from)?;
            let new = image_tree(&images, &to)?;
            tree_changes(&old, &new, images.store())?
        }
    };
    let text = if a.format.is_some() {
        json_report(&changes)
    } else if a.stat {
        stat_report(&changes)
    } else {
        changes.iter().map(|c| format!("{c}\n")).collect()
    };
    out(&text)?;
    Ok(0)
}

fn resolve_image(images: &Images, name: &str) -> Result<Image> {
    match images.resolve(name) {
        Ok(i) => Ok(i),
        Err(ImageError::NotFound(_)) => bail!("no such container or image: {name}"),
        Err(e) => Err(e.into()),
    }
}

/// One line per change with its size, then a summary:
/// `3 added (+2B), 2 changed (12B), 1 deleted (-5B)`.
fn stat_report(changes: &[Change]) -> String {
    let sizes: Vec<String> = changes.iter().map(|c| human_size(c.size)).collect();
    let width = sizes.iter().map(String::len).max().unwrap_or(0);
    let mut s = String::new();
    let mut count = [0usize; 3];
    let mut bytes = [0u64; 3];
    for (c, size) in changes.iter().zip(&sizes) {
        s.push_str(&format!("{} {size:>width$} {}\n", c.kind, c.path));
        let i = kind_index(c.kind);
        count[i] += 1;
        bytes[i] += c.size;
    }
    s.push_str(&format!(
        "{} added (+{}), {} changed ({}), {} deleted (-{})\n",
        count[0],
        human_size(bytes[0]),
        count[1],
        human_size(bytes[1]),
        count[2],
        human_size(bytes[2]),
    ));
    s
}

fn kind_index(k: ChangeKind) -> usize {
    match k {
        ChangeKind::Added => 0,
        ChangeKind::Changed => 1,
        ChangeKind::Deleted => 2,
    }
}

/// podman's `diff --format json`: paths grouped by kind, empty groups left out.
fn json_report(changes: &[Change]) -> String {
    let mut groups: [Vec<&str>; 3] = Default::default();
    for c in changes {
        groups[kind_index(c.kind)].push(&c.path);
    }
    let mut obj = serde_json::Map::new();
    for (key, i) in [("changed", 1), ("added", 0), ("deleted", 2)] {
        if !groups[i].is_empty() {
            obj.insert(key.into(), json!(groups[i]));
        }
    }
    let text = serde_json::to_string_pretty(&Value::Object(obj)).unwrap_or_default();
    format!("{text}\n")
}
