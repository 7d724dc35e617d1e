//! A container's side of its networks: the network namespace (a bind-mounted nsfs file),
//! its addresses (one file each under `/run/rimg/ipam/<bridge>/`, created with `O_EXCL`:
//! the file system is the lock), netavark's setup and teardown, the published ports held
//! while it runs, and its `/etc/hosts` and `/etc/resolv.conf`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rimg_fs::error::{io_err, IoError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ports::{reserve, Reservation};
use super::{contains, NetSpec, NetworkDef, NetworkError, Networks, RUN_DIR};

/// Where netavark is looked for (`RIMG_NETAVARK` overrides).
const NETAVARK: [&str; 2] = ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"];
/// Where aardvark-dns is looked for (`RIMG_AARDVARK` overrides).
const AARDVARK: [&str; 2] = [
    "/usr/lib/podman/aardvark-dns",
    "/usr/libexec/podman/aardvark-dns",
];

/// One network a running container is on (recorded in `<container dir>/network.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network's name.
    pub network: String,
    /// The network's id.
    pub network_id: String,
    /// The container's address.
    pub ip: Option<Ipv4Addr>,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The gateway.
    pub gateway: Option<Ipv4Addr>,
    /// The container interface's MAC address.
    pub mac: String,
    /// Its DNS names on the network (user networks).
    pub aliases: Vec<String>,
}

/// What a running container's networks are (`inspect`, `port`, `ps`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// The network namespace.
    pub netns: PathBuf,
    /// One per network, the primary first.
    pub endpoints: Vec<Endpoint>,
}

impl NetState {
    /// The state recorded in a container's directory, if it runs on networks.
    pub fn read(container_dir: &Path) -> Option<NetState> {
        let bytes = fs::read(container_dir.join("network.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A container attached to its networks: holds its published host ports.
#[derive(Debug)]
pub struct Attached {
    /// The network namespace to run the container in.
    pub netns: PathBuf,
    _ports: Reservation,
}

impl Attached {
    /// Another container's network namespace, joined (`--network container:NAME`): nothing
    /// of it is this container's to release.
    pub fn joined(netns: PathBuf) -> Self {
        Attached {
            netns,
            _ports: Reservation::default(),
        }
    }
}

/// The netns directory.
fn netns_path(id: &str) -> PathBuf {
    Path::new(RUN_DIR).join("netns").join(id)
}

fn ipam_dir() -> PathBuf {
    Path::new(RUN_DIR).join("ipam")
}

fn binary(var: &str, candidates: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(candidates[0]))
}

/// Creates a persistent network namespace at `path`: a thread unshares its network
/// namespace, brings `lo` up and bind-mounts its nsfs file there.
fn create_netns(path: &Path) -> Result<(), NetworkError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    File::create(path).map_err(io_err("creating", path))?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        crate::runtime::sys::loopback_up()?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    made.map_err(|e| {
        let _ = fs::remove_file(path);
        IoError::new("creating a network namespace at", path, e).into()
    })
}

fn remove_netns(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = fs::remove_file(path);
}

/// Takes an address of `def` for container `id` (`want`, or the first free one).
fn allocate(
    def: &NetworkDef,
    id: &str,
    dir: &Path,
    want: Option<Ipv4Addr>,
) -> Result<(Ipv4Addr, u8, Ipv4Addr), NetworkError> {
    let (net, len, gw) = def.subnet()?;
    let bridge_dir = ipam_dir().join(&def.network_interface);
    fs::create_dir_all(&bridge_dir).map_err(io_err("creating", &bridge_dir))?;
    let record = format!("{id}\n{}\n", dir.display());
    let try_take = |ip: Ipv4Addr| -> Result<bool, NetworkError> {
        let p = bridge_dir.join(ip.to_string());
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(mut f) => {
                    f.write_all(record.as_bytes())
                        .map_err(io_err("writing", &p))?;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // An address whose container is gone is free again.
                    let holder = fs::read_to_string(&p).unwrap_or_default();
                    let stale = holder
                        .lines()
                        .nth(1)
                        .is_some_and(|d| !Path::new(d).exists());
                    if !stale {
                        return Ok(false);
                    }
                    let _ = fs::remove_file(&p);
                }
                Err(e) => return Err(IoError::new("creating", &p, e).into()),
            }
        }
        Ok(false)
    };
    if let Some(ip) = want {
        if !contains(net, len, ip) || ip == gw {
            return Err(NetworkError::Invalid(format!(
                "address {ip} is not usable in network {} ({net}/{len})",
                def.name
            )));
        }
        if !try_take(ip)? {
            return Err(NetworkError::Invalid(format!(
                "address {ip} is already in use in network {}",
                def.name
            )));
        }
        return Ok((ip, len, gw));
    }
    // Round robin from after the last address handed out (a hint file), as Docker's IPAM:
    // an address just freed is not reused at once, while neighbours may still cache the
    // MAC address of its last holder.
    let first = u32::from(net) + 1;
    let size = (1u32 << (32 - len)) - 2;
    let hint_path = bridge_dir.join(".last");
    let hint = fs::read_to_string(&hint_path)
        .ok()
        .and_then(|t| t.trim().parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|&h| h >= first && h < first + size)
        .map_or(0, |h| h - first + 1);
    for k in 0..size {
        let ip = Ipv4Addr::from(first + (hint + k) % size);
        if ip != gw && try_take(ip)? {
            let _ = fs::write(&hint_path, ip.to_string());
            return Ok((ip, len, gw));
        }
    }
    Err(NetworkError::Full(def.name.clone()))
}

