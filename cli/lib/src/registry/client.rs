//! The HTTP side of one registry: which scheme it speaks, how it wants to be authenticated,
//! and the distribution API v2 requests pull and push need.
//!
//! Built on `ureq` (blocking, rustls): every transfer here is a plain stream (a blob body read
//! into the store, a chunk sent from a buffer), so threads and blocking reads are the simplest
//! fit; an async runtime would buy nothing. `ureq` never follows redirects with credentials
//! (blob downloads may redirect to a storage backend), and rimg turns every non-2xx status into
//! a [`RegistryError`] carrying the registry's own error message.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use rimg_fs::Digest;
use ureq::http::{self, Response};
use ureq::tls::TlsConfig;
use ureq::{Agent, Body};

use super::auth::{Challenge, Credentials, Scheme};
use super::{error_message, RegistryError, Result, DEFAULT_REGISTRY, DEFAULT_REGISTRY_API};
use crate::image::media::MANIFEST_ACCEPT;

/// How to talk to a registry.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Require HTTPS with a verified certificate. Without it (and always for localhost and
    /// 127.0.0.0/8, as Docker treats them), HTTPS is tried without verification, then plain
    /// HTTP.
    pub tls_verify: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { tls_verify: true }
    }
}

/// A connection to one registry.
pub struct Client {
    agent: Agent,
    registry: String,
    base: String,
    creds: Option<Credentials>,
    challenge: Mutex<Option<Challenge>>,
    authorization: Mutex<Option<String>>,
}

/// What a blob upload session is at: the URL to send the next request to, and how many bytes
/// the registry has.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The `Location` the registry gave last.
    pub location: String,
    /// Bytes uploaded so far.
    pub offset: u64,
}

/// What a cross-repository mount request did.
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry could not mount it and opened an upload session instead.
    Upload(Upload),
}

/// Whether `registry` is this machine, which Docker treats as an insecure registry.
pub fn is_local(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

/// The environment variable that sets how long a registry connection may stay silent.
pub const TIMEOUT_ENV: &str = "RIMG_REGISTRY_TIMEOUT";

/// How long a registry connection may stay silent (no byte read or written) before the
/// attempt fails and is retried: a registry that stalls mid-blob must not hang a pull.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take (TCP and TLS), as Docker's registry client's 30 s dial.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle timeout: [`TIMEOUT_ENV`] (`90`, `90s`, `2m`, `500ms`) or [`DEFAULT_IDLE_TIMEOUT`].
pub fn idle_timeout() -> Result<Duration> {
    let Ok(v) = std::env::var(TIMEOUT_ENV) else {
        return Ok(DEFAULT_IDLE_TIMEOUT);
    };
    parse_timeout(&v).ok_or(RegistryError::BadTimeout(v))
}

fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, 1000)
    };
    let n: u64 = num.trim().parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?)).filter(|d| !d.is_zero())
}

fn agent(verify: bool, idle: Duration) -> Agent {
    let tls = TlsConfig::builder().disable_verification(!verify).build();
    Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(CONNECT_TIMEOUT.min(idle)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .timeout_per_read(Some(idle))
        .timeout_per_write(Some(idle))
        .user_agent(concat!("rimg/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections_per_host(8)
        .build()
        .into()
}

fn transport(what: impl Into<String>, e: ureq::Error) -> RegistryError {
    RegistryError::Transport {
        what: what.into(),
        message: describe(&e),
    }
}

/// A one-line description of a transport error.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => describe_io(io),
        ureq::Error::Timeout(t) => describe_timeout(*t),
        other => {
            let m = other.to_string();
            if m.contains("disconnected") {
                format!("the connection to the registry was lost ({m})")
            } else {
                m
            }
        }
    }
}

fn describe_timeout(t: ureq::Timeout) -> String {
    let idle = idle_timeout().unwrap_or(DEFAULT_IDLE_TIMEOUT);
    match t {
        ureq::Timeout::Connect => format!(
            "timed out connecting to the registry after {:?}",
            CONNECT_TIMEOUT.min(idle)
        ),
        ureq::Timeout::PerRead | ureq::Timeout::PerWrite => format!(
            "timed out: the registry connection was silent for {idle:?} (set {TIMEOUT_ENV} to wait longer)"
        ),
        other => format!("timed out ({other})"),
    }
}

/// A one-line description of an I/O error on a registry connection.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    if let Some(ureq::Error::Timeout(t)) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>())
    {
        return describe_timeout(*t);
    }
    let m = e.to_string();
    if matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    ) || m.contains("disconnected")
    {
        format!("the connection to the registry was lost ({m})")
    } else {
        m
    }
}

