//! `rimg pull`, `push`, `login`, `logout` against a real registry (Debian's docker-registry,
//! distribution 2.8, started per test on 127.0.0.1), skopeo on the other side, and faults
//! (issue 6: registries).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rimg_tests::archives::{gzip, sha256, store_state, tmp_files};
use rimg_tests::registry::{FakeRegistry, FakeRequest, FakeResponse, KillingProxy, Registry};
use rimg_tests::tree::Layer;
use rimg_tests::{require_tool, Cmd, Store};
use serde_json::json;

/// `rimg ARGS` against `s`, with credentials kept beside the store (never the user's).
fn rimg<I, S>(s: &Store, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = s.rimg(args);
    c.0.env("XDG_CONFIG_HOME", s.path("config"))
        .env("HOME", s.path("home"))
        .env("XDG_RUNTIME_DIR", s.path("run"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG");
    c
}

/// Three layers: a base, a change, and a whiteout of part of the base.
fn three_layers() -> Vec<Vec<u8>> {
    vec![
        Layer::new()
            .dir("etc", 0o755)
            .file("etc/os-release", b"NAME=test\n", 0o644)
            .dir("data", 0o755)
            .file("data/big", &vec![7u8; 3 << 20], 0o644)
            .file("data/gone", b"bye", 0o600)
            .build(),
        Layer::new()
            .dir("app", 0o755)
            .file("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
            .symlink("app/link", "run.sh")
            .build(),
        Layer::new()
            .dir("data", 0o755)
            .whiteout("data/gone")
            .build(),
    ]
}

/// `{{.Id}} {{json .RootFS}}` of an image.
fn identity(s: &Store, image: &str) -> String {
    rimg(
        s,
        ["inspect", "--format", "{{.Id}} {{json .RootFS}}", image],
    )
    .ok()
    .trim()
    .to_string()
}

/// The sha256 of `rimg save ID`: the same layers and config give the same bytes, so equal
/// hashes mean the same file trees and the same image.
fn saved(s: &Store, id: &str) -> String {
    let file = s.path(&format!("saved-{}.tar", &id[7..19]));
    rimg(s, ["save", "-o"]).arg(&file).arg(id).ok();
    sha256(&fs::read(file).expect("read saved"))
}

fn id_of(s: &Store, image: &str) -> String {
    rimg(s, ["inspect", "--format", "{{.Id}}", image])
        .ok()
        .trim()
        .to_string()
}

#[test]
fn push_then_pull_into_a_fresh_store_gives_the_same_images() {
    let reg = Registry::start();
    let src = Store::new();
    src.busybox("busybox:latest");
    src.image_from_layers(&three_layers(), "three:v1");
    let addr = reg.addr();

    let out = rimg(&src, ["push", "busybox", &format!("{addr}/busybox")]).ok();
    assert!(
        out.starts_with(&format!("The push refers to repository [{addr}/busybox]\n")),
        "{out}"
    );
    assert!(out.contains(": Pushed\n"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("latest: digest: sha256:") && last.contains(" size: "),
        "{out}"
    );
    let pushed_digest = last.split_whitespace().nth(2).unwrap().to_string();
    for compress in ["gzip", "zstd", "none"] {
        rimg(&src, ["push", "--compress", compress, "three:v1"])
            .arg(format!("{addr}/three-{compress}:v1"))
            .ok();
    }
    // The pushed manifest is OCI, with layers of the asked compression.
    let m = reg.manifest("three-zstd", "v1");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let m = reg.manifest("three-none", "v1");
    assert_eq!(
        m["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );

    let dst = Store::new();
    let name = format!("{addr}/busybox:latest");
    let out = rimg(&dst, ["pull", &format!("{addr}/busybox")]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Using default tag: latest", "{out}");
    assert_eq!(lines[1], "latest: Pulling from busybox", "{out}");
    assert!(lines[2].ends_with(": Pull complete"), "{out}");
    assert_eq!(lines[3], format!("Digest: {pushed_digest}"));
    assert_eq!(
        lines[4],
        format!("Status: Downloaded newer image for {name}")
    );
    assert_eq!(lines[5], name);
    assert_eq!(identity(&dst, &name), identity(&src, "busybox"));
    let id = id_of(&src, "busybox");
    assert_eq!(saved(&dst, &id), saved(&src, &id));

    // RepoDigests: recorded by push in the source and by pull in the destination.
    let repo_digest = format!("{addr}/busybox@{pushed_digest}");
    for s in [&src, &dst] {
        let rd = rimg(s, ["inspect", "--format", "{{json .RepoDigests}}", &id]).ok();
        assert!(rd.contains(&repo_digest), "{rd}");
    }
    let listing = rimg(&dst, ["images", "--digests"]).ok();
    assert!(listing.contains(&pushed_digest), "{listing}");

    // A second pull fetches nothing.
    let out = rimg(&dst, ["pull", &name]).ok();
    assert!(out.contains(": Already exists\n"), "{out}");
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}")),
        "{out}"
    );

    // Every compression of the three-layer image comes back as the same image.
    let three = id_of(&src, "three:v1");
    for compress in ["gzip", "zstd", "none"] {
        let fresh = Store::new();
        let name = format!("{addr}/three-{compress}:v1");
        let out = rimg(&fresh, ["pull", &name]).ok();
        assert_eq!(out.matches(": Pull complete").count(), 3, "{out}");
        assert_eq!(
            identity(&fresh, &name),
            identity(&src, "three:v1"),
            "{compress}"
        );
        assert_eq!(saved(&fresh, &three), saved(&src, &three), "{compress}");
        assert!(tmp_files(&fresh.root()).is_empty());
    }

    // Pull by digest: stored, not tagged.
    let fresh = Store::new();
    let by_digest = format!("{addr}/busybox@{pushed_digest}");
    rimg(&fresh, ["pull", &by_digest]).ok();
    assert_eq!(id_of(&fresh, &by_digest), id);
}

#[test]
fn push_format_v2s2_writes_a_docker_manifest_that_skopeo_and_rimg_read() {
    require_tool("skopeo");
    let reg = Registry::start();
    let s = Store::new();
    s.image_from_layers(&three_layers(), "three:v1");
    let addr = reg.addr();
    let dest = format!("{addr}/three:docker");
    rimg(&s, ["push", "--format", "v2s2", "three:v1", &dest]).ok();
    let m = reg.manifest("three", "docker");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    let inspected = rimg_tests::sh(&format!(
        "skopeo inspect --tls-verify=false --raw docker://{dest}"
    ));
    assert!(
        inspected.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{inspected}"
    );
    // The same blobs as the OCI push: pushing it that way too uploads no layer again.
    let out = rimg(&s, ["push", "three:v1", &format!("{addr}/three:oci")]).ok();
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");
    let dst = Store::new();
    rimg(&dst, ["pull", &dest]).ok();
    let id = id_of(&s, "three:v1");
    assert_eq!(id_of(&dst, &dest), id);
    assert_eq!(saved(&dst, &id), saved(&s, &id));
    let err = rimg(
        &s,
        [
            "push",
            "--format",
            "v2s2",
            "--compress",
            "zstd",
            "three:v1",
            &dest,
        ],
    )
    .fails();
    assert!(
        err.contains("Docker v2 schema 2 has no zstd layers"),
        "{err}"
    );
}

#[test]
fn pull_all_tags_fetches_every_tag_of_the_repository() {
    let reg = Registry::start();
    let s = Store::new();
    s.busybox("busybox:latest");
    s.image_from_layers(&three_layers(), "three:v1");
    let addr = reg.addr();
    rimg(&s, ["push", "busybox", &format!("{addr}/mixed:bb")]).ok();
    rimg(&s, ["push", "three:v1", &format!("{addr}/mixed:three")]).ok();
    rimg(&s, ["push", "three:v1", &format!("{addr}/mixed:again")]).ok();

    let dst = Store::new();
    let out = rimg(&dst, ["pull", "-a", &format!("{addr}/mixed")]).ok();
    assert_eq!(out.matches(": Pulling from mixed").count(), 3, "{out}");
    assert!(out.ends_with(&format!("\n{addr}/mixed\n")), "{out}");
    for (tag, image) in [
        ("bb", "busybox"),
        ("three", "three:v1"),
        ("again", "three:v1"),
    ] {
        assert_eq!(
            id_of(&dst, &format!("{addr}/mixed:{tag}")),
            id_of(&s, image),
            "{tag}"
        );
    }
    let err = rimg(&dst, ["pull", "-a", &format!("{addr}/mixed:bb")]).fails();
    assert!(
        err.contains("a tag or digest cannot be used with --all-tags"),
        "{err}"
    );
}

#[test]
fn pull_all_tags_follows_the_pages_of_the_tag_list() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = log.clone();
    let f = FakeRegistry::new(move |req: &FakeRequest, _me: &str| -> FakeResponse {
        seen.lock().unwrap().push(req.path.clone());
        match req.path.as_str() {
            "/v2/" => (200, vec![], b"{}".to_vec()),
            "/v2/img/tags/list" => (
                200,
                vec![(
                    "Link".into(),
                    "</v2/img/tags/list?n=1&last=one>; rel=\"next\"".into(),
                )],
                br#"{"name":"img","tags":["one"]}"#.to_vec(),
            ),
            "/v2/img/tags/list?n=1&last=one" => {
                (200, vec![], br#"{"name":"img","tags":["two"]}"#.to_vec())
            }
            _ => (
                404,
                vec![],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .to_vec(),
            ),
        }
    });
    let s = Store::new();
    let err = rimg(&s, ["pull", "-a", &format!("{}/img", f.addr())]).fails();
    // Both pages were read before the first pull, which finds nothing.
    assert!(err.contains("img:one: manifest unknown"), "{err}");
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter().any(|p| p == "/v2/img/tags/list?n=1&last=one"),
        "{log:?}"
    );
}

#[test]
fn push_skips_blobs_the_registry_has_and_mounts_across_repositories() {
    let reg = Registry::start();
    let s = Store::new();
    s.image_from_layers(&three_layers(), "three:v1");
    let addr = reg.addr();
    let first = rimg(&s, ["push", "three:v1", &format!("{addr}/a/three:v1")]).ok();
    assert_eq!(first.matches(": Pushed").count(), 3, "{first}");
    let again = rimg(&s, ["push", "three:v1", &format!("{addr}/a/three:v2")]).ok();
    assert_eq!(
        again.matches(": Layer already exists").count(),
        3,
        "{again}"
    );
    let other = rimg(&s, ["push", "three:v1", &format!("{addr}/b/three:v1")]).ok();
    assert_eq!(
        other.matches(": Mounted from a/three").count(),
        3,
        "{other}"
    );
    // Same layers, same config, same manifest everywhere.
    let digest = |out: &str| {
        out.lines()
            .last()
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(digest(&first), digest(&again));
    assert_eq!(digest(&first), digest(&other));

    // A store that pulled from one repository mounts from it when pushing to another.
    let puller = Store::new();
    rimg(&puller, ["pull", &format!("{addr}/a/three:v1")]).ok();
    let out = rimg(
        &puller,
        [
            "push",
            &format!("{addr}/a/three:v1"),
            &format!("{addr}/c/three"),
        ],
    )
    .ok();
    assert_eq!(out.matches(": Mounted from a/three").count(), 3, "{out}");
}

#[test]
fn skopeo_reads_what_rimg_pushed_and_rimg_pulls_what_skopeo_pushed() {
    require_tool("skopeo");
    let reg = Registry::start();
    let s = Store::new();
    s.busybox("busybox:latest");
    s.image_from_layers(&three_layers(), "three:v1");
    let addr = reg.addr();
    rimg(&s, ["push", "three:v1", &format!("{addr}/three:v1")]).ok();

    // skopeo copies (and so verifies every digest of) what rimg pushed.
    let oci = s.path("oci");
    let ok = |args: &[&str]| {
        let out = std::process::Command::new("skopeo")
            .args(args)
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{addr}/three:v1"),
        &format!("oci:{}:three", oci.display()),
    ]);
    let inspected: serde_json::Value = serde_json::from_str(&ok(&[
        "inspect",
        "--config",
        &format!("oci:{}:three", oci.display()),
    ]))
    .unwrap();
    assert_eq!(inspected["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        sha256(
            &ok(&[
                "inspect",
                "--raw",
                "--config",
                &format!("oci:{}:three", oci.display())
            ])
            .into_bytes()
        ),
        id_of(&s, "three:v1")
    );

    // skopeo pushes from rimg's store (OCI layout, gzip) and from a docker-archive (schema 2).
    ok(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:three:v1", s.root().display()),
        &format!("docker://{addr}/sk/three:v1"),
    ]);
    let archive = s.path("bb.tar");
    rimg(&s, ["save", "-o"]).arg(&archive).arg("busybox").ok();
    ok(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{addr}/sk/busybox:latest"),
    ]);
    assert_eq!(
        reg.manifest("sk/busybox", "latest")["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        reg.manifest("sk/three", "v1")["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let fresh = Store::new();
    rimg(&fresh, ["pull", &format!("{addr}/sk/three:v1")]).ok();
    rimg(&fresh, ["pull", &format!("{addr}/sk/busybox")]).ok();
    let three = id_of(&s, "three:v1");
    assert_eq!(id_of(&fresh, &format!("{addr}/sk/three:v1")), three);
    assert_eq!(saved(&fresh, &three), saved(&s, &three));
    let bb = id_of(&s, "busybox");
    assert_eq!(id_of(&fresh, &format!("{addr}/sk/busybox")), bb);
    assert_eq!(saved(&fresh, &bb), saved(&s, &bb));
}

/// Stores an image of one small layer whose config says `arch`, through the library.
fn image_for_arch(s: &Store, arch: &str, tag: &str) -> String {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let layer = Layer::new()
        .file(&format!("arch-{arch}"), arch.as_bytes(), 0o644)
        .build();
    let l = images.store().ingest_layer(&layer[..], None).unwrap();
    let mut config = rimg::image::ImageConfig::new_for_host();
    config.architecture = arch.into();
    images
        .create(
            &[l.digest],
            config,
            &[rimg::image::Reference::parse(tag).unwrap()],
        )
        .unwrap()
        .id
        .to_string()
}

#[test]
fn pull_picks_the_platform_from_an_index() {
    let reg = Registry::start();
    let s = Store::new();
    let host = rimg::image::config::host_arch();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let host_id = image_for_arch(&s, host, "multi:host");
    let other_id = image_for_arch(&s, other, "multi:other");
    let addr = reg.addr();
    let mut entries = Vec::new();
    for (tag, arch) in [("host", host), ("other", other)] {
        let out = rimg(
            &s,
            [
                "push",
                &format!("multi:{tag}"),
                &format!("{addr}/multi:{tag}"),
            ],
        )
        .ok();
        let last: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": last[2],
            "size": last[4].parse::<u64>().unwrap(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    assert_eq!(
        reg.put_manifest(
            "multi",
            "latest",
            "application/vnd.oci.image.index.v1+json",
            &index
        ),
        201
    );

    let fresh = Store::new();
    let out = rimg(&fresh, ["pull", &format!("{addr}/multi")]).ok();
    assert!(
        out.contains(&format!("Digest: {}", sha256(&index))),
        "{out}"
    );
    assert_eq!(id_of(&fresh, &format!("{addr}/multi")), host_id);
    rimg(
        &fresh,
        [
            "pull",
            "--platform",
            &format!("linux/{other}"),
            &format!("{addr}/multi"),
        ],
    )
    .ok();
    assert_eq!(id_of(&fresh, &format!("{addr}/multi")), other_id);
    let err = rimg(
        &fresh,
        [
            "pull",
            "--platform",
            "linux/s390x",
            &format!("{addr}/multi"),
        ],
    )
    .fails();
    assert!(
        err.contains("no image for linux/s390x in the manifest list"),
        "{err}"
    );
    let err = rimg(
        &fresh,
        ["pull", "--platform", "s390x", &format!("{addr}/multi")],
    )
    .fails();
    assert!(err.contains("invalid platform \"s390x\""), "{err}");
}

#[test]
fn a_registry_with_htpasswd_needs_login_and_logout_forgets() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret");
    let s = Store::new();
    s.busybox("busybox:latest");
    let addr = reg.addr();
    let dest = format!("{addr}/busybox");

    let err = rimg(&s, ["push", "busybox", &dest]).fails();
    assert!(err.starts_with("Error: pushing to "), "{err}");
    assert!(err.contains("authentication required"), "{err}");
    assert!(err.contains(&format!("rimg login {addr}")), "{err}");
    let err = rimg(&s, ["pull", &dest]).fails();
    assert!(err.contains("authentication required"), "{err}");

    let auth_file = s.path("config").join("rimg/auth.json");
    let err = rimg(&s, ["login", "-u", "alice", "--password-stdin", &addr]).stdin_bytes(b"wrong\n");
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains("incorrect username or password")
            && stderr.contains("refused this login")
            && !stderr.contains("stored"),
        "{stderr}"
    );
    assert!(!auth_file.exists(), "a refused login stored credentials");

    let out =
        rimg(&s, ["login", "-u", "alice", "--password-stdin", &addr]).stdin_bytes(b"s3cret\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let meta = fs::metadata(&auth_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    assert_eq!(doc["auths"][&addr]["auth"], "YWxpY2U6czNjcmV0"); // base64("alice:s3cret")

    rimg(&s, ["push", "busybox", &dest]).ok();
    let other = Store::new();
    // Another store, the credentials file given by REGISTRY_AUTH_FILE.
    let mut pull = other.rimg(["pull", &dest]);
    pull.0.env("REGISTRY_AUTH_FILE", &auth_file);
    pull.ok();
    // DOCKER_CONFIG's config.json is read too.
    let docker_dir = s.path("docker");
    fs::create_dir_all(&docker_dir).unwrap();
    fs::copy(&auth_file, docker_dir.join("config.json")).unwrap();
    let third = Store::new();
    let mut pull = rimg(&third, ["pull", &dest]);
    pull.0.env("DOCKER_CONFIG", &docker_dir);
    pull.ok();
    // So is ~/.docker/config.json, and a credential helper it names is asked, as Docker does.
    let helpers = s.path("helpers");
    fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-rimgtest");
    fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> \"$0.asked\"\n\
         echo '{\"ServerURL\":\"'$server'\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}'\n",
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let home_docker = s.path("home").join(".docker");
    fs::create_dir_all(&home_docker).unwrap();
    let path = format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap());
    for config in [
        serde_json::json!({ "credHelpers": { addr.clone(): "rimgtest" } }),
        serde_json::json!({ "credsStore": "rimgtest" }),
    ] {
        fs::write(home_docker.join("config.json"), config.to_string()).unwrap();
        let fourth = Store::new();
        let mut pull = rimg(&fourth, ["pull", &dest]);
        pull.0.env("HOME", s.path("home")).env("PATH", &path);
        pull.ok();
    }
    let asked = fs::read_to_string(helpers.join("docker-credential-rimgtest.asked")).unwrap();
    assert!(
        asked.lines().all(|l| l == addr) && asked.lines().count() >= 2,
        "{asked}"
    );
    fs::remove_file(home_docker.join("config.json")).unwrap();

    let out = rimg(&s, ["logout", &addr]).ok();
    assert_eq!(out, format!("Removing login credentials for {addr}\n"));
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    assert!(doc["auths"].get(&addr).is_none());
    assert_eq!(
        rimg(&s, ["logout", &addr]).ok(),
        format!("Not logged in to {addr}\n")
    );
    let err = rimg(&s, ["push", "busybox", &dest]).fails();
    assert!(err.contains("authentication required"), "{err}");
}

#[test]
fn run_and_build_pull_the_images_the_store_lacks() {
    let reg = Registry::start();
    let s = Store::new();
    s.busybox("busybox:latest");
    let addr = reg.addr();
    let remote = format!("{addr}/tools/busybox");
    rimg(&s, ["push", "busybox", &remote]).ok();

    // run: Docker's lines on stderr, the container's output alone on stdout.
    let fresh = Store::new();
    let out = rimg(&fresh, ["run", "--rm", &remote, "echo", "hi"]).output();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "Unable to find image '{remote}:latest' locally\nlatest: Pulling from tools/busybox\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "Status: Downloaded newer image for {remote}:latest"
        )),
        "{err}"
    );
    // Present now: no pull.
    let out = rimg(&fresh, ["run", "--rm", &remote, "true"]).output();
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    // --pull always asks the registry again; --pull never does not.
    let out = rimg(&fresh, ["run", "--rm", "--pull", "always", &remote, "true"]).output();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Status: Image is up to date"),
        "{out:?}"
    );
    let other = Store::new();
    let err = rimg(&other, ["run", "--rm", "--pull", "never", &remote, "true"]).fails();
    assert!(err.contains("no such image"), "{err}");
    assert!(rimg(&other, ["images", "-q"]).ok().trim().is_empty());

    // build: FROM and COPY --from pull what is missing, and --pull refreshes.
    let ctx = other.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {remote}\nCOPY --from={remote} /bin/busybox /copied/busybox\nRUN /copied/busybox true\n"),
    )
    .unwrap();
    let out = rimg(&other, ["build", "--progress", "plain", "-t", "built"])
        .arg(&ctx)
        .ok();
    assert!(out.contains(&format!("pulling {remote}")), "{out}");
    assert_eq!(
        out.matches("Pulling from tools/busybox").count(),
        1,
        "{out}"
    );
    assert!(out.contains("Successfully tagged built:latest"), "{out}");
    let out = rimg(
        &other,
        ["build", "--pull", "--progress", "plain", "-t", "built"],
    )
    .arg(&ctx)
    .ok();
    assert!(out.contains("Status: Image is up to date"), "{out}");
    // A base that is nowhere: the FROM line says so.
    fs::write(ctx.join("Dockerfile"), format!("FROM {addr}/nowhere\n")).unwrap();
    let err = rimg(&other, ["build", "-t", "x"]).arg(&ctx).fails();
    assert!(
        err.starts_with(&format!(
            "Error: Dockerfile line 1: FROM {addr}/nowhere: pulling {addr}/nowhere:latest: "
        )),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");
}

