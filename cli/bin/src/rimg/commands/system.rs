//! `system df`: disk usage, with shared layers counted once; `system check`: verifies the
//! store (see `rimg::image::check`).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use clap::Args;
use rimg::image::{check, Image, CONTAINER_PIN_PREFIX};
use rimg::table::render;
use rimg::units::{ago, human_size, human_size4};
use rimg_fs::Digest;

use super::{out, outln, Ctx};

/// Flags of `rimg system df`.
#[derive(Args)]
pub struct DfArgs {
    /// Show per-image sizes (SIZE, SHARED SIZE, UNIQUE SIZE).
    #[arg(short, long)]
    pub verbose: bool,
}

fn with_percent(part: u64, total: u64) -> String {
    match (part * 100).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human_size4(part)),
        None => human_size4(part),
    }
}

/// Prints TYPE TOTAL ACTIVE SIZE RECLAIMABLE (and, with `-v`, per-image usage).
pub fn df(ctx: &Ctx, a: DfArgs) -> Result<u8> {
    let images = ctx.images()?;
    let store = images.store();
    let mut list = images.list()?;
    list.sort_by(|x, y| y.config.created.cmp(&x.config.created));
    let mut unique: Vec<&Image> = Vec::new();
    let mut ids = BTreeSet::new();
    for img in &list {
        if ids.insert(img.id) {
            unique.push(img);
        }
    }
    let pins = images.pins()?;
    let container_pins: Vec<&(String, Vec<Digest>)> = pins
        .iter()
        .filter(|(n, _)| n.starts_with(CONTAINER_PIN_PREFIX))
        .collect();
    let cache_pins: Vec<&(String, Vec<Digest>)> = pins
        .iter()
        .filter(|(n, _)| n.starts_with("cache-"))
        .collect();
    let active = |img: &Image| {
        container_pins
            .iter()
            .any(|(_, ds)| ds.contains(&img.manifest_digest) || ds.contains(&img.id))
    };
    let users = images.layer_users(&list);
    let sizes = images.layer_sizes(&list);
    // Layers as Docker sizes them; a cache layer no image uses is measured as its blob.
    let size_of = |d: &Digest| {
        sizes
            .get(d)
            .copied()
            .unwrap_or_else(|| store.blob_size(d).unwrap_or(0))
    };
    // Docker's per-image SIZE and SHARED SIZE: shared layers are those another image uses.
    let shared_of = |img: &Image| -> u64 {
        img.diff_ids()
            .iter()
            .filter(|d| users.get(*d).copied().unwrap_or(0) > 1)
            .map(size_of)
            .sum()
    };
    let all_layers: BTreeSet<Digest> = unique
        .iter()
        .flat_map(|i| i.diff_ids().iter().copied())
        .collect();
    // SIZE counts each layer once, however many images share it.
    let total: u64 = all_layers.iter().map(size_of).sum();
    // RECLAIMABLE as Docker computes it: the total less the unique size of every image a
    // container uses.
    let used: u64 = unique
        .iter()
        .filter(|i| active(i))
        .map(|i| i.size_from(&sizes) - shared_of(i))
        .sum();
    let reclaimable = total.saturating_sub(used);
    let n_active = unique.iter().filter(|i| active(i)).count();

    let cache_layers: BTreeSet<Digest> = cache_pins
        .iter()
        .flat_map(|(_, ds)| ds.iter().copied())
        .filter(|d| !all_layers.contains(d))
        .collect();
    let cache_size: u64 = cache_layers.iter().map(size_of).sum();

    let rows = vec![
        vec![
            "Images".into(),
            unique.len().to_string(),
            n_active.to_string(),
            human_size4(total),
            with_percent(reclaimable, total),
        ],
        vec![
            "Containers".into(),
            container_pins.len().to_string(),
            "0".into(),
            human_size4(0),
            human_size4(0),
        ],
        vec![
            "Local Volumes".into(),
            "0".into(),
            "0".into(),
            "0B".into(),
            "0B".into(),
        ],
        vec![
            "Build Cache".into(),
            cache_pins.len().to_string(),
            "0".into(),
            human_size4(cache_size),
            human_size4(cache_size),
        ],
    ];
    if !a.verbose {
        out(&render(
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &rows,
        ))?;
        return Ok(0);
    }
    let mut table = Vec::new();
    for img in &unique {
        let size = img.size_from(&sizes);
        let shared = shared_of(img);
        let containers = container_pins
            .iter()
            .filter(|(_, ds)| ds.contains(&img.manifest_digest) || ds.contains(&img.id))
            .count();
        // Docker shows each image once, under its first tag.
        let (repo, tag) = match img.tags.first() {
            Some(t) => (t.repository(), t.tag_or_latest().to_string()),
            None => ("<none>".into(), "<none>".into()),
        };
        table.push(vec![
            repo,
            tag,
            img.id.short(),
            ago(img.config.created.as_deref()),
            human_size(size),
            human_size(shared),
            human_size(size - shared),
            containers.to_string(),
        ]);
    }
    let mut s = String::from("Images space usage:\n\n");
    s.push_str(&render(
        &[
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS",
        ],
        &table,
    ));
    s.push_str("\nContainers space usage:\n\n");
    s.push_str(&render(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES",
        ],
        &[],
    ));
    s.push_str("\nLocal Volumes space usage:\n\n");
    s.push_str(&render(&["VOLUME NAME", "LINKS", "SIZE"], &[]));
    s.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        human_size4(cache_size)
    ));
    let cache_rows: Vec<Vec<String>> = cache_pins
        .iter()
        .map(|(name, ds)| {
            let size: u64 = ds
                .iter()
                .filter(|d| !all_layers.contains(d))
                .map(size_of)
                .sum();
            let shared = ds.iter().any(|d| all_layers.contains(d));
            vec![
                name.trim_start_matches("cache-").chars().take(12).collect(),
                "regular".into(),
                human_size(size),
                "true".into(),
                shared.to_string(),
            ]
        })
        .collect();
    s.push_str(&render(
        &["CACHE ID", "CACHE TYPE", "SIZE", "SHARED", "IN USE"],
        &cache_rows,
    ));
    out(&s)?;
    Ok(0)
}

