//! `rimg build` through the real binary (issue 5): the seeds' web-ping Dockerfile on the
//! busybox base, the layer cache, multi-stage builds, .dockerignore, build args, ADD of a
//! local tar, RUN steps and their diffs, parser errors.

use std::fs;

use rimg_tests::builds::{build, context, layer_paths, outcome, read_file};
use rimg_tests::Store;
use serde_json::Value;

/// The web-ping app as a shell script: pings $TARGET with wget every $INTERVAL ms.
const APP: &str = r#"#!/bin/sh
echo "** web-ping ** Pinging: $TARGET; method: $METHOD; ${INTERVAL}ms intervals"
i=1
while true; do
  echo "Making request number: $i"
  if wget -q -O /dev/null "http://$TARGET/"; then echo "Got response status: 200"; fi
  i=$((i+1))
  sleep $((INTERVAL/1000))
done
"#;

/// The seeds' Dockerfile, with the shell app standing in for node.
const WEB_PING: &str = r#"FROM busybox

ENV TARGET="blog.sixeyed.com"
ENV METHOD="HEAD"
ENV INTERVAL="3000"

WORKDIR /web-ping
COPY app.sh .

CMD ["sh", "/web-ping/app.sh"]
"#;

/// The seeds' reordered Dockerfile: what changes least first.
const WEB_PING_REORDERED: &str = r#"FROM busybox

CMD ["sh", "/web-ping/app.sh"]

ENV TARGET="blog.sixeyed.com" \
    METHOD="HEAD" \
    INTERVAL="3000"

WORKDIR /web-ping
COPY app.sh .
"#;

fn inspect(s: &Store, image: &str) -> Value {
    let v: Value = serde_json::from_str(&s.rimg(["inspect", image]).ok()).unwrap();
    v[0].clone()
}

fn node(s: &Store, image: &str, path: &str) -> Option<rimg_fs::union::Node> {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let img = images.resolve(image).unwrap();
    let files = rimg::builder::layer::ImageFiles::open(images.store(), img.diff_ids()).unwrap();
    let ino = files.lookup(path)?;
    files.tree.node(ino).cloned()
}

#[test]
fn web_ping_builds_with_one_history_row_per_instruction() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let base_rows = s.rimg(["history", "-q", "busybox"]).ok().lines().count();
    let ctx = context(&s, "web-ping", &[("Dockerfile", WEB_PING), ("app.sh", APP)]);
    let out = build(&s, &ctx, &["-t", "web-ping"]);
    assert!(out.contains("[1/7] FROM busybox"), "{out}");
    assert!(out.contains("[5/7] WORKDIR /web-ping"), "{out}");
    let id = inspect(&s, "web-ping")["Id"].as_str().unwrap().to_string();
    assert!(
        out.contains(&format!("Successfully built {}", &id[7..19])),
        "{out}"
    );
    assert!(out.contains("Successfully tagged web-ping:latest"), "{out}");

    let hist = s.rimg(["history", "--no-trunc", "web-ping"]).ok();
    let rows: Vec<&str> = hist.lines().skip(1).collect();
    assert_eq!(rows.len(), base_rows + 6, "{hist}");
    for (row, created_by) in rows.iter().zip([
        "CMD [\"sh\" \"/web-ping/app.sh\"]",
        "COPY app.sh .",
        "WORKDIR /web-ping",
        "ENV INTERVAL=3000",
        "ENV METHOD=HEAD",
        "ENV TARGET=blog.sixeyed.com",
    ]) {
        assert!(row.contains(created_by), "{row:?} lacks {created_by:?}");
    }

    let config = &inspect(&s, "web-ping")["Config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for kv in [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TARGET=blog.sixeyed.com",
        "METHOD=HEAD",
        "INTERVAL=3000",
    ] {
        assert!(env.contains(&kv), "{env:?}");
    }
    assert_eq!(config["Cmd"], serde_json::json!(["sh", "/web-ping/app.sh"]));
    assert_eq!(config["WorkingDir"], "/web-ping");
    assert_eq!(
        read_file(&s, "web-ping", "/web-ping/app.sh").unwrap(),
        APP.as_bytes()
    );
    let app = node(&s, "web-ping", "/web-ping/app.sh").unwrap();
    assert_eq!((app.uid, app.gid, app.mode), (0, 0, 0o644));
}