/// Frees every address container `id` holds.
fn free_addresses(id: &str) {
    let Ok(bridges) = fs::read_dir(ipam_dir()) else {
        return;
    };
    for b in bridges.flatten() {
        let Ok(addrs) = fs::read_dir(b.path()) else {
            continue;
        };
        for a in addrs.flatten() {
            let holder = fs::read_to_string(a.path()).unwrap_or_default();
            if holder.lines().next() == Some(id) {
                let _ = fs::remove_file(a.path());
            }
        }
    }
}

/// Every allocated address: (bridge, address, container id, container dir).
pub fn allocations() -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let Ok(bridges) = fs::read_dir(ipam_dir()) else {
        return out;
    };
    for b in bridges.flatten() {
        let Ok(addrs) = fs::read_dir(b.path()) else {
            continue;
        };
        for a in addrs.flatten().filter(|a| a.file_name() != ".last") {
            let holder = fs::read_to_string(a.path()).unwrap_or_default();
            let mut l = holder.lines();
            out.push((
                b.file_name().to_string_lossy().into_owned(),
                a.file_name().to_string_lossy().into_owned(),
                l.next().unwrap_or_default().to_string(),
                l.next().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// Runs `netavark OP NETNS` with the options file `opts` as stdin; its JSON answer.
fn netavark(op: &'static str, netns: &Path, opts: &Path) -> Result<Value, NetworkError> {
    let config = Path::new(RUN_DIR).join("netavark");
    fs::create_dir_all(&config).map_err(io_err("creating", &config))?;
    let stdin = File::open(opts).map_err(io_err("opening", opts))?;
    // Files, not pipes: aardvark-dns, started by netavark, inherits its stdio and lives on.
    let out_path = opts.with_extension("out");
    let out = File::create(&out_path).map_err(io_err("creating", &out_path))?;
    let bin = binary("RIMG_NETAVARK", &NETAVARK);
    // netavark's firewall setup races with itself ("Chain already exists"): one at a time,
    // machine-wide, as podman does.
    let lock_path = Path::new(RUN_DIR).join("netavark.lock");
    let lock = File::options().append(true).create(true).open(&lock_path);
    let lock = lock.map_err(io_err("opening", &lock_path))?;
    lock.lock().map_err(io_err("locking", &lock_path))?;
    let status = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["--rootless", "false"])
        .arg("--aardvark-binary")
        .arg(binary("RIMG_AARDVARK", &AARDVARK))
        .arg(op)
        .arg(netns)
        .stdin(stdin)
        .stdout(out)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| NetworkError::Netavark {
            op,
            message: format!(
                "running {}: {e} (is the netavark package installed?)",
                bin.display()
            ),
        })?;
    drop(lock);
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.success() {
        let message = value["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{status}: {}", text.trim()));
        return Err(NetworkError::Netavark { op, message });
    }
    Ok(value)
}

/// `netavark setup`, once more after a teardown (up to three tries) when the firewall
/// setup lost a race with another program changing iptables ("Chain already exists": our
/// own calls are serialized, but the host's other users of iptables, podman's CNI plugins
/// among them, are not).
fn setup_with_retries(netns: &Path, opts: &Path) -> Result<Value, NetworkError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match netavark("setup", netns, opts) {
            Err(NetworkError::Netavark { message, .. })
                if tries < 3 && message.contains("already exists") =>
            {
                let _ = netavark("teardown", netns, opts);
                std::thread::sleep(std::time::Duration::from_millis(100 * tries));
            }
            other => return other,
        }
    }
}