/// Runs `rimg ARGS` on a pseudo-terminal (python3's pty module), answering each prompt in
/// `answers` as it appears; returns what the terminal showed and whether rimg succeeded.
fn on_terminal(s: &Store, args: &[&str], answers: &[(&str, &str)]) -> (String, bool) {
    const DRIVER: &str = r#"
import os, pty, sys
n = int(sys.argv[1])
answers = [(sys.argv[2 + 2 * i], sys.argv[3 + 2 * i]) for i in range(n)]
cmd = sys.argv[2 + 2 * n:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
seen = b""
def read():
    global seen
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    seen += data
    return data
for prompt, answer in answers:
    while prompt.encode() not in seen:
        if not read():
            break
    os.write(fd, answer.encode() + b"\n")
while read():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
"#;
    let cmd = rimg(s, args);
    let mut py = std::process::Command::new("python3");
    py.arg("-c").arg(DRIVER).arg(answers.len().to_string());
    py.args(answers.iter().flat_map(|(q, a)| [*q, *a]));
    py.arg(cmd.0.get_program()).args(cmd.0.get_args());
    for (k, v) in cmd.0.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

#[test]
fn login_on_a_terminal_prompts_and_does_not_echo_the_password() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret");
    let s = Store::new();
    let addr = reg.addr();
    let auth_file = s.path("config").join("rimg/auth.json");

    let (screen, ok) = on_terminal(
        &s,
        &["login", &addr],
        &[("Username: ", "alice"), ("Password: ", "wrong")],
    );
    assert!(!ok, "{screen}");
    assert!(
        screen.contains("incorrect username or password"),
        "{screen}"
    );
    assert!(!auth_file.exists());

    let (screen, ok) = on_terminal(
        &s,
        &["login", &addr],
        &[("Username: ", "alice"), ("Password: ", "s3cret")],
    );
    assert!(ok, "{screen}");
    assert!(screen.contains("Username: alice"), "{screen}");
    assert!(
        !screen.contains("s3cret"),
        "the password was echoed: {screen}"
    );
    assert!(screen.contains("Login Succeeded"), "{screen}");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    assert_eq!(doc["auths"][&addr]["auth"], "YWxpY2U6czNjcmV0");

    // -u given: only the password is asked.
    let (screen, ok) = on_terminal(
        &s,
        &["login", "-u", "alice", &addr],
        &[("Password: ", "s3cret")],
    );
    assert!(ok, "{screen}");
    assert!(!screen.contains("Username:"), "{screen}");
}

/// A layer that gzip cannot shrink, so its blob is as big as the layer.
fn random_layer(mib: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut data = vec![0u8; mib << 20];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    Layer::new().file("noise", &data, 0o644).build()
}

#[test]
fn registry_killed_mid_pull_stores_nothing_and_a_retry_completes() {
    let mut reg = Registry::start();
    let s = Store::new();
    let mut layers = three_layers();
    layers.push(random_layer(16));
    s.image_from_layers(&layers, "big:v1");
    let addr = reg.addr();
    rimg(&s, ["push", "big:v1", &format!("{addr}/big:v1")]).ok();

    let dst = Store::new();
    dst.busybox("busybox:latest");
    let before = store_state(&dst.root());
    // The proxy kills the registry once 4 MiB of blobs have gone through it.
    let proxy = KillingProxy::new(&addr, reg.pid(), 4 << 20);
    let err = rimg(&dst, ["pull", &format!("{}/big:v1", proxy.addr())]).fails();
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the registry was not killed"
    );
    assert!(
        err.starts_with(&format!("Error: pulling {}/big:v1: ", proxy.addr())),
        "{err}"
    );
    assert!(
        err.contains("the connection to the registry was lost"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        store_state(&dst.root()),
        before,
        "a failed pull changed the store"
    );
    assert_eq!(tmp_files(&dst.root()), Vec::<String>::new());
    // Registry gone entirely: a clear error too.
    let err = rimg(&dst, ["pull", &format!("{addr}/big:v1")]).fails();
    assert!(
        err.contains(&format!("cannot reach registry {addr}")),
        "{err}"
    );

    reg.restart();
    rimg(&dst, ["pull", &format!("{addr}/big:v1")]).ok();
    let id = id_of(&s, "big:v1");
    assert_eq!(id_of(&dst, &format!("{addr}/big:v1")), id);
    assert_eq!(saved(&dst, &id), saved(&s, &id));
    assert!(tmp_files(&dst.root()).is_empty());
}

#[test]
fn a_download_cut_off_midway_resumes_where_it_broke() {
    let reg = Registry::start();
    let s = Store::new();
    s.image_from_layers(&[random_layer(16)], "noise:v1");
    let addr = reg.addr();
    rimg(&s, ["push", "noise:v1", &format!("{addr}/noise:v1")]).ok();

    let dst = Store::new();
    // Every connection open when 6 MiB have gone through is closed; later ones go through.
    let proxy = KillingProxy::cutting(&addr, 6 << 20);
    let out = rimg(&dst, ["pull", &format!("{}/noise:v1", proxy.addr())]).ok();
    assert!(proxy.fired.load(std::sync::atomic::Ordering::SeqCst));
    let retry = out
        .lines()
        .find(|l| l.contains("Retrying in 1 second"))
        .unwrap_or_else(|| panic!("no retry line: {out}"));
    assert!(retry.contains("the connection"), "{retry}");
    assert!(out.contains("Pull complete"), "{out}");
    let id = id_of(&s, "noise:v1");
    assert_eq!(id_of(&dst, &format!("{}/noise:v1", proxy.addr())), id);
    assert_eq!(saved(&dst, &id), saved(&s, &id));
    // Resumed with a range request: the 16 MiB blob did not come through twice.
    let sent = proxy.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 18 << 20, "{sent} bytes went through the proxy");
    assert!(tmp_files(&dst.root()).is_empty());
}

