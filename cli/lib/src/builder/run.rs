//! RUN steps: the parent state mounted with a fresh upper directory ([`Stacks::mount`]), the
//! command run in it by the runtime, and the upper directory turned into the step's layer.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rimg_fs::error::{io_err, IoError};
use rimg_fs::store::{ContentStore, Lease, StoreError};
use rimg_fs::union::{NodeKind, UnionTree};
use rimg_fs::upper::{upper_changes, LayerOptions, RUNTIME_INJECTED};
use rimg_fs::Digest;

use super::mounts::{Sharing, StepMount};
use super::BuildError;
use crate::image::commit::{layers_tree, store_upper_layer, CommitError};
use crate::image::{ImageConfig, Images};
use crate::mount::{MountRequest, MountedStack, Stacks};
use crate::runtime::mounts::{resolve_target, MountKind, MountSpec};
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
    /// `RUN --mount`s (and a heredoc script), made inside the step's container; none of
    /// them ends up in the layer.
    pub mounts: Vec<StepMount>,
    /// `RUN --network=…` (else the build's `--network`).
    pub network: Option<BuildNetwork>,
}

/// The build's lease on the store: garbage collection waits for it, so what the build has
/// written but no image names yet survives. A RUN step lets go of it while its command runs
/// (the mounted state is pinned, `mount-<id>`, and the layers of finished stages by the
/// build's progress pin), so a long RUN does not hold `image prune` off; the step takes it
/// again before it unmounts and writes its layer.
pub struct BuildLease<'s> {
    store: &'s ContentStore,
    lease: Option<Lease>,
}

impl<'s> BuildLease<'s> {
    /// A lease on `store`, not held until [`BuildLease::take`].
    pub fn new(store: &'s ContentStore) -> Self {
        BuildLease { store, lease: None }
    }

    /// Takes the lease unless it is held (waiting while garbage is collected).
    pub fn take(&mut self) -> Result<(), StoreError> {
        if self.lease.is_none() {
            self.lease = Some(self.store.lease()?);
        }
        Ok(())
    }

