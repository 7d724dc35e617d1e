//! Registries for the tests: Debian's `docker-registry` (distribution 2.8) started on
//! 127.0.0.1 with a config and storage of its own, a proxy that kills it mid-transfer, a
//! scripted fake registry for what a real one will not serve, and a minimal HTTP client.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `docker-registry` process; killed when dropped.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    /// An open registry.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt, HTTP Basic).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Self {
        crate::require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("rimg-registry-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rimg-tests\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            crate::require_tool("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rimg-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        fs::write(dir.path().join("config.yml"), config).expect("write config");
        let mut r = Registry {
            dir,
            port,
            child: None,
        };
        r.restart();
        r
    }

    /// Starts (again) on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let log = fs::File::create(self.dir.path().join("log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((status, _, _)) = try_http("GET", &format!("{}/v2/", self.url()), &[], &[]) {
                if status == 200 || status == 401 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILLs the registry.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The file holding a blob's bytes in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// A manifest (raw JSON) as the registry serves it.
    pub fn manifest(&self, repo: &str, reference: &str) -> serde_json::Value {
        let (status, _, body) = http(
            "GET",
            &format!("{}/v2/{repo}/manifests/{reference}", self.url()),
            &[(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json",
            )],
            &[],
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("manifest json")
    }

    /// Stores a manifest (any JSON) under `repo:reference`; returns the status.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> u16 {
        http(
            "PUT",
            &format!("{}/v2/{repo}/manifests/{reference}", self.url()),
            &[("Content-Type", media_type)],
            body,
        )
        .0
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status, headers (lowercased names)
/// and body. Panics on a transport error.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    try_http(method, url, headers, body).expect("http request")
}

fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, HashMap<String, String>, Vec<u8>)> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut hs = HashMap::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            hs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut out = Vec::new();
    match hs.get("content-length").and_then(|l| l.parse::<u64>().ok()) {
        Some(n) if method != "HEAD" => {
            r.take(n).read_to_end(&mut out)?;
        }
        Some(_) => {}
        None => {
            r.read_to_end(&mut out)?;
        }
    }
    Ok((status, hs, out))
}

/// A TCP proxy in front of a registry that, once `limit` bytes have gone from the registry to
/// the client, stops forwarding, SIGKILLs the registry and closes every connection: the
/// registry dies in the middle of a transfer, deterministically. Made with
/// [`KillingProxy::cutting`], it only closes the connections open at that moment (the
/// network drops, the registry lives) and forwards later ones in full;
/// [`KillingProxy::cutting_uploads`] does the same counting bytes from the client.
pub struct KillingProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Whether the registry was killed (or the connections cut).
    pub fired: Arc<AtomicBool>,
    /// Bytes forwarded in the metered direction.
    pub sent: Arc<AtomicU64>,
}

/// What [`KillingProxy`] does when its limit is reached.
#[derive(Clone, Copy)]
struct Trap {
    /// The registry to kill, or none (cut the connections only).
    pid: Option<u32>,
    limit: u64,
    /// Count the bytes from client to registry rather than back.
    upstream: bool,
}

impl KillingProxy {
    /// Proxies to `target` (`127.0.0.1:PORT`) and kills process `pid` after `limit` bytes.
    pub fn new(target: &str, pid: u32, limit: u64) -> Self {
        Self::start(
            target,
            Trap {
                pid: Some(pid),
                limit,
                upstream: false,
            },
        )
    }

    /// Proxies to `target` and cuts the connections open after `limit` bytes (registry to
    /// client), once.
    pub fn cutting(target: &str, limit: u64) -> Self {
        Self::start(
            target,
            Trap {
                pid: None,
                limit,
                upstream: false,
            },
        )
    }

    /// Proxies to `target` and cuts the connections open after `limit` bytes (client to
    /// registry), once.
    pub fn cutting_uploads(target: &str, limit: u64) -> Self {
        Self::start(
            target,
            Trap {
                pid: None,
                limit,
                upstream: true,
            },
        )
    }

    fn start(target: &str, trap: Trap) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_string();
        let (stop2, fired2, sent2) = (stop.clone(), fired.clone(), sent.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut c = conns.lock().expect("lock");
                    c.push(client.try_clone().expect("clone"));
                    c.push(server.try_clone().expect("clone"));
                }
                let clone = |s: &TcpStream| s.try_clone().expect("clone");
                for (from, to, metered) in [
                    (clone(&client), clone(&server), trap.upstream),
                    (clone(&server), clone(&client), !trap.upstream),
                ] {
                    let (sent, fired, conns) = (sent2.clone(), fired2.clone(), conns.clone());
                    thread::spawn(move || {
                        if metered {
                            forward_metered(from, to, trap, &sent, &fired, &conns);
                        } else {
                            let (mut from, mut to) = (from, to);
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Write);
                        }
                    });
                }
            }
        });
        KillingProxy {
            port,
            stop,
            fired,
            sent,
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for KillingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, counting into `sent`, and springs `trap` once the count passes its
/// limit: kills the registry (if it names one) and closes every connection open then.
fn forward_metered(
    mut from: TcpStream,
    mut to: TcpStream,
    trap: Trap,
    sent: &AtomicU64,
    fired: &AtomicBool,
    conns: &Mutex<Vec<TcpStream>>,
) {
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
        // A killed registry stays dead; cut connections spring the trap only once.
        if before + n as u64 > trap.limit && (trap.pid.is_some() || before <= trap.limit) {
            if !fired.swap(true, Ordering::SeqCst) {
                if let Some(pid) = trap.pid {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
                for c in conns.lock().expect("lock").drain(..) {
                    let _ = c.shutdown(Shutdown::Both);
                }
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// A request the fake registry got.
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// A response of the fake registry: status, headers, body. A header `x-stall-after: N` is
/// not sent: the registry sends the headers and N bytes of the body, then stalls.
pub type FakeResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// A scripted registry: every request is answered by `handler`. For what distribution itself
/// refuses to serve (manifests over its own size limit, a token server).
pub struct FakeRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    /// Serves `handler` on 127.0.0.1, one thread per connection, `Connection: close`.
    pub fn new(
        handler: impl Fn(&FakeRequest, &str) -> FakeResponse + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handler = Arc::new(handler);
        let me = format!("127.0.0.1:{port}");
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let handler = handler.clone();
                let me = me.clone();
                thread::spawn(move || {
                    let _ = serve_one(conn, &*handler, &me);
                });
            }
        });
        FakeRegistry { port, stop }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_one(
    conn: TcpStream,
    handler: &(dyn Fn(&FakeRequest, &str) -> FakeResponse + Send + Sync),
    me: &str,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if let Some(n) = headers
        .get("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        std::io::copy(&mut (&mut r).take(n), &mut std::io::sink())?;
    }
    let (status, hs, body) = handler(
        &FakeRequest {
            method: method.clone(),
            path,
            headers,
        },
        me,
    );
    let mut w = conn;
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    let mut has_len = false;
    let mut stall_after = None;
    for (k, v) in &hs {
        if k == "x-stall-after" {
            stall_after = v.parse::<usize>().ok();
            continue;
        }
        has_len |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len && !hs.iter().any(|(k, _)| k == "x-no-length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if let Some(n) = stall_after {
        // Send the headers and `n` bytes of the body, then nothing until the client hangs up.
        w.write_all(&body[..n.min(body.len())])?;
        w.flush()?;
        std::io::copy(&mut r, &mut std::io::sink())?;
        return Ok(());
    }
    if method != "HEAD" {
        w.write_all(&body)?;
    }
    w.flush()?;
    let _ = w.shutdown(Shutdown::Both);
    Ok(())
}