#[test]
fn an_upload_cut_off_midway_is_retried_and_completes() {
    let reg = Registry::start();
    let s = Store::new();
    // Random bytes: the gzip blob is as big as the layer, 16 MiB in three chunks.
    s.image_from_layers(&[random_layer(16)], "noise:v1");
    let addr = reg.addr();
    // Cut in the middle of the second chunk. distribution forgets an upload whose PATCH
    // broke off, so the layer goes again from the start.
    let proxy = KillingProxy::cutting_uploads(&addr, 10 << 20);
    let dest = format!("{}/noise:v1", proxy.addr());
    let out = rimg(&s, ["push", "noise:v1", &dest]).ok();
    assert!(proxy.fired.load(std::sync::atomic::Ordering::SeqCst));
    assert!(out.contains("Retrying in 1 second"), "{out}");
    assert!(out.contains("Pushed"), "{out}");

    let dst = Store::new();
    rimg(&dst, ["pull", &format!("{addr}/noise:v1")]).ok();
    let id = id_of(&s, "noise:v1");
    assert_eq!(id_of(&dst, &format!("{addr}/noise:v1")), id);
    assert_eq!(saved(&dst, &id), saved(&s, &id));
}

#[test]
fn a_chunk_the_registry_kept_but_failed_to_acknowledge_is_not_sent_again() {
    // A registry that stores the second PATCH and then answers 500: rimg asks where the
    // upload stands and goes on from there.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = log.clone();
    let have = std::sync::atomic::AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let f = FakeRegistry::new(move |req: &FakeRequest, _me: &str| -> FakeResponse {
        use std::sync::atomic::Ordering::SeqCst;
        let range = req
            .headers
            .get("content-range")
            .cloned()
            .unwrap_or_default();
        seen.lock()
            .unwrap()
            .push(format!("{} {} {range}", req.method, req.path));
        let at = |n: u64| {
            vec![
                (
                    "Location".to_string(),
                    "/v2/img/blobs/uploads/u1".to_string(),
                ),
                ("Range".to_string(), format!("0-{}", n.saturating_sub(1))),
            ]
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v2/") => (200, vec![], b"{}".to_vec()),
            ("HEAD", _) => (404, vec![], vec![]),
            ("POST", "/v2/img/blobs/uploads/") => {
                have.store(0, SeqCst);
                (202, at(0), vec![])
            }
            ("PATCH", "/v2/img/blobs/uploads/u1") => {
                let end: u64 = range.split('-').nth(1).unwrap().parse().unwrap();
                have.store(end + 1, SeqCst);
                if end + 1 > 8 << 20 && !failed.swap(true, SeqCst) {
                    return (500, vec![], br#"{"errors":[{"code":"UNKNOWN"}]}"#.to_vec());
                }
                (202, at(end + 1), vec![])
            }
            ("GET", "/v2/img/blobs/uploads/u1") => (204, at(have.load(SeqCst)), vec![]),
            ("PUT", p) if p.starts_with("/v2/img/blobs/uploads/u1?") => (201, vec![], vec![]),
            ("PUT", p) if p.starts_with("/v2/img/manifests/") => (201, vec![], vec![]),
            _ => (404, vec![], br#"{"errors":[{"code":"UNKNOWN"}]}"#.to_vec()),
        }
    });
    let s = Store::new();
    s.image_from_layers(&[random_layer(20)], "noise:v1");
    let out = rimg(&s, ["push", "noise:v1", &format!("{}/img:v1", f.addr())]).ok();
    assert!(out.contains("Retrying in 1 second"), "{out}");
    let log = log.lock().unwrap().clone();
    let patches: Vec<&String> = log.iter().filter(|l| l.starts_with("PATCH")).collect();
    // Three chunks of a blob of about 20 MiB, each sent once, then the status asked once.
    assert_eq!(patches.len(), 3, "{log:#?}");
    let mut ranges: Vec<&str> = patches
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    ranges.dedup();
    assert_eq!(ranges.len(), 3, "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("GET /v2/img/blobs/uploads/u1"))
            .count(),
        1,
        "{log:#?}"
    );
}

#[test]
fn a_registry_that_ignores_ranges_still_gets_a_resumed_download_right() {
    let layer = random_layer(2);
    let (layer_digest, layer_len) = (sha256(&layer), layer.len());
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_len}],
    }))
    .unwrap();
    let ranges = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = ranges.clone();
    let served = std::sync::atomic::AtomicBool::new(false);
    let image_id = config_digest.clone();
    let f = FakeRegistry::new(move |req: &FakeRequest, _me: &str| -> FakeResponse {
        match req.path.as_str() {
            "/v2/" => (200, vec![], b"{}".to_vec()),
            "/v2/img/manifests/latest" => (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                manifest.clone(),
            ),
            p if p == format!("/v2/img/blobs/{config_digest}") => (200, vec![], config.clone()),
            p if p == format!("/v2/img/blobs/{layer_digest}") => {
                seen.lock()
                    .unwrap()
                    .push(req.headers.get("range").cloned().unwrap_or_default());
                if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    // The whole blob, whatever range was asked for.
                    (200, vec![], layer.clone())
                } else {
                    // Announces it all, sends 1 MiB, hangs up.
                    let len = ("Content-Length".into(), layer.len().to_string());
                    (200, vec![len], layer[..1 << 20].to_vec())
                }
            }
            _ => (
                404,
                vec![],
                br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.to_vec(),
            ),
        }
    });
    let s = Store::new();
    let out = rimg(&s, ["pull", &format!("{}/img", f.addr())]).ok();
    assert!(out.contains("Retrying in 1 second"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    let ranges = ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], "");
    assert!(ranges[1].starts_with("bytes="), "{ranges:?}");
    let id = id_of(&s, &format!("{}/img", f.addr()));
    assert_eq!(id, image_id);
    assert!(tmp_files(&s.root()).is_empty());
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_rejected() {
    let reg = Registry::start();
    let s = Store::new();
    s.image_from_layers(&three_layers(), "three:v1");
    let addr = reg.addr();
    for compress in ["gzip", "none"] {
        rimg(&s, ["push", "--compress", compress, "three:v1"])
            .arg(format!("{addr}/{compress}:v1"))
            .ok();
        let m = reg.manifest(compress, "v1");
        let layer = m["layers"][1]["digest"].as_str().unwrap().to_string();
        let data = reg.blob_data(&layer);
        let mut bytes = fs::read(&data).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        fs::write(&data, &bytes).unwrap();

        let dst = Store::new();
        dst.busybox("busybox:latest");
        let before = store_state(&dst.root());
        let err = rimg(&dst, ["pull", &format!("{addr}/{compress}:v1")]).fails();
        assert!(
            err.contains(&format!(
                "layer {layer}: digest mismatch: expected {layer}, content is sha256:"
            )),
            "{compress}: {err}"
        );
        assert_eq!(store_state(&dst.root()), before, "{compress}");
        assert!(tmp_files(&dst.root()).is_empty());
    }
}

