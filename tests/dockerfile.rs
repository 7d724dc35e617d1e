//! Today's Dockerfiles through the real binary (issue 19): heredocs, `RUN --mount` (cache,
//! secret, bind, tmpfs), the parser bugs a peer's corpus found, and the BuildKit-era flags of
//! `rimg build`.

use std::fs;
use std::path::{Path, PathBuf};

use rimg_tests::builds::{build, context, layer_paths, outcome, read_file};
use rimg_tests::Store;
use serde_json::Value;

/// A file of an image, as text.
fn read_text(s: &Store, image: &str, path: &str) -> Option<String> {
    read_file(s, image, path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Every path in every layer of an image.
fn all_layer_paths(s: &Store, image: &str) -> Vec<String> {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let img = images.resolve(image).unwrap();
    let mut out = Vec::new();
    for d in img.diff_ids() {
        let index = images.store().layer_index(d).unwrap();
        out.extend(
            index
                .entries()
                .iter()
                .map(|e| String::from_utf8_lossy(&e.path).into_owned()),
        );
    }
    out
}

/// The paths of the image's top layer, sorted.
fn top_layer_paths(s: &Store, image: &str) -> Vec<String> {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let n = images.resolve(image).unwrap().diff_ids().len();
    layer_paths(s, image, n - 1)
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if m.is_file() {
            let data = fs::read(&p).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn parser_bugs_from_the_corpus() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "parser",
        &[
            ("foo", "foo\n"),
            (
                "Dockerfile",
                "FROM busybox\nRUN echo one\\\\\nRUN echo two > /two\nCOPY -- foo /tmp/\n",
            ),
        ],
    );
    build(&s, &ctx, &["-t", "parser"]);
    assert_eq!(read_text(&s, "parser", "/two").unwrap(), "two\n");
    assert_eq!(read_text(&s, "parser", "/tmp/foo").unwrap(), "foo\n");
    for bad in [
        "CMD [ \"echo\", [ \"nested json\" ] ]",
        "CMD [1, 2]",
        "ENTRYPOINT [\"sh\", [\"-c\"]]",
    ] {
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox\n{bad}\n")).unwrap();
        let err = s
            .rimg(["build", "--progress", "plain", "-t", "bad"])
            .arg(&ctx)
            .fails();
        assert!(err.contains("line 2"), "{bad}: {err}");
        assert!(err.contains("strings only"), "{bad}: {err}");
    }
}

#[test]
fn heredocs_as_buildkit_documents_them() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "heredoc",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             ARG FOO=bar\n\
             RUN <<EOF\n\
             echo hello > /hello\n\
             echo \"world\" >> /hello\n\
             EOF\n\
             RUN <<EOT sh\n\
             echo from-stdin > /stdin\n\
             EOT\n\
             RUN <<-\"EOF\"\n\
             \techo tabbed > /tabbed\n\
             \tEOF\n\
             RUN <<EOF\n\
             #!/bin/sh -e\n\
             echo \"$0\" > /script-name\n\
             EOF\n\
             RUN cat <<one > /first && cat <<two > /second\n\
             1\n\
             one\n\
             2\n\
             two\n\
             COPY <<EOF /etc/expanded\n\
             FOO is $FOO\n\
             EOF\n\
             COPY <<'EOF' <<\"two\" /dir/\n\
             FOO is $FOO\n\
             EOF\n\
             second\n\
             two\n",
        )],
    );
    build(&s, &ctx, &["-t", "heredoc"]);
    assert_eq!(
        read_text(&s, "heredoc", "/hello").unwrap(),
        "hello\nworld\n"
    );
    assert_eq!(read_text(&s, "heredoc", "/stdin").unwrap(), "from-stdin\n");
    assert_eq!(read_text(&s, "heredoc", "/tabbed").unwrap(), "tabbed\n");
    assert_eq!(
        read_text(&s, "heredoc", "/script-name").unwrap(),
        "/dev/pipes/EOF\n"
    );
    assert_eq!(read_text(&s, "heredoc", "/first").unwrap(), "1\n");
    assert_eq!(read_text(&s, "heredoc", "/second").unwrap(), "2\n");
    assert_eq!(
        read_text(&s, "heredoc", "/etc/expanded").unwrap(),
        "FOO is bar\n"
    );
    assert_eq!(
        read_text(&s, "heredoc", "/dir/EOF").unwrap(),
        "FOO is $FOO\n"
    );
    assert_eq!(read_text(&s, "heredoc", "/dir/two").unwrap(), "second\n");
    // The script's mount point is not in any layer.
    assert!(
        !all_layer_paths(&s, "heredoc")
            .iter()
            .any(|p| p.starts_with("dev/")),
        "{:?}",
        all_layer_paths(&s, "heredoc")
    );

    // The heredoc's body is part of the cache key.
    let df = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        df.replace("echo \"world\"", "echo \"there\""),
    )
    .unwrap();
    let out = build(&s, &ctx, &["-t", "heredoc2"]);
    assert_eq!(outcome(&out, 2, 9), "CACHED", "{out}");
    assert!(outcome(&out, 3, 9).starts_with("DONE"), "{out}");
    assert_eq!(
        read_text(&s, "heredoc2", "/hello").unwrap(),
        "hello\nthere\n"
    );

    // An unterminated heredoc names its line.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN <<EOF\necho x\n").unwrap();
    let err = s.rimg(["build", "-t", "bad"]).arg(&ctx).fails();
    assert!(
        err.contains("line 2") && err.contains("unterminated heredoc"),
        "{err}"
    );
}

