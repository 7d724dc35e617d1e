//! `RUN --mount`: what each mount type means for a RUN step, its identity in the step's cache
//! key, and where its data lives.
//!
//! ```text
//! type=cache   $RIMG_ROOT/rimg/build-cache-mounts/<sha256 of id>/   kept across builds
//!              (id defaults to the target; `rimg builder prune` removes them)
//! type=bind    a context path (its files join the key), or a path of a stage or image
//!              (`from=`; its state id joins the key); read-only unless `rw`, whose writes
//!              are thrown away
//! type=tmpfs   a fresh tmpfs
//! type=secret  `--secret id=…` copied 0400 into the build's scratch dir, mounted at
//!              /run/secrets/<id> (or target=); only the id is in the key, never the content
//! type=ssh     the `--ssh` agent socket at /run/buildkit/ssh_agent.0, SSH_AUTH_SOCK set
//! ```
//!
//! Nothing mounted is in the step's layer: the mounts are made inside the RUN's container,
//! over its rootfs, and the mount points the runner had to create are removed from the upper
//! directory afterwards.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{chown, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rimg_fs::error::{io_err, IoError};
use rimg_fs::Digest;

use crate::image::ImageConfig;

/// Where the store keeps cache mounts.
pub const CACHE_MOUNTS_DIR: &str = "build-cache-mounts";

/// A secret given to the build (`--secret`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=PATH`: a file's contents.
    File(PathBuf),
    /// `env=NAME`: an environment variable's value (read when the build starts).
    Env(String),
}

/// `sharing=` of a cache mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Concurrent builds use it together.
    Shared,
    /// A concurrent build gets a fresh directory of its own.
    Private,
    /// A concurrent build waits for it.
    Locked,
}

/// One `--mount` of a RUN, its words expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunMount {
    /// `type=bind`.
    Bind {
        /// Where in the container.
        target: String,
        /// The path in the context or in `from`.
        source: String,
        /// A stage or image; the context when `None`.
        from: Option<String>,
        /// `rw`: writable, writes discarded.
        rw: bool,
    },
    /// `type=cache`.
    Cache {
        /// Where in the container.
        target: String,
        /// Which cache (defaults to the target).
        id: String,
        /// How concurrent builds share it.
        sharing: Sharing,
        /// Mode of the directory when created.
        mode: u32,
        /// Owner of the directory when created.
        uid: u32,
        /// Group of the directory when created.
        gid: u32,
        /// `ro`.
        read_only: bool,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Where in the container.
        target: String,
        /// `size=` in bytes.
        size: Option<u64>,
    },
    /// `type=secret`.
    Secret {
        /// The secret's id.
        id: String,
        /// Where in the container (`/run/secrets/<id>`).
        target: String,
        /// Fail when the secret was not given.
        required: bool,
        /// File mode (0400).
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// `type=ssh`.
    Ssh {
        /// The `--ssh` id (`default`).
        id: String,
        /// Where the socket goes.
        target: String,
        /// Fail when no agent was given.
        required: bool,
    },
}

fn octal(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8).map_err(|_| format!("invalid mode {v:?}: use octal"))
}

fn number(k: &str, v: &str) -> Result<u32, String> {
    v.parse().map_err(|_| format!("invalid {k}={v:?}"))
}

fn flag_value(v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(format!("invalid boolean {o:?}")),
    }
}