/// A fake registry serving one image whose manifest is `manifest`, the blobs in `blobs`, and
/// nothing else.
fn fake(
    manifest: Vec<u8>,
    content_type: &'static str,
    blobs: Vec<(String, Vec<u8>)>,
    no_length: bool,
) -> FakeRegistry {
    FakeRegistry::new(move |req: &FakeRequest, _me: &str| -> FakeResponse {
        if req.path == "/v2/" {
            return (200, vec![], b"{}".to_vec());
        }
        if req.path.starts_with("/v2/img/manifests/") {
            let mut h = vec![("Content-Type".to_string(), content_type.to_string())];
            if no_length {
                h.push(("x-no-length".into(), "1".into()));
            }
            return (200, h, manifest.clone());
        }
        for (d, b) in &blobs {
            if req.path == format!("/v2/img/blobs/{d}") {
                return (200, vec![], b.clone());
            }
        }
        (
            404,
            vec![],
            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
                .to_vec(),
        )
    })
}

#[test]
fn a_manifest_over_the_size_cap_is_rejected() {
    let s = Store::new();
    rimg(&s, ["images"]).ok();
    let padding = "x".repeat(5 << 20);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [],
        "annotations": {"padding": padding},
    }))
    .unwrap();
    for no_length in [false, true] {
        let f = fake(
            manifest.clone(),
            "application/vnd.oci.image.manifest.v1+json",
            vec![],
            no_length,
        );
        let before = store_state(&s.root());
        let err = rimg(&s, ["pull", &format!("{}/img", f.addr())]).fails();
        assert!(err.contains("is over the 4194304-byte limit"), "{err}");
        assert_eq!(store_state(&s.root()), before);
    }
}

