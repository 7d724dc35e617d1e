//! `system df`: disk usage (see `rimg::image::usage`); `system check`: verifies the
//! store (see `rimg::image::check`).

use anyhow::{Context, Result};
use clap::Args;
use rimg::image::check;
use rimg::image::usage::DiskUsage;
use rimg::table::{render, Format};
use rimg::units::{ago, human_size, human_size4};

use super::{out, outln, Ctx};

/// Flags of `rimg system df`.
#[derive(Args)]
pub struct DfArgs {
    /// Show per-image sizes (SIZE, SHARED SIZE, UNIQUE SIZE).
    #[arg(short, long)]
    pub verbose: bool,
    /// `json`, `table`, or a Go template over the summary rows (`{{.Type}}: {{.Size}}`).
    #[arg(long)]
    pub format: Option<String>,
}

/// `docker system df`'s columns, for `--format table`.
const DF_TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
/// The column names of `docker system df`'s fields.
const DF_HEADERS: &[(&str, &str)] = &[
    ("Active", "ACTIVE"),
    ("Reclaimable", "RECLAIMABLE"),
    ("Size", "SIZE"),
    ("TotalCount", "TOTAL"),
    ("Type", "TYPE"),
];

fn with_percent(part: u64, total: u64) -> String {
    match (part * 100).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human_size4(part)),
        None => human_size4(part),
    }
}

/// Prints TYPE TOTAL ACTIVE SIZE RECLAIMABLE (and, with `-v`, per-image usage), as
/// [`DiskUsage`] accounts it.
pub fn df(ctx: &Ctx, a: DfArgs) -> Result<u8> {
    let images = ctx.images()?;
    let u = DiskUsage::measure(&images)?;
    let vols = rimg::volume::Volumes::open(&images)?.usage()?;
    let vols_size: u64 = vols.iter().map(|v| v.size).sum();
    let vols_unused: u64 = vols.iter().filter(|v| v.links == 0).map(|v| v.size).sum();
    let rows = vec![
        vec![
            "Images".into(),
            u.images.len().to_string(),
            u.active.to_string(),
            human_size4(u.images_size),
            with_percent(u.reclaimable, u.images_size),
        ],
        vec![
            "Containers".into(),
            u.containers.to_string(),
            "0".into(),
            human_size4(0),
            human_size4(0),
        ],
        vec![
            "Local Volumes".into(),
            vols.len().to_string(),
            vols.iter().filter(|v| v.links > 0).count().to_string(),
            human_size4(vols_size),
            with_percent(vols_unused, vols_size),
        ],
        vec![
            "Build Cache".into(),
            u.cache.len().to_string(),
            "0".into(),
            human_size4(u.cache_size),
            human_size4(u.cache_size),
        ],
    ];
    if let Some(fmt) = &a.format {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "Active": r[2], "Reclaimable": r[4], "Size": r[3], "TotalCount": r[1], "Type": r[0],
                })
            })
            .collect();
        out(&Format::parse(fmt, DF_TABLE)?.render(&rows, DF_HEADERS)?)?;
        return Ok(0);
    }
    if !a.verbose {
        out(&render(
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &rows,
        ))?;
        return Ok(0);
    }
    let mut table = Vec::new();
    for i in &u.images {
        let img = &i.image;
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
            human_size(i.size),
            human_size(i.shared),
            human_size(i.unique()),
            i.containers.to_string(),
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
    let vol_rows: Vec<Vec<String>> = vols
        .iter()
        .map(|v| vec![v.name.clone(), v.links.to_string(), human_size(v.size)])
        .collect();
    s.push_str(&render(&["VOLUME NAME", "LINKS", "SIZE"], &vol_rows));
    s.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        human_size4(u.cache_size)
    ));
    let cache_rows: Vec<Vec<String>> = u
        .cache
        .iter()
        .map(|c| {
            vec![
                c.id.chars().take(12).collect(),
                "regular".into(),
                human_size(c.size),
                "true".into(),
                c.in_use.to_string(),
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
    let volumes = rimg::volume::Volumes::open(&images)?;
    let volume_problems = volumes.check()?;
    for p in &volume_problems {
        outln(p)?;
    }
    // Machine-wide network state of containers that are gone (a killed monitor whose
    // container was removed by hand): reported, not counted as damage to the store.
    for l in rimg::network::attach::leftovers() {
        outln(&format!("network leftover: {l}"))?;
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
            match report.problems.len() + volume_problems.len() {
                0 => "no problems".to_string(),
                n => format!("{n} problems"),
            }
        ))?;
        return Ok(u8::from(
            !report.problems.is_empty() || !volume_problems.is_empty(),
        ));
    }
    for line in check::repair(&images, &report, &gc).context("repairing the store")? {
        outln(&line)?;
    }
    for line in volumes.repair()? {
        outln(&line)?;
    }
    let after = check::check(&images, &gc).context("checking the store again")?;
    for p in &after.problems {
        outln(&format!("still broken: {p}"))?;
    }
    Ok(u8::from(!after.problems.is_empty()))
}