#[test]
fn editing_the_app_reruns_copy_and_later_steps_only() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(&s, "web-ping", &[("Dockerfile", WEB_PING), ("app.sh", APP)]);
    build(&s, &ctx, &["-t", "web-ping"]);
    // Unchanged: every step is a hit and the image id is the same.
    let again = build(&s, &ctx, &["-t", "web-ping"]);
    for n in 2..=7 {
        assert_eq!(outcome(&again, n, 7), "CACHED", "{again}");
    }
    fs::write(ctx.join("app.sh"), format!("{APP}# v2\n")).unwrap();
    let out = build(&s, &ctx, &["-t", "web-ping:v2", "--explain"]);
    for n in 2..=5 {
        assert_eq!(outcome(&out, n, 7), "CACHED", "{out}");
    }
    for n in 6..=7 {
        assert!(outcome(&out, n, 7).starts_with("DONE"), "{out}");
    }
    assert!(
        out.contains("cache miss: source files changed: app.sh changed content"),
        "{out}"
    );
    assert_ne!(
        inspect(&s, "web-ping")["Id"],
        inspect(&s, "web-ping:v2")["Id"]
    );

    // The reordered Dockerfile: after one build, an app edit reruns only COPY.
    fs::write(ctx.join("Dockerfile"), WEB_PING_REORDERED).unwrap();
    build(&s, &ctx, &["-t", "web-ping:v3"]);
    fs::write(ctx.join("app.sh"), format!("{APP}# v3\n")).unwrap();
    let out = build(&s, &ctx, &["-t", "web-ping:v3"]);
    for n in 2..=4 {
        assert_eq!(outcome(&out, n, 5), "CACHED", "{out}");
    }
    assert!(outcome(&out, 5, 5).starts_with("DONE"), "{out}");
    let config = &inspect(&s, "web-ping:v3")["Config"];
    assert_eq!(config["Env"].as_array().unwrap().len(), 4);

    // `system df` counts the busybox layer the four images share once.
    let busybox_size = rimg_size(&s, "busybox");
    let df = s.rimg(["system", "df"]).ok();
    let images_row: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Images"))
        .unwrap()
        .split_whitespace()
        .collect();
    let total = parse_size(images_row[3]);
    assert!(
        total < busybox_size * 1.2,
        "df counts the shared base once: {df}"
    );
}

/// An image's SIZE in bytes from `rimg images`.
fn rimg_size(s: &Store, name: &str) -> f64 {
    let out = s.rimg(["images", "--format", "{{.Size}}", name]).ok();
    parse_size(out.trim())
}

fn parse_size(s: &str) -> f64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().unwrap();
    n * match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        u => panic!("unit {u}"),
    }
}