#[test]
fn a_cache_mount_is_kept_across_builds_and_not_in_the_layer() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let df = |marker: &str| {
        format!(
            "FROM busybox\n\
             RUN echo {marker} > /marker\n\
             RUN --mount=type=cache,target=/var/cache/app \\\n    \
             echo {marker} >> /var/cache/app/log && cat /var/cache/app/log > /seen\n"
        )
    };
    let ctx = context(&s, "cache", &[("Dockerfile", &df("first"))]);
    build(&s, &ctx, &["-t", "cache1"]);
    assert_eq!(read_text(&s, "cache1", "/seen").unwrap(), "first\n");
    // Only /seen: the cache dir (and the mount point made for it) stays out of the layer.
    assert_eq!(top_layer_paths(&s, "cache1"), ["seen"]);
    fs::write(ctx.join("Dockerfile"), df("second")).unwrap();
    build(&s, &ctx, &["-t", "cache2"]);
    assert_eq!(read_text(&s, "cache2", "/seen").unwrap(), "first\nsecond\n");
    let diff = s.rimg(["diff", "cache1", "cache2"]).ok();
    assert!(!diff.contains("/var/cache/app"), "{diff}");
    // `builder prune` removes the cache mounts: the next build starts afresh.
    s.rimg(["builder", "prune", "-f"]).ok();
    fs::write(ctx.join("Dockerfile"), df("third")).unwrap();
    build(&s, &ctx, &["-t", "cache3"]);
    assert_eq!(read_text(&s, "cache3", "/seen").unwrap(), "third\n");
    // A mount that differs is a miss, and --explain names it.
    let changed = df("third").replace(
        "type=cache,target=/var/cache/app",
        "type=cache,target=/var/cache/app,id=other",
    );
    fs::write(ctx.join("Dockerfile"), changed).unwrap();
    let out = build(&s, &ctx, &["-t", "cache4", "--explain"]);
    assert!(out.contains("the RUN's mounts changed"), "{out}");
    assert!(out.contains("id=other"), "{out}");
}