/// Who the container is, for its networks.
pub struct Who<'a> {
    /// The container's directory (`netavark.json`, `network.json`, `etc/`).
    pub dir: &'a Path,
    /// Its full id.
    pub id: &'a str,
    /// Its name (a DNS name on user networks).
    pub name: &'a str,
    /// Its hostname.
    pub hostname: &'a str,
}

/// Attaches a container to the networks of `spec`: holds its host ports, creates its
/// network namespace, allocates its addresses, runs netavark setup and writes its `/etc`
/// files. On failure everything done is undone.
pub fn attach(nets: &Networks, who: &Who<'_>, spec: &NetSpec) -> Result<Attached, NetworkError> {
    detach(who.dir, who.id);
    sweep_orphans();
    let ports = reserve(&spec.ports)?;
    let netns = netns_path(who.id);
    let r = setup(nets, who, spec, &netns);
    match r {
        Ok(()) => Ok(Attached {
            netns,
            _ports: ports,
        }),
        Err(e) => {
            detach(who.dir, who.id);
            Err(e)
        }
    }
}

fn setup(nets: &Networks, who: &Who<'_>, spec: &NetSpec, netns: &Path) -> Result<(), NetworkError> {
    create_netns(netns)?;
    let mut endpoints = Vec::new();
    let mut dns_servers = Vec::new();
    for (i, name) in spec.networks.iter().enumerate() {
        let def = nets.get(name)?;
        let (ep, dns) = join_network(who, spec, &def, i, netns)?;
        endpoints.push(ep);
        dns_servers.extend(dns);
    }
    let state = NetState {
        netns: netns.to_path_buf(),
        endpoints,
    };
    write_etc(who, spec, &state, &dns_servers)?;
    state.write(who.dir)
}

impl NetState {
    fn write(&self, dir: &Path) -> Result<(), NetworkError> {
        let p = dir.join("network.json");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| NetworkError::Invalid(e.to_string()))?;
        fs::write(&p, bytes).map_err(io_err("writing", &p))?;
        Ok(())
    }
}

/// The options file of one network of a container (teardown replays it).
fn options_path(dir: &Path, network: &str) -> PathBuf {
    dir.join(format!("netavark-{network}.json"))
}

