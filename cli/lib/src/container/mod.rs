//! Containers: what to run (an image, a process), its copy-on-write upper dir, and its life
//! (created → running → exited), one directory each:
//!
//! ```text
//! $RIMG_ROOT/rimg/containers/
//!   .lock                 held while a container is created or renamed (names stay unique)
//!   <64-hex id>/          0700: only root reaches a container's rootfs from the host
//!     config.json         what to run: image id, process spec, name, --rm   (rename rewrites it)
//!     state.json          status, pids, exit code, start and finish times (replaced atomically)
//!     upper/ work/        overlayfs upper and work dirs: the container's changes
//!     rootfs/             the mount point of image + upper while the container runs
//!     etc/                hosts, hostname, resolv.conf, bind-mounted into the container
//!     ctr.log             its output, Docker's json-file format
//!     monitor.lock        flock held by the live monitor process
//!     attach.sock         the monitor's socket for `attach` clients (detached containers)
//!     stopped-by-user     present when the user stopped it: no restart (see `restart`)
//! ```
//!
//! Architecture Invariant: a container is running only while its monitor holds
//! `monitor.lock`; the monitor owns the rootfs mount and unmounts it before it releases the
//! lock. A container whose lock is free but whose state says running lost its monitor
//! (killed): it shows as `Dead` (or still running if its process lives) and `rm -f` cleans
//! it up.

pub mod attach;
pub mod cp;
pub mod export;
pub mod filter;
mod freeze;
pub mod inspect;
pub mod log;
pub mod monitor;
pub mod names;
pub mod prune;
pub mod rename;
pub mod restart;
mod state;
pub mod wait;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rimg_fs::error::{io_err, IoError};
use rimg_fs::overlay;
use rimg_fs::Digest;
use serde::{Deserialize, Serialize};

use crate::image::{Image, ImageError, Images, CONTAINER_PIN_PREFIX};
use crate::mount::{MountRequest, MountedStack, StackError, Stacks};
use crate::network::{attach::detach as detach_networks, NetSpec, Networks};
use crate::random::{self, RandomError};
use crate::runtime::{write_etc_files, Network, ProcessSpec};
use crate::units::rfc3339_nanos_now;

/// Errors of the container store.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this name or id (prefix).
    #[error("No such container: {0}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("multiple containers match {0:?}: use more of the id")]
    Ambiguous(String),
    /// The name is in use.
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameTaken {
        /// The name.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// Not a valid container name.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The operation needs a stopped container.
    #[error("cannot remove container \"/{0}\": container is running: stop the container before removing or force remove")]
    Running(String),
    /// Mounting or unmounting the container's rootfs failed.
    #[error("{0}")]
    Mount(String),
    /// The system's random source failed (naming a new container).
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A container's files could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A container's JSON is malformed.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A rename Docker refuses (same name, empty name).
    #[error("{0}")]
    Rename(String),

    /// The container's cgroup refused a change (freezing, limits).
    #[error("{0}")]
    Cgroup(String),
}

/// Result type of the container store.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// What a container runs: fixed when it is created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// 64 hex digits.
    pub id: String,
    /// Its name.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The image as the user named it (`busybox`, `busybox:latest`, an id).
    pub image: String,
    /// The image id (digest of its config).
    pub image_id: Digest,
    /// The image's manifest.
    pub image_manifest: Digest,
    /// The process.
    pub process: ProcessSpec,
    /// Remove the container when it exits (`--rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// The image's STOPSIGNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Its volumes, bind mounts and tmpfs mounts (also in `process.mounts`, as the runtime
    /// makes them); what `inspect` shows as `Mounts` and what marks a volume in use.
    #[serde(default)]
    pub mounts: Vec<crate::volume::ContainerMount>,
    /// `--restart`: what the monitor does when the container exits.
    #[serde(default)]
    pub restart: restart::RestartPolicy,
    /// Its networks, ports and names (with [`Network::Namespace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetSpec>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL when not given `-t`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
}

