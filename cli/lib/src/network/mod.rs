//! Container networks, driven through podman's own network stack: `netavark` (veth pairs,
//! bridges, NAT and port forwarding in the firewall) and `aardvark-dns` (container names on
//! user networks). rimg keeps the network definitions, allocates addresses and prepares
//! each container's network namespace; netavark does the rest, configured by JSON on stdin.
//!
//! ```text
//! $RIMG_ROOT/rimg/networks/<name>.json   a user network (netavark's network JSON)
//! /run/rimg/netns/<container id>          a container's network namespace (bind mount)
//! /run/rimg/ipam/<bridge>/<address>       an allocated address: the container id and dir
//! /run/rimg/netavark/                     netavark's and aardvark-dns's state
//! <container dir>/netavark-<net>.json     what setup was given, per network (teardown
//!                                         replays it)
//! ```
//!
//! The default network `bridge` (interface `rimg0`, 10.89.0.0/24, no DNS, as Docker's
//! default bridge) is built in; user networks get `rimg` + 10 hex digits of their id as
//! interface and a free 10.89.N.0/24 unless `--subnet` says otherwise. Addresses and
//! namespaces live under `/run` because bridges are the machine's, shared by every store.
//!
//! Architecture Invariant: every address, namespace and firewall rule of a container is
//! released by [`attach::detach`], which is idempotent: the monitor calls it when the
//! container exits, `rm -f` again after a monitor died.

pub mod attach;
pub mod inspect;
pub mod ports;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rimg_fs::error::{io_err, IoError};
use serde::{Deserialize, Serialize};

pub use ports::PortMapping;

/// The machine-wide state directory (namespaces, addresses, netavark's config dir).
pub const RUN_DIR: &str = "/run/rimg";

/// The name of the default network.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Errors of networks.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No network has this name.
    #[error("network {0} not found")]
    NotFound(String),
    /// The name is taken.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// A name or option is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The network has containers.
    #[error("network {0} has active endpoints: remove its containers first")]
    InUse(String),
    /// Every address of the network is taken.
    #[error("no free address left in network {0}")]
    Full(String),
    /// netavark failed.
    #[error("netavark {op}: {message}")]
    Netavark {
        /// setup or teardown.
        op: &'static str,
        /// What it said.
        message: String,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A network's subnet (netavark's `Subnet`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// CIDR, e.g. `10.89.1.0/24`.
    pub subnet: String,
    /// The bridge's address, the containers' default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

impl Subnet {
    /// The network address and prefix length.
    pub fn parse(&self) -> Result<(Ipv4Addr, u8), NetworkError> {
        parse_cidr(&self.subnet)
    }
}

/// A network, in netavark's network JSON (also what `network inspect` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    /// Its name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Always `bridge`.
    pub driver: String,
    /// The bridge interface on the host.
    pub network_interface: String,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: String,
    /// Its subnets (one, IPv4).
    pub subnets: Vec<Subnet>,
    /// No IPv6.
    #[serde(default)]
    pub ipv6_enabled: bool,
    /// No route out (`--internal`).
    #[serde(default)]
    pub internal: bool,
    /// Names resolve through aardvark-dns (user networks).
    #[serde(default)]
    pub dns_enabled: bool,
}

impl NetworkDef {
    /// The built-in default network.
    pub fn default_bridge() -> NetworkDef {
        NetworkDef {
            name: DEFAULT_NETWORK.into(),
            id: "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9".into(),
            driver: "bridge".into(),
            network_interface: "rimg0".into(),
            created: String::new(),
            subnets: vec![Subnet {
                subnet: "10.89.0.0/24".into(),
                gateway: Some(Ipv4Addr::new(10, 89, 0, 1)),
            }],
            ipv6_enabled: false,
            internal: false,
            dns_enabled: false,
        }
    }

    /// The first subnet: network address, prefix length, gateway.
    pub fn subnet(&self) -> Result<(Ipv4Addr, u8, Ipv4Addr), NetworkError> {
        let s = self
            .subnets
            .first()
            .ok_or_else(|| NetworkError::Invalid(format!("network {} has no subnet", self.name)))?;
        let (net, len) = s.parse()?;
        let gw = s
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(net) + 1));
        Ok((net, len, gw))
    }

    /// Netavark's JSON for this network.
    pub fn netavark_json(&self) -> serde_json::Value {
        let subnets: Vec<_> = self
            .subnets
            .iter()
            .map(|s| {
                let gw = s.gateway.map(|g| g.to_string());
                serde_json::json!({"subnet": s.subnet, "gateway": gw})
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "id": self.id,
            "driver": self.driver,
            "network_interface": self.network_interface,
            "subnets": subnets,
            "ipv6_enabled": false,
            "internal": self.internal,
            "dns_enabled": self.dns_enabled,
        })
    }
}