#[test]
fn builds_are_reproducible_and_the_cache_survives_prune() {
    let a = Store::new();
    let b = Store::new();
    // The same base in both stores (import stamps SOURCE_DATE_EPOCH).
    let base_a = a
        .rimg(["import", "-c", "CMD [\"sh\"]"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg(rimg_tests::busybox_tar())
        .arg("busybox")
        .ok();
    let base_b = b
        .rimg(["import", "-c", "CMD [\"sh\"]"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg(rimg_tests::busybox_tar())
        .arg("busybox")
        .ok();
    assert_eq!(base_a, base_b);
    let ctx = context(&a, "web-ping", &[("Dockerfile", WEB_PING), ("app.sh", APP)]);
    a.rimg(["build", "-q", "-t", "web-ping"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg(&ctx)
        .ok();
    // Another store, another context copy with other mtimes, no cache: the same image.
    let ctx_b = context(&b, "web-ping", &[("Dockerfile", WEB_PING), ("app.sh", APP)]);
    let q = b
        .rimg(["build", "-q", "--no-cache", "-t", "web-ping"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg(&ctx_b)
        .ok();
    assert_eq!(q.trim(), inspect(&a, "web-ping")["Id"].as_str().unwrap());
    assert_eq!(inspect(&a, "web-ping")["Created"], "2023-11-14T22:13:20Z");

    // Pruning keeps what the tagged image was built from.
    a.rimg(["image", "prune", "-f"]).ok();
    let out = build(&a, &ctx, &["-t", "web-ping"]);
    for n in 2..=7 {
        assert_eq!(outcome(&out, n, 7), "CACHED", "{out}");
    }
    // Once the image is gone, prune reclaims its layers and the steps run again.
    a.rimg(["rmi", "web-ping"]).ok();
    a.rimg(["image", "prune", "-f"]).ok();
    let out = build(&a, &ctx, &["-t", "web-ping"]);
    assert!(outcome(&out, 5, 7).starts_with("DONE"), "{out}");
}

#[test]
fn multi_stage_copy_from_dockerignore_build_args_and_add_tar() {
    let s = Store::new();
    s.busybox("busybox:latest");
    // A gzip'd tar for ADD to extract.
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1);
        b.append_data(&mut h, "pkg/bin/tool", &b"tool\n"[..])
            .unwrap();
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    };
    let ctx = context(
        &s,
        "ms",
        &[
            (
                "Dockerfile",
                r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
ARG VERSION=1.0
FROM ${BASE} AS build
ARG VERSION
ARG FLAVOR=plain
WORKDIR /src
COPY src/ ./
COPY --chmod=700 --chown=user:users run.sh /usr/local/bin/
ENV OUT=/out/app-${VERSION}-${FLAVOR:-none} \
    EMPTY=${UNSET:+x}
LABEL version="${VERSION}"

FROM scratch AS unused
COPY never.txt /

from busybox
copy --from=build /src /app
COPY --from=build /usr/local/bin/run.sh /bin/
ADD pkg.tar.gz /opt/
COPY *.txt /docs/
"#,
            ),
            ("src/main.sh", "echo main\n"),
            ("src/lib/util.sh", "echo util\n"),
            ("src/secret.key", "SECRET\n"),
            ("src/notes.md", "notes\n"),
            ("run.sh", "#!/bin/sh\n"),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            (".dockerignore", "**/*.key\n*.md\nsrc/*.md\n!src/notes.md\n"),
        ],
    );
    fs::write(ctx.join("pkg.tar.gz"), &tar).unwrap();
    let out = build(
        &s,
        &ctx,
        &[
            "-t",
            "multi",
            "--build-arg",
            "VERSION=2.5",
            "--build-arg",
            "NOPE=1",
        ],
    );
    assert!(
        !out.contains("never.txt"),
        "the unused stage is skipped: {out}"
    );
    let app = |p: &str| read_file(&s, "multi", p);
    assert_eq!(app("/app/main.sh").unwrap(), b"echo main\n");
    assert_eq!(app("/app/lib/util.sh").unwrap(), b"echo util\n");
    assert_eq!(app("/app/notes.md").unwrap(), b"notes\n");
    assert!(app("/app/secret.key").is_none(), ".dockerignore hides it");
    assert_eq!(app("/opt/pkg/bin/tool").unwrap(), b"tool\n");
    let tool = node(&s, "multi", "/opt/pkg/bin/tool").unwrap();
    assert_eq!((tool.uid, tool.gid, tool.mode), (7, 8, 0o755));
    let run = node(&s, "multi", "/bin/run.sh").unwrap();
    assert_eq!((run.uid, run.gid, run.mode), (1000, 100, 0o700));
    assert_eq!(app("/docs/a.txt").unwrap(), b"a\n");
    assert_eq!(app("/docs/b.txt").unwrap(), b"b\n");

    // The build stage's config, through --target.
    s.rimg([
        "build",
        "-q",
        "--target",
        "build",
        "-t",
        "stage",
        "--build-arg",
        "VERSION=2.5",
    ])
    .arg(&ctx)
    .ok();
    let config = &inspect(&s, "stage")["Config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"OUT=/out/app-2.5-plain"), "{env:?}");
    assert!(env.contains(&"EMPTY="), "{env:?}");
    assert_eq!(config["Labels"]["version"], "2.5");
    assert_eq!(config["WorkingDir"], "/src");
    let hist = s.rimg(["history", "--no-trunc", "stage"]).ok();
    assert!(
        hist.contains("ARG VERSION") && hist.contains("ARG FLAVOR"),
        "{hist}"
    );
}

#[test]
fn bad_dockerfiles_name_the_line() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let cases = [
        ("FROM busybox\nRUN true\nFORM x\n", "Dockerfile line 3: unknown instruction: FORM"),
        ("FROM busybox\nCOPY nothing-here /x\n", "Dockerfile line 2: COPY nothing-here /x: file not found in build context or excluded by .dockerignore: nothing-here"),
        // Missing here, so pulled; port 1 of this machine has no registry.
        ("FROM 127.0.0.1:1/nosuchimage\n", "Dockerfile line 1: FROM 127.0.0.1:1/nosuchimage: pulling 127.0.0.1:1/nosuchimage:latest: cannot reach registry 127.0.0.1:1"),
        ("FROM busybox\nENV A=\"x\n", "Dockerfile line 2: ENV: unterminated double quote"),
        ("FROM busybox\nCOPY ../etc /x\n", "forbidden path outside the build context"),
        ("FROM busybox\nCOPY a.txt b.txt /dir\n", "must be a directory and end with a /"),
        ("FROM busybox\nADD https://example.invalid/x.tar /x/\n", "cannot fetch https://example.invalid/x.tar"),
    ];
    for (i, (df, msg)) in cases.iter().enumerate() {
        let ctx = context(
            &s,
            &format!("bad{i}"),
            &[("Dockerfile", df), ("a.txt", "a"), ("b.txt", "b")],
        );
        let err = s.rimg(["build", "-t", "bad"]).arg(&ctx).fails();
        assert!(err.starts_with("Error: "), "{err}");
        assert!(err.contains(msg), "{df:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(s.rimg(["images", "-q", "bad"]).ok().trim().is_empty());
}

/// Every path of an image with what a user sees of it: kind, mode, owner, size, content.
fn tree_of(s: &Store, image: &str) -> Vec<String> {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let img = images.resolve(image).unwrap();
    let files = rimg::builder::layer::ImageFiles::open(images.store(), img.diff_ids()).unwrap();
    files
        .tree
        .walk()
        .into_iter()
        .map(|(path, ino)| {
            let n = files.tree.node(ino).unwrap();
            let content = match n.kind {
                rimg_fs::union::NodeKind::File => {
                    let p = format!("/{}", String::from_utf8_lossy(&path));
                    rimg_tests::archives::sha256(&files.read(&p, 64 << 20).unwrap())
                }
                rimg_fs::union::NodeKind::Symlink => String::from_utf8_lossy(&n.link).into(),
                _ => String::new(),
            };
            format!(
                "{} {:?} {:o} {}:{} {}",
                String::from_utf8_lossy(&path),
                n.kind,
                n.mode,
                n.uid,
                n.gid,
                content
            )
        })
        .collect()
}

#[test]
fn podman_builds_the_same_image() {
    rimg_tests::require_tool("podman");
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(&s, "web-ping", &[("Dockerfile", WEB_PING), ("app.sh", APP)]);
    build(&s, &ctx, &["-t", "web-ping"]);

    let podman = rimg_tests::archives::Podman::new(&s);
    podman
        .cmd()
        .args(["import", "-q", "-c", "CMD [\"sh\"]"])
        .arg(rimg_tests::busybox_tar())
        .arg("busybox")
        .ok();
    podman
        .cmd()
        .args(["build", "-q", "--network=host", "-t", "web-ping"])
        .arg(&ctx)
        .ok();
    let archive = s.path("podman-web-ping.tar");
    podman
        .cmd()
        .args(["save", "-q", "--format", "docker-archive", "-o"])
        .arg(&archive)
        .arg("localhost/web-ping:latest")
        .ok();
    s.rimg(["load", "-q", "-i"]).arg(&archive).ok();
    let theirs = "localhost/web-ping:latest";

    let (a, b) = (inspect(&s, "web-ping"), inspect(&s, theirs));
    for field in ["Env", "Cmd", "WorkingDir"] {
        assert_eq!(a["Config"][field], b["Config"][field], "{field}");
    }
    let history_len = |img: &str| {
        let images = rimg::image::Images::open(&s.root()).unwrap();
        images.resolve(img).unwrap().config.history.len()
    };
    assert_eq!(history_len("web-ping"), history_len(theirs));
    assert_eq!(tree_of(&s, "web-ping"), tree_of(&s, theirs));
}

/// Nothing of a build is left mounted or staged.
fn assert_clean(s: &Store) {
    let ls = s.rimgfs(["ls"]).ok();
    assert_eq!(ls.lines().count(), 1, "mounts left behind: {ls}");
    let build_dir = s.root().join("rimg/build");
    let left: Vec<_> = fs::read_dir(&build_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sandboxes left behind: {left:?}");
}

#[test]
fn run_steps_change_lower_files_and_diff_shows_it() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "run5",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN echo one > /one\n\
             RUN mkdir -p /data && seq 1 1000 > /data/numbers\n\
             RUN rm /etc/group && echo changed >> /etc/passwd\n\
             ARG WHO=builder\n\
             RUN cp /bin/busybox /data/bb && echo \"$WHO\" > /data/who\n\
             RUN rm /one && touch /two && echo streamed-output\n",
        )],
    );
    let out = build(&s, &ctx, &["-t", "run5"]);
    assert!(
        out.lines().any(|l| l == "streamed-output"),
        "RUN output streams: {out}"
    );
    let base_layers = 1;
    assert_eq!(layer_paths(&s, "run5", base_layers), ["one"]);
    assert_eq!(
        layer_paths(&s, "run5", base_layers + 1),
        ["data", "data/numbers"]
    );
    assert_eq!(
        layer_paths(&s, "run5", base_layers + 2),
        ["etc", "etc/.wh.group", "etc/passwd"]
    );
    assert_eq!(
        layer_paths(&s, "run5", base_layers + 3),
        ["data", "data/bb", "data/who"]
    );
    assert_eq!(layer_paths(&s, "run5", base_layers + 4), [".wh.one", "two"]);
    let diff = s.rimg(["diff", "busybox", "run5"]).ok();
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        [
            "A /data",
            "A /data/bb",
            "A /data/numbers",
            "A /data/who",
            "C /etc",
            "D /etc/group",
            "C /etc/passwd",
            "A /two"
        ]
    );
    assert_eq!(read_file(&s, "run5", "/data/who").unwrap(), b"builder\n");
    let passwd = read_file(&s, "run5", "/etc/passwd").unwrap();
    assert!(String::from_utf8_lossy(&passwd).ends_with("changed\n"));
    let hist = s.rimg(["history", "--no-trunc", "run5"]).ok();
    assert!(
        hist.contains("RUN |1 WHO=builder /bin/sh -c cp /bin/busybox /data/bb"),
        "{hist}"
    );
    assert_clean(&s);

    // Cached: no RUN executes again.
    let again = build(&s, &ctx, &["-t", "run5"]);
    assert!(!again.lines().any(|l| l == "streamed-output"), "{again}");
    // A different build arg value misses from its RUN on.
    let other = build(&s, &ctx, &["-t", "run5b", "--build-arg", "WHO=other"]);
    assert_eq!(outcome(&other, 5, 7), "CACHED", "{other}");
    assert!(outcome(&other, 6, 7).starts_with("DONE"), "{other}");
    assert_eq!(read_file(&s, "run5b", "/data/who").unwrap(), b"other\n");
    assert_clean(&s);
}

#[test]
fn a_failing_run_stops_the_build_with_its_code() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "fail",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo before > /before\nRUN false\nRUN echo never\n",
        )],
    );
    let out = s
        .rimg(["build", "--progress", "plain", "-t", "failing"])
        .arg(&ctx)
        .output();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "Error: The command '/bin/sh -c false' returned a non-zero code: 1"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("never"));
    // The step before the failure stays cached through an rmi's garbage collection.
    s.busybox("other:latest");
    s.rimg(["rmi", "other"]).ok();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo before > /before\nRUN true\n",
    )
    .unwrap();
    let fixed = build(&s, &ctx, &["-t", "fixed"]);
    assert_eq!(outcome(&fixed, 2, 3), "CACHED", "{fixed}");
    let ctx2 = context(
        &s,
        "fail7",
        &[("Dockerfile", "FROM busybox\nRUN echo loud && exit 7\n")],
    );
    let out = s.rimg(["build", "-q", "-t", "failing"]).arg(&ctx2).output();
    assert_eq!(out.status.code(), Some(7));
    assert!(out.stdout.is_empty(), "-q hides RUN output");
    assert!(s.rimg(["images", "-q", "failing"]).ok().trim().is_empty());
    assert_clean(&s);
}

