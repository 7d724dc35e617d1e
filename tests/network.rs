//! Container networks end to end: published ports, the default bridge, user networks with
//! names, `--network none`, and that nothing (veth, firewall rule, address, namespace) is
//! left once containers and networks are removed. Traffic goes only to 127.0.0.1 and to
//! addresses of the networks these tests create. Each test uses its own ports, network
//! names and subnets, so they run in parallel.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use rimg_tests::containers::{assert_no_mounts, eventually, Cleanup};
use rimg_tests::{busybox_tar, require_tool, sh, Store};

/// A store with busybox and `webimg`: busybox that EXPOSEs 80 and 8080.
fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s.rimg(["import", "-c", "EXPOSE 80", "-c", "EXPOSE 8080/tcp"])
        .arg(busybox_tar())
        .arg("webimg")
        .ok();
    s
}

/// Creates a user network named after `tag` and this process, on `subnet`; its name.
fn user_network(s: &Store, tag: &str, subnet: &str) -> String {
    let net = format!("rt-{tag}-{}", std::process::id());
    s.rimg(["network", "create", "--subnet", subnet, &net]).ok();
    net
}

/// A detached busybox httpd serving `page` on port 80, with `extra` run flags.
fn web(s: &Store, name: &str, page: &str, extra: &[&str]) -> String {
    let script =
        format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www");
    s.rimg(["run", "-d", "--name", name])
        .args(extra)
        .args(["busybox", "sh", "-c", &script])
        .ok()
        .trim()
        .to_string()
}

/// `curl` of a URL on 127.0.0.1: the body, if it answered.
fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "2", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn inspect(s: &Store, name: &str, fmt: &str) -> String {
    s.rimg(["inspect", "-f", fmt, name]).ok().trim().to_string()
}

/// Addresses allocated to container `id` (files under /run/rimg/ipam naming it).
fn allocations_of(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in std::fs::read_dir("/run/rimg/ipam")
        .into_iter()
        .flatten()
        .flatten()
    {
        for a in std::fs::read_dir(b.path()).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(a.path()).unwrap_or_default();
            if text.lines().next() == Some(id) {
                out.push(a.path().display().to_string());
            }
        }
    }
    out
}

/// What a failed port test shows: the container, its log, the addresses, the nat table.
fn diagnose(s: &Store, name: &str) -> String {
    let ps = s.rimg(["ps", "-a"]).output();
    let logs = s.rimg(["logs", name]).output();
    format!(
        "{}{}{}\naddresses:\n{}\n{}",
        String::from_utf8_lossy(&ps.stdout),
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr),
        sh("grep -r . /run/rimg/ipam/rimg0 || true"),
        sh("iptables-save -t nat | grep 1808 || true") + &sh("ip neigh show dev rimg0 || true")
    )
}

#[test]
fn two_web_servers_on_published_ports_serve_their_own_pages() {
    require_tool("curl");
    let s = store();
    let _c = Cleanup(&s);
    web(&s, "one", "page-one", &["-p", "127.0.0.1:18081:80"]);
    web(&s, "two", "page-two", &["-p", "127.0.0.1:18082:80"]);
    assert!(
        eventually(20, || curl("http://127.0.0.1:18081/").as_deref()
            == Some("page-one\n")),
        "18081 did not serve page-one:\n{}",
        diagnose(&s, "one")
    );
    assert!(
        eventually(20, || curl("http://127.0.0.1:18082/").as_deref()
            == Some("page-two\n")),
        "18082 did not serve page-two:\n{}",
        diagnose(&s, "two")
    );
    assert_eq!(s.rimg(["port", "one"]).ok(), "80/tcp -> 127.0.0.1:18081\n");
    assert_eq!(s.rimg(["port", "two", "80/tcp"]).ok(), "127.0.0.1:18082\n");
    let ps = s.rimg(["ps"]).ok();
    assert!(ps.contains("127.0.0.1:18081->80/tcp"), "{ps}");
    assert!(ps.contains("127.0.0.1:18082->80/tcp"), "{ps}");
    let ports = inspect(&s, "one", "{{json .NetworkSettings.Ports}}");
    assert_eq!(
        ports,
        r#"{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18081"}]}"#
    );
    let ip = inspect(&s, "one", "{{.NetworkSettings.IPAddress}}");
    assert!(ip.starts_with("10.89.0."), "{ip}");
    s.rimg(["rm", "-f", "one", "two"]).ok();
    assert!(curl("http://127.0.0.1:18081/").is_none());
    assert_no_mounts(s.dir.path());
}

