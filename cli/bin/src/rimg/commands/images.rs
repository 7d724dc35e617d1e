//! `images`, `history`, `inspect`, `tag`, `rmi` and `image prune`.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use clap::{ArgAction, Args};
use rimg::image::filter::ImageFilter;
use rimg::image::{layer_size, Image, Images, Reference};
use rimg::table::{ellipsis, render, Format};
use rimg::units::{ago, human_size};
use serde_json::{json, Value};

use super::{confirm, out, outln, Ctx, ExitStatus};

/// Flags of `rimg images`.
#[derive(Args)]
pub struct ImagesArgs {
    /// Only images whose reference matches this glob (`'w*'`).
    pub pattern: Option<String>,
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show registry digests.
    #[arg(long)]
    pub digests: bool,
    /// Show all images (rimg keeps no intermediate images, so this changes nothing).
    #[arg(short, long)]
    pub all: bool,
    /// Filter: `dangling=true|false`, `reference=GLOB`, `label=KEY[=VALUE]`.
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// `json`, or a Go template such as `{{.Repository}}:{{.Tag}}`.
    #[arg(long)]
    pub format: Option<String>,
}

/// Lists images, newest first, one row per tag (see `rimg::image::filter`).
pub fn images(ctx: &Ctx, a: ImagesArgs) -> Result<u8> {
    let images = ctx.images()?;
    let mut list = images.list()?;
    list.sort_by(|x, y| y.config.created.cmp(&x.config.created));
    let filter = ImageFilter::parse(a.pattern.as_deref(), &a.filters)?;
    let sizes = images.layer_sizes(&list);
    let rows = filter.rows(&list);
    let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "<none>".into());
    let id = |img: &Image| {
        if a.no_trunc {
            img.id.to_string()
        } else {
            img.id.short()
        }
    };
    if a.quiet {
        let mut seen = BTreeSet::new();
        let mut s = String::new();
        for r in &rows {
            if seen.insert(r.image.id) {
                s.push_str(&id(r.image));
                s.push('\n');
            }
        }
        return out(&s).map(|_| 0);
    }
    if let Some(fmt) = &a.format {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                let size = human_size(r.image.size_from(&sizes));
                let created = r.image.config.created.clone().unwrap_or_default();
                json!({
                    "Containers": "N/A",
                    "CreatedAt": created,
                    "CreatedSince": ago(r.image.config.created.as_deref()),
                    "Digest": none(&r.digest),
                    "ID": id(r.image),
                    "Repository": none(&r.repository),
                    "SharedSize": "N/A",
                    "Size": size,
                    "Tag": none(&r.tag),
                    "UniqueSize": "N/A",
                    "VirtualSize": size,
                })
            })
            .collect();
        let table = if a.digests {
            IMAGES_DIGESTS_TABLE
        } else {
            IMAGES_TABLE
        };
        return out(&Format::parse(fmt, table)?.render(&rows, IMAGES_HEADERS)?).map(|_| 0);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![none(&r.repository), none(&r.tag)];
            if a.digests {
                row.push(none(&r.digest));
            }
            row.push(id(r.image));
            row.push(ago(r.image.config.created.as_deref()));
            row.push(human_size(r.image.size_from(&sizes)));
            row
        })
        .collect();
    out(&render(&header, &table))?;
    Ok(0)
}

/// `docker images`' columns, for `--format table`.
const IMAGES_TABLE: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince}}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}";
/// The same with `--digests`.
const IMAGES_DIGESTS_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince}}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}";
/// The column names of `docker images`' fields.
const IMAGES_HEADERS: &[(&str, &str)] = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// Flags of `rimg history`.
#[derive(Args)]
pub struct HistoryArgs {
    /// The image.
    pub image: String,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print sizes and dates in human readable format (`-H=false` for raw values).
    #[arg(short = 'H', long = "human", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = false)]
    pub human: bool,
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// `json`, `table`, or a Go template such as `{{.ID}}\t{{.CreatedBy}}`.
    #[arg(long)]
    pub format: Option<String>,
}