/// Flags of `rimg system check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Remove what is broken (corrupt blobs, damaged images' index.json entries,
    /// unreferenced blobs, temp files) and rebuild bad layer indexes.
    #[arg(long)]
    pub repair: bool,
}

/// Verifies every blob, layer index and reference; one line per problem, exit 1 if any
/// (after `--repair`, exit 0 once everything broken was removed).
pub fn check(ctx: &Ctx, a: CheckArgs) -> Result<u8> {
    let images = ctx.images()?;
    let gc = images
        .store()
        .gc()
        .context("waiting for other rimg commands")?;
    let report = check::check(&images, &gc).context("checking the store")?;
    for p in &report.problems {
        outln(&p.to_string())?;
    }
    if !a.repair {
        let temp_files = report.temp_files + report.stale_indexes.len();
        let garbage = report.unreferenced.len() + temp_files;
        if garbage > 0 {
            outln(&format!(
                "{} unreferenced blobs and {} temporary files ({}): not damage",
                report.unreferenced.len(),
                temp_files,
                "rimg system check --repair or rimg image prune removes them"
            ))?;
        }
        outln(&format!(
            "checked {} blobs and {} images: {}",
            report.blobs,
            report.images,
            match report.problems.len() {
                0 => "no problems".to_string(),
                n => format!("{n} problems"),
            }
        ))?;
        return Ok(u8::from(!report.problems.is_empty()));
    }
    for line in check::repair(&images, &report, &gc).context("repairing the store")? {
        outln(&line)?;
    }
    let after = check::check(&images, &gc).context("checking the store again")?;
    for p in &after.problems {
        outln(&format!("still broken: {p}"))?;
    }
    Ok(u8::from(!after.problems.is_empty()))
}