    /// Lets go of the lease: only while everything the build needs is pinned.
    pub fn release(&mut self) {
        self.lease = None;
    }
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
    /// changed nothing). Called with `lease` held; it may let go of it while the command
    /// runs, once the state is mounted (pinned), and holds it again when it returns.
    fn run(
        &self,
        images: &Images,
        parent: &ImageConfig,
        req: &RunRequest,
        lease: &mut BuildLease<'_>,
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
    /// States `RUN --mount=type=bind,from=` mounts, unmounted with the rootfs.
    sources: Vec<MountedStack<'a>>,
    /// Cache mounts' locks, held while the command runs.
    locks: Vec<nix::fcntl::Flock<fs::File>>,
}

impl Sandbox<'_> {
    fn unmount(&mut self) -> Result<(), String> {
        for m in self.sources.drain(..) {
            let _ = m.unmount();
        }
        self.locks.clear();
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

impl<'a> Sandbox<'a> {
    /// The runtime's mounts for the step's `RUN --mount`s: states mounted, cache dirs
    /// locked.
    fn mount_specs(
        &mut self,
        images: &'a Images,
        mounts: &[StepMount],
    ) -> Result<Vec<MountSpec>, BuildError> {
        let mut out = Vec::new();
        for (n, m) in mounts.iter().enumerate() {
            let target = m.target().to_string();
            let bind = |source: PathBuf, readonly: bool| MountSpec {
                kind: MountKind::Bind,
                source,
                target: target.clone(),
                readonly,
                options: Vec::new(),
            };
            let spec = match m {
                StepMount::Host {
                    source, read_only, ..
                } => bind(source.clone(), *read_only),
                StepMount::Tmpfs { size, .. } => MountSpec {
                    kind: MountKind::Tmpfs,
                    source: PathBuf::new(),
                    target: target.clone(),
                    readonly: false,
                    options: size.map(|s| format!("size={s}")).into_iter().collect(),
                },
                StepMount::Cache {
                    dir,
                    sharing,
                    read_only,
                    ..
                } => {
                    let source = self.lock_cache(dir, *sharing, n)?;
                    bind(source, *read_only)
                }
                StepMount::State {
                    config, source, rw, ..
                } => {
                    let root = self.mount_state(images, config, *rw, n)?;
                    let rel = resolve_target(&root, source).map_err(io_err("resolve", &root))?;
                    bind(root.join(rel), !*rw)
                }
            };
            out.push(spec);
        }
        Ok(out)
    }

    /// Locks a cache dir for the step: `locked` waits for other builds, `shared` shares, and
    /// `private` takes a fresh directory when another build holds it.
    fn lock_cache(
        &mut self,
        dir: &Path,
        sharing: Sharing,
        n: usize,
    ) -> Result<PathBuf, BuildError> {
        use nix::fcntl::{Flock, FlockArg};
        let lock_path = dir.with_extension("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let arg = match sharing {
            Sharing::Shared => FlockArg::LockShared,
            Sharing::Locked => FlockArg::LockExclusive,
            Sharing::Private => FlockArg::LockExclusiveNonblock,
        };
        match Flock::lock(file, arg) {
            Ok(locked) => {
                self.locks.push(locked);
                Ok(dir.to_path_buf())
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if sharing == Sharing::Private => {
                let fresh = self.dir.join(format!("cache-{n}"));
                fs::create_dir_all(&fresh).map_err(io_err("create", &fresh))?;
                Ok(fresh)
            }
            Err((_, e)) => Err(IoError::new("lock", &lock_path, io::Error::from(e)).into()),
        }
    }

    /// Mounts a build state for a `from=` bind (with a throw-away upper dir when `rw`).
    fn mount_state(
        &mut self,
        images: &'a Images,
        config: &ImageConfig,
        rw: bool,
        n: usize,
    ) -> Result<PathBuf, BuildError> {
        let bytes = serde_json::to_vec(config)
            .map_err(|e| IoError::new("serialize", "config", io::Error::other(e)))?;
        let image = images.write_image(&bytes)?;
        let root = self.dir.join(format!("from-{n}"));
        fs::create_dir_all(&root).map_err(io_err("create", &root))?;
        let mut req = MountRequest {
            image: image.manifest_digest.to_string(),
            mountpoint: root.clone(),
            read_only: !rw,
            ..Default::default()
        };
        if rw {
            let (u, w) = (
                self.dir.join(format!("from-{n}-upper")),
                self.dir.join(format!("from-{n}-work")),
            );
            for d in [&u, &w] {
                fs::create_dir_all(d).map_err(io_err("create", d))?;
            }
            req.upper = Some(u);
            req.work = Some(w);
        }
        let mounted = mount_stack(images, &req, &root)?;
        self.sources.push(mounted);
        Ok(root)
    }
}

static SANDBOXES: AtomicU64 = AtomicU64::new(0);

/// Mounts `req` (its stack at `at`), a mount failure being the step's.
fn mount_stack<'i>(
    images: &'i Images,
    req: &MountRequest,
    at: &Path,
) -> Result<MountedStack<'i>, BuildError> {
    Stacks::new(images)
        .mount(req)
        .map_err(|e| IoError::new("mount", at, io::Error::other(crate::error_line(&e))).into())
}

impl Runner for MountRunner {
    fn run(
        &self,
        images: &Images,
        parent: &ImageConfig,
        req: &RunRequest,
        lease: &mut BuildLease<'_>,
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
            sources: Vec::new(),
            locks: Vec::new(),
        };
        let mount = MountRequest {
            image: image.manifest_digest.to_string(),
            mountpoint: rootfs.clone(),
            upper: Some(upper.clone()),
            work: Some(work.clone()),
            ..Default::default()
        };
        let mounted = mount_stack(images, &mount, &rootfs)?;
        sandbox.mounted = Some(mounted);
        let specs = sandbox.mount_specs(images, &req.mounts)?;
        // The mount points as they resolve in the rootfs, to take out of the layer after.
        let mut points = Vec::new();
        for m in &specs {
            let rel = resolve_target(&rootfs, &m.target).map_err(io_err("resolve", &rootfs))?;
            points.push(rel.to_string_lossy().into_owned());
        }
        // The state is pinned by its mount now: no lease while the command runs.
        lease.release();
        let code = {
            let _silence = self
                .quiet
                .then(Silence::new)
                .transpose()
                .map_err(io_err("redirect output", Path::new("/dev/null")))?;
            let network = req.network.unwrap_or(self.network);
            run_command(images, &rootfs, &dir, req, network, specs)
        };
        // Held again before the mount (and its pin) goes and the layer is written.
        lease.take()?;
        let code = code?;
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
        let mut made: Vec<String> = RUNTIME_INJECTED
            .iter()
            .map(|p| p.trim_start_matches('/').to_string())
            .collect();
        made.extend(points);
        drop_mount_points(&upper, &lower, &made).map_err(io_err("clean", &upper))?;
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

/// Removes from a RUN's upper dir the mount points made only to mount over (`/etc/hosts`,
/// `/proc`, a `RUN --mount` target, … where the image has none) and the directories made or
/// copied up just to hold them, so the step's layer holds what the command did and nothing
/// else. `made` are paths relative to the root.
fn drop_mount_points(upper: &Path, lower: &UnionTree, made: &[String]) -> io::Result<()> {
    let mut parents: Vec<&str> = Vec::new();
    for rel in made {
        let rel = rel.trim_matches('/');
        if rel.is_empty() || lower.resolve(rel.as_bytes()).is_some() {
            continue;
        }
        let p = upper.join(rel);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p)?,
            Ok(_) => fs::remove_file(&p)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        let mut at = rel;
        while let Some((parent, _)) = at.rsplit_once('/') {
            parents.push(parent);
            at = parent;
        }
    }
    // Deepest first, so a directory emptied by removing its child goes too.
    parents.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parents.dedup();
    for parent in parents {
        let p = upper.join(parent);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        let empty = meta.is_dir() && fs::read_dir(&p)?.next().is_none();
        let opaque = xattr_is_set(&p);
        let same = match lower.resolve(parent.as_bytes()).and_then(|i| lower.node(i)) {
            // A directory the runtime made: nothing of the command's is in it.
            None => true,
            Some(n) => {
                n.kind == NodeKind::Dir
                    && n.mode == (meta.mode() & 0o7777)
                    && n.uid == meta.uid()
                    && n.gid == meta.gid()
            }
        };
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
    mounts: Vec<MountSpec>,
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
        mounts,
        ..ProcessSpec::default()
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