#[test]
fn ctrl_c_during_a_run_step_cancels_the_build_and_kills_the_step() {
    use std::io::{BufRead, BufReader};
    let s = Store::new();
    s.busybox("busybox:latest");
    // The shell is PID 1 of the step's container: a forwarded SIGINT alone would not stop it.
    let ctx = context(
        &s,
        "slow",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo started; sleep 3637; echo done > /done\n",
        )],
    );
    let mut cmd = s
        .rimg(["build", "--progress", "plain", "-t", "slow"])
        .arg(&ctx)
        .0;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap() == "started"),
        "the RUN step never started"
    );
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = std::process::Command::new("pkill")
                .args(["-9", "-f", "sleep 3637"])
                .status();
            panic!("rimg build was still running 30 s after SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        errors.join().unwrap().trim(),
        "Error: build cancelled: SIGINT during a RUN step"
    );
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 3637"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "the step's processes live on: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(s.rimg(["images", "-q", "slow"]).ok().trim().is_empty());
    assert_clean(&s);
}

/// A tiny HTTP server answering 200 to every request; counts them.
struct Http {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Http {
    fn start() -> Self {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        });
        Http { port, hits }
    }
}

/// Removes the container when dropped, also when an assertion fails.
struct Container<'a>(&'a Store, &'static str);

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.0.rimg(["rm", "-f", self.1]).output();
    }
}