impl RunMount {
    /// Parses a `--mount` value (`type=cache,target=/root/.cache,sharing=locked`), its
    /// variables already substituted.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut kv: Vec<(String, Option<String>)> = Vec::new();
        for field in value.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            kv.push((k, v));
        }
        let get = |names: &[&str]| -> Option<String> {
            kv.iter()
                .rev()
                .find(|(k, _)| names.contains(&k.as_str()))
                .and_then(|(_, v)| v.clone())
        };
        let has = |names: &[&str]| -> Result<bool, String> {
            match kv.iter().rev().find(|(k, _)| names.contains(&k.as_str())) {
                Some((_, v)) => flag_value(v.as_deref()),
                None => Ok(false),
            }
        };
        for (k, _) in &kv {
            const KNOWN: &[&str] = &[
                "type",
                "target",
                "dst",
                "destination",
                "source",
                "src",
                "from",
                "id",
                "sharing",
                "mode",
                "uid",
                "gid",
                "ro",
                "readonly",
                "rw",
                "readwrite",
                "required",
                "size",
                "env",
            ];
            if !KNOWN.contains(&k.as_str()) {
                return Err(format!("unknown mount option {k:?}"));
            }
        }
        let mode = |default: u32| -> Result<u32, String> {
            Ok(get(&["mode"])
                .map(|m| octal(&m))
                .transpose()?
                .unwrap_or(default))
        };
        let id_of = |key: &str| -> Result<u32, String> {
            Ok(get(&[key])
                .map(|v| number(key, &v))
                .transpose()?
                .unwrap_or(0))
        };
        let target = get(&["target", "dst", "destination"]);
        let need_target = || target.clone().ok_or("the mount needs a target".to_string());
        let absolute = |t: String, workdir: &str| {
            if t.starts_with('/') {
                t
            } else {
                format!("{}/{t}", workdir.trim_end_matches('/'))
            }
        };
        let ty = get(&["type"]).unwrap_or_else(|| "bind".into());
        Ok(match ty.as_str() {
            "bind" => RunMount::Bind {
                target: absolute(need_target()?, "/"),
                source: get(&["source", "src"]).unwrap_or_else(|| "/".into()),
                from: get(&["from"]),
                rw: has(&["rw", "readwrite"])?,
            },
            "cache" => {
                if get(&["from"]).is_some() {
                    return Err("type=cache with from= is not supported".into());
                }
                let target = absolute(need_target()?, "/");
                RunMount::Cache {
                    id: get(&["id"]).unwrap_or_else(|| target.clone()),
                    target,
                    sharing: match get(&["sharing"]).as_deref() {
                        None | Some("shared") => Sharing::Shared,
                        Some("private") => Sharing::Private,
                        Some("locked") => Sharing::Locked,
                        Some(o) => {
                            return Err(format!("invalid sharing={o} (shared, private or locked)"))
                        }
                    },
                    mode: mode(0o755)?,
                    uid: id_of("uid")?,
                    gid: id_of("gid")?,
                    read_only: has(&["ro", "readonly"])?,
                }
            }
            "tmpfs" => RunMount::Tmpfs {
                target: absolute(need_target()?, "/"),
                size: get(&["size"]).map(|s| parse_size(&s)).transpose()?,
            },
            "secret" => {
                let id = get(&["id"])
                    .or_else(|| {
                        target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_string)
                    })
                    .filter(|i| !i.is_empty())
                    .ok_or("a secret mount needs an id or a target")?;
                if get(&["env"]).is_some() {
                    return Err("type=secret with env= is not supported".into());
                }
                RunMount::Secret {
                    target: target
                        .clone()
                        .unwrap_or_else(|| format!("/run/secrets/{id}")),
                    id,
                    required: has(&["required"])?,
                    mode: mode(0o400)?,
                    uid: id_of("uid")?,
                    gid: id_of("gid")?,
                }
            }
            "ssh" => RunMount::Ssh {
                id: get(&["id"]).unwrap_or_else(|| "default".into()),
                target: target.unwrap_or_else(|| "/run/buildkit/ssh_agent.0".into()),
                required: has(&["required"])?,
            },
            other => {
                return Err(format!(
                    "unknown mount type {other:?} (bind, cache, tmpfs, secret or ssh)"
                ))
            }
        })
    }

    /// The mount's identity in the step's key and history: every option that changes what
    /// the command sees, a secret's id but never its content.
    pub fn identity(&self) -> String {
        match self {
            RunMount::Bind { target, source, from, rw } => format!(
                "--mount=type=bind,target={target},source={source}{}{}",
                from.as_ref().map(|f| format!(",from={f}")).unwrap_or_default(),
                if *rw { ",rw" } else { "" }
            ),
            RunMount::Cache { target, id, sharing, mode, uid, gid, read_only } => format!(
                "--mount=type=cache,target={target},id={id},sharing={},mode={mode:o},uid={uid},gid={gid}{}",
                match sharing {
                    Sharing::Shared => "shared",
                    Sharing::Private => "private",
                    Sharing::Locked => "locked",
                },
                if *read_only { ",ro" } else { "" }
            ),
            RunMount::Tmpfs { target, size } => format!(
                "--mount=type=tmpfs,target={target}{}",
                size.map(|s| format!(",size={s}")).unwrap_or_default()
            ),
            RunMount::Secret { id, target, mode, uid, gid, .. } => format!(
                "--mount=type=secret,id={id},target={target},mode={mode:o},uid={uid},gid={gid}"
            ),
            RunMount::Ssh { id, target, .. } => format!("--mount=type=ssh,id={id},target={target}"),
        }
    }
}

/// `size=` of a tmpfs: bytes, or with a k/m/g suffix.
fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("invalid size={s}"))
}