/// Connects the container's namespace to network `def` as interface `eth{index}` (the
/// first one also gets the published ports and `--ip`): allocates, runs netavark setup.
/// The endpoint and the DNS servers netavark answers with.
fn join_network(
    who: &Who<'_>,
    spec: &NetSpec,
    def: &NetworkDef,
    index: usize,
    netns: &Path,
) -> Result<(Endpoint, Vec<String>), NetworkError> {
    let want = if index == 0 { spec.ip } else { None };
    let (ip, len, gw) = allocate(def, who.id, who.dir, want)?;
    // netavark's DNS names: the container name (its own) and these.
    let mut extra = spec.aliases.clone();
    extra.push(who.id[..12].to_string());
    let dns_names = if def.dns_enabled {
        extra.clone()
    } else {
        Vec::new()
    };
    let mut networks = serde_json::Map::new();
    networks.insert(
        def.name.clone(),
        json!({
            "interface_name": format!("eth{index}"),
            "static_ips": [ip.to_string()],
            "aliases": dns_names,
        }),
    );
    let mut info = serde_json::Map::new();
    info.insert(def.name.clone(), def.netavark_json());
    let ports = if index == 0 {
        spec.ports.clone()
    } else {
        Vec::new()
    };
    let opts = json!({
        "container_id": who.id,
        "container_name": who.name,
        "networks": networks,
        "network_info": info,
        "port_mappings": ports,
        "dns_servers": if spec.dns.is_empty() { Value::Null } else { json!(spec.dns) },
    });
    let opts_path = options_path(who.dir, &def.name);
    let bytes = serde_json::to_vec(&opts).map_err(|e| NetworkError::Invalid(e.to_string()))?;
    fs::write(&opts_path, bytes).map_err(io_err("writing", &opts_path))?;
    let status = setup_with_retries(netns, &opts_path)?;
    let block = &status[&def.name];
    let mac = block["interfaces"]
        .as_object()
        .and_then(|i| i.values().next())
        .and_then(|i| i["mac_address"].as_str())
        .unwrap_or_default()
        .to_string();
    // aardvark-dns on the gateway; without DNS netavark echoes `--dns`, which the caller
    // writes itself.
    let dns: Vec<String> = block["dns_server_ips"]
        .as_array()
        .filter(|_| def.dns_enabled)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let mut aliases = vec![who.name.to_string()];
    aliases.extend(extra);
    let ep = Endpoint {
        network: def.name.clone(),
        network_id: def.id.clone(),
        ip: Some(ip),
        prefix_len: len,
        gateway: (!def.internal).then_some(gw),
        mac,
        aliases: if def.dns_enabled { aliases } else { Vec::new() },
    };
    Ok((ep, dns))
}

/// `network connect` of a running container: one more interface in its namespace.
pub fn connect_running(
    who: &Who<'_>,
    spec: &NetSpec,
    def: &NetworkDef,
) -> Result<(), NetworkError> {
    let mut state = NetState::read(who.dir).ok_or_else(|| {
        NetworkError::Invalid(format!("container {} has no network namespace", who.name))
    })?;
    if state.endpoints.iter().any(|e| e.network == def.name) {
        return Err(NetworkError::Invalid(format!(
            "container {} is already connected to network {}",
            who.name, def.name
        )));
    }
    let netns = state.netns.clone();
    let (ep, _) = join_network(who, spec, def, state.endpoints.len(), &netns)?;
    state.endpoints.push(ep);
    state.write(who.dir)
}

/// `network disconnect` of a running container: netavark teardown of that network, its
/// address freed.
pub fn disconnect_running(who: &Who<'_>, def: &NetworkDef) -> Result<(), NetworkError> {
    let mut state = NetState::read(who.dir).unwrap_or_default();
    let opts = options_path(who.dir, &def.name);
    if opts.exists() {
        netavark("teardown", &state.netns, &opts)?;
        let _ = fs::remove_file(&opts);
    }
    let bridge_dir = ipam_dir().join(&def.network_interface);
    for ep in state.endpoints.iter().filter(|e| e.network == def.name) {
        if let Some(ip) = ep.ip {
            let _ = fs::remove_file(bridge_dir.join(ip.to_string()));
        }
    }
    state.endpoints.retain(|e| e.network != def.name);
    state.write(who.dir)
}