fn header<'a>(r: &'a Response<Body>, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads at most 64 KiB of an error response's body.
fn error_body(r: Response<Body>) -> String {
    let mut buf = Vec::new();
    let _ = r
        .into_body()
        .into_reader()
        .take(64 << 10)
        .read_to_end(&mut buf);
    error_message(&buf)
}

impl Client {
    /// Finds the registry's scheme (`GET /v2/`) and remembers the auth challenge it answers
    /// with; `creds` are used when it asks for them.
    pub fn connect(
        registry: &str,
        opts: &ClientOptions,
        creds: Option<Credentials>,
    ) -> Result<Self> {
        let api = if registry == DEFAULT_REGISTRY {
            DEFAULT_REGISTRY_API
        } else {
            registry
        };
        let insecure = !opts.tls_verify || is_local(registry);
        let mut schemes = vec!["https"];
        if insecure {
            schemes.push("http");
        }
        let agent = agent(!insecure, idle_timeout()?);
        let mut first_error = None;
        for scheme in schemes {
            let base = format!("{scheme}://{api}");
            match agent.get(format!("{base}/v2/")).call() {
                Ok(r) => {
                    let challenge = match r.status().as_u16() {
                        200..=299 => None,
                        401 => header(&r, "www-authenticate").and_then(Challenge::parse),
                        s => {
                            return Err(RegistryError::Connect {
                                host: registry.to_string(),
                                message: format!(
                                "GET {base}/v2/ returned {s}: not a registry (distribution API v2)"
                            ),
                            })
                        }
                    };
                    return Ok(Client {
                        agent,
                        registry: registry.to_string(),
                        base,
                        creds,
                        challenge: Mutex::new(challenge),
                        authorization: Mutex::new(None),
                    });
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| describe(&e));
                }
            }
        }
        Err(RegistryError::Connect {
            host: registry.to_string(),
            message: first_error.unwrap_or_default(),
        })
    }

    /// The registry's name.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The base URL found by [`Client::connect`] (`http://127.0.0.1:5000`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unauthorized(&self, said: &str) -> RegistryError {
        let said = if said.is_empty() {
            "unauthorized"
        } else {
            said
        };
        let message = if self.creds.is_some() {
            format!(
                "{said}: the registry refused the stored credentials (rimg login {})",
                self.registry
            )
        } else {
            format!(
                "{said}: authentication required; log in first with `rimg login {}`",
                self.registry
            )
        };
        RegistryError::Unauthorized {
            host: self.registry.clone(),
            message,
        }
    }

    /// Gets credentials in place for `scopes` (`repository:NAME:pull,push`) before any
    /// request, so streaming requests never meet a challenge halfway.
    pub fn authorize(&self, scopes: &[String]) -> Result<()> {
        let challenge = self.lock_challenge().clone();
        let value = match challenge {
            None => None,
            Some(c) => match c.scheme {
                Scheme::Basic => match &self.creds {
                    Some(creds) => Some(creds.basic()),
                    None => return Err(self.unauthorized("")),
                },
                Scheme::Bearer => Some(format!("Bearer {}", self.fetch_token(&c, scopes)?)),
            },
        };
        *self.lock_auth() = value;
        Ok(())
    }

    /// Checks that the credentials are accepted (`rimg login`).
    pub fn check_login(&self) -> Result<()> {
        // The credentials are the ones being offered, not stored ones: say the registry
        // refused this login, as Docker does.
        self.try_login().map_err(|e| match e {
            RegistryError::Unauthorized { host, .. } => RegistryError::Unauthorized {
                host,
                message:
                    "unauthorized: incorrect username or password: the registry refused this login"
                        .into(),
            },
            e => e,
        })
    }

    fn try_login(&self) -> Result<()> {
        self.authorize(&[])?;
        let r = self.send(
            "GET",
            &format!("{}/v2/", self.base),
            &[],
            None,
            "logging in",
        )?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            401 => Err(self.unauthorized("incorrect username or password")),
            s => Err(RegistryError::Status {
                what: format!("GET {}/v2/", self.base),
                status: s,
                message: error_body(r),
            }),
        }
    }

    fn lock_challenge(&self) -> std::sync::MutexGuard<'_, Option<Challenge>> {
        self.challenge.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.authorization.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bearer token flow: `GET realm?service=…&scope=…`, with the credentials as Basic
    /// auth when there are any.
    fn fetch_token(&self, c: &Challenge, scopes: &[String]) -> Result<String> {
        let Some(realm) = c.params.get("realm") else {
            return Err(RegistryError::Unauthorized {
                host: self.registry.clone(),
                message: "the registry's Bearer challenge has no realm".into(),
            });
        };
        let mut req = self.agent.get(realm);
        if let Some(s) = c.params.get("service") {
            req = req.query("service", s);
        }
        for s in scopes {
            req = req.query("scope", s);
        }
        if let Some(creds) = &self.creds {
            req = req
                .query("account", &creds.username)
                .header("Authorization", creds.basic());
        }
        let what = format!("getting a token from {realm}");
        let r = req.call().map_err(|e| transport(&what, e))?;
        match r.status().as_u16() {
            200..=299 => {}
            401 | 403 => {
                let said = error_body(r);
                return Err(self.unauthorized(if self.creds.is_some() {
                    "incorrect username or password"
                } else {
                    &said
                }));
            }
            s => {
                return Err(RegistryError::Status {
                    what,
                    status: s,
                    message: error_body(r),
                })
            }
        }
        let mut buf = Vec::new();
        r.into_body()
            .into_reader()
            .take(1 << 20)
            .read_to_end(&mut buf)
            .map_err(|e| RegistryError::Transport {
                what: what.clone(),
                message: describe_io(&e),
            })?;
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let t: Token = serde_json::from_slice(&buf).map_err(|e| RegistryError::BadDocument {
            what: format!("token response from {realm}"),
            message: e.to_string(),
        })?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(RegistryError::BadDocument {
                what: format!("token response from {realm}"),
                message: "no token".into(),
            });
        }
        Ok(token)
    }

    fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Sends one request. A `401` with a new challenge (a registry that asks only per
    /// repository) is answered once and the request retried.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<Response<Body>> {
        let mut retried = false;
        loop {
            let mut b = http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            if let Some(a) = self.lock_auth().clone() {
                b = b.header("Authorization", a);
            }
            let r = match body {
                Some(bytes) => {
                    let req = b
                        .header("Content-Length", bytes.len().to_string())
                        .body(bytes)
                        .map_err(|e| RegistryError::Transport {
                            what: what.to_string(),
                            message: e.to_string(),
                        })?;
                    self.agent.run(req)
                }
                None => {
                    let req = b.body(()).map_err(|e| RegistryError::Transport {
                        what: what.to_string(),
                        message: e.to_string(),
                    })?;
                    self.agent.run(req)
                }
            }
            .map_err(|e| transport(what, e))?;
            if r.status().as_u16() == 401 && !retried {
                if let Some(c) = header(&r, "www-authenticate").and_then(Challenge::parse) {
                    retried = true;
                    let scopes: Vec<String> = c.params.get("scope").cloned().into_iter().collect();
                    *self.lock_challenge() = Some(c);
                    self.authorize(&scopes)?;
                    continue;
                }
            }
            return Ok(r);
        }
    }

    /// Turns a non-2xx response into an error.
    fn check(&self, r: Response<Body>, what: &str) -> Result<Response<Body>> {
        let status = r.status().as_u16();
        match status {
            200..=299 => Ok(r),
            401 => Err(self.unauthorized(&error_body(r))),
            404 => {
                let said = error_body(r);
                Err(RegistryError::NotFound(if said.is_empty() {
                    what.to_string()
                } else {
                    format!("{what}: {said}")
                }))
            }
            _ => Err(RegistryError::Status {
                what: what.to_string(),
                status,
                message: error_body(r),
            }),
        }
    }

    /// Fetches a manifest or index by tag or digest, refusing more than `limit` bytes.
    /// Returns its bytes and the media type the registry gave.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, String)> {
        let what = format!("manifest {}/{repo}:{reference}", self.registry);
        let what = what.replace(":sha256:", "@sha256:");
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let r = self.send(
            "GET",
            &url,
            &[("Accept", MANIFEST_ACCEPT.join(", "))],
            None,
            &what,
        )?;
        let r = self.check(r, &what)?;
        let media = header(&r, "content-type")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
            .unwrap_or_default();
        let too_large = || RegistryError::TooLarge {
            what: what.clone(),
            limit,
        };
        if header(&r, "content-length")
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > limit)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        r.into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RegistryError::Transport {
                what: what.clone(),
                message: describe_io(&e),
            })?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok((bytes, media))
    }

    /// Starts downloading a blob; returns its body and the length the registry announced.
    pub fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
        let (body, _, len) = self.get_blob_from(repo, digest, 0)?;
        Ok((body, len))
    }

    /// Downloads a blob from byte `from` on (an HTTP range request when `from` is not 0).
    /// Returns the body, the offset it starts at (`from`, or 0 when the registry ignored the
    /// range and sent the whole blob) and the length the registry announced for the body.
    pub fn get_blob_from(
        &self,
        repo: &str,
        digest: &Digest,
        from: u64,
    ) -> Result<(Box<dyn Read + Send>, u64, Option<u64>)> {
        let what = format!("downloading blob {digest}");
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let range = [("Range", format!("bytes={from}-"))];
        let headers: &[(&str, String)] = if from == 0 { &[] } else { &range };
        let r = self.send("GET", &url, headers, None, &what)?;
        let r = self.check(r, &what)?;
        let len = header(&r, "content-length").and_then(|l| l.parse().ok());
        let start = if r.status().as_u16() == 206 {
            // "bytes FROM-LAST/SIZE": anything else is a range we did not ask for.
            let given = header(&r, "content-range").unwrap_or_default();
            let first = given
                .strip_prefix("bytes ")
                .and_then(|g| g.split('-').next())
                .and_then(|f| f.trim().parse::<u64>().ok());
            if first != Some(from) {
                return Err(RegistryError::Transport {
                    what,
                    message: format!("asked for bytes {from}- and the registry sent {given:?}"),
                });
            }
            from
        } else {
            0
        };
        Ok((Box::new(r.into_body().into_reader()), start, len))
    }

    /// The repository's tags (`GET /tags/list`, following the registry's `Link` pages), each
    /// page capped at [`MAX_MANIFEST_BYTES`](super::MAX_MANIFEST_BYTES).
    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("listing the tags of {}/{repo}", self.registry);
        let mut url = format!("{}/v2/{repo}/tags/list", self.base);
        let mut tags = Vec::new();
        // A registry that sends the same page forever is cut off.
        for _ in 0..1000 {
            let r = self.send("GET", &url, &[], None, &what)?;
            let r = self.check(r, &what)?;
            let next = header(&r, "link").and_then(|l| {
                let (target, rel) = l.split_once(';')?;
                rel.contains("rel=\"next\"")
                    .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
                    .map(|t| self.url(t))
            });
            let mut body = Vec::new();
            r.into_body()
                .into_reader()
                .take(super::MAX_MANIFEST_BYTES + 1)
                .read_to_end(&mut body)
                .map_err(|e| RegistryError::Transport {
                    what: what.clone(),
                    message: describe_io(&e),
                })?;
            if body.len() as u64 > super::MAX_MANIFEST_BYTES {
                return Err(RegistryError::TooLarge {
                    what,
                    limit: super::MAX_MANIFEST_BYTES,
                });
            }
            let page: Page =
                serde_json::from_slice(&body).map_err(|e| RegistryError::BadDocument {
                    what: what.clone(),
                    message: e.to_string(),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Err(RegistryError::BadDocument {
            what,
            message: "more than 1000 pages".into(),
        })
    }

    /// Downloads a small blob whole, refusing more than `limit` bytes, and verifies it.
    pub fn get_small_blob(
        &self,
        repo: &str,
        digest: &Digest,
        what: &str,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let (body, len) = self.get_blob(repo, digest)?;
        if len.is_some_and(|l| l > limit) {
            return Err(RegistryError::TooLarge {
                what: what.to_string(),
                limit,
            });
        }
        let mut bytes = Vec::new();
        body.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RegistryError::Transport {
                what: what.to_string(),
                message: describe_io(&e),
            })?;
        if bytes.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                what: what.to_string(),
                limit,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                what: what.to_string(),
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Whether the repository has the blob (`HEAD`).
    pub fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let what = format!("checking blob {digest}");
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let r = self.send("HEAD", &url, &[], None, &what)?;
        match r.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => self.check(r, &what).map(|_| false),
        }
    }

    /// Opens an upload session (`POST /blobs/uploads/`).
    pub fn start_upload(&self, repo: &str) -> Result<Upload> {
        let what = format!("starting an upload to {}/{repo}", self.registry);
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let r = self.send("POST", &url, &[], Some(&[]), &what)?;
        let r = self.check(r, &what)?;
        self.upload_at(&r, &what, 0)
    }

    fn upload_at(&self, r: &Response<Body>, what: &str, offset: u64) -> Result<Upload> {
        let location = header(r, "location").ok_or_else(|| RegistryError::BadDocument {
            what: what.to_string(),
            message: "the registry gave no Location for the upload".into(),
        })?;
        Ok(Upload {
            location: self.url(location),
            offset,
        })
    }

    /// Asks the registry to mount `digest` from repository `from` (same registry) into `repo`.
    pub fn mount(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount> {
        let what = format!("mounting {digest} from {from}");
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let mut req = query::Query::new(&url);
        req.push("mount", &digest.to_string());
        req.push("from", from);
        let r = self.send("POST", &req.finish(), &[], Some(&[]), &what)?;
        match r.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.upload_at(&r, &what, 0)?)),
            _ => self.check(r, &what).map(|_| Mount::Mounted),
        }
    }

    /// Sends one chunk (`PATCH` with `Content-Range`).
    pub fn upload_chunk(
        &self,
        up: &mut Upload,
        data: &[u8],
        digest_for_errors: &str,
    ) -> Result<()> {
        let what = format!("uploading {digest_for_errors}");
        let end = up.offset + data.len() as u64;
        let headers = [
            ("Content-Type", "application/octet-stream".to_string()),
            (
                "Content-Range",
                format!("{}-{}", up.offset, end.saturating_sub(1)),
            ),
        ];
        let r = self.send("PATCH", &up.location, &headers, Some(data), &what)?;
        let r = self.check(r, &what)?;
        *up = self.upload_at(&r, &what, end)?;
        Ok(())
    }

    /// Asks where an upload session stands (`GET` on its location): the bytes the registry
    /// holds, from its `Range: 0-LAST` header, and the location to go on with.
    pub fn upload_status(&self, up: &Upload) -> Result<Upload> {
        let what = "checking an upload".to_string();
        let r = self.send("GET", &up.location, &[], None, &what)?;
        let r = self.check(r, &what)?;
        let range = header(&r, "range").unwrap_or("0-0");
        let last = range
            .split('-')
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .ok_or_else(|| RegistryError::BadDocument {
                what: what.clone(),
                message: format!("the registry answered with Range {range:?}"),
            })?;
        // distribution says "0-0" for an empty session as for one byte; rimg's chunks start
        // at multiples of 8 MiB, so only a chunk cut off after its first byte is misread
        // (and then refused by the registry as out of order, a clean failure).
        let offset = if last == 0 { 0 } else { last + 1 };
        self.upload_at(&r, &what, offset)
    }

    /// Completes an upload (`PUT ?digest=`), with the last bytes (or none) as its body.
    pub fn finish_upload(&self, up: &Upload, digest: &Digest, data: &[u8]) -> Result<()> {
        let what = format!("uploading {digest}");
        let mut q = query::Query::new(&up.location);
        q.push("digest", &digest.to_string());
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let r = self.send("PUT", &q.finish(), &headers, Some(data), &what)?;
        self.check(r, &what).map(|_| ())
    }

    /// Abandons an upload session (best effort).
    pub fn cancel_upload(&self, up: &Upload) {
        let _ = self.send("DELETE", &up.location, &[], None, "cancelling upload");
    }

    /// Uploads a small blob in one request after opening the session.
    pub fn put_blob(&self, repo: &str, digest: &Digest, data: &[u8]) -> Result<()> {
        let up = self.start_upload(repo)?;
        self.finish_upload(&up, digest, data)
    }

    /// Stores a manifest under a tag or digest; returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<Digest>> {
        let what = format!("pushing manifest {}/{repo}:{reference}", self.registry);
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let headers = [("Content-Type", media_type.to_string())];
        let r = self.send("PUT", &url, &headers, Some(bytes), &what)?;
        let r = self.check(r, &what)?;
        Ok(header(&r, "docker-content-digest").and_then(|d| Digest::parse(d).ok()))
    }
}

