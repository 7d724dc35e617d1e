//! `-v`, `--mount`, `--tmpfs`, `--volumes-from` and an image's `VOLUME`s, turned into a new
//! container's mounts: Docker's parsing rules and messages, and the order in which they
//! override one another (the user's mounts over `--volumes-from` over the image's volumes; the
//! user's own mounts may not share a destination).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use rimg_fs::error::io_err;

use super::{ContainerMount, Result, VolumeError, Volumes};
use crate::container::Containers;

/// The mount flags of `run` and `create`, as given.
#[derive(Clone, Debug, Default)]
pub struct MountArgs {
    /// `-v/--volume` values.
    pub volumes: Vec<String>,
    /// `--mount` values.
    pub mounts: Vec<String>,
    /// `--tmpfs` values.
    pub tmpfs: Vec<String>,
    /// `--volumes-from` values.
    pub volumes_from: Vec<String>,
}

fn spec_err(m: impl Into<String>) -> VolumeError {
    VolumeError::Spec(m.into())
}

/// A mount destination made canonical (absolute, `..` and `.` undone), as Docker cleans it.
fn clean_destination(d: &str, whole: &str) -> Result<String> {
    crate::runtime::mounts::target_parts(d)
        .map(|parts| format!("/{}", parts.join("/")))
        .map_err(|e| spec_err(format!("invalid volume specification: '{whole}': {e}")))
}

/// One mount as the user asked for it, before volumes are created.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    /// A host path; `create` makes a missing one (`-v`), else it must exist (`--mount`).
    Bind {
        source: PathBuf,
        create: bool,
        rw: bool,
        mode: String,
    },
    /// A named volume (`None`: anonymous).
    Volume {
        name: Option<String>,
        rw: bool,
        mode: String,
        copy_up: bool,
        options: BTreeMap<String, String>,
    },
    /// A tmpfs with these options.
    Tmpfs { options: Vec<String> },
}

const MODES: [&str; 12] = [
    "ro",
    "rw",
    "z",
    "Z",
    "nocopy",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "delegated",
];

/// `-v [SOURCE:]DEST[:MODE]`.
fn parse_volume(v: &str) -> Result<(String, Wanted)> {
    let invalid = || spec_err(format!("invalid volume specification: '{v}'"));
    let parts: Vec<&str> = v.split(':').collect();
    let is_mode = |m: &str| !m.is_empty() && m.split(',').all(|x| MODES.contains(&x));
    let (source, dest, mode) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [d, m] if d.starts_with('/') && is_mode(m) => (None, *d, *m),
        [s, d] => (Some(*s), *d, ""),
        [s, d, m] if is_mode(m) => (Some(*s), *d, *m),
        _ => return Err(invalid()),
    };
    if dest.is_empty() || source == Some("") {
        return Err(invalid());
    }
    let dest = clean_destination(dest, v)?;
    let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
    let rw = !modes.contains(&"ro");
    let bind = source.is_some_and(|s| s.starts_with('/'));
    // Docker shows a volume's empty mode as `z`.
    let mode = if mode.is_empty() && !bind {
        "z".to_string()
    } else {
        mode.to_string()
    };
    let wanted = match source {
        Some(s) if bind => Wanted::Bind {
            source: PathBuf::from(s),
            create: true,
            rw,
            mode,
        },
        Some(s) => {
            if !super::is_valid_name(s) {
                return Err(VolumeError::InvalidName(s.to_string()));
            }
            Wanted::Volume {
                name: Some(s.to_string()),
                rw,
                copy_up: !modes.contains(&"nocopy"),
                mode,
                options: BTreeMap::new(),
            }
        }
        None => Wanted::Volume {
            name: None,
            rw,
            copy_up: !modes.contains(&"nocopy"),
            mode,
            options: BTreeMap::new(),
        },
    };
    Ok((dest, wanted))
}

fn truthy(v: Option<&str>, whole: &str, key: &str) -> Result<bool> {
    match v {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        Some(other) => Err(spec_err(format!(
            "invalid argument \"{whole}\" for \"--mount\" flag: invalid value for {key}: {other}"
        ))),
    }
}

