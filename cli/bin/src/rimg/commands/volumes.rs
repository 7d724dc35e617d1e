//! `rimg volume create|ls|inspect|rm|prune`, and the mount flags of `run` and `create`
//! (`-v`, `--mount`, `--tmpfs`, `--volumes-from`, `--read-only`).

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use rimg::container::Containers;
use rimg::image::{Image, Images};
use rimg::runtime::ProcessSpec;
use rimg::table::{render, Format};
use rimg::units::human_size;
use rimg::volume::inspect::{volume_json, volume_ls_json};
use rimg::volume::{plan_mounts, ContainerMount, MountArgs, VolumeError, Volumes};

use super::{confirm, out, outln, Ctx, ExitStatus};

/// The mount flags of `run` and `create`.
#[derive(Args, Clone, Debug, Default)]
pub struct MountFlags {
    /// Bind mount a host path or mount a volume: [HOST-DIR|NAME:]CONTAINER-DIR[:ro|rw].
    #[arg(short = 'v', long = "volume", value_name = "LIST")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=…,target=…[,readonly].
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory: PATH[:size=…,mode=…].
    #[arg(long = "tmpfs", value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// Mount the volumes of another container: CONTAINER[:ro|rw].
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    pub read_only: bool,
}

impl MountFlags {
    fn args(&self) -> MountArgs {
        MountArgs {
            volumes: self.volume.clone(),
            mounts: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            volumes_from: self.volumes_from.clone(),
        }
    }

    /// Refuses malformed `-v`, `--mount` and `--tmpfs` values before the image is pulled
    /// (exit 125), as Docker's client does.
    pub fn check(&self) -> Result<()> {
        rimg::volume::spec::check_args(&self.args()).map_err(|e| fail(125, rimg::error_line(&e)))
    }
}

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ExitStatus {
        code,
        message: message.into(),
    })
}

/// The new container's mounts (volumes created, missing `-v` host dirs made), put into
/// `process` as the runtime makes them; usage errors exit 125.
pub fn container_mounts(
    images: &Images,
    containers: &Containers,
    image: &Image,
    flags: &MountFlags,
    process: &mut ProcessSpec,
) -> Result<Vec<ContainerMount>> {
    let volumes = Volumes::open(images)?;
    let args = flags.args();
    let image_volumes: Vec<String> = image
        .config
        .config
        .volumes
        .as_ref()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    let mounts = plan_mounts(&volumes, containers, &args, &image_volumes)
        .map_err(|e| fail(125, rimg::error_line(&e)))?;
    process.mounts = mounts.iter().map(ContainerMount::spec).collect();
    process.read_only = flags.read_only;
    Ok(mounts)
}

/// `rimg volume`'s verbs.
#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

/// Flags of `volume create`.
#[derive(Args)]
pub struct CreateArgs {
    /// Set metadata for a volume (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Driver options (recorded; the local driver takes none).
    #[arg(short = 'o', long = "opt")]
    pub opts: Vec<String>,
    /// Volume driver name (only `local`).
    #[arg(short = 'd', long = "driver", default_value = "local")]
    pub driver: String,
    /// The name (random when omitted).
    pub name: Option<String>,
}

/// Flags of `volume ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter: dangling=true|false, name=…, label=KEY[=VALUE].
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// `json`, or a Go template such as `{{.Name}}`.
    #[arg(long)]
    pub format: Option<String>,
}

/// Flags of `volume inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A Go template.
    #[arg(short, long)]
    pub format: Option<String>,
    /// The volumes.
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

/// Flags of `volume rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes.
    #[arg(short, long)]
    pub force: bool,
    /// The volumes.
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

/// Flags of `volume prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