#[test]
fn unknown_media_types_are_refused_with_a_clear_error() {
    let reg = Registry::start();
    let s = Store::new();
    s.busybox("busybox:latest");
    let addr = reg.addr();
    rimg(&s, ["push", "busybox", &format!("{addr}/bb")]).ok();
    // A layer of a type no runtime knows, in a manifest the registry accepts.
    let mut m = reg.manifest("bb", "latest");
    m["layers"][0]["mediaType"] = json!("application/vnd.example.layer.v1+weird");
    let body = serde_json::to_vec(&m).unwrap();
    assert_eq!(
        reg.put_manifest(
            "bb",
            "weird",
            "application/vnd.oci.image.manifest.v1+json",
            &body
        ),
        201
    );
    let dst = Store::new();
    let err = rimg(&dst, ["pull", &format!("{addr}/bb:weird")]).fails();
    assert!(
        err.contains("unsupported layer media type \"application/vnd.example.layer.v1+weird\""),
        "{err}"
    );
    // A config that is not an image's (an artifact).
    let mut m = reg.manifest("bb", "latest");
    m["config"]["mediaType"] = json!("application/vnd.cncf.helm.config.v1+json");
    let body = serde_json::to_vec(&m).unwrap();
    assert_eq!(
        reg.put_manifest(
            "bb",
            "chart",
            "application/vnd.oci.image.manifest.v1+json",
            &body
        ),
        201
    );
    let err = rimg(&dst, ["pull", &format!("{addr}/bb:chart")]).fails();
    assert!(
        err.contains("unsupported config media type \"application/vnd.cncf.helm.config.v1+json\""),
        "{err}"
    );
    // A manifest type the registry does not know either: only a fake serves it.
    let f = fake(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.example.manifest.v9+json"}"#.to_vec(),
        "application/vnd.example.manifest.v9+json",
        vec![],
        false,
    );
    let err = rimg(&dst, ["pull", &format!("{}/img", f.addr())]).fails();
    assert!(
        err.contains(
            "unsupported manifest media type \"application/vnd.example.manifest.v9+json\""
        ),
        "{err}"
    );
    assert!(tmp_files(&dst.root()).is_empty());
    assert_eq!(rimg(&dst, ["images", "-q"]).ok(), "");
}

