//! `rimg network …` and `rimg port`, and the network flags of `run`/`create` (see
//! `rimg::network`).

use std::net::Ipv4Addr;

use anyhow::Result;
use clap::{Args, Subcommand};
use rimg::container::{Container, Containers};
use rimg::image::Image;
use rimg::network::attach::{connect_running, disconnect_running, NetState, Who};
use rimg::network::ports::{assign_free_ports, parse_publish, reserve};
use rimg::network::{CreateNetwork, NetSpec, NetworkDef, DEFAULT_NETWORK};
use rimg::runtime::Network;
use rimg::table::render;

use super::{out, outln, Ctx, ExitStatus};

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ExitStatus {
        code,
        message: message.into(),
    })
}

/// The network flags of `run` and `create`.
#[derive(Args, Clone, Default)]
pub struct NetFlags {
    /// Publish a container's port to the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp].
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs to a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Another DNS name of the container on user networks.
    #[arg(long = "network-alias", value_name = "NAME")]
    pub aliases: Vec<String>,
    /// The container's IPv4 address on its network.
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// A DNS server for the container.
    #[arg(long)]
    pub dns: Vec<String>,
    /// A line of the container's /etc/hosts: NAME:IP (IP may be host-gateway).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
}

/// `--network` and the network flags → the runtime's network and the container's spec.
/// Host ports are chosen and checked here, so a taken one fails before anything exists.
pub fn for_create(
    containers: &Containers,
    mode: &str,
    f: &NetFlags,
    image: &Image,
) -> Result<(Network, Option<NetSpec>)> {
    if (mode == "host" || mode == "none") && (!f.publish.is_empty() || f.publish_all) {
        eprintln!("WARNING: Published ports are discarded when using {mode} network mode");
    }
    let name = match mode {
        "host" => return Ok((Network::Host, None)),
        "none" => return Ok((Network::None, None)),
        "bridge" | "default" => DEFAULT_NETWORK.to_string(),
        m if m.starts_with("container:") => {
            if !f.publish.is_empty() || f.publish_all || f.ip.is_some() || !f.dns.is_empty() {
                return Err(fail(
                    125,
                    "conflicting options: -p, -P, --ip and --dns cannot go with --network container:NAME",
                ));
            }
            let other = containers
                .resolve(&m["container:".len()..])
                .map_err(|e| fail(125, rimg::error_line(&e)))?;
            let spec = NetSpec {
                container: Some(other.id().to_string()),
                ..Default::default()
            };
            return Ok((Network::Namespace, Some(spec)));
        }
        m => m.to_string(),
    };
    let def = containers
        .networks()
        .get(&name)
        .map_err(|e| fail(125, rimg::error_line(&e)))?;
    for h in &f.add_hosts {
        let ok = h.split_once(':').is_some_and(|(n, ip)| {
            !n.is_empty() && (ip == "host-gateway" || ip.parse::<Ipv4Addr>().is_ok())
        });
        if !ok {
            return Err(fail(
                125,
                format!("invalid argument {h:?} for \"--add-host\" flag: want NAME:IP"),
            ));
        }
    }
    let mut ports = Vec::new();
    for p in &f.publish {
        ports.push(parse_publish(p).map_err(|e| fail(125, rimg::error_line(&e)))?);
    }
    if f.publish_all {
        for key in image
            .config
            .config
            .exposed_ports
            .iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let m = parse_publish(key).map_err(|e| fail(125, rimg::error_line(&e)))?;
            if !ports
                .iter()
                .any(|p| p.container_port == m.container_port && p.protocol == m.protocol)
            {
                ports.push(m);
            }
        }
    }
    assign_free_ports(&mut ports).map_err(|e| fail(125, rimg::error_line(&e)))?;
    drop(reserve(&ports).map_err(|e| fail(125, rimg::error_line(&e)))?);
    Ok((
        Network::Namespace,
        Some(NetSpec {
            networks: vec![def.name],
            aliases: f.aliases.clone(),
            ip: f.ip,
            ports,
            dns: f.dns.clone(),
            add_hosts: f.add_hosts.clone(),
            container: None,
        }),
    ))
}

/// `rimg network …`.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(NamesArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove every user network no container uses.
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(ConnectArgs),
}