#[test]
fn a_secret_is_visible_to_run_and_nowhere_else() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let secret = "s3cr3t-VALUE-9f8e7d";
    let file = s.path("token.txt");
    fs::write(&file, secret).unwrap();
    // The Dockerfile checks the secret by its hash, so the text itself is nowhere else.
    let sum = rimg_tests::sh(&format!("sha256sum {} | cut -d' ' -f1", file.display()));
    let sum = sum.trim();
    let df = format!(
        "FROM busybox\n\
         RUN --mount=type=secret,id=token \\\n    \
         test \"$(sha256sum < /run/secrets/token | cut -d' ' -f1)\" = {sum} && \\\n    \
         test \"$(stat -c %a /run/secrets/token)\" = 400 && echo ok > /checked\n\
         RUN --mount=type=secret,id=envtok,target=/tok,required \\\n    \
         test \"$(sha256sum < /tok | cut -d' ' -f1)\" = {sum} && echo ok > /checked-env\n"
    );
    let ctx = context(&s, "secret", &[("Dockerfile", &df)]);
    s.rimg(["build", "--progress", "plain", "-t", "secret"])
        .args(["--secret", &format!("id=token,src={}", file.display())])
        .args(["--secret", "id=envtok,env=RIMG_TEST_SECRET"])
        .env("RIMG_TEST_SECRET", secret)
        .arg(&ctx)
        .ok();
    assert_eq!(read_text(&s, "secret", "/checked").unwrap(), "ok\n");
    assert_eq!(read_text(&s, "secret", "/checked-env").unwrap(), "ok\n");
    for p in all_layer_paths(&s, "secret") {
        assert!(
            !p.starts_with("run") && p != "tok",
            "mount point in a layer: {p}"
        );
    }
    let hist = s.rimg(["history", "--no-trunc", "secret"]).ok();
    assert!(hist.contains("type=secret,id=token"), "{hist}");
    assert!(!hist.contains(secret), "{hist}");
    let inspect = s.rimg(["inspect", "secret"]).ok();
    assert!(!inspect.contains(secret));
    let tar = s.path("secret.tar");
    s.rimg(["save", "-o"]).arg(&tar).arg("secret").ok();
    let data = fs::read(&tar).unwrap();
    assert!(!data.windows(secret.len()).any(|w| w == secret.as_bytes()));
    // Nowhere in the store (cache entries, layers, scratch), nothing left staged.
    assert_eq!(
        files_containing(&s.root(), secret.as_bytes()),
        Vec::<PathBuf>::new()
    );
    // A required secret that was not given fails the step.
    let err = s
        .rimg([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "-t",
            "nosecret",
        ])
        .args(["--secret", &format!("id=token,src={}", file.display())])
        .arg(&ctx)
        .fails();
    assert!(err.contains("secret envtok not found"), "{err}");
}

#[test]
fn bind_and_tmpfs_mounts_leave_nothing_behind() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "bind",
        &[
            ("src/a.txt", "from the context\n"),
            ("src/ignored.txt", "ignored\n"),
            (".dockerignore", "src/ignored.txt\n"),
            (
                "Dockerfile",
                "FROM busybox AS base\n\
                 RUN echo staged > /staged\n\
                 FROM busybox\n\
                 RUN --mount=type=bind,source=src,target=/mnt/src \\\n    \
                 cat /mnt/src/a.txt > /copied && ! test -e /mnt/src/ignored.txt && \\\n    \
                 ! touch /mnt/src/new 2>/dev/null\n\
                 RUN --mount=type=bind,from=base,source=/staged,target=/staged \\\n    \
                 cat /staged > /from-stage\n\
                 RUN --mount=type=tmpfs,target=/scratch \\\n    \
                 echo x > /scratch/x && grep -q tmpfs /proc/mounts && echo ok > /tmpfs-ok\n",
            ),
        ],
    );
    build(&s, &ctx, &["-t", "bind"]);
    assert_eq!(
        read_text(&s, "bind", "/copied").unwrap(),
        "from the context\n"
    );
    assert_eq!(read_text(&s, "bind", "/from-stage").unwrap(), "staged\n");
    assert_eq!(read_text(&s, "bind", "/tmpfs-ok").unwrap(), "ok\n");
    let paths = all_layer_paths(&s, "bind");
    for p in ["mnt", "staged", "scratch"] {
        assert!(
            !paths
                .iter()
                .any(|x| x == p || x.starts_with(&format!("{p}/"))),
            "{p} in {paths:?}"
        );
    }
    // A context file the bind shows is in the key: changing it reruns the step.
    fs::write(ctx.join("src/a.txt"), "changed\n").unwrap();
    let out = build(&s, &ctx, &["-t", "bind2"]);
    assert!(outcome(&out, 4, 6).starts_with("DONE"), "{out}");
    assert_eq!(read_text(&s, "bind2", "/copied").unwrap(), "changed\n");
    let _: Value = serde_json::from_str(&s.rimg(["inspect", "bind2"]).ok()).unwrap();

    // A target through an image's symlink stays inside the rootfs; /proc is refused.
    let unique = format!("rimg-escape-{}", std::process::id());
    let escape = context(
        &s,
        "escape",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 RUN mkdir -p /tmp && ln -s ../../../../../../tmp /link\n\
                 RUN --mount=type=tmpfs,target=/link/{unique} \\\n    \
                 touch /link/{unique}/x && test -e /tmp/{unique}/x\n"
            ),
        )],
    );
    build(&s, &escape, &["-t", "escape"]);
    assert!(
        !Path::new("/tmp").join(&unique).exists(),
        "the mount escaped to the host"
    );
    fs::write(
        escape.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=tmpfs,target=/proc/sys true\n",
    )
    .unwrap();
    let err = s.rimg(["build", "-t", "procmount"]).arg(&escape).fails();
    assert!(
        err.contains("cannot be mounted because it is inside /proc"),
        "{err}"
    );
}