#[test]
fn the_built_web_ping_pings_a_local_server() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(&s, "web-ping", &[("Dockerfile", WEB_PING), ("app.sh", APP)]);
    build(&s, &ctx, &["-t", "web-ping"]);
    let server = Http::start();
    let _c = Container(&s, "wp");
    s.rimg(["run", "-d", "--name", "wp", "--network", "host", "-e"])
        .arg(format!("TARGET=127.0.0.1:{}", server.port))
        .arg("web-ping")
        .ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.hits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "web-ping never pinged"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logs = s.rimg(["logs", "wp"]).ok();
        if logs.contains("Got response status: 200") {
            assert!(logs.contains(&format!(
                "** web-ping ** Pinging: 127.0.0.1:{}; method: HEAD; 3000ms intervals",
                server.port
            )));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "logs: {logs}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let base = context(
        &s,
        "base",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD COPY a.txt /from-trigger.txt\nONBUILD ENV TRIGGERED=yes\n",
        )],
    );
    build(&s, &base, &["-t", "onbuild-base"]);
    assert_eq!(
        inspect(&s, "onbuild-base")["Config"]["OnBuild"],
        serde_json::json!(["COPY a.txt /from-trigger.txt", "ENV TRIGGERED=yes"])
    );
    let child = context(
        &s,
        "child",
        &[
            ("Dockerfile", "FROM onbuild-base\nCMD [\"true\"]\n"),
            ("a.txt", "a\n"),
        ],
    );
    let out = build(&s, &child, &["-t", "child"]);
    assert!(
        out.contains("running the base's trigger ONBUILD COPY a.txt"),
        "{out}"
    );
    assert_eq!(read_file(&s, "child", "/from-trigger.txt").unwrap(), b"a\n");
    let config = &inspect(&s, "child")["Config"];
    assert!(config["Env"].to_string().contains("TRIGGERED=yes"));
    assert!(config["OnBuild"].is_null(), "{config}");
}