/// Docker's `NetworkMode` of a container: `host`, `none`, `container:ID`, or its first
/// network.
pub fn mode_name(network: crate::runtime::Network, net: Option<&NetSpec>) -> String {
    use crate::runtime::Network;
    if let Some(id) = net.and_then(|n| n.container.as_ref()) {
        return format!("container:{id}");
    }
    match network {
        Network::Host => "host".into(),
        Network::None => "none".into(),
        Network::Namespace => net
            .and_then(|n| n.networks.first())
            .cloned()
            .unwrap_or_else(|| DEFAULT_NETWORK.into()),
    }
}

/// `a.b.c.d/n` → (network address, n).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), NetworkError> {
    let bad = || NetworkError::Invalid(format!("invalid subnet {s:?}: want A.B.C.D/N (IPv4)"));
    let (a, n) = s.split_once('/').ok_or_else(bad)?;
    let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let n: u8 = n.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&n) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - n);
    Ok((Ipv4Addr::from(u32::from(a) & mask), n))
}

/// Whether `ip` is inside `net/len`.
pub fn contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - len);
    u32::from(ip) & mask == u32::from(net)
}

/// What a container asked for: its networks and what goes with them (fixed at create).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// The networks to join (the first one is the primary: default route, `--ip`).
    pub networks: Vec<String>,
    /// `--network-alias`: more names on user networks.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip` on the first network.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// `-p`/`-P`, host ports resolved at create.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// `--dns`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host NAME:IP` (`host-gateway` for the gateway).
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// `--network container:NAME`: the id of the container whose network namespace this
    /// one joins (then `networks` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The networks of one store (the default one built in).
#[derive(Clone, Debug)]
pub struct Networks {
    dir: PathBuf,
}

fn is_valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && n.len() <= 64
}

/// What `network create` asks for.
#[derive(Clone, Debug, Default)]
pub struct CreateNetwork {
    /// Its name.
    pub name: String,
    /// `--subnet` (else a free 10.89.N.0/24).
    pub subnet: Option<String>,
    /// `--gateway` (else the subnet's first address).
    pub gateway: Option<Ipv4Addr>,
    /// `--internal`.
    pub internal: bool,
}

impl Networks {
    /// The networks stored under `private_dir` (the store's `rimg/`).
    pub fn open(private_dir: &Path) -> Self {
        Networks {
            dir: private_dir.join("networks"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every network, the default first, then by name.
    pub fn list(&self) -> Result<Vec<NetworkDef>, NetworkError> {
        let mut out = BTreeMap::new();
        match fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "json") {
                        let bytes = fs::read(&p).map_err(io_err("reading", &p))?;
                        if let Ok(def) = serde_json::from_slice::<NetworkDef>(&bytes) {
                            out.insert(def.name.clone(), def);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(IoError::new("listing", &self.dir, e).into()),
        }
        let mut list = vec![NetworkDef::default_bridge()];
        list.extend(out.into_values());
        Ok(list)
    }

    /// A network by name, full id or id prefix.
    pub fn get(&self, key: &str) -> Result<NetworkDef, NetworkError> {
        let list = self.list()?;
        if let Some(n) = list.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let mut found = list
            .into_iter()
            .filter(|n| key.len() >= 3 && n.id.starts_with(key));
        match (found.next(), found.next()) {
            (Some(n), None) => Ok(n),
            _ => Err(NetworkError::NotFound(key.to_string())),
        }
    }

    /// Creates a user network.
    pub fn create(&self, req: &CreateNetwork, id: String) -> Result<NetworkDef, NetworkError> {
        if !is_valid_name(&req.name) || req.name == "host" || req.name == "none" {
            return Err(NetworkError::Invalid(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        let list = self.list()?;
        if list.iter().any(|n| n.name == req.name) {
            return Err(NetworkError::Exists(req.name.clone()));
        }
        let taken: Vec<(Ipv4Addr, u8)> = list
            .iter()
            .filter_map(|n| n.subnet().ok().map(|(a, l, _)| (a, l)))
            .collect();
        let overlaps = |a: Ipv4Addr, l: u8| {
            taken
                .iter()
                .any(|&(b, m)| contains(b, m.min(l), a) || contains(a, m.min(l), b))
        };
        let (net, len) = match &req.subnet {
            Some(s) => {
                let (a, l) = parse_cidr(s)?;
                if overlaps(a, l) {
                    return Err(NetworkError::Invalid(format!(
                        "subnet {s} overlaps another network's"
                    )));
                }
                (a, l)
            }
            None => (1..=255u8)
                .map(|n| (Ipv4Addr::new(10, 89, n, 0), 24))
                .find(|&(a, l)| !overlaps(a, l) && !routed(a, l))
                .ok_or_else(|| NetworkError::Invalid("no free subnet in 10.89.0.0/16".into()))?,
        };
        let gateway = req
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(net) + 1));
        if !contains(net, len, gateway) {
            return Err(NetworkError::Invalid(format!(
                "gateway {gateway} is not in subnet {net}/{len}"
            )));
        }
        let def = NetworkDef {
            name: req.name.clone(),
            network_interface: format!("rimg{}", &id[..10]),
            id,
            driver: "bridge".into(),
            created: crate::units::rfc3339_nanos_now(),
            subnets: vec![Subnet {
                subnet: format!("{net}/{len}"),
                gateway: Some(gateway),
            }],
            ipv6_enabled: false,
            internal: req.internal,
            dns_enabled: true,
        };
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let p = self.path(&def.name);
        let bytes =
            serde_json::to_vec_pretty(&def).map_err(|e| NetworkError::Invalid(e.to_string()))?;
        fs::write(&p, bytes).map_err(io_err("writing", &p))?;
        Ok(def)
    }

    /// Removes a user network (the caller checks it has no containers).
    pub fn remove(&self, def: &NetworkDef) -> Result<(), NetworkError> {
        if def.name == DEFAULT_NETWORK {
            return Err(NetworkError::Invalid(format!(
                "{DEFAULT_NETWORK} is a pre-defined network and cannot be removed"
            )));
        }
        // Its address directory: only the round-robin hint is left once no container is on it.
        let ipam = Path::new(RUN_DIR).join("ipam").join(&def.network_interface);
        let _ = fs::remove_file(ipam.join(".last"));
        let _ = fs::remove_dir(&ipam);
        let p = self.path(&def.name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new("removing", &p, e).into()),
        }
    }
}

/// Whether the host routes `net/len` already (another tool's bridge).
fn routed(net: Ipv4Addr, len: u8) -> bool {
    let Ok(text) = fs::read_to_string("/proc/net/route") else {
        return false;
    };
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(dst), Some(mask)) = (f.get(1), f.get(7)) else {
            return false;
        };
        let (Ok(d), Ok(m)) = (u32::from_str_radix(dst, 16), u32::from_str_radix(mask, 16)) else {
            return false;
        };
        let d = Ipv4Addr::from(u32::from_be(d));
        let m = u32::from_be(m).count_ones() as u8;
        m > 0 && (contains(d, m.min(len), net) || contains(net, m.min(len), d))
    })
}