#[test]
fn user_network_resolves_names_and_the_default_bridge_does_not() {
    let s = store();
    let _c = Cleanup(&s);
    let net = user_network(&s, "dns", "10.89.231.0/24");
    // --dns 127.0.0.1: names aardvark-dns does not know go nowhere else.
    web(
        &s,
        "web",
        "by-name",
        &[
            "--network",
            &net,
            "--network-alias",
            "www",
            "--dns",
            "127.0.0.1",
        ],
    );
    let fetch = |host: &str, net: &str| {
        s.rimg([
            "run",
            "--rm",
            "--network",
            net,
            "--dns",
            "127.0.0.1",
            "busybox",
            "sh",
            "-c",
        ])
        .arg(format!(
            "for i in $(seq 50); do wget -q -O- http://{host}/ && exit 0; sleep 0.2; done; exit 1"
        ))
        .output()
    };
    let out = fetch("web", &net);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by-name\n");
    let out = fetch("www", &net);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by-name\n");

    // The default bridge: addresses work, names do not.
    web(&s, "plain", "by-address", &["--dns", "127.0.0.1"]);
    let ip = inspect(&s, "plain", "{{.NetworkSettings.IPAddress}}");
    let out = fetch(&ip, "bridge");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by-address\n");
    let out = s
        .rimg(["run", "--rm", "--dns", "127.0.0.1", "busybox", "sh", "-c"])
        .arg("wget -q -O- http://plain/")
        .output();
    assert!(
        !out.status.success(),
        "a name resolved on the default bridge"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("by-address"));
    s.rimg(["rm", "-f", "web", "plain"]).ok();
    s.rimg(["network", "rm", &net]).ok();
}

#[test]
fn none_has_only_lo_publish_all_and_a_taken_port_fails_cleanly() {
    let s = store();
    let _c = Cleanup(&s);
    let links = s
        .rimg([
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ip",
            "-o",
            "link",
        ])
        .ok();
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, ["lo"], "{links}");

    let id = s
        .rimg(["run", "-d", "-P", "--name", "all", "webimg", "sleep", "60"])
        .ok()
        .trim()
        .to_string();
    let ports = s.rimg(["port", "all"]).ok();
    let mut published: Vec<&str> = ports
        .lines()
        .filter_map(|l| l.split(" -> ").next())
        .collect();
    published.sort();
    assert_eq!(published, ["80/tcp", "8080/tcp"], "{ports}");
    s.rimg(["rm", "-f", &id]).ok();

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = s
        .rimg(["run", "-d", "--name", "late", "-p"])
        .arg(format!("127.0.0.1:{port}:80"))
        .args(["busybox", "sleep", "60"])
        .output();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&port.to_string()) && err.contains("in use"),
        "{err}"
    );
    assert_eq!(s.rimg(["ps", "-aq"]).ok(), "");
    assert_no_mounts(s.dir.path());
}