/// The container's `/etc/hosts` and `/etc/resolv.conf` for its networks.
fn write_etc(
    who: &Who<'_>,
    spec: &NetSpec,
    state: &NetState,
    dns_servers: &[String],
) -> Result<(), NetworkError> {
    let etc = who.dir.join("etc");
    let primary = state.endpoints.first();
    let gateway = primary.and_then(|e| e.gateway);
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = primary.and_then(|e| e.ip) {
        let mut names = vec![who.hostname.to_string()];
        if who.name != who.hostname {
            names.push(who.name.to_string());
        }
        hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    if let Some(gw) = gateway {
        hosts.push_str(&format!(
            "{gw}\thost.docker.internal host.containers.internal\n"
        ));
    }
    for h in &spec.add_hosts {
        let (name, ip) = h.split_once(':').unwrap_or((h.as_str(), ""));
        let ip = if ip == "host-gateway" {
            gateway.map(|g| g.to_string()).unwrap_or_default()
        } else {
            ip.to_string()
        };
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    let p = etc.join("hosts");
    fs::write(&p, hosts).map_err(io_err("writing", &p))?;
    let mut resolv = String::new();
    let servers: Vec<String> = if !dns_servers.is_empty() {
        resolv.push_str("search dns.podman\n");
        dns_servers.to_vec()
    } else if !spec.dns.is_empty() {
        spec.dns.clone()
    } else {
        host_nameservers()
    };
    for s in servers {
        resolv.push_str(&format!("nameserver {s}\n"));
    }
    let p = etc.join("resolv.conf");
    fs::write(&p, resolv).map_err(io_err("writing", &p))?;
    Ok(())
}

/// The host's nameservers, less loopback ones (unreachable from a container's namespace).
fn host_nameservers() -> Vec<String> {
    let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.starts_with("127.") && s != "::1")
        .collect()
}

/// Undoes [`attach`] (also after a killed monitor, and when nothing was attached):
/// netavark teardown, the namespace, the addresses, the records. Errors are ignored:
/// whatever can be released is.
pub fn detach(container_dir: &Path, id: &str) {
    let netns = netns_path(id);
    let files: Vec<PathBuf> = fs::read_dir(container_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("netavark-") && n.ends_with(".json"))
        })
        .collect();
    for opts in files {
        if netns.exists() {
            let _ = netavark("teardown", &netns, &opts);
        }
        let _ = fs::remove_file(&opts);
    }
    remove_netns(&netns);
    free_addresses(id);
    let _ = fs::remove_file(container_dir.join("network.json"));
}

/// Unmounts the namespaces of processes killed mid-way (a `rimg build` killed during a RUN
/// step): those no address names, a minute old (younger ones may be between their
/// creation and their allocation). Their veths go with them; their addresses were
/// reclaimed as stale already.
fn sweep_orphans() {
    let held: Vec<String> = allocations().into_iter().map(|a| a.2).collect();
    let Ok(entries) = fs::read_dir(Path::new(RUN_DIR).join("netns")) else {
        return;
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= 60);
        if old && !held.contains(&id) {
            remove_netns(&e.path());
        }
    }
}

/// Leftovers of containers that are gone: namespaces and addresses whose container
/// directory no longer exists (`system check`).
pub fn leftovers() -> Vec<String> {
    let mut out = Vec::new();
    for (bridge, ip, id, dir) in allocations() {
        if !Path::new(&dir).exists() {
            out.push(format!(
                "address {ip} on {bridge} held by removed container {id}"
            ));
        }
    }
    let held: Vec<String> = allocations().into_iter().map(|a| a.2).collect();
    if let Ok(entries) = fs::read_dir(Path::new(RUN_DIR).join("netns")) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !held.contains(&id) {
                out.push(format!(
                    "network namespace {} without a container",
                    e.path().display()
                ));
            }
        }
    }
    out
}