#[test]
fn output_label_iidfile_platform_and_progress_flags() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "flags",
        &[
            ("a.txt", "a\n"),
            (
                "Dockerfile",
                "FROM busybox AS build\nRUN mkdir /out && echo built > /out/result\n\
                 FROM scratch\nCOPY --from=build /out/ /\nCOPY a.txt /\n",
            ),
        ],
    );
    // -o type=local: the files, and no image.
    let images_before = s.rimg(["images", "-q"]).ok();
    let dest = s.path("exported");
    s.rimg(["build", "--progress", "plain"])
        .arg("-o")
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(&ctx)
        .ok();
    assert_eq!(fs::read_to_string(dest.join("result")).unwrap(), "built\n");
    assert_eq!(fs::read_to_string(dest.join("a.txt")).unwrap(), "a\n");
    assert_eq!(s.rimg(["images", "-q"]).ok(), images_before);
    // type=tar.
    let tar = s.path("exported.tar");
    s.rimg(["build", "-q"])
        .arg("--output")
        .arg(format!("type=tar,dest={}", tar.display()))
        .arg(&ctx)
        .ok();
    let listing = rimg_tests::sh(&format!("tar -tf {}", tar.display()));
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "result"),
        "{listing}"
    );

    // --label and --iidfile.
    let iid = s.path("iid");
    s.rimg([
        "build",
        "--progress",
        "plain",
        "-t",
        "flags",
        "--label",
        "org.example.k=v",
    ])
    .arg("--iidfile")
    .arg(&iid)
    .arg(&ctx)
    .ok();
    let inspect: Value = serde_json::from_str(&s.rimg(["inspect", "flags"]).ok()).unwrap();
    assert_eq!(inspect[0]["Config"]["Labels"]["org.example.k"], "v");
    assert_eq!(
        fs::read_to_string(&iid).unwrap(),
        inspect[0]["Id"].as_str().unwrap()
    );

    // --platform: the host's is fine, another is a clear error.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    build(&s, &ctx, &["--platform", &format!("linux/{arch}")]);
    let other = if arch == "amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let err = s.rimg(["build", "--platform", other]).arg(&ctx).fails();
    assert!(err.contains("host's platform only"), "{err}");

    // --add-host: a line in RUN steps' /etc/hosts, not in the image.
    let hosts_ctx = context(
        &s,
        "addhost",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN grep -q '10.1.2.3.*myhost' /etc/hosts && echo ok > /resolved\n",
        )],
    );
    build(
        &s,
        &hosts_ctx,
        &["-t", "addhost", "--add-host", "myhost:10.1.2.3"],
    );
    assert_eq!(read_text(&s, "addhost", "/resolved").unwrap(), "ok\n");
    assert!(read_text(&s, "addhost", "/etc/hosts").is_none());
    let err = s
        .rimg(["build", "--add-host", "nocolon"])
        .arg(&hosts_ctx)
        .fails();
    assert!(err.contains("--add-host"), "{err}");

    // --progress rawjson: one JSON object a line.
    let out = s
        .rimg(["build", "--progress", "rawjson", "-t", "flags"])
        .arg(&ctx)
        .ok();
    let events: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| e["outcome"] == "cached"), "{out}");
    assert!(events.iter().any(|e| e["text"] == "COPY a.txt /"), "{out}");
}

