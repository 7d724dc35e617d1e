//! Published ports: `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]` (ranges too), the host
//! ports a container holds while it runs, and Docker's `0.0.0.0:8080->80/tcp` text.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// One published port range, in netavark's `PortMapping` JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address (`0.0.0.0`: every address), as text (netavark's field).
    pub host_ip: String,
    /// The first container port.
    pub container_port: u16,
    /// The first host port.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// How many ports, counting up from both.
    pub range: u16,
}

impl PortMapping {
    /// Docker's text of each port: `0.0.0.0:8080->80/tcp`.
    pub fn lines(&self) -> Vec<String> {
        (0..self.range)
            .map(|i| {
                format!(
                    "{}:{}->{}/{}",
                    self.host_ip,
                    self.host_port + i,
                    self.container_port + i,
                    self.protocol
                )
            })
            .collect()
    }

    fn host_addr(&self) -> IpAddr {
        self.host_ip
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

fn range(s: &str, what: &str) -> Result<(u16, u16), NetworkError> {
    let bad = || NetworkError::Invalid(format!("invalid {what} {s:?}"));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 && what == "container port" || b < a {
        return Err(bad());
    }
    Ok((a, b - a + 1))
}

/// Parses one `-p` value. A missing host port is 0 (see [`assign_free_ports`]).
pub fn parse_publish(spec: &str) -> Result<PortMapping, NetworkError> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(NetworkError::Invalid(format!(
            "invalid protocol {proto:?} in {spec:?}: use tcp or udp"
        )));
    }
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", "", *c),
        [c, h] => ("", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => return Err(NetworkError::Invalid(format!("invalid port spec {spec:?}"))),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let host_ip = if ip.is_empty() {
        "0.0.0.0".to_string()
    } else {
        let a: Ipv4Addr = ip
            .parse()
            .map_err(|_| NetworkError::Invalid(format!("invalid host address {ip:?}")))?;
        a.to_string()
    };
    let (container_port, n) = range(ctr, "container port")?;
    let host_port = if host.is_empty() {
        0
    } else {
        let (h, hn) = range(host, "host port")?;
        if hn != n && !(h == 0 && hn == 1) {
            return Err(NetworkError::Invalid(format!(
                "invalid port spec {spec:?}: host and container ranges differ in size"
            )));
        }
        h
    };
    Ok(PortMapping {
        host_ip,
        container_port,
        host_port,
        protocol: proto,
        range: n,
    })
}

/// Ports the host holds for a running container (so no other program or container takes
/// them, as conmon does for podman): listening TCP sockets and bound UDP sockets. Dropping
/// it frees them.
#[derive(Debug, Default)]
pub struct Reservation {
    _tcp: Vec<TcpListener>,
    _udp: Vec<UdpSocket>,
}

/// Binds every host port of `ports`; an error names the first one taken.
pub fn reserve(ports: &[PortMapping]) -> Result<Reservation, NetworkError> {
    let mut r = Reservation::default();
    for m in ports {
        for i in 0..m.range {
            let port = m.host_port + i;
            let addr = SocketAddr::new(m.host_addr(), port);
            let bound = if m.protocol == "udp" {
                UdpSocket::bind(addr).map(|s| r._udp.push(s))
            } else {
                TcpListener::bind(addr).map(|s| r._tcp.push(s))
            };
            if let Err(e) = bound {
                return Err(NetworkError::Invalid(format!(
                    "cannot publish port {port}/{}: binding {addr}: {e}",
                    m.protocol
                )));
            }
        }
    }
    Ok(r)
}

/// Gives each mapping without a host port a free one (the kernel's choice; a range gets
/// consecutive ports).
pub fn assign_free_ports(ports: &mut [PortMapping]) -> Result<(), NetworkError> {
    for m in ports.iter_mut().filter(|m| m.host_port == 0) {
        let mut found = None;
        for _ in 0..64 {
            let first = TcpListener::bind(SocketAddr::new(m.host_addr(), 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| NetworkError::Invalid(format!("finding a free port: {e}")))?
                .port();
            let mut probe = m.clone();
            probe.host_port = first;
            if first.checked_add(m.range).is_some() && reserve(&[probe]).is_ok() {
                found = Some(first);
                break;
            }
        }
        m.host_port =
            found.ok_or_else(|| NetworkError::Invalid("no free host port range found".into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(p.lines(), ["127.0.0.1:8080->80/tcp"]);
        let p = parse_publish("8080:80/udp").unwrap();
        assert_eq!(p.lines(), ["0.0.0.0:8080->80/udp"]);
        let p = parse_publish("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = parse_publish("9000-9001:80-81").unwrap();
        assert_eq!(p.lines(), ["0.0.0.0:9000->80/tcp", "0.0.0.0:9001->81/tcp"]);
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port), ("127.0.0.1", 0));
        assert!(parse_publish("9000-9002:80-81").is_err());
        assert!(parse_publish("80/sctp").is_err());
        assert!(parse_publish("x:80").is_err());
    }

    #[test]
    fn taken_port_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let m = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
        let e = reserve(&[m]).unwrap_err().to_string();
        assert!(e.contains(&port.to_string()), "{e}");
    }
}