/// A Docker v2 image of `layer`: the gzipped blob, the config and the manifest.
fn one_layer_image(layer: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let blob = gzip(layer);
    let config = serde_json::to_vec(&json!({
        "architecture": rimg::image::config::host_arch(),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(&blob), "size": blob.len()}],
    }))
    .unwrap();
    (blob, config, manifest)
}

#[test]
fn the_bearer_token_flow_is_followed() {
    // A registry that wants a token from its realm, which wants alice's password.
    let layer = Layer::new().file("hello", b"token world\n", 0o644).build();
    let (blob, config, manifest) = one_layer_image(&layer);
    let blobs = vec![
        (sha256(&config), config.clone()),
        (sha256(&blob), blob.clone()),
    ];
    let f = FakeRegistry::new(move |req: &FakeRequest, me: &str| -> FakeResponse {
        let auth = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        if req.path.starts_with("/token") {
            // base64("alice:pw")
            if auth == "Basic YWxpY2U6cHc=" {
                return (200, vec![], br#"{"token":"t0k3n"}"#.to_vec());
            }
            return (
                401,
                vec![],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_vec(),
            );
        }
        if auth != "Bearer t0k3n" {
            let challenge = format!("Bearer realm=\"http://{me}/token\",service=\"fake\"");
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_vec(),
            );
        }
        if req.path == "/v2/" {
            return (200, vec![], b"{}".to_vec());
        }
        if req.path.starts_with("/v2/img/manifests/") {
            return (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.docker.distribution.manifest.v2+json".into(),
                )],
                manifest.clone(),
            );
        }
        for (d, b) in &blobs {
            if req.path == format!("/v2/img/blobs/{d}") {
                return (200, vec![], b.clone());
            }
        }
        (404, vec![], Vec::new())
    });
    let s = Store::new();
    let name = format!("{}/img:latest", f.addr());
    let err = rimg(&s, ["pull", &name]).fails();
    assert!(
        err.contains("authentication required") || err.contains("unauthorized"),
        "{err}"
    );
    let out = rimg(&s, ["login", "-u", "alice", "-p", "pw", &f.addr()]).ok();
    assert_eq!(out, "Login Succeeded\n");
    rimg(&s, ["pull", &name]).ok();
    assert_eq!(id_of(&s, &name), sha256(&config));
}