#[test]
fn context_and_dockerfile_from_stdin_and_a_dockerfiles_own_ignore_file() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "stdin",
        &[
            ("keep.txt", "kept\n"),
            ("drop.txt", "dropped\n"),
            (".dockerignore", ""),
            ("build/app.Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            ("build/app.Dockerfile.dockerignore", "drop.txt\nbuild\n"),
            ("Dockerfile", "FROM busybox\nCOPY keep.txt /\n"),
        ],
    );
    // <Dockerfile>.dockerignore beside a named Dockerfile wins over .dockerignore.
    s.rimg(["build", "--progress", "plain", "-t", "own-ignore", "-f"])
        .arg(ctx.join("build/app.Dockerfile"))
        .arg(&ctx)
        .ok();
    assert_eq!(
        read_text(&s, "own-ignore", "/ctx/keep.txt").unwrap(),
        "kept\n"
    );
    assert!(read_text(&s, "own-ignore", "/ctx/drop.txt").is_none());

    // A context tar on standard input.
    let tar_path = s.path("ctx.tar");
    rimg_tests::sh(&format!(
        "cd {} && tar -cf {} Dockerfile keep.txt",
        ctx.display(),
        tar_path.display()
    ));
    let out = s
        .rimg(["build", "--progress", "plain", "-t", "from-stdin", "-"])
        .stdin_bytes(&fs::read(&tar_path).unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_text(&s, "from-stdin", "/keep.txt").unwrap(), "kept\n");

    // A Dockerfile on standard input with a context directory.
    let out = s
        .rimg(["build", "--progress", "plain", "-t", "df-stdin", "-f", "-"])
        .arg(&ctx)
        .stdin_bytes(b"FROM busybox\nCOPY drop.txt /\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_text(&s, "df-stdin", "/drop.txt").unwrap(), "dropped\n");
}

#[test]
fn an_exported_cache_gives_a_fresh_store_cached_steps() {
    let a = Store::new();
    a.busybox("busybox:latest");
    let ctx = context(
        &a,
        "cacheio",
        &[
            ("app.txt", "v1\n"),
            (
                "Dockerfile",
                "FROM busybox\nRUN echo expensive > /step\nCOPY app.txt /\nRUN cat /app.txt > /copy\n",
            ),
        ],
    );
    let exported = a.path("exported-cache");
    a.rimg(["build", "--progress", "plain", "-t", "cacheio"])
        .arg("--cache-to")
        .arg(format!("type=local,dest={}", exported.display()))
        .arg(&ctx)
        .ok();
    assert!(exported.join("index.json").is_file());
    // The same base in a fresh store (save/load keeps its id).
    let base = a.path("busybox.tar");
    a.rimg(["save", "-o"]).arg(&base).arg("busybox").ok();
    let b = Store::new();
    b.rimg(["load", "-i"]).arg(&base).ok();
    let out = b
        .rimg(["build", "--progress", "plain", "-t", "cacheio"])
        .arg("--cache-from")
        .arg(format!("type=local,src={}", exported.display()))
        .arg(&ctx)
        .ok();
    for n in 2..=4 {
        assert_eq!(outcome(&out, n, 4), "CACHED", "{out}");
    }
    assert_eq!(read_text(&b, "cacheio", "/copy").unwrap(), "v1\n");
    assert_eq!(
        b.rimg(["inspect", "-f", "{{.Id}}", "cacheio"]).ok(),
        a.rimg(["inspect", "-f", "{{.Id}}", "cacheio"]).ok()
    );
}

/// A tiny HTTP server on 127.0.0.1 for ADD: `/file.txt` (with a Last-Modified date),
/// `/moved` (a relative redirect to it), anything else 404. Serves until the test ends.
fn http_server() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let response = match path.as_str() {
                "/file.txt" => "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\nhello from h\n".to_string(),
                "/moved" => "HTTP/1.1 302 Found\r\nLocation: /file.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = conn.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_downloads_with_checksum_chmod_redirects_and_last_modified() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let base = http_server();
    let sum = "sha256:".to_string()
        + rimg_tests::sh("printf 'hello from h\\n' | sha256sum | cut -d' ' -f1").trim();
    let ctx = context(
        &s,
        "add",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 ADD --checksum={sum} --chmod=640 {base}/file.txt /dl/\n\
                 ADD {base}/moved /dl/followed.txt\n"
            ),
        )],
    );
    build(&s, &ctx, &["-t", "add"]);
    assert_eq!(
        read_text(&s, "add", "/dl/file.txt").unwrap(),
        "hello from h\n"
    );
    assert_eq!(
        read_text(&s, "add", "/dl/followed.txt").unwrap(),
        "hello from h\n"
    );
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let img = images.resolve("add").unwrap();
    let files = rimg::builder::layer::ImageFiles::open(images.store(), img.diff_ids()).unwrap();
    let node = files
        .tree
        .node(files.lookup("/dl/file.txt").unwrap())
        .unwrap()
        .clone();
    assert_eq!(node.mode & 0o7777, 0o640);
    assert_eq!(node.mtime, 784111777, "mtime from Last-Modified");

    // A wrong checksum fails the step and names both digests.
    let bad = format!("sha256:{}", "0".repeat(64));
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD --checksum={bad} {base}/file.txt /x\n"),
    )
    .unwrap();
    let err = s.rimg(["build", "-t", "bad"]).arg(&ctx).fails();
    assert!(
        err.contains("checksum mismatch") && err.contains(&sum),
        "{err}"
    );
    // A missing file is the server's status.
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD {base}/nope /x\n"),
    )
    .unwrap();
    let err = s.rimg(["build", "-t", "bad"]).arg(&ctx).fails();
    assert!(err.contains("404"), "{err}");
}