mod query {
    //! Query strings appended to registry URLs (which may already carry `?_state=…`).

    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

    /// What a value keeps unencoded: RFC 3986's unreserved characters, and `:` and `/`
    /// (digests and repository names read as themselves).
    const VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':')
        .remove(b'/');

    /// A URL being given query parameters.
    pub struct Query(String);

    impl Query {
        /// Starts from `base`.
        pub fn new(base: &str) -> Self {
            Query(base.to_string())
        }

        /// Appends `key=value`, percent-encoding the value.
        pub fn push(&mut self, key: &str, value: &str) {
            self.0.push(if self.0.contains('?') { '&' } else { '?' });
            self.0.push_str(key);
            self.0.push('=');
            self.0
                .extend(percent_encoding::utf8_percent_encode(value, VALUE));
        }

        /// The URL.
        pub fn finish(self) -> String {
            self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_units() {
        assert_eq!(parse_timeout("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timeout("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("0"), None);
        assert_eq!(parse_timeout("soon"), None);
        let stalled = std::io::Error::other(ureq::Error::Timeout(ureq::Timeout::PerRead));
        assert!(
            describe_io(&stalled).contains("silent"),
            "{}",
            describe_io(&stalled)
        );
    }

    #[test]
    fn local_registries_are_insecure() {
        for h in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.0.0.1",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_local(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_local(h), "{h}");
        }
    }

    #[test]
    fn queries_append_to_existing_ones() {
        let mut q = query::Query::new("http://r/v2/x/blobs/uploads/1?_state=a%3D");
        q.push("digest", "sha256:ab");
        assert_eq!(
            q.finish(),
            "http://r/v2/x/blobs/uploads/1?_state=a%3D&digest=sha256:ab"
        );
        let mut q = query::Query::new("/v2/x/blobs/uploads/");
        q.push("mount", "sha256:ab");
        q.push("from", "a b");
        assert_eq!(
            q.finish(),
            "/v2/x/blobs/uploads/?mount=sha256:ab&from=a%20b"
        );
    }
}
