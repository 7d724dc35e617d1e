//! RUN steps: the parent state mounted with a fresh upper directory ([`Stacks::mount`]), the
//! command run in it by the runtime, and the upper directory turned into the step's layer.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rimg_fs::error::{io_err, IoError};
use rimg_fs::union::{NodeKind, UnionTree};
use rimg_fs::upper::{upper_changes, LayerOptions, RUNTIME_INJECTED};
use rimg_fs::Digest;

use super::BuildError;
use crate::image::commit::{layers_tree, store_upper_layer, CommitError};
use crate::image::{ImageConfig, Images};
use crate::mount::{MountRequest, MountedStack, Stacks};
use crate::runtime::{run_in_rootfs_with_etc, Network, ProcessSpec, RuntimeError};

/// What a RUN step executes.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The command line (shell form already wrapped in the shell).
    pub argv: Vec<String>,
    /// The environment: the image's Env, then build args not overridden by it.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user (`name`, `uid`, `uid:gid`), empty for root.
    pub user: String,
    /// The command as Docker reports a failure (`/bin/sh -c false`).
    pub shown: String,
    /// Timestamps in the layer are clamped to this (seconds since the epoch).
    pub epoch: i64,
    /// `RUN --network=none`: only a loopback interface (else the host's network).
    pub no_network: bool,
    /// `RUN --network=…` (else the build's `--network`).
    pub network: Option<BuildNetwork>,
}

/// The network of RUN steps: `rimg build --network` and `RUN --network`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildNetwork {
    /// The default bridge (as Docker: outbound traffic is NAT'ed).
    #[default]
    Default,
    /// The host's network namespace.
    Host,
    /// Only a loopback interface.
    None,
}

impl std::str::FromStr for BuildNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" | "bridge" => Ok(BuildNetwork::Default),
            "host" => Ok(BuildNetwork::Host),
            "none" => Ok(BuildNetwork::None),
            other => Err(format!(
                "network {other:?} is not supported for builds (use default, host or none)"
            )),
        }
    }
}

/// Executes RUN steps.
pub trait Runner {
    /// Runs `req` on the state `parent` and returns the layer of its changes (`None` when it
    /// changed nothing).
    fn run(
        &self,
        images: &Images,
        parent: &ImageConfig,
        req: &RunRequest,
    ) -> Result<Option<Digest>, BuildError>;
}

/// Runs RUN steps on a `rimgfs` mount of the parent state: the state is written as an
/// unlisted manifest (found by its digest), mounted with a fresh upper directory under
/// `rimg/build/`, the command runs in it, the mount comes down, and the upper directory
/// becomes the layer (runtime-injected paths left out, mtimes clamped to the build's epoch).
/// Whatever happens, the mount and the directories are removed.
#[derive(Clone, Debug)]
pub struct MountRunner {
    quiet: bool,
    network: BuildNetwork,
}

impl MountRunner {
    /// A runner on the store `run` is given; `quiet` discards the commands' output.
    pub fn new(quiet: bool) -> Self {
        MountRunner {
            quiet,
            network: BuildNetwork::Default,
        }
    }

    /// RUN steps without their own `--network` use `network` (`rimg build --network`).
    pub fn with_network(mut self, network: BuildNetwork) -> Self {
        self.network = network;
        self
    }
}

/// Unmounts and removes a step's directories when dropped.
struct Sandbox<'a> {
    dir: PathBuf,
    mounted: Option<MountedStack<'a>>,
}

impl Sandbox<'_> {
    fn unmount(&mut self) -> Result<(), String> {
        match self.mounted.take() {
            Some(m) => m
                .unmount()
                .map(drop)
                .map_err(|e| format!("rimgfs umount: {}", crate::error_line(&e))),
            None => Ok(()),
        }
    }
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        let _ = self.unmount();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

static SANDBOXES: AtomicU64 = AtomicU64::new(0);