#[test]
fn variable_scopes_follow_docker() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "scopes",
        &[(
            "Dockerfile",
            "ARG V=global\n\
             FROM busybox\n\
             ENV NOT_REDECLARED=\"[$V]\"\n\
             ARG V\n\
             ENV REDECLARED=$V\n\
             ARG A=from-arg\n\
             ENV A=from-env\n\
             ARG A=second-arg\n\
             ENV SEEN=$A ALT=${MISSING:-dflt} SET=${V:+yes} ESC=\\$V QUOTED='$V'\n\
             LABEL \"multi word\"=\"a b\"\n\
             WORKDIR rel\n\
             WORKDIR ../other\n\
             USER ${V}\n",
        )],
    );
    build(&s, &ctx, &["-t", "scopes"]);
    let config = &inspect(&s, "scopes")["Config"];
    let env: Vec<String> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for want in [
        "NOT_REDECLARED=[]",
        "REDECLARED=global",
        "A=from-env",
        "SEEN=from-env",
        "ALT=dflt",
        "SET=yes",
        "ESC=$V",
        "QUOTED=$V",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} not in {env:?}");
    }
    assert_eq!(config["Labels"]["multi word"], "a b");
    assert_eq!(config["WorkingDir"], "/other");
    assert_eq!(config["User"], "global");
}