fn pairs(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// `rimg volume …`.
pub fn run(ctx: &Ctx, cmd: VolumeCommand) -> Result<u8> {
    let volumes = Volumes::open(&ctx.images()?)?;
    match cmd {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                return Err(fail(1, format!("plugin {:?} not found", a.driver)));
            }
            let v = volumes.create(a.name.as_deref(), pairs(&a.labels), pairs(&a.opts), false)?;
            outln(&v.meta.name)?;
            Ok(0)
        }
        VolumeCommand::Ls(a) => ls(&volumes, a),
        VolumeCommand::Inspect(a) => {
            let mut list = Vec::new();
            let mut failed = false;
            for n in &a.volumes {
                match volumes.get(n) {
                    Ok(v) => list.push(volume_json(&v)),
                    Err(e) => {
                        eprintln!("Error: {}", rimg::error_line(&e));
                        failed = true;
                    }
                }
            }
            super::inspect::print(list, a.format.as_deref())?;
            Ok(u8::from(failed))
        }
        VolumeCommand::Rm(a) => {
            let mut failed = false;
            for n in &a.volumes {
                match volumes.remove(n, a.force) {
                    Ok(()) => outln(n)?,
                    Err(e) => {
                        eprintln!("Error response from daemon: {}", rimg::error_line(&e));
                        failed = true;
                    }
                }
            }
            Ok(u8::from(failed))
        }
        VolumeCommand::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?"))? {
                return Ok(0);
            }
            let pruned = volumes.prune(a.all)?;
            let mut s = String::new();
            if !pruned.names.is_empty() {
                s.push_str("Deleted Volumes:\n");
                for n in &pruned.names {
                    s.push_str(n);
                    s.push('\n');
                }
                s.push('\n');
            }
            s.push_str(&format!(
                "Total reclaimed space: {}\n",
                human_size(pruned.reclaimed)
            ));
            out(&s)?;
            Ok(0)
        }
    }
}

fn ls(volumes: &Volumes, a: LsArgs) -> Result<u8> {
    let users = volumes.users()?;
    let mut list = volumes.list()?;
    for f in &a.filter {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        match k {
            "dangling" => {
                let want = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(fail(1, format!("invalid filter 'dangling={v}'"))),
                };
                list.retain(|x| users.contains_key(&x.meta.name) != want);
            }
            "name" => list.retain(|x| x.meta.name.contains(v)),
            "label" => {
                let (lk, lv) = match v.split_once('=') {
                    Some((a, b)) => (a, Some(b)),
                    None => (v, None),
                };
                list.retain(|x| {
                    x.meta
                        .labels
                        .get(lk)
                        .is_some_and(|val| lv.is_none_or(|w| w == val))
                });
            }
            "driver" => list.retain(|_| v == "local"),
            other => return Err(fail(1, format!("invalid filter '{other}'"))),
        }
    }
    if a.quiet {
        let mut s = String::new();
        for v in &list {
            s.push_str(&v.meta.name);
            s.push('\n');
        }
        return out(&s).map(|_| 0);
    }
    if let Some(fmt) = &a.format {
        let rows: Vec<serde_json::Value> = list.iter().map(volume_ls_json).collect();
        let format = Format::parse(fmt, "table {{.Driver}}\t{{.Name}}")?;
        return out(&format.render(&rows, VOLUME_HEADERS)?).map(|_| 0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| vec!["local".to_string(), v.meta.name.clone()])
        .collect();
    out(&render(&["DRIVER", "VOLUME NAME"], &rows))?;
    Ok(0)
}

/// `rm -v`: the container's anonymous volumes, after the container is gone.
pub fn remove_anonymous(ctx: &Ctx, mounts: &[ContainerMount]) -> Result<()> {
    let volumes = Volumes::open(&ctx.images()?)?;
    match volumes.remove_anonymous(mounts) {
        Ok(()) | Err(VolumeError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Docker's column names for `volume ls --format 'table …'`.
const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Labels", "LABELS"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Scope", "SCOPE"),
    ("Size", "SIZE"),
    ("Links", "LINKS"),
];
