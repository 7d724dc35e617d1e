//! Credentials and auth challenges.
//!
//! Credentials live in a JSON file in the `auths` format of Docker's `config.json`
//! (`{"auths":{"host:port":{"auth":"base64(user:pass)"}}}`), which podman and skopeo also read:
//!
//! - `$REGISTRY_AUTH_FILE` if set (as podman and skopeo do), else
//!   `$XDG_CONFIG_HOME/rimg/auth.json`, else `~/.config/rimg/auth.json`. `login` writes here,
//!   with mode 0600, atomically; other keys in the file are kept.
//! - Then Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`)
//!   and podman's `auth.json` (`$XDG_RUNTIME_DIR/containers/auth.json`, else
//!   `/run/containers/<uid>/auth.json`, and `~/.config/containers/auth.json`) are read, so
//!   a user who logged in with Docker or podman is logged in here too.
//! - In each file, as Docker does: a `credHelpers` entry for the registry, else `credsStore`,
//!   names a `docker-credential-<name>` program that is asked (`get`, the server on stdin);
//!   else the `auths` entry.
//!
//! A registry answers an unauthenticated request with `401` and a `WWW-Authenticate`
//! challenge: `Basic realm=…` (send the credentials on every request) or
//! `Bearer realm=…,service=…,scope=…` (exchange the credentials, or nothing, for a token at the
//! realm and send that). [`Challenge::parse`] reads the header; the client does the exchange.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rimg_fs::error::{io_err, IoError};
use serde_json::{Map, Value};

use super::{RegistryError, Result, DEFAULT_REGISTRY};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The value of a `Basic` Authorization header.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.username, self.password))
        )
    }

    /// Decodes an `auths` entry's `auth` field (`base64(user:pass)`).
    pub fn decode(auth: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

/// The credentials file `login` writes (see the module doc).
pub fn auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".config")
        });
    config.join("rimg").join("auth.json")
}

/// Every file credentials are read from, in order.
fn read_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME").unwrap_or_else(|| PathBuf::from("/root"));
    let mut files = vec![auth_file()];
    files.push(
        env("DOCKER_CONFIG")
            .unwrap_or_else(|| home.join(".docker"))
            .join("config.json"),
    );
    files.push(match env("XDG_RUNTIME_DIR") {
        Some(d) => d.join("containers/auth.json"),
        None => PathBuf::from(format!(
            "/run/containers/{}/auth.json",
            nix::unistd::getuid()
        )),
    });
    files.push(
        env("XDG_CONFIG_HOME")
            .unwrap_or_else(|| home.join(".config"))
            .join("containers/auth.json"),
    );
    files.dedup();
    files
}

/// The server name a credential helper is asked for: Docker Hub's is its v1 index URL.
fn helper_server(registry: &str) -> String {
    if normalize_key(registry) == DEFAULT_REGISTRY {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// Asks `docker-credential-<helper> get` for `registry`'s credentials, as Docker does. A
/// helper that knows none answers non-zero ("credentials not found"): that is `None`.
fn from_helper(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let failed = |message: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        message,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server(registry).as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        if said.contains("credentials not found") || out.stdout.is_empty() {
            return Ok(None);
        }
        return Err(failed(said.trim().to_string()));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| failed(format!("unreadable answer: {e}")))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (username, password) = (field("Username"), field("Secret"));
    if password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

/// The key an `auths` entry uses for a registry, normalized: Docker writes
/// `https://index.docker.io/v1/` for Docker Hub and some tools write `https://host/`.
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
        _ => k.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IoError::new("read", path, source).into()),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(RegistryError::AuthFile {
            path: path.to_path_buf(),
            message: "not a JSON object".into(),
        }),
        Err(e) => Err(RegistryError::AuthFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The credentials stored for `registry`, if any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    let want = normalize_key(registry);
    for file in read_files() {
        let Some(doc) = read_json(&file)? else {
            continue;
        };
        let helper = doc
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == want))
            .and_then(|(_, v)| v.as_str())
            .or_else(|| doc.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            if let Some(c) = from_helper(helper, registry)? {
                return Ok(Some(c));
            }
            continue;
        }
        let Some(Value::Object(auths)) = doc.get("auths") else {
            continue;
        };
        for (key, entry) in auths {
            if normalize_key(key) != want {
                continue;
            }
            if let Some(c) = entry
                .get("auth")
                .and_then(Value::as_str)
                .and_then(Credentials::decode)
            {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Writes the file atomically with mode 0600, creating its directory.
fn write_file(path: &Path, doc: &Map<String, Value>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc.clone())).map_err(|e| {
        RegistryError::AuthFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    bytes.push(b'\n');
    Ok(rimg_fs::store::write_private(path, &bytes)?)
}

/// Stores credentials for `registry` in [`auth_file`], replacing any for the same registry.
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = auth_file();
    let mut doc = read_json(&path)?.unwrap_or_default();
    let auths = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Value::Object(auths) = auths {
        let want = normalize_key(registry);
        auths.retain(|k, _| normalize_key(k) != want);
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        auths.insert(registry.to_string(), serde_json::json!({ "auth": encoded }));
    }
    write_file(&path, &doc)?;
    Ok(path)
}

/// Removes the credentials for `registry` from [`auth_file`]; `false` if there were none.
pub fn remove(registry: &str) -> Result<bool> {
    let path = auth_file();
    let Some(mut doc) = read_json(&path)? else {
        return Ok(false);
    };
    let want = normalize_key(registry);
    let mut removed = false;
    if let Some(Value::Object(auths)) = doc.get_mut("auths") {
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != want);
        removed = auths.len() != before;
    }
    if removed {
        write_file(&path, &doc)?;
    }
    Ok(removed)
}

/// The authentication scheme a registry asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Send `Authorization: Basic` with every request.
    Basic,
    /// Fetch a token from the realm and send `Authorization: Bearer`.
    Bearer,
}

/// A parsed `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme.
    pub scheme: Scheme,
    /// Its parameters (`realm`, `service`, `scope`), keys lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses `Basic realm="x"` or `Bearer realm="https://…",service="…",scope="…"`.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "basic" => Scheme::Basic,
            "bearer" => Scheme::Bearer,
            _ => return None,
        };
        let mut params = BTreeMap::new();
        let mut s = rest.trim();
        while !s.is_empty() {
            let Some((key, after)) = s.split_once('=') else {
                break;
            };
            let key = key
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (value, next) = if let Some(q) = after.strip_prefix('"') {
                // A quoted string; backslash escapes the next character.
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                (v, &q[end.min(q.len())..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key, value);
            s = next.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge { scheme, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let c = Challenge::parse(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(c.scheme, Scheme::Basic);
        assert_eq!(c.params["realm"], "basic-realm");
        let c = Challenge::parse(r#"Bearer realm=http://x/token, service="a\"b""#).unwrap();
        assert_eq!(c.params["realm"], "http://x/token");
        assert_eq!(c.params["service"], "a\"b");
        assert!(Challenge::parse("Negotiate abc").is_none());
    }

    #[test]
    fn credentials_round_trip_and_keys_normalize() {
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        let enc = c.basic();
        let decoded = Credentials::decode(enc.trim_start_matches("Basic ")).unwrap();
        assert_eq!(decoded, c);
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_key("localhost:5000"), "localhost:5000");
    }
}