/// `--mount type=…,source=…,target=…,readonly,volume-opt=k=v,tmpfs-size=…,tmpfs-mode=…`.
fn parse_mount(v: &str) -> Result<(String, Wanted)> {
    let bad = |m: String| {
        spec_err(format!(
            "invalid argument \"{v}\" for \"--mount\" flag: {m}"
        ))
    };
    let mut kind = "volume".to_string();
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut readonly = false;
    let mut copy_up = true;
    let mut options = BTreeMap::new();
    let mut tmpfs = Vec::new();
    for field in v.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, val)) => (k.trim().to_lowercase(), Some(val)),
            None => (field.trim().to_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("type", Some(t)) => kind = t.to_string(),
            ("source" | "src", Some(s)) => source = Some(s.to_string()),
            ("target" | "destination" | "dst", Some(t)) => target = Some(t.to_string()),
            ("readonly" | "ro", val) => readonly = truthy(val, v, &key)?,
            ("volume-nocopy", val) => copy_up = !truthy(val, v, &key)?,
            ("volume-opt", Some(o)) => {
                let (k, val) = o
                    .split_once('=')
                    .ok_or_else(|| bad(format!("invalid volume-opt: {o}")))?;
                options.insert(k.to_string(), val.to_string());
            }
            ("tmpfs-size", Some(s)) => tmpfs.push(format!("size={s}")),
            ("tmpfs-mode", Some(m)) => tmpfs.push(format!("mode={m}")),
            ("bind-propagation" | "consistency" | "volume-driver" | "volume-label", Some(_)) => {}
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let target = target.ok_or_else(|| bad("target is required".into()))?;
    let dest = clean_destination(&target, v)?;
    let wanted = match kind.as_str() {
        "bind" => {
            let s = source.ok_or_else(|| {
                spec_err(format!(
                    "invalid argument \"{v}\" for \"--mount\" flag: invalid mount config for type \"bind\": field Source must not be empty"
                ))
            })?;
            Wanted::Bind {
                source: PathBuf::from(s),
                create: false,
                rw: !readonly,
                mode: String::new(),
            }
        }
        "volume" => {
            if let Some(s) = &source {
                if !super::is_valid_name(s) {
                    return Err(VolumeError::InvalidName(s.clone()));
                }
            }
            Wanted::Volume {
                name: source,
                rw: !readonly,
                mode: if copy_up { "z".into() } else { "nocopy".into() },
                copy_up,
                options,
            }
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(bad(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified"
                        .into(),
                ));
            }
            if readonly {
                tmpfs.push("ro".into());
            }
            Wanted::Tmpfs { options: tmpfs }
        }
        other => return Err(bad(format!("invalid mount type {other:?}"))),
    };
    Ok((dest, wanted))
}

/// `--tmpfs PATH[:OPTIONS]` (Docker's default `noexec,nosuid,nodev`).
fn parse_tmpfs(v: &str) -> Result<(String, Wanted)> {
    let (path, opts) = v.split_once(':').unwrap_or((v, ""));
    let dest = clean_destination(path, v)?;
    let mut options: Vec<String> = vec!["noexec".into()];
    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok((dest, Wanted::Tmpfs { options }))
}

/// The user's mounts of `args`, parsed, with no two at one destination.
fn parse_args(args: &MountArgs) -> Result<Vec<(String, Wanted)>> {
    let mut user: Vec<(String, Wanted)> = Vec::new();
    for v in &args.volumes {
        user.push(parse_volume(v)?);
    }
    for m in &args.mounts {
        user.push(parse_mount(m)?);
    }
    for t in &args.tmpfs {
        user.push(parse_tmpfs(t)?);
    }
    let mut seen = BTreeSet::new();
    for (d, _) in &user {
        if !seen.insert(d.clone()) {
            return Err(spec_err(format!("Duplicate mount point: {d}")));
        }
    }
    Ok(user)
}

/// Checks the syntax of `args` (what Docker's client refuses before anything is pulled or
/// created); [`plan_mounts`] checks the rest.
pub fn check_args(args: &MountArgs) -> Result<()> {
    parse_args(args).map(drop)
}

