//! What `inspect`, `ps` and `port` show of a container's networks.

use serde_json::{json, Map, Value};

use super::attach::NetState;
use crate::container::ContainerConfig;

/// Docker's `NetworkSettings` of a container: its ports (from its spec) and, while it runs
/// (`live`), each network's address, gateway and MAC address.
pub fn settings(config: &ContainerConfig, live: Option<&NetState>) -> Value {
    let mode = super::mode_name(config.process.network, config.net.as_ref());
    let mut ports = Map::new();
    if let Some(net) = &config.net {
        for m in &net.ports {
            for i in 0..m.range {
                let key = format!("{}/{}", m.container_port + i, m.protocol);
                let binding =
                    json!({"HostIp": m.host_ip, "HostPort": (m.host_port + i).to_string()});
                match ports.get_mut(&key) {
                    Some(Value::Array(a)) => a.push(binding),
                    _ => {
                        ports.insert(key, json!([binding]));
                    }
                }
            }
        }
    }
    let mut networks = Map::new();
    let names: Vec<String> = match &config.net {
        Some(n) => n.networks.clone(),
        None => vec![mode.clone()],
    };
    for name in names {
        let ep = live.and_then(|s| s.endpoints.iter().find(|e| e.network == name));
        let text = |v: Option<String>| v.unwrap_or_default();
        networks.insert(
            name.clone(),
            json!({
                "NetworkID": text(ep.map(|e| e.network_id.clone())),
                "IPAddress": text(ep.and_then(|e| e.ip).map(|i| i.to_string())),
                "IPPrefixLen": ep.map(|e| e.prefix_len).unwrap_or(0),
                "Gateway": text(ep.and_then(|e| e.gateway).map(|i| i.to_string())),
                "MacAddress": text(ep.map(|e| e.mac.clone())),
                "Aliases": ep.map(|e| e.aliases.clone()).unwrap_or_default(),
            }),
        );
    }
    let primary = live.and_then(|s| s.endpoints.first());
    json!({
        "IPAddress": primary.and_then(|e| e.ip).map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": primary.map(|e| e.prefix_len).unwrap_or(0),
        "Gateway": primary.and_then(|e| e.gateway).map(|i| i.to_string()).unwrap_or_default(),
        "MacAddress": primary.map(|e| e.mac.clone()).unwrap_or_default(),
        "SandboxKey": live.map(|s| s.netns.display().to_string()).unwrap_or_default(),
        "Ports": ports,
        "Networks": networks,
    })
}

/// `ps`'s PORTS: `0.0.0.0:8080->80/tcp, …`.
pub fn ports_text(config: &ContainerConfig) -> String {
    config
        .net
        .iter()
        .flat_map(|n| n.ports.iter().flat_map(|m| m.lines()))
        .collect::<Vec<_>>()
        .join(", ")
}