/// On a terminal the build's progress is coloured; `NO_COLOR` takes the colours away and
/// leaves the lines, and a pipe gets no escape codes at all.
#[test]
fn no_color_leaves_the_build_progress_without_colour_codes() {
    rimg_tests::require_tool("script");
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(&s, "colours", &[("Dockerfile", "FROM busybox\nENV A=1\n")]);
    let on_terminal = |no_color: &str| {
        rimg_tests::sh(&format!(
            "env -u NO_COLOR -u CLICOLOR -u CLICOLOR_FORCE {no_color} TERM=xterm RIMG_ROOT={} \
             script -qec '{} build {}' /dev/null",
            s.root().display(),
            rimg_tests::bin("rimg").display(),
            ctx.display()
        ))
    };
    let colour_codes = ["\x1b[1m", "\x1b[32m", "\x1b[36m", "\x1b[0m"];
    let coloured = on_terminal("");
    assert!(
        coloured.contains("\x1b[1m[2/2] ENV A=1\x1b[0m"),
        "{coloured:?}"
    );
    let plain = on_terminal("NO_COLOR=1");
    assert!(plain.contains("[2/2] ENV A=1"), "{plain:?}");
    assert!(colour_codes.iter().all(|c| !plain.contains(c)), "{plain:?}");
    let piped = s.rimg(["build"]).arg(&ctx).ok();
    assert!(
        piped.contains("[2/2] ENV A=1") && !piped.contains('\x1b'),
        "{piped:?}"
    );
}