/// The mounts of a new container: `args` (the user's), the mounts of the `--volumes-from`
/// containers, and an anonymous volume for each of the image's `VOLUME`s no other mount
/// covers. Named volumes are created on first use, anonymous ones created here, and a
/// missing `-v` host directory is made (a missing `--mount` bind source is an error).
pub fn plan_mounts(
    volumes: &Volumes,
    containers: &Containers,
    args: &MountArgs,
    image_volumes: &[String],
) -> Result<Vec<ContainerMount>> {
    let user = parse_args(args)?;
    let mut out: Vec<ContainerMount> = Vec::new();
    for (dest, w) in user {
        out.push(realize(volumes, dest, w)?);
    }
    for from in &args.volumes_from {
        let (name, mode) = match from.rsplit_once(':') {
            Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
            _ => (from.as_str(), None),
        };
        let c = containers.resolve(name)?;
        for m in &c.config.mounts {
            if out.iter().any(|o| o.destination == m.destination) {
                continue;
            }
            let mut m = m.clone();
            if let Some(mode) = mode {
                m.rw = mode == "rw";
                m.mode = mode.to_string();
            }
            // Another container's volume is shared, never this one's to remove or fill.
            m.anonymous = false;
            m.copy_up = false;
            out.push(m);
        }
    }
    for v in image_volumes {
        let Ok(dest) = clean_destination(v, v) else {
            continue;
        };
        if out.iter().any(|o| o.destination == dest) {
            continue;
        }
        let wanted = Wanted::Volume {
            name: None,
            rw: true,
            mode: String::new(),
            copy_up: true,
            options: BTreeMap::new(),
        };
        out.push(realize(volumes, dest, wanted)?);
    }
    Ok(out)
}

fn realize(volumes: &Volumes, destination: String, w: Wanted) -> Result<ContainerMount> {
    Ok(match w {
        Wanted::Bind {
            source,
            create,
            rw,
            mode,
        } => {
            if !source.exists() {
                if !create {
                    return Err(spec_err(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        source.display()
                    )));
                }
                fs::create_dir_all(&source).map_err(io_err("creating", &source))?;
            }
            ContainerMount {
                kind: "bind".into(),
                source,
                destination,
                mode,
                rw,
                ..Default::default()
            }
        }
        Wanted::Volume {
            name,
            rw,
            mode,
            copy_up,
            options,
        } => {
            let anonymous = name.is_none();
            let v = volumes.create(name.as_deref(), BTreeMap::new(), options, anonymous)?;
            ContainerMount {
                kind: "volume".into(),
                name: v.meta.name,
                source: v.mountpoint,
                destination,
                mode,
                rw,
                anonymous,
                copy_up,
                options: Vec::new(),
            }
        }
        Wanted::Tmpfs { options } => ContainerMount {
            kind: "tmpfs".into(),
            destination,
            rw: !options.iter().any(|o| o == "ro"),
            options,
            ..Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flag_forms() {
        let (d, w) = parse_volume("/host/dir:/data:ro").unwrap();
        assert_eq!(d, "/data");
        assert!(matches!(
            w,
            Wanted::Bind {
                rw: false,
                create: true,
                ..
            }
        ));
        let (d, w) = parse_volume("cache:/var/cache").unwrap();
        assert_eq!(d, "/var/cache");
        assert!(matches!(w, Wanted::Volume { name: Some(ref n), rw: true, .. } if n == "cache"));
        let (d, w) = parse_volume("/only/dest").unwrap();
        assert_eq!(d, "/only/dest");
        assert!(matches!(w, Wanted::Volume { name: None, .. }));
        assert!(matches!(
            parse_volume("/d:ro").unwrap().1,
            Wanted::Volume { rw: false, .. }
        ));
        assert!(parse_volume("rel/path:/x").is_err());
        assert!(parse_volume("a:b:c:d").is_err());
        assert!(parse_volume("/x:relative").is_err());
        assert!(parse_volume("/x:/").is_err());
    }

    #[test]
    fn mount_flag_forms() {
        let (d, w) = parse_mount("type=bind,source=/h,target=/c,readonly").unwrap();
        assert_eq!(d, "/c");
        assert!(matches!(
            w,
            Wanted::Bind {
                rw: false,
                create: false,
                ..
            }
        ));
        let (_, w) = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m").unwrap();
        assert_eq!(
            w,
            Wanted::Tmpfs {
                options: vec!["size=1m".into()]
            }
        );
        let (_, w) = parse_mount("source=v1,target=/v,volume-opt=o=x").unwrap();
        assert!(matches!(w, Wanted::Volume { name: Some(ref n), .. } if n == "v1"));
        let e = parse_mount("type=bind,source=/h").unwrap_err().to_string();
        assert!(e.contains("target is required"), "{e}");
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("type=bind,target=/x,bogus=1").is_err());
    }

    #[test]
    fn tmpfs_flag_forms() {
        let (d, w) = parse_tmpfs("/run:size=64k,mode=1770").unwrap();
        assert_eq!(d, "/run");
        assert_eq!(
            w,
            Wanted::Tmpfs {
                options: vec!["noexec".into(), "size=64k".into(), "mode=1770".into()]
            }
        );
    }
}