impl Runner for MountRunner {
    fn run(
        &self,
        images: &Images,
        parent: &ImageConfig,
        req: &RunRequest,
    ) -> Result<Option<Digest>, BuildError> {
        let bytes = serde_json::to_vec(parent)
            .map_err(|e| IoError::new("serialize", "config", io::Error::other(e)))?;
        let image = images.write_image(&bytes)?;
        let dir = images.store().private_dir().join("build").join(format!(
            "{}-{}",
            std::process::id(),
            SANDBOXES.fetch_add(1, Ordering::Relaxed)
        ));
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let mut sandbox = Sandbox {
            dir: dir.clone(),
            mounted: None,
        };
        let mount = MountRequest {
            image: image.manifest_digest.to_string(),
            mountpoint: rootfs.clone(),
            upper: Some(upper.clone()),
            work: Some(work.clone()),
            ..Default::default()
        };
        let mounted = Stacks::new(images).mount(&mount).map_err(|e| {
            IoError::new(
                "mount",
                rootfs.clone(),
                io::Error::other(crate::error_line(&e)),
            )
        })?;
        sandbox.mounted = Some(mounted);
        let code = {
            let _silence = self
                .quiet
                .then(Silence::new)
                .transpose()
                .map_err(io_err("redirect output", Path::new("/dev/null")))?;
            let network = req.network.unwrap_or(self.network);
            run_command(images, &rootfs, &dir, req, network)?
        };
        sandbox
            .unmount()
            .map_err(|m| IoError::new("unmount", rootfs.clone(), io::Error::other(m)))?;
        if code != 0 {
            return Err(BuildError::RunFailed {
                command: req.shown.clone(),
                code,
            });
        }
        let lower = layers_tree(images, &parent.rootfs.diff_ids)?;
        drop_injected(&upper, &lower).map_err(io_err("clean", &upper))?;
        let opts = LayerOptions {
            ignore: RUNTIME_INJECTED.iter().map(|s| s.to_string()).collect(),
            mtime_clamp: Some(req.epoch),
            ..Default::default()
        };
        let changes = upper_changes(&upper, &lower, &opts).map_err(CommitError::from)?;
        if changes.is_empty() {
            return Ok(None);
        }
        let layer = store_upper_layer(images, &upper, &lower, &opts)?;
        Ok(Some(layer.digest))
    }
}

/// A RUN step on the default bridge: detached when dropped.
struct BridgeStep {
    dir: PathBuf,
    id: String,
    attached: crate::network::attach::Attached,
}

impl BridgeStep {
    fn attach(images: &Images, dir: &Path, hostname: &str) -> Result<Self, BuildError> {
        use crate::network::attach::{attach, Who};
        let id = crate::random::hex_id(32)
            .map_err(|e| IoError::new("network", dir, io::Error::other(crate::error_line(&e))))?;
        let etc = dir.join("etc");
        fs::create_dir_all(&etc).map_err(io_err("create", &etc))?;
        crate::runtime::write_etc_files(&etc, hostname, false).map_err(io_err("write", &etc))?;
        let nets = crate::network::Networks::open(&images.store().private_dir());
        let spec = crate::network::NetSpec {
            networks: vec![crate::network::DEFAULT_NETWORK.into()],
            ..Default::default()
        };
        let who = Who {
            dir,
            id: &id,
            name: hostname,
            hostname,
        };
        let attached = attach(&nets, &who, &spec)
            .map_err(|e| IoError::new("network", dir, io::Error::other(crate::error_line(&e))))?;
        Ok(BridgeStep {
            dir: dir.to_path_buf(),
            id,
            attached,
        })
    }
}

impl Drop for BridgeStep {
    fn drop(&mut self) {
        crate::network::attach::detach(&self.dir, &self.id);
    }
}