/// `docker history`'s columns, for `--format table`.
const HISTORY_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
/// The column names of `docker history`'s fields.
const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("Comment", "COMMENT"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("CreatedSince", "CREATED"),
    ("ID", "IMAGE"),
    ("Size", "SIZE"),
];

/// Prints one row per history entry, newest first.
pub fn history(ctx: &Ctx, a: HistoryArgs) -> Result<u8> {
    let images = ctx.images()?;
    let img = ctx.resolve(&images, &a.image)?;
    let store = images.store();
    let mut history = img.config.history.clone();
    if history.is_empty() {
        // Images without history get one anonymous row per layer, as Docker shows them.
        history = img.diff_ids().iter().map(|_| Default::default()).collect();
    }
    let mut layer = 0usize;
    let mut rows = Vec::new();
    for h in &history {
        let size = if h.empty_layer {
            0
        } else {
            let s = img
                .diff_ids()
                .get(layer)
                .map(|d| layer_size(store, d))
                .unwrap_or(0);
            layer += 1;
            s
        };
        rows.push((h, size));
    }
    rows.reverse();
    let mut table = Vec::new();
    for (i, (h, size)) in rows.iter().enumerate() {
        let id = if i == 0 {
            if a.no_trunc {
                img.id.to_string()
            } else {
                img.id.short()
            }
        } else {
            "<missing>".to_string()
        };
        if a.quiet {
            table.push(vec![id]);
            continue;
        }
        let created = if a.human {
            ago(h.created.as_deref())
        } else {
            h.created.clone().unwrap_or_default()
        };
        let by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
        let by = if a.no_trunc { by } else { ellipsis(&by, 45) };
        let size = if a.human {
            human_size(*size)
        } else {
            size.to_string()
        };
        table.push(vec![
            id,
            created,
            by,
            size,
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    if a.quiet {
        let s: String = table.iter().map(|r| format!("{}\n", r[0])).collect();
        return out(&s).map(|_| 0);
    }
    if let Some(fmt) = &a.format {
        let rows: Vec<Value> = table
            .iter()
            .zip(&rows)
            .map(|(r, (h, _))| {
                json!({
                    "Comment": r[4], "CreatedAt": h.created.clone().unwrap_or_default(),
                    "CreatedBy": r[2], "CreatedSince": r[1], "ID": r[0], "Size": r[3],
                })
            })
            .collect();
        return out(&Format::parse(fmt, HISTORY_TABLE)?.render(&rows, HISTORY_HEADERS)?).map(|_| 0);
    }
    out(&render(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &table,
    ))?;
    Ok(0)
}

/// Flags of `rimg inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Images to inspect.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// A Go template applied to each result (`{{.Config.Env}}`, `{{json .RootFS}}`).
    #[arg(short, long)]
    pub format: Option<String>,
}

/// The JSON `inspect` prints for one image.
pub fn inspect_json(images: &Images, img: &Image) -> Value {
    let comment = img
        .config
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    json!({
        "Id": img.id.to_string(),
        "Digest": img.manifest_digest.to_string(),
        "RepoTags": img.tags.iter().map(|t| format!("{}:{}", t.repository(), t.tag_or_latest())).collect::<Vec<_>>(),
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": comment,
        "Created": img.config.created.clone().unwrap_or_default(),
        "Author": img.config.author.clone().unwrap_or_default(),
        "Config": img.config.config,
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Size": img.size(images.store()),
        "RootFS": { "Type": "layers", "Layers": img.diff_ids() },
        "History": img.config.history,
    })
}

/// Prints images as a JSON array (or through `--format`).
pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<u8> {
    let images = ctx.images()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &a.images {
        match images.resolve(name) {
            Ok(img) => found.push(inspect_json(&images, &img)),
            Err(rimg::image::ImageError::NotFound(_)) => missing.push(name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    super::inspect::print(found, a.format.as_deref())?;
    if !missing.is_empty() {
        return Err(ExitStatus {
            code: 1,
            message: format!("No such object: {}", missing.join(", ")),
        }
        .into());
    }
    Ok(0)
}

/// JSON with 4-space indentation, as Docker prints it.
pub fn pretty4(v: &Value) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// Flags of `rimg tag`.
#[derive(Args)]
pub struct TagArgs {
    /// Existing image.
    pub source: String,
    /// New name, NAME[:TAG].
    pub target: String,
}

/// Points TARGET at SOURCE's image.
pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<u8> {
    let images = ctx.images()?;
    let target = Reference::parse(&a.target)?;
    if target.digest.is_some() {
        bail!("invalid tag {:?}: a tag cannot carry a digest", a.target);
    }
    let img = ctx.resolve(&images, &a.source)?;
    images.tag(&img, &target)?;
    Ok(0)
}

/// Flags of `rimg rmi`.
#[derive(Args)]
pub struct RmiArgs {
    /// Images to remove (names, tags or ids).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove even if containers use the image or it has several tags.
    #[arg(short, long)]
    pub force: bool,
}

/// Untags and deletes images; blobs no other image, container or cache uses are freed.
pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<u8> {
    let images = ctx.images()?;
    let mut failed = false;
    let mut deleted_images = Vec::new();
    for name in &a.images {
        match remove_one(&images, name, a.force) {
            Ok(lines) => {
                for l in &lines {
                    outln(l)?;
                }
                deleted_images.extend(lines.into_iter().filter(|l| l.starts_with("Deleted:")));
            }
            // As Docker's: `rmi -f` of an image that does not exist is not an error.
            Err(e)
                if a.force
                    && matches!(
                        e.downcast_ref::<rimg::image::ImageError>(),
                        Some(rimg::image::ImageError::NotFound(_))
                    ) => {}
            Err(e) => {
                eprintln!("Error: {}", rimg::error_line(e.as_ref()));
                failed = true;
            }
        }
    }
    if !deleted_images.is_empty() {
        if let Some(gc) = images.store().try_gc()? {
            for (d, _) in images.collect_garbage(&gc)? {
                if !deleted_images.iter().any(|l| l.ends_with(&d.to_string())) {
                    outln(&format!("Deleted: {d}"))?;
                }
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn remove_one(images: &Images, name: &str, force: bool) -> Result<Vec<String>> {
    let img = images.resolve(name)?;
    let by_tag = Reference::parse(name).ok().filter(|r| img.tags.contains(r));
    let users = images.containers_using(&img)?;
    let mut lines = Vec::new();
    if let Some(tag) = &by_tag {
        if img.tags.len() > 1 {
            images.untag(tag, false)?;
            lines.push(format!(
                "Untagged: {}:{}",
                tag.repository(),
                tag.tag_or_latest()
            ));
            return Ok(lines);
        }
        if !users.is_empty() && !force {
            bail!(
                "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                short(&users[0]),
                img.id.short()
            );
        }
    } else {
        if !users.is_empty() && !force {
            bail!(
                "conflict: unable to delete {} (must be forced) - image is being used by container {}",
                img.id.short(),
                short(&users[0])
            );
        }
        if img.tags.len() > 1 && !force {
            bail!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                img.id.short()
            );
        }
    }
    for t in &img.tags {
        lines.push(format!(
            "Untagged: {}:{}",
            t.repository(),
            t.tag_or_latest()
        ));
    }
    images.remove_manifest(&img.manifest_digest)?;
    if users.is_empty() {
        lines.push(format!("Deleted: {}", img.id));
    }
    Ok(lines)
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Flags of `rimg image prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Remove all images no container uses, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Removes dangling (or, with `-a`, all unused) images and frees their blobs.
pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<u8> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?"))? {
        return Ok(0);
    }
    let images = ctx.images()?;
    let report = images.prune(a.all)?;
    out(&prune_output(&report))?;
    Ok(0)
}

/// `image prune`'s output: `Deleted Images:` and its lines (when any), then the total.
fn prune_output(report: &rimg::image::prune::PruneReport) -> String {
    let mut s = deleted_section("Deleted Images:", &report.lines);
    s.push_str(&reclaimed_line(report.reclaimed));
    s
}

/// A prune's section: its title, one line each, a blank line; nothing when `lines` is empty.
pub fn deleted_section(title: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = format!("{title}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push('\n');
    s
}

/// A prune's last line, as Docker prints it.
pub fn reclaimed_line(bytes: u64) -> String {
    format!("Total reclaimed space: {}\n", human_size(bytes))
}