/// The monitor pid of container `id`.
fn monitor_pid(s: &Store, id: &str) -> i32 {
    let p = s.root().join("rimg/containers").join(id).join("state.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["monitor_pid"].as_i64().unwrap() as i32
}

/// The interface indexes of the veths on `bridge` (netavark's names, `vethN`, are reused
/// at once by other tests' containers; indexes are not).
fn veths_of(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").next())
        .map(str::to_string)
        .collect()
}

fn index_exists(index: &str) -> bool {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path().join("ifindex")).is_ok_and(|i| i.trim() == index))
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn nothing_is_left_after_rm_and_network_rm_even_after_a_killed_monitor() {
    require_tool("iptables-save");
    require_tool("nft");
    let s = store();
    let _c = Cleanup(&s);
    let subnet = "10.89.232.0/24";
    let net = user_network(&s, "gone", subnet);
    let bridge = inspect_network(&s, &net);
    let a = web(
        &s,
        "a",
        "a",
        &["--network", &net, "-p", "127.0.0.1:18084:80"],
    );
    let b = s
        .rimg(["run", "-d", "--network", &net, "busybox", "sleep", "60"])
        .ok()
        .trim()
        .to_string();
    assert!(
        eventually(20, || veths_of(&bridge).len() == 2),
        "{:?}",
        veths_of(&bridge)
    );
    let veths = veths_of(&bridge);
    assert!(!allocations_of(&b).is_empty());
    assert!(sh("iptables-save").contains("10.89.232.0/24"));

    // A killed monitor leaves everything behind until rm -f.
    let m = monitor_pid(&s, &b);
    sh(&format!("kill -9 {m}"));
    assert!(eventually(20, || !Path::new(&format!("/proc/{m}")).exists()));
    s.rimg(["rm", "-f", &a, &b]).ok();
    s.rimg(["network", "rm", &net]).ok();

    for v in &veths {
        assert!(!index_exists(v), "veth with index {v} left");
    }
    assert!(!link_exists(&bridge), "bridge {bridge} left");
    for id in [&a, &b] {
        assert!(allocations_of(id).is_empty(), "{:?}", allocations_of(id));
        assert!(!Path::new("/run/rimg/netns").join(id).exists());
        assert!(!sh("iptables-save").contains(id.as_str()));
    }
    let rules = sh("iptables-save");
    assert!(
        !rules.contains(subnet) && !rules.contains("18084"),
        "{rules}"
    );
    let nft = sh("nft list ruleset");
    assert!(
        !nft.contains("10.89.232.") && !nft.contains("18084"),
        "{nft}"
    );
    assert_no_mounts(s.dir.path());
}

/// The bridge interface of network `name`.
fn inspect_network(s: &Store, name: &str) -> String {
    let out = s.rimg(["network", "inspect", name]).ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["network_interface"].as_str().unwrap().to_string()
}

/// Kills the host's web server when the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_build_step_fetches_from_the_host_through_the_bridge_gateway() {
    require_tool("busybox");
    let s = store();
    let _c = Cleanup(&s);
    let www = s.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("file.txt"), "from-the-host\n").unwrap();
    let _server = Server(
        Command::new("busybox")
            .args(["httpd", "-f", "-p", "0.0.0.0:18085", "-h"])
            .arg(&www)
            .spawn()
            .unwrap(),
    );
    assert!(eventually(20, || curl("http://127.0.0.1:18085/file.txt").is_some()));
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN wget -q -O /fetched.txt http://10.89.0.1:18085/file.txt\n\
         RUN --network=none sh -c 'ip -o link | wc -l > /links'\n",
    )
    .unwrap();
    s.rimg(["build", "-q", "-t", "fetched"]).arg(&ctx).ok();
    let fetched = s.rimg(["run", "--rm", "fetched", "cat", "/fetched.txt", "/links"]);
    assert_eq!(
        fetched.ok(),
        "from-the-host\n1\n",
        "RUN's fetch, RUN --network=none's links"
    );
    assert_no_mounts(s.dir.path());
}