/// Removes from a RUN's upper dir what the runtime made only to mount over (`/etc/hosts`,
/// `/proc`, … where the image has none) and the directories copied up just to hold them, so
/// the step's layer holds what the command did and nothing else.
fn drop_injected(upper: &Path, lower: &UnionTree) -> io::Result<()> {
    let mut parents: Vec<&str> = Vec::new();
    for injected in RUNTIME_INJECTED {
        let rel = injected.trim_start_matches('/');
        if lower.resolve(rel.as_bytes()).is_some() {
            continue;
        }
        let p = upper.join(rel);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p)?,
            Ok(_) => fs::remove_file(&p)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            parents.push(parent);
        }
    }
    for parent in parents {
        let p = upper.join(parent);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        let empty = meta.is_dir() && fs::read_dir(&p)?.next().is_none();
        let opaque = xattr_is_set(&p);
        let same = lower
            .resolve(parent.as_bytes())
            .and_then(|i| lower.node(i))
            .is_some_and(|n| {
                n.kind == NodeKind::Dir
                    && n.mode == (meta.mode() & 0o7777)
                    && n.uid == meta.uid()
                    && n.gid == meta.gid()
            });
        if empty && !opaque && same {
            fs::remove_dir(&p)?;
        }
    }
    Ok(())
}

/// Whether overlayfs marked the directory opaque.
fn xattr_is_set(p: &Path) -> bool {
    let mut buf = [0u8; 8];
    rustix::fs::getxattr(p, rimg_fs::upper::OPAQUE_XATTR, &mut buf[..]).is_ok()
}

/// Points stdout and stderr at `/dev/null` until dropped (`build -q` hides RUN output).
struct Silence {
    saved_out: OwnedFd,
    saved_err: OwnedFd,
}

impl Silence {
    fn new() -> io::Result<Self> {
        let null = fs::OpenOptions::new().write(true).open("/dev/null")?;
        let saved_out = nix::unistd::dup(io::stdout()).map_err(io::Error::from)?;
        let saved_err = nix::unistd::dup(io::stderr()).map_err(io::Error::from)?;
        nix::unistd::dup2_stdout(&null).map_err(io::Error::from)?;
        nix::unistd::dup2_stderr(&null).map_err(io::Error::from)?;
        Ok(Silence {
            saved_out,
            saved_err,
        })
    }
}

impl Drop for Silence {
    fn drop(&mut self) {
        let _ = nix::unistd::dup2_stdout(&self.saved_out);
        let _ = nix::unistd::dup2_stderr(&self.saved_err);
    }
}

/// Runs the command in the mounted root with the built-in runtime and returns its exit code.
fn run_command(
    images: &Images,
    rootfs: &Path,
    dir: &Path,
    req: &RunRequest,
    network: BuildNetwork,
) -> Result<i32, BuildError> {
    let network = if req.no_network {
        BuildNetwork::None
    } else {
        network
    };
    let mut spec = ProcessSpec {
        argv: req.argv.clone(),
        env: req.env.clone(),
        cwd: req.cwd.clone(),
        user: req.user.clone(),
        hostname: "buildkitsandbox".into(),
        tty: false,
        interactive: false,
        network: match network {
            BuildNetwork::None => Network::None,
            BuildNetwork::Host => Network::Host,
            BuildNetwork::Default => Network::Namespace,
        },
        netns: None,
    };
    // The default bridge: the step's own namespace and address, its /etc files in `dir`.
    let bridge = match network {
        BuildNetwork::Default => Some(BridgeStep::attach(images, dir, &spec.hostname)?),
        _ => None,
    };
    spec.netns = bridge.as_ref().map(|b| b.attached.netns.clone());
    let etc = bridge.as_ref().map(|b| b.dir.join("etc"));
    run_in_rootfs_with_etc(rootfs, &spec, etc.as_deref()).map_err(|e| match e {
        // The command could not start (not found, not executable): Docker reports it as
        // the RUN failing with the runtime's code.
        RuntimeError::Start { code, message } => BuildError::RunFailed {
            command: format!("{} ({message})", req.shown),
            code,
        },
        RuntimeError::Interrupted(sig) => BuildError::Interrupted(sig),
        other => IoError::new("run", rootfs, io::Error::other(crate::error_line(&other))).into(),
    })
}