/// What is recorded about a container's life.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// `created`, `running` or `exited`.
    pub status: String,
    /// Host pid of the container's pid 1 while running.
    #[serde(default)]
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22), against pid
    /// reuse.
    #[serde(default)]
    pub pid_start: u64,
    /// Pid of the monitor.
    #[serde(default)]
    pub monitor_pid: i32,
    /// The exit code of the last run.
    #[serde(default)]
    pub exit_code: i32,
    /// RFC 3339 start time of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 finish time of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why the last start failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Frozen (its cgroup's freezer) by [`Container::pause`].
    #[serde(default)]
    pub paused: bool,
    /// How many times the monitor restarted the container since it was started
    /// (Docker's `RestartCount`).
    #[serde(default)]
    pub restart_count: u32,
}

/// A container's status as `ps` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Running but frozen.
    Paused,
    /// Exited with this code.
    Exited(i32),
    /// Exited with this code; its monitor waits to restart it (restart policy).
    Restarting(i32),
    /// Its monitor died while it ran; its process is gone too.
    Dead,
}

impl Status {
    /// Docker's state word: `created`, `running`, `paused`, `exited`, `dead`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited(_) => "exited",
            Status::Restarting(_) => "restarting",
            Status::Dead => "dead",
        }
    }

    /// Running, paused or restarting (Docker's `State.Running`).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Status::Running | Status::Paused | Status::Restarting(_)
        )
    }
}

/// One container.
#[derive(Clone, Debug)]
pub struct Container {
    dir: PathBuf,
    store_root: PathBuf,
    /// What it runs.
    pub config: ContainerConfig,
    /// Its recorded state (see [`Container::status`] for the live one).
    pub state: State,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|e| ContainerError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ContainerError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
    Ok(fs::rename(&tmp, path).map_err(io_err("renaming", path))?)
}

/// Opens (creating it) the lock file `path` and takes its exclusive lock, held while the
/// returned file is open.
pub(crate) fn lock_exclusive(path: &Path) -> std::result::Result<File, IoError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))?;
    f.lock().map_err(io_err("locking", path))?;
    Ok(f)
}

/// The start time (clock ticks since boot) of a live process, `None` if it is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest[0] is field 3 (state); starttime is field 22. A zombie counts as gone.
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

impl Container {
    fn load(dir: PathBuf, store_root: &Path) -> Result<Self> {
        let config = read_json(&dir.join("config.json"))?;
        let state = read_json(&dir.join("state.json")).unwrap_or_default();
        Ok(Container {
            dir,
            store_root: store_root.to_path_buf(),
            config,
            state,
        })
    }

    /// Re-reads the recorded state.
    pub fn reload(&mut self) -> Result<()> {
        self.state = read_json(&self.dir.join("state.json"))?;
        Ok(())
    }

    /// Records `state`.
    pub fn save_state(&mut self, state: State) -> Result<()> {
        write_json(&self.dir.join("state.json"), &state)?;
        self.state = state;
        Ok(())
    }

    /// Replaces the container's networks (`network connect`/`disconnect`): the one change
    /// to its config after create.
    pub fn set_net(&mut self, net: NetSpec) -> Result<()> {
        let mut config = self.config.clone();
        config.net = Some(net);
        write_json(&self.dir.join("config.json"), &config)?;
        self.config = config;
        Ok(())
    }