#[test]
fn containers_join_another_s_namespace_and_connect_to_networks_while_running() {
    let s = store();
    let _c = Cleanup(&s);
    web(&s, "side", "sidecar", &[]);
    // --network container:NAME: the same namespace, so the server is on 127.0.0.1.
    let out = s
        .rimg(["run", "--rm", "--network", "container:side", "busybox", "sh", "-c"])
        .arg("for i in $(seq 50); do wget -q -O- http://127.0.0.1/ && exit 0; sleep 0.2; done; exit 1")
        .ok();
    assert_eq!(out, "sidecar\n");

    let net = user_network(&s, "conn", "10.89.233.0/24");
    let id = s
        .rimg(["run", "-d", "--name", "late", "busybox", "sleep", "60"])
        .ok()
        .trim()
        .to_string();
    s.rimg(["network", "connect", &net, "late"]).ok();
    let addrs = s.rimg(["exec", "late", "ip", "-o", "-4", "addr"]).ok();
    assert!(addrs.contains("10.89.233."), "{addrs}");
    assert_eq!(allocations_of(&id).len(), 2);
    s.rimg(["network", "rm", &net]).fails();
    s.rimg(["network", "disconnect", &net, "late"]).ok();
    let addrs = s.rimg(["exec", "late", "ip", "-o", "-4", "addr"]).ok();
    assert!(!addrs.contains("10.89.233."), "{addrs}");
    assert_eq!(allocations_of(&id).len(), 1);
    s.rimg(["network", "rm", &net]).ok();
    s.rimg(["rm", "-f", "side", "late"]).ok();
    assert!(allocations_of(&id).is_empty());
    assert_no_mounts(s.dir.path());
}

#[test]
fn the_container_sees_its_address_hostname_added_hosts_and_dns() {
    let s = store();
    let _c = Cleanup(&s);
    let net = user_network(&s, "etc", "10.89.234.0/24");
    let out = s
        .rimg([
            "run",
            "--rm",
            "--network",
            &net,
            "--ip",
            "10.89.234.77",
            "--hostname",
            "box",
        ])
        .args([
            "--add-host",
            "db:10.89.234.9",
            "--add-host",
            "hostgw:host-gateway",
        ])
        .args([
            "busybox",
            "sh",
            "-c",
            "ip -o -4 addr show eth0; hostname; cat /etc/hosts",
        ])
        .ok();
    assert!(out.contains("inet 10.89.234.77/24"), "{out}");
    assert!(out.contains("\nbox\n"), "{out}");
    assert!(out.contains("10.89.234.77\tbox"), "{out}");
    assert!(out.contains("10.89.234.9\tdb"), "{out}");
    assert!(out.contains("10.89.234.1\thostgw"), "{out}");
    // The default bridge without DNS: --dns is the container's nameserver.
    let resolv = s
        .rimg([
            "run",
            "--rm",
            "--dns",
            "127.0.0.1",
            "busybox",
            "cat",
            "/etc/resolv.conf",
        ])
        .ok();
    assert_eq!(resolv, "nameserver 127.0.0.1\n");
    // An address in use is refused.
    s.rimg([
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        &net,
        "--ip",
        "10.89.234.50",
    ])
    .args(["busybox", "sleep", "60"])
    .ok();
    let err = s
        .rimg([
            "run",
            "--rm",
            "--network",
            &net,
            "--ip",
            "10.89.234.50",
            "busybox",
            "true",
        ])
        .fails();
    assert!(err.contains("already in use"), "{err}");
    s.rimg(["rm", "-f", "holder"]).ok();
    s.rimg(["network", "rm", &net]).ok();
}

#[test]
fn system_prune_removes_networks_no_container_is_on() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let _c = Cleanup(&s);
    let kept = user_network(&s, "kept", "10.89.251.0/24");
    let unused = user_network(&s, "unused", "10.89.252.0/24");
    s.rimg([
        "run",
        "-d",
        "--name",
        "on-kept",
        "--network",
        &kept,
        "busybox",
        "sleep",
        "60",
    ])
    .ok();
    // A running container keeps its network (a stopped one is pruned first, and its network
    // with it, as in Docker).
    let out = s.rimg(["system", "prune", "-f"]).ok();
    assert!(
        out.contains(&format!("Deleted Networks:\n{unused}\n")),
        "{out}"
    );
    let ls = s.rimg(["network", "ls", "--format", "{{.Name}}"]).ok();
    assert!(ls.lines().any(|l| l == kept), "{ls}");
    assert!(!ls.lines().any(|l| l == unused), "{ls}");
    s.rimg(["rm", "-f", "on-kept"]).ok();
    s.rimg(["network", "rm", &kept]).ok();
}