#[test]
fn a_registry_that_stalls_mid_blob_times_out_and_the_pull_fails_in_one_line() {
    let (blob, config, manifest) = one_layer_image(&random_layer(1));
    let config_path = format!("/v2/img/blobs/{}", sha256(&config));
    let blob_path = format!("/v2/img/blobs/{}", sha256(&blob));
    let blob_requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = blob_requests.clone();
    let f = FakeRegistry::new(move |req: &FakeRequest, _me: &str| -> FakeResponse {
        if req.path == "/v2/" {
            return (200, vec![], b"{}".to_vec());
        }
        if req.path.starts_with("/v2/img/manifests/") {
            let h = vec![(
                "Content-Type".to_string(),
                "application/vnd.docker.distribution.manifest.v2+json".to_string(),
            )];
            return (200, h, manifest.clone());
        }
        if req.path == config_path {
            return (200, vec![], config.clone());
        }
        if req.path == blob_path {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let h = vec![("x-stall-after".to_string(), "100".to_string())];
            return (200, h, blob.clone());
        }
        (404, vec![], Vec::new())
    });
    let s = Store::new();
    rimg(&s, ["images"]).ok();
    let before = store_state(&s.root());
    let mut cmd = rimg(&s, ["pull", &format!("{}/img:v1", f.addr())]);
    cmd.0.env("RIMG_REGISTRY_TIMEOUT", "1s");
    let err = cmd.fails();
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("Error: "), "{err}");
    assert!(
        last.contains("timed out: the registry connection was silent for 1s"),
        "{err}"
    );
    // The stall is retryable: every attempt asked for the blob again.
    assert!(
        blob_requests.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "{err}"
    );
    assert_eq!(store_state(&s.root()), before);
    assert!(tmp_files(&s.root()).is_empty());

    // A value that is not a duration is refused before any request.
    let mut cmd = rimg(&s, ["pull", &format!("{}/img:v1", f.addr())]);
    cmd.0.env("RIMG_REGISTRY_TIMEOUT", "soon");
    let err = cmd.fails();
    assert!(
        err.contains("RIMG_REGISTRY_TIMEOUT=\"soon\" is not a duration"),
        "{err}"
    );
}