    /// The full id (64 hex digits).
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The first 12 hex digits of the id, as `ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.config.id[..12.min(self.config.id.len())]
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The container's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store the container's image is in.
    pub fn store_root(&self) -> &Path {
        &self.store_root
    }

    /// The overlayfs upper dir: the container's changes to its image (what `diff` lists
    /// and `commit` turns into a layer).
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The overlayfs work dir.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// Where the image + upper dir are mounted while the container runs.
    pub fn rootfs_dir(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The directory with the `/etc` files bind-mounted into the container.
    pub fn etc_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// The container's log (json-file).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("ctr.log")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("monitor.lock")
    }

    /// The image id.
    pub fn image_id(&self) -> &Digest {
        &self.config.image_id
    }

    /// The command line (Entrypoint + Cmd as resolved at create).
    pub fn command(&self) -> &[String] {
        &self.config.process.argv
    }

    /// The process spec.
    pub fn process(&self) -> &ProcessSpec {
        &self.config.process
    }

    /// Whether a monitor holds the container's lock.
    pub fn monitor_alive(&self) -> bool {
        match File::open(self.lock_path()) {
            Ok(f) => match f.try_lock() {
                Ok(()) => false,
                Err(std::fs::TryLockError::WouldBlock) => true,
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    /// Takes the monitor lock (held as long as the returned file is open); `None` if
    /// another monitor holds it.
    pub fn lock_monitor(&self) -> Result<Option<File>> {
        let p = self.lock_path();
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("opening", &p))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(IoError::new("locking", &p, e).into()),
        }
    }

    /// The host pid of the container's pid 1 if it is alive.
    pub fn live_pid(&self) -> Option<Pid> {
        if self.state.status != "running" || self.state.pid <= 0 {
            return None;
        }
        (process_start_time(self.state.pid) == Some(self.state.pid_start))
            .then(|| Pid::from_raw(self.state.pid))
    }

    /// The live status: the recorded one, checked against the monitor and the process.
    pub fn status(&self) -> Status {
        // Each live check only when the recorded state asks for it.
        let monitor =
            matches!(self.state.status.as_str(), "running" | "restarting") && self.monitor_alive();
        let process = !monitor && self.live_pid().is_some();
        Status::from_record(&self.state, monitor, process)
    }

    /// Sends `sig` to the container's pid 1.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self
            .live_pid()
            .ok_or_else(|| ContainerError::NotRunning(self.id().to_string()))?;
        kill(pid, sig).map_err(|e| IoError::new("signalling", &self.dir, io::Error::from(e)).into())
    }

    /// Every process of the container (those in its pid namespace), as `top` lists them;
    /// empty when it is not running.
    pub fn processes(&self) -> Vec<Pid> {
        let Some(pid) = self.live_pid() else {
            return Vec::new();
        };
        let Ok(ns) = fs::read_link(format!("/proc/{pid}/ns/pid")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns) {
                    out.push(Pid::from_raw(p));
                }
            }
        }
        out
    }

    /// Freezes every process of the running container through its cgroup's freezer,
    /// returning once the cgroup is frozen (so its upper dir stays still for `commit`).
    pub fn pause(&mut self) -> Result<()> {
        if !self.status().is_running() {
            return Err(ContainerError::NotRunning(self.id().to_string()));
        }
        freeze::set(self, true)?;
        let mut st = self.state.clone();
        st.paused = true;
        self.save_state(st)
    }

    /// Thaws a paused container.
    pub fn unpause(&mut self) -> Result<()> {
        freeze::set(self, false)?;
        let mut st = self.state.clone();
        st.paused = false;
        self.save_state(st)
    }

    /// Waits up to `timeout` for the container to stop running (its monitor gone, or with
    /// no monitor its process). True if it stopped.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.monitor_alive() && self.live_pid().is_none() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the container's rootfs is mounted (as the mount table says).
    pub fn is_mounted(&self) -> bool {
        overlay::is_mountpoint(&self.rootfs_dir()).unwrap_or(false)
    }

    /// Mounts the image with the container's upper dir at [`Container::rootfs_dir`]: a
    /// read-only FUSE union of the image's layers under kernel overlayfs, unmounted when the
    /// guard is dropped. `images` is the container's store.
    pub fn mount_rootfs<'a>(&self, images: &'a Images) -> Result<MountedStack<'a>> {
        let req = MountRequest {
            image: self.image_id().hex(),
            mountpoint: self.rootfs_dir(),
            upper: Some(self.upper_dir()),
            work: Some(self.work_dir()),
            allow_other: true,
            suid: true,
            dev: true,
            ..Default::default()
        };
        Stacks::new(images).mount(&req).map_err(|e| {
            ContainerError::Mount(format!(
                "mounting image {} for container {}: {}",
                self.image_id().short(),
                self.short_id(),
                crate::error_line(&e)
            ))
        })
    }

    /// Unmounts the rootfs (both layers; also after the FUSE daemon died). A no-op when it
    /// is not mounted.
    pub fn unmount_rootfs(&self) -> Result<()> {
        if !self.is_mounted() {
            return Ok(());
        }
        let images = Images::open(&self.store_root)?;
        Stacks::new(&images)
            .unmount(&self.rootfs_dir())
            .map(drop)
            .or_else(|e| self.unmount_failed(&e))
    }

    /// An unmount of the rootfs that failed with `e`: an error while the rootfs is still
    /// mounted (else someone took it down already).
    fn unmount_failed(&self, e: &StackError) -> Result<()> {
        if !self.is_mounted() {
            return Ok(());
        }
        Err(ContainerError::Mount(format!(
            "unmounting {}: {}",
            self.rootfs_dir().display(),
            crate::error_line(e)
        )))
    }

    /// After its monitor died: kills what is left of the container, unmounts its rootfs and
    /// records it as exited (137, as a kill would give). A no-op while a monitor lives.
    pub fn clean_up_after_monitor(&mut self) -> Result<()> {
        if self.monitor_alive() {
            return Ok(());
        }
        for p in self.processes() {
            let _ = kill(p, Signal::SIGKILL);
        }
        if let Some(pid) = self.live_pid() {
            let _ = kill(pid, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.live_pid().is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.unmount_rootfs()?;
        detach_networks(&self.dir, self.id());
        if self.state.status == "running" || self.state.status == "restarting" {
            let mut st = self.state.clone();
            st.status = "exited".into();
            st.exit_code = 137;
            st.paused = false;
            st.finished_at = Some(rfc3339_nanos_now());
            self.save_state(st)?;
        }
        Ok(())
    }
}

/// What `create` needs.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The image, resolved.
    pub image: Image,
    /// How the user named it.
    pub image_name: String,
    /// `--name`, or a generated one.
    pub name: Option<String>,
    /// The process (hostname empty = the short id).
    pub process: ProcessSpec,
    /// `--rm`.
    pub auto_remove: bool,
    /// Its mounts ([`crate::volume::plan_mounts`]); `process.mounts` should be made from
    /// them.
    pub mounts: Vec<crate::volume::ContainerMount>,
    /// `--restart`.
    pub restart: restart::RestartPolicy,
    /// Networks, ports and names (with [`Network::Namespace`]).
    pub net: Option<NetSpec>,
    /// `--stop-signal`: overrides the image's STOPSIGNAL.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<u64>,
}

/// The containers of one store.
#[derive(Clone, Debug)]
pub struct Containers {
    dir: PathBuf,
    store_root: PathBuf,
    images: Images,
}

impl Containers {
    /// The containers of the store `images` is open on.
    pub fn open(images: &Images) -> Result<Self> {
        let dir = images.store().private_dir().join("containers");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(Containers {
            dir,
            store_root: images.store().root().to_path_buf(),
            images: images.clone(),
        })
    }

    /// The networks of the store.
    pub fn networks(&self) -> Networks {
        Networks::open(&self.images.store().private_dir())
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 64 || !name.bytes().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            if let Ok(c) = Container::load(e.path(), &self.store_root) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(out)
    }

    /// Finds a container by full id, name, or unique id prefix (Docker's order).
    pub fn resolve(&self, key: &str) -> Result<Container> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.id() == key) {
            return Ok(c.clone());
        }
        if let Some(c) = all.iter().find(|c| c.name() == key) {
            return Ok(c.clone());
        }
        if !key.is_empty() && key.bytes().all(|c| c.is_ascii_hexdigit()) {
            let mut found = all.into_iter().filter(|c| c.id().starts_with(key));
            if let Some(c) = found.next() {
                if found.next().is_some() {
                    return Err(ContainerError::Ambiguous(key.to_string()));
                }
                return Ok(c);
            }
        }
        Err(ContainerError::NotFound(key.to_string()))
    }

    /// Creates a container: its directory, upper and work dirs, `/etc` files, config, and
    /// a pin on its image (so `rmi` refuses it and GC keeps it).
    pub fn create(&self, req: CreateRequest) -> Result<Container> {
        let _lock = self.lock_names()?;
        let existing = self.list()?;
        let name = match req.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_string();
                if !names::is_valid(&n) {
                    return Err(ContainerError::InvalidName(n));
                }
                if let Some(c) = existing.iter().find(|c| c.name() == n) {
                    return Err(ContainerError::NameTaken {
                        name: n,
                        id: c.id().to_string(),
                    });
                }
                n
            }
            None => loop {
                let n = names::generate(random::bytes::<2>()?);
                if !existing.iter().any(|c| c.name() == n) {
                    break n;
                }
                let n2 = format!("{n}{}", random::bytes::<1>()?[0] % 10);
                if !existing.iter().any(|c| c.name() == n2) {
                    break n2;
                }
            },
        };
        let id = random::hex_id(32)?;
        let dir = self.dir.join(&id);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        // Only root reaches the container's upper dir and mounted rootfs from the host.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", &dir))?;
        }
        for d in ["upper", "work", "rootfs", "etc"] {
            let p = dir.join(d);
            fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        let mut process = req.process;
        if process.hostname.is_empty() {
            process.hostname = id[..12].to_string();
        }
        // `container_env` was given no hostname before the id existed.
        for kv in process.env.iter_mut() {
            if kv == "HOSTNAME=" {
                *kv = format!("HOSTNAME={}", process.hostname);
            }
        }
        write_etc_files(
            &dir.join("etc"),
            &process.hostname,
            process.network == Network::Host,
        )
        .map_err(io_err("writing", &dir.join("etc")))?;
        self.images.pin(
            &format!("{CONTAINER_PIN_PREFIX}{id}"),
            &[req.image.manifest_digest, req.image.id],
        )?;
        let config = ContainerConfig {
            id: id.clone(),
            name,
            created: rfc3339_nanos_now(),
            image: req.image_name,
            image_id: req.image.id,
            image_manifest: req.image.manifest_digest,
            process,
            auto_remove: req.auto_remove,
            stop_signal: req
                .stop_signal
                .or_else(|| req.image.config.config.stop_signal.clone()),
            mounts: req.mounts,
            restart: req.restart,
            net: req.net,
            stop_timeout: req.stop_timeout,
        };
        write_json(&dir.join("config.json"), &config)?;
        let state = State {
            status: "created".into(),
            ..Default::default()
        };
        write_json(&dir.join("state.json"), &state)?;
        Ok(Container {
            dir,
            store_root: self.store_root.clone(),
            config,
            state,
        })
    }

    /// Removes a stopped container: unmounts its rootfs if still mounted, deletes its
    /// directory (upper dir, log…) and its image pin.
    pub fn remove(&self, c: &Container) -> Result<()> {
        if c.monitor_alive() || c.live_pid().is_some() {
            return Err(ContainerError::Running(c.name().to_string()));
        }
        // Left behind when the monitor was killed.
        monitor::remove_cgroup(c);
        c.unmount_rootfs()?;
        detach_networks(c.dir(), c.id());
        self.images
            .unpin(&format!("{CONTAINER_PIN_PREFIX}{}", c.id()))?;
        match fs::remove_dir_all(c.dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new("removing", c.dir(), e).into()),
        }
    }
}