#[test]
fn copy_parents_and_exclude() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let ctx = context(
        &s,
        "parents",
        &[
            ("app/one/a.txt", "a\n"),
            ("app/one/b.md", "b\n"),
            ("app/two/c.txt", "c\n"),
            ("home.txt", "h\n"),
            ("homer.md", "m\n"),
            (
                "Dockerfile",
                "FROM busybox\n\
                 COPY --parents app/one/a.txt app/two /keep/\n\
                 COPY --parents ./app/./one /pivot/\n\
                 COPY --exclude=**/*.md --exclude=two app /filtered/\n\
                 COPY --exclude=*.txt hom* /globbed/\n",
            ),
        ],
    );
    build(&s, &ctx, &["-t", "parents"]);
    assert_eq!(
        read_text(&s, "parents", "/keep/app/one/a.txt").unwrap(),
        "a\n"
    );
    assert_eq!(
        read_text(&s, "parents", "/keep/app/two/c.txt").unwrap(),
        "c\n"
    );
    assert!(read_text(&s, "parents", "/keep/app/one/b.md").is_none());
    assert_eq!(read_text(&s, "parents", "/pivot/one/b.md").unwrap(), "b\n");
    assert!(read_text(&s, "parents", "/pivot/app/one/b.md").is_none());
    assert_eq!(
        read_text(&s, "parents", "/filtered/one/a.txt").unwrap(),
        "a\n"
    );
    assert!(read_text(&s, "parents", "/filtered/one/b.md").is_none());
    assert!(read_text(&s, "parents", "/filtered/two/c.txt").is_none());
    assert_eq!(
        read_text(&s, "parents", "/globbed/homer.md").unwrap(),
        "m\n"
    );
    assert!(read_text(&s, "parents", "/globbed/home.txt").is_none());
    // An excluded file is not in the key: changing it keeps the step cached.
    fs::write(ctx.join("home.txt"), "changed\n").unwrap();
    let out = build(&s, &ctx, &["-t", "parents2"]);
    assert_eq!(outcome(&out, 5, 5), "CACHED", "{out}");
}

#[test]
fn an_ssh_agent_socket_is_forwarded_to_run() {
    let s = Store::new();
    s.busybox("busybox:latest");
    let sock = s.path("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ctx = context(
        &s,
        "ssh",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && \\\n    \
             echo \"$SSH_AUTH_SOCK\" > /sock-path\n",
        )],
    );
    s.rimg(["build", "--progress", "plain", "-t", "ssh"])
        .arg("--ssh")
        .arg(format!("default={}", sock.display()))
        .arg(&ctx)
        .ok();
    assert_eq!(
        read_text(&s, "ssh", "/sock-path").unwrap(),
        "/run/buildkit/ssh_agent.0\n"
    );
    let paths = all_layer_paths(&s, "ssh");
    assert!(!paths.iter().any(|p| p.starts_with("run")), "{paths:?}");
    // Without --ssh an optional agent mount is left out: the test fails, not the mount.
    let err = s
        .rimg(["build", "--progress", "plain", "--no-cache", "-t", "nossh"])
        .arg(&ctx)
        .fails();
    assert!(err.contains("non-zero code"), "{err}");
}
