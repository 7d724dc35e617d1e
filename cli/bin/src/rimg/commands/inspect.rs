//! `rimg inspect` / `rimg container inspect`: Docker's JSON for containers and images. A name
//! is looked up as a container first, then as an image, as `docker inspect` does; `--type`
//! chooses.

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::Value;

use rimg::container::{inspect::docker_json, Container, ContainerError, Containers};
use rimg::image::{ImageError, Images};
use rimg::template::Template;

use super::images::{inspect_json, pretty4};
use super::{out, outln, Ctx, ExitStatus};

/// What kind of object a name is looked up as.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectType {
    /// A container.
    Container,
    /// An image.
    Image,
}

/// Flags of `rimg inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Only this kind of object.
    #[arg(long = "type", value_enum)]
    pub kind: Option<ObjectType>,
    /// A Go template applied to each result (`{{.State.Status}}`, `{{json .Config}}`).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Containers or images (names or ids).
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `rimg container inspect`.
#[derive(Args)]
pub struct ContainerInspectArgs {
    /// A Go template applied to each result (`{{.State.Status}}`, `{{json .Config}}`).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Containers (names or ids).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// A container's JSON.
pub fn container_json(c: &Container) -> Value {
    let mut v = docker_json(&c.config, &c.state, c.status());
    let live = rimg::network::attach::NetState::read(c.dir());
    v["NetworkSettings"] = rimg::network::inspect::settings(&c.config, live.as_ref());
    v
}

/// `rimg inspect`: every name as a container, else an image (or only as `--type` says).
pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<u8> {
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &a.names {
        match lookup(&images, &containers, name, a.kind)? {
            Some(v) => found.push(v),
            None => missing.push(name.clone()),
        }
    }
    print(found, a.format.as_deref())?;
    if missing.is_empty() {
        return Ok(0);
    }
    let what = match a.kind {
        Some(ObjectType::Container) => "container",
        Some(ObjectType::Image) => "image",
        None => "object",
    };
    Err(ExitStatus {
        code: 1,
        message: format!("No such {what}: {}", missing.join(", ")),
    }
    .into())
}

/// `rimg container inspect`: containers only.
pub fn container_inspect(ctx: &Ctx, a: ContainerInspectArgs) -> Result<u8> {
    inspect(
        ctx,
        InspectArgs {
            kind: Some(ObjectType::Container),
            format: a.format,
            names: a.containers,
        },
    )
}

fn lookup(
    images: &Images,
    containers: &Containers,
    name: &str,
    kind: Option<ObjectType>,
) -> Result<Option<Value>> {
    if kind != Some(ObjectType::Image) {
        match containers.resolve(name) {
            Ok(c) => return Ok(Some(container_json(&c))),
            Err(ContainerError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if kind != Some(ObjectType::Container) {
        match images.resolve(name) {
            Ok(img) => return Ok(Some(inspect_json(images, &img))),
            Err(ImageError::NotFound(_)) | Err(ImageError::Reference(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Prints inspected objects as `docker inspect` does: a JSON array indented by 4 spaces; with
/// `-f json`, the array on one line; with a template, its output once per object (an
/// object it fails on is reported after the others, exit 1, as Docker's).
pub fn print(found: Vec<Value>, format: Option<&str>) -> Result<()> {
    let fmt = match format {
        None | Some("") => return outln(&pretty4(&Value::Array(found))?),
        Some("json") => return outln(&serde_json::to_string(&Value::Array(found))?),
        Some(fmt) => fmt,
    };
    let template = parse_template(fmt)?;
    let mut s = String::new();
    let mut errors = Vec::new();
    for v in &found {
        match template.execute(v) {
            Ok(text) => {
                s.push_str(&text);
                s.push('\n');
            }
            Err(e) => errors.push(format!("template parsing error: {e}")),
        }
    }
    out(&s)?;
    if errors.is_empty() {
        return Ok(());
    }
    Err(ExitStatus {
        code: 1,
        message: errors.join("\n"),
    }
    .into())
}

/// A `--format` template of `inspect`, `version` or `info`; one that does not parse exits
/// 64, as Docker's do.
pub fn parse_template(format: &str) -> Result<Template> {
    Template::parse(format).map_err(|e| {
        ExitStatus {
            code: 64,
            message: e.to_string(),
        }
        .into()
    })
}