/// Flags of `rimg network connect` and `disconnect`.
#[derive(Args)]
pub struct ConnectArgs {
    /// Another DNS name of the container on the network (connect).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Ignored (disconnect always releases what it can).
    #[arg(short, long)]
    pub force: bool,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

/// `network connect` (`connect` true) or `disconnect`: the container's config, and its
/// namespace while it runs.
fn connect(containers: &Containers, a: ConnectArgs, connect: bool) -> Result<u8> {
    let nets = containers.networks();
    let def = nets
        .get(&a.network)
        .map_err(|e| fail(1, rimg::error_line(&e)))?;
    let mut c = containers.resolve(&a.container)?;
    if c.process().network != Network::Namespace
        || c.config.net.as_ref().is_some_and(|n| n.container.is_some())
    {
        return Err(fail(
            1,
            format!("container {} is not on a bridge network", c.name()),
        ));
    }
    let mut spec = c.config.net.clone().unwrap_or_default();
    let listed = spec.networks.contains(&def.name);
    if connect && listed {
        return Err(fail(
            1,
            format!(
                "container {} is already connected to network {}",
                c.name(),
                def.name
            ),
        ));
    }
    if !connect && !listed {
        return Err(fail(
            1,
            format!(
                "container {} is not connected to network {}",
                c.name(),
                def.name
            ),
        ));
    }
    let running = c.status().is_running();
    let hostname = c.process().hostname.clone();
    let (dir, id, name) = (
        c.dir().to_path_buf(),
        c.id().to_string(),
        c.name().to_string(),
    );
    let who = Who {
        dir: &dir,
        id: &id,
        name: &name,
        hostname: &hostname,
    };
    if connect {
        let mut extra = spec.clone();
        extra.aliases.extend(a.aliases.iter().cloned());
        if running {
            connect_running(&who, &extra, &def).map_err(|e| fail(1, rimg::error_line(&e)))?;
        }
        spec.networks.push(def.name.clone());
        spec.aliases = extra.aliases;
    } else {
        if running {
            disconnect_running(&who, &def).map_err(|e| fail(1, rimg::error_line(&e)))?;
        }
        spec.networks.retain(|n| *n != def.name);
    }
    c.set_net(spec)?;
    Ok(0)
}

/// Flags of `rimg network create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The subnet (CIDR), e.g. 10.89.5.0/24.
    #[arg(long)]
    pub subnet: Option<String>,
    /// The gateway (the bridge's address).
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// No route out of the network.
    #[arg(long)]
    pub internal: bool,
    /// The driver (only bridge).
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// The network's name.
    pub name: String,
}

/// Flags of `rimg network ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Only the ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// `json`, `table …` or a Go template over `.ID`, `.Name`, `.Driver`, `.Scope`,
    /// `.Internal`.
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's column names for `network ls --format 'table …'`.
const NETWORK_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Internal", "INTERNAL"),
];

/// Networks named on the command line.
#[derive(Args)]
pub struct NamesArgs {
    /// Network names or ids.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `rimg network prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Do not ask (rimg never asks).
    #[arg(short, long)]
    pub force: bool,
}

/// Containers (of any state) that name `def` among their networks.
fn users(containers: &Containers, def: &NetworkDef) -> Result<Vec<Container>> {
    Ok(containers
        .list()?
        .into_iter()
        .filter(|c| rimg::network::is_on(c, &def.name))
        .collect())
}