/// A mount as the runner makes it.
#[derive(Clone, Debug)]
pub enum StepMount {
    /// A host path bind-mounted.
    Host {
        /// The host path.
        source: PathBuf,
        /// Where in the container.
        target: String,
        /// Read-only.
        read_only: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Where in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A path of a build state (a stage or an image), mounted for the step.
    State {
        /// The state's config.
        config: Box<ImageConfig>,
        /// The path in it.
        source: String,
        /// Where in the container.
        target: String,
        /// Writable (writes discarded).
        rw: bool,
    },
    /// A cache directory, locked for the step as its sharing says.
    Cache {
        /// The directory.
        dir: PathBuf,
        /// Where in the container.
        target: String,
        /// Sharing mode.
        sharing: Sharing,
        /// Read-only.
        read_only: bool,
    },
}

impl StepMount {
    /// Where in the container.
    pub fn target(&self) -> &str {
        match self {
            StepMount::Host { target, .. }
            | StepMount::Tmpfs { target, .. }
            | StepMount::State { target, .. }
            | StepMount::Cache { target, .. } => target,
        }
    }
}

/// The directory of cache mount `id` in the store's private dir, created (with the mount's
/// mode and owner) when missing.
pub fn cache_dir(
    private: &Path,
    id: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<PathBuf, IoError> {
    let base = private.join(CACHE_MOUNTS_DIR);
    fs::create_dir_all(&base).map_err(io_err("create", &base))?;
    let dir = base.join(Digest::of(id.as_bytes()).hex());
    match fs::DirBuilder::new().mode(mode).create(&dir) {
        Ok(()) => {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &dir))?;
            chown(&dir, Some(uid), Some(gid)).map_err(io_err("chown", &dir))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(IoError::new("create", &dir, e)),
    }
    Ok(dir)
}

/// A build's scratch directory (secrets, heredoc scripts): private to the build, removed when
/// dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    secrets: BTreeMap<String, PathBuf>,
    files: usize,
}

impl Scratch {
    /// A fresh scratch directory under `private/build/`, 0700, holding a 0400 copy of each
    /// secret.
    pub fn new(private: &Path, secrets: &[(String, SecretSource)]) -> Result<Self, IoError> {
        static SCRATCHES: AtomicU64 = AtomicU64::new(0);
        let dir = private.join("build").join(format!(
            "scratch-{}-{}",
            std::process::id(),
            SCRATCHES.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
        let mut s = Scratch {
            dir,
            secrets: BTreeMap::new(),
            files: 0,
        };
        for (id, src) in secrets {
            let data = match src {
                SecretSource::File(p) => fs::read(p).map_err(io_err("read secret", p))?,
                SecretSource::Env(name) => std::env::var(name).unwrap_or_default().into_bytes(),
            };
            let p = s.write(&data, 0o400)?;
            s.secrets.insert(id.clone(), p);
        }
        Ok(s)
    }

    /// Writes `data` to a new file with `mode`, returning its path.
    pub fn write(&mut self, data: &[u8], mode: u32) -> Result<PathBuf, IoError> {
        self.files += 1;
        let p = self.dir.join(format!("f{}", self.files));
        fs::write(&p, data).map_err(io_err("write", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &p))?;
        Ok(p)
    }

    /// A copy of secret `id` with the mount's mode and owner, if the build was given it.
    pub fn secret(
        &mut self,
        id: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Option<PathBuf>, IoError> {
        let Some(src) = self.secrets.get(id).cloned() else {
            return Ok(None);
        };
        let data = fs::read(&src).map_err(io_err("read", &src))?;
        let p = self.write(&data, mode)?;
        chown(&p, Some(uid), Some(gid)).map_err(io_err("chown", &p))?;
        Ok(Some(p))
    }

    /// A fresh empty directory in the scratch dir.
    pub fn dir(&mut self) -> Result<PathBuf, IoError> {
        self.files += 1;
        let p = self.dir.join(format!("d{}", self.files));
        fs::create_dir(&p).map_err(io_err("create", &p))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkits_mount_options() {
        let m = RunMount::parse("type=cache,target=/var/cache/apt,sharing=locked").unwrap();
        assert_eq!(
            m.identity(),
            "--mount=type=cache,target=/var/cache/apt,id=/var/cache/apt,sharing=locked,mode=755,uid=0,gid=0"
        );
        let m = RunMount::parse("type=secret,id=tok").unwrap();
        assert!(
            matches!(&m, RunMount::Secret { target, mode: 0o400, .. } if target == "/run/secrets/tok")
        );
        let m = RunMount::parse("target=/src,rw").unwrap();
        assert!(matches!(&m, RunMount::Bind { source, rw: true, from: None, .. } if source == "/"));
        assert!(matches!(
            RunMount::parse("type=tmpfs,dst=/t,size=1m").unwrap(),
            RunMount::Tmpfs {
                size: Some(1048576),
                ..
            }
        ));
        assert!(
            matches!(RunMount::parse("type=ssh").unwrap(), RunMount::Ssh { ref target, .. } if target == "/run/buildkit/ssh_agent.0")
        );
        for bad in [
            "type=cache",
            "type=nfs,target=/x",
            "type=cache,target=/x,sharing=x",
            "type=bind,target=/x,bogus=1",
        ] {
            assert!(RunMount::parse(bad).is_err(), "{bad}");
        }
    }
}