/// The user networks (never the built-in `bridge`) that no container of `containers` is
/// on: what `network prune` and `system prune` remove, as Docker's do.
pub fn unused(
    nets: &Networks,
    containers: &[crate::container::Container],
) -> Result<Vec<NetworkDef>, NetworkError> {
    Ok(nets
        .list()?
        .into_iter()
        .filter(|def| def.name != DEFAULT_NETWORK)
        .filter(|def| !containers.iter().any(|c| is_on(c, &def.name)))
        .collect())
}

/// Whether the container `c` is on the network `name`.
pub fn is_on(c: &crate::container::Container, name: &str) -> bool {
    c.config
        .net
        .as_ref()
        .is_some_and(|n| n.networks.iter().any(|x| x == name))
}

/// Removes the networks [`unused`] names; their names.
pub fn prune(
    nets: &Networks,
    containers: &[crate::container::Container],
) -> Result<Vec<String>, NetworkError> {
    let mut removed = Vec::new();
    for def in unused(nets, containers)? {
        nets.remove(&def)?;
        removed.push(def.name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.89.3.7/24").unwrap(),
            (Ipv4Addr::new(10, 89, 3, 0), 24)
        );
        assert!(parse_cidr("10.89.3.0").is_err());
        assert!(contains(
            Ipv4Addr::new(10, 89, 3, 0),
            24,
            Ipv4Addr::new(10, 89, 3, 200)
        ));
        assert!(!contains(
            Ipv4Addr::new(10, 89, 3, 0),
            24,
            Ipv4Addr::new(10, 89, 4, 1)
        ));
    }

    #[test]
    fn create_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let nets = Networks::open(tmp.path());
        let req = CreateNetwork {
            name: "front".into(),
            subnet: Some("10.251.3.0/24".into()),
            ..Default::default()
        };
        let def = nets.create(&req, "ab".repeat(32)).unwrap();
        assert_eq!(def.network_interface, "rimgababababab");
        assert_eq!(def.subnet().unwrap().2, Ipv4Addr::new(10, 251, 3, 1));
        assert!(matches!(
            nets.create(&req, "cd".repeat(32)),
            Err(NetworkError::Exists(_))
        ));
        let names: Vec<_> = nets.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "front"]);
        nets.remove(&def).unwrap();
        assert!(nets.get("front").is_err());
    }
}
