//! Registries: pull and push images through the OCI distribution API v2, as Docker and skopeo
//! do.
//!
//! [`client`] speaks HTTP to one registry (scheme discovery, the auth challenge, blob and
//! manifest requests, uploads); [`auth`] keeps credentials in a Docker-compatible `auth.json`
//! and answers challenges; [`pull`] and [`push`] move images; [`sources`] remembers where each
//! layer's compressed blob is known to live, so a push can skip or mount it.
//!
//! Architecture Invariant: a pull publishes nothing until the manifest, the config and every
//! layer are fetched and verified (blob digest and size while streaming, diff_id after
//! decompression). Layers are staged in `rimg/tmp/` as they arrive, exactly as `load` does.

pub mod auth;
pub mod client;
pub mod pull;
pub mod push;
pub mod sources;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use rimg_fs::error::IoError;
use rimg_fs::store::StoreError;
use rimg_fs::Digest;

use crate::image::config::host_arch;
use crate::image::{ImageError, Reference};

/// The registry a reference without a domain names, as Docker resolves it.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The host that serves the API for [`DEFAULT_REGISTRY`].
pub const DEFAULT_REGISTRY_API: &str = "registry-1.docker.io";
/// The largest manifest or index rimg reads (the limit distribution itself enforces).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest image config rimg reads.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image model failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry could not be reached at all.
    #[error("cannot reach registry {host}: {message}")]
    Connect {
        /// The registry.
        host: String,
        /// Why.
        message: String,
    },
    /// A request failed in transit (connection reset, registry gone).
    #[error("{what}: {message}")]
    Transport {
        /// What was being fetched or sent.
        what: String,
        /// Why.
        message: String,
    },
    /// The registry wants credentials rimg does not have, or refused the ones it has.
    #[error("{host}: {message}")]
    Unauthorized {
        /// The registry.
        host: String,
        /// What the registry said, and what to do.
        message: String,
    },
    /// The registry answered with an error status.
    #[error("{what}: {status} {message}")]
    Status {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages.
        message: String,
    },
    /// The manifest or repository does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// A document is larger than rimg reads.
    #[error("{what} is over the {limit}-byte limit")]
    TooLarge {
        /// The document.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Content did not hash to the digest it was named by.
    #[error("{what}: digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch {
        /// The blob or manifest.
        what: String,
        /// The digest it was named by.
        expected: Digest,
        /// What its bytes hash to.
        actual: Digest,
    },
    /// A blob's length differs from its descriptor's size.
    #[error("{what}: size mismatch: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// A layer's uncompressed digest differs from the config's diff_id.
    #[error("layer {layer}: diff_id mismatch: the image config lists {expected}, the uncompressed layer is {actual}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The config's diff_id.
        expected: Digest,
        /// The uncompressed digest.
        actual: Digest,
    },
    /// A media type rimg does not handle.
    #[error("unsupported {what} media type {media_type:?}")]
    UnsupportedMediaType {
        /// Manifest, config or layer.
        what: &'static str,
        /// The media type.
        media_type: String,
    },
    /// A manifest list has no image for the wanted platform.
    #[error("no image for {wanted} in the manifest list (it has: {available})")]
    NoPlatform {
        /// The wanted platform.
        wanted: Platform,
        /// The platforms it has.
        available: String,
    },
    /// A manifest, index or config is malformed.
    #[error("{what}: {message}")]
    BadDocument {
        /// The document.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A layer could not be read (bad compressed stream, bad tar).
    #[error("layer {layer}: {message}")]
    BadLayer {
        /// The layer blob.
        layer: Digest,
        /// Why.
        message: String,
    },
    /// `--platform` is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    BadPlatform(String),
    /// The credentials file is unreadable or malformed.
    #[error("{path}: {message}")]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `docker-credential-*` helper named in a config file failed.
    #[error("credential helper {helper}: {message}")]
    CredentialHelper {
        /// The program.
        helper: String,
        /// What went wrong.
        message: String,
    },
    /// I/O outside the store.
    #[error(transparent)]
    Io(#[from] IoError),
    /// An upload session the registry no longer knows after a failed request (distribution
    /// drops one whose `PATCH` broke off midway): the blob has to go again from the start.
    #[error("{what}: the registry dropped the upload after a failure ({message})")]
    UploadLost {
        /// The blob.
        what: String,
        /// What the registry said.
        message: String,
    },
    /// `RIMG_REGISTRY_TIMEOUT` is not a duration.
    #[error("RIMG_REGISTRY_TIMEOUT={0:?} is not a duration (e.g. 60, 90s, 2m, 500ms)")]
    BadTimeout(String),
    /// Another worker failed first; this one stopped.
    #[error("cancelled")]
    Cancelled,
}

impl RegistryError {
    /// Whether another attempt may succeed: the connection failed, or the registry answered
    /// 5xx or 429.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } | RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Result type of registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// An image platform: `linux/amd64`, `linux/arm64/v8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// CPU architecture, in Go's names (`amd64`, `arm64`).
    pub architecture: String,
    /// Architecture variant (`v8`), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform.
    pub fn host() -> Self {
        Platform {
            os: "linux".into(),
            architecture: host_arch().into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(RegistryError::BadPlatform(s.to_string())),
        }
    }

    /// Whether an index entry's platform fields satisfy this one (no variant asked for means
    /// any variant).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && self
                .variant
                .as_deref()
                .is_none_or(|v| variant == Some(v) || (v == "v8" && variant.is_none()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Where a reference lives: the registry (as users name it, the key for credentials) and the
/// repository path the API uses (`library/busybox` for Docker Hub's official images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The registry: `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    /// The repository inside it: `busybox`, `library/busybox`.
    pub repository: String,
}

impl Location {
    /// Resolves a reference as Docker does: no domain means Docker Hub, and a single-component
    /// name there means `library/NAME`.
    pub fn of(r: &Reference) -> Self {
        match &r.domain {
            Some(d) => Location {
                registry: d.clone(),
                repository: r.path.clone(),
            },
            None => Location {
                registry: DEFAULT_REGISTRY.into(),
                repository: if r.path.contains('/') {
                    r.path.clone()
                } else {
                    format!("library/{}", r.path)
                },
            },
        }
    }

    /// `registry/repository`: how known blob locations are keyed.
    pub fn full(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// What happens to one blob during a pull or push, for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobEvent {
    /// The store (pull) or the registry (push) already has it.
    AlreadyExists,
    /// Bytes moved so far.
    Progress {
        /// Bytes done.
        done: u64,
    },
    /// Fetched, verified and staged (pull) or uploaded (push).
    Done,
    /// Mounted from another repository of the same registry (push).
    Mounted {
        /// The repository it came from.
        from: String,
    },
    /// The transfer failed on the way and starts again (where it broke off) after a pause.
    Retrying {
        /// Seconds until the next attempt.
        in_secs: u64,
        /// What went wrong.
        reason: String,
    },
}

/// Receives progress of the blobs of a pull or push; the binary draws bars or prints lines.
pub trait Progress: Sync {
    /// The blobs about to move, in manifest order: a short name and the size (compressed
    /// size on pull; uncompressed size on push).
    fn start(&self, blobs: &[(Digest, u64)]);
    /// Something happened to one blob.
    fn event(&self, blob: &Digest, event: BlobEvent);
}

/// A [`Progress`] that shows nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &[(Digest, u64)]) {}
    fn event(&self, _: &Digest, _: BlobEvent) {}
}

/// How long to wait before each new attempt at a transfer that failed on the way: after the
/// last one, the pull or push fails. Docker retries a layer 5 times, 5 s apart and more;
/// rimg resumes where the transfer broke off rather than starting again, so it waits less.
pub const RETRY_DELAYS: [u64; 3] = [1, 2, 4];

/// The retries of one blob's transfer.
#[derive(Debug, Default)]
pub(crate) struct Retry {
    made: usize,
}

impl Retry {
    /// Reports `failure` and waits before the next attempt, when it is one a new attempt can
    /// cure (the connection, or a 5xx/429 from the registry) and attempts are left; returns
    /// it otherwise, or `Cancelled` when another transfer failed meanwhile.
    pub(crate) fn wait(
        &mut self,
        failure: RegistryError,
        blob: &Digest,
        progress: &dyn Progress,
        abort: &AtomicBool,
    ) -> Result<()> {
        let Some(&delay) = RETRY_DELAYS
            .get(self.made)
            .filter(|_| failure.is_transient())
        else {
            return Err(failure);
        };
        self.made += 1;
        progress.event(
            blob,
            BlobEvent::Retrying {
                in_secs: delay,
                reason: crate::error_line(&failure),
            },
        );
        for _ in 0..delay * 10 {
            if abort.load(Ordering::Relaxed) {
                return Err(RegistryError::Cancelled);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    }
}

/// Runs `work(i, abort)` for every `i < count` on `threads` threads. The first error sets
/// `abort` (workers check it between and during jobs) and is returned; otherwise the results
/// come back in job order.
pub(crate) fn parallel<T: Send>(
    threads: usize,
    count: usize,
    work: impl Fn(usize, &AtomicBool) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let done: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|s| {
        for _ in 0..threads.min(count) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count || abort.load(Ordering::SeqCst) {
                    break;
                }
                match work(i, &abort) {
                    Ok(t) => done.lock().unwrap_or_else(|p| p.into_inner()).push((i, t)),
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if first.is_none() && !matches!(e, RegistryError::Cancelled) {
                            *first = Some(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    if done.len() != count {
        return Err(RegistryError::Cancelled);
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// Reads until `buf` is full or the source ends; returns how much was read.
pub(crate) fn read_full(src: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Joins the registry's error list (`{"errors":[{"code","message","detail"}]}`) into one line.
pub fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| {
                let mut s = e.code.to_ascii_lowercase().replace('_', " ");
                if !e.message.is_empty() && e.message != s {
                    s = format!("{s}: {}", e.message);
                }
                match &e.detail {
                    serde_json::Value::String(d) if !d.is_empty() => format!("{s} ({d})"),
                    _ => s,
                }
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "arm64", None));
        assert!(!p.matches("linux", "amd64", None));
        let any = Platform::parse("linux/arm").unwrap();
        assert!(any.matches("linux", "arm", Some("v7")));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations_follow_docker_defaults() {
        let l = Location::of(&Reference::parse("busybox").unwrap());
        assert_eq!(l.full(), "docker.io/library/busybox");
        let l = Location::of(&Reference::parse("127.0.0.1:5000/a/b:v1").unwrap());
        assert_eq!(
            (l.registry.as_str(), l.repository.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
    }

    #[test]
    fn registry_errors_read_as_one_line() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(error_message(body), "unauthorized: authentication required");
        let body = br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"http: request body too large"}]}"#;
        assert_eq!(
            error_message(body),
            "manifest invalid (http: request body too large)"
        );
        assert_eq!(error_message(b"oops\nmore"), "oops");
    }
}