/// Runs a `rimg network` command.
pub fn run(ctx: &Ctx, cmd: NetworkCommand) -> Result<u8> {
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let nets = containers.networks();
    match cmd {
        NetworkCommand::Create(a) => {
            if a.driver != "bridge" {
                return Err(fail(
                    125,
                    format!("unsupported driver {:?}: only bridge", a.driver),
                ));
            }
            let req = CreateNetwork {
                name: a.name,
                subnet: a.subnet,
                gateway: a.gateway,
                internal: a.internal,
            };
            let def = nets
                .create(&req, rimg::random::hex_id(32)?)
                .map_err(|e| fail(125, rimg::error_line(&e)))?;
            outln(&def.id)?;
            Ok(0)
        }
        NetworkCommand::Ls(a) => {
            let list = nets.list()?;
            if let Some(fmt) = &a.format {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "ID": &n.id[..12],
                            "Name": n.name,
                            "Driver": n.driver,
                            "Scope": "local",
                            "Internal": n.internal,
                        })
                    })
                    .collect();
                let table = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
                let format = rimg::table::Format::parse(fmt, table)?;
                return out(&format.render(&rows, NETWORK_HEADERS)?).map(|_| 0);
            }
            if a.quiet {
                let s: String = list.iter().map(|n| format!("{}\n", &n.id[..12])).collect();
                return out(&s).map(|_| 0);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    vec![
                        n.id[..12].to_string(),
                        n.name.clone(),
                        n.driver.clone(),
                        "local".into(),
                    ]
                })
                .collect();
            out(&render(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows))?;
            Ok(0)
        }
        NetworkCommand::Inspect(a) => {
            let mut all = Vec::new();
            let mut code = 0;
            for n in &a.names {
                match nets.get(n) {
                    Ok(def) => {
                        let mut v = serde_json::to_value(&def)?;
                        let mut members = serde_json::Map::new();
                        for c in users(&containers, &def)? {
                            let live = NetState::read(c.dir());
                            let ep = live
                                .as_ref()
                                .and_then(|s| s.endpoints.iter().find(|e| e.network == def.name));
                            members.insert(
                                c.id().to_string(),
                                serde_json::json!({
                                    "name": c.name(),
                                    "ip": ep.and_then(|e| e.ip).map(|i| i.to_string()).unwrap_or_default(),
                                    "mac": ep.map(|e| e.mac.clone()).unwrap_or_default(),
                                }),
                            );
                        }
                        v["containers"] = members.into();
                        all.push(v);
                    }
                    Err(e) => {
                        eprintln!("Error: {}", rimg::error_line(&e));
                        code = 1;
                    }
                }
            }
            outln(&serde_json::to_string_pretty(&all)?)?;
            Ok(code)
        }
        NetworkCommand::Rm(a) => {
            let mut code = 0;
            for n in &a.names {
                let r = match nets.get(n) {
                    Ok(def) if !users(&containers, &def)?.is_empty() => {
                        Err(rimg::network::NetworkError::InUse(def.name))
                    }
                    Ok(def) => nets.remove(&def),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => outln(n)?,
                    Err(e) => {
                        eprintln!("Error: {}", rimg::error_line(&e));
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCommand::Connect(a) => connect(&containers, a, true),
        NetworkCommand::Disconnect(a) => connect(&containers, a, false),
        NetworkCommand::Prune(_) => {
            let removed = rimg::network::prune(&nets, &containers.list()?)?;
            if !removed.is_empty() {
                out(&format!("Deleted Networks:\n{}\n", removed.join("\n")))?;
            }
            Ok(0)
        }
    }
}

/// Flags of `rimg port`.
#[derive(Args)]
pub struct PortArgs {
    /// The container.
    pub container: String,
    /// Only this port: PORT[/PROTO].
    pub port: Option<String>,
}

/// `rimg port`: the container's published ports.
pub fn port(ctx: &Ctx, a: PortArgs) -> Result<u8> {
    let images = ctx.images()?;
    let containers = Containers::open(&images)?;
    let c = containers.resolve(&a.container)?;
    let want = a.port.as_deref().map(|p| match p.split_once('/') {
        Some((n, proto)) => (n.to_string(), proto.to_string()),
        None => (p.to_string(), "tcp".to_string()),
    });
    let mut s = String::new();
    for m in c.config.net.iter().flat_map(|n| n.ports.iter()) {
        for i in 0..m.range {
            let cport = (m.container_port + i).to_string();
            let host = format!("{}:{}", m.host_ip, m.host_port + i);
            match &want {
                Some((n, proto)) if *n == cport && *proto == m.protocol => {
                    s.push_str(&format!("{host}\n"))
                }
                Some(_) => {}
                None => s.push_str(&format!("{cport}/{} -> {host}\n", m.protocol)),
            }
        }
    }
    if s.is_empty() {
        if let Some((n, proto)) = want {
            return Err(fail(
                1,
                format!("No public port '{n}/{proto}' published for {}", c.name()),
            ));
        }
    }
    out(&s).map(|_| 0)
}
