//! `rimg build` against hostile build contexts and archives (issue 21): a Dockerfile or a
//! source that links out of the context reads nothing of the host, an error never echoes a
//! line that is not an instruction, and ADD refuses archive members it cannot honour.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use rimg_tests::Store;

/// A host file no build may read: a password-file line with a recognisable secret.
const SECRET: &str = "root:$6$s3cr3tsalt$NOT-FOR-THE-LOG:20228:0:99999:7:::\n";

fn store() -> (Store, PathBuf) {
    let s = Store::new();
    s.busybox("busybox:latest");
    let secret = s.path("host-secret");
    fs::write(&secret, SECRET).unwrap();
    (s, secret)
}

#[test]
fn a_dockerfile_linked_to_a_host_file_is_not_read() {
    let (s, secret) = store();
    let ctx = s.path("ctx");
    fs::create_dir_all(ctx.join("sub")).unwrap();
    symlink(&secret, ctx.join("Dockerfile")).unwrap();
    symlink("../../../../../../../..", ctx.join("sub/up")).unwrap();
    let err = s.rimg(["build", "--progress", "plain"]).arg(&ctx).fails();
    assert!(!err.contains("s3cr3t") && !err.contains("root:"), "{err}");
    assert!(
        err.contains("reading Dockerfile") && err.contains("No such file or directory"),
        "{err}"
    );
    // Through `-f`, and through a relative link that climbs out.
    symlink(
        format!("up{}", secret.display()),
        ctx.join("sub/Dockerfile"),
    )
    .unwrap();
    let err = s
        .rimg(["build", "--progress", "plain", "-f"])
        .arg(ctx.join("sub/Dockerfile"))
        .arg(&ctx)
        .fails();
    assert!(!err.contains("s3cr3t") && !err.contains("root:"), "{err}");
    assert!(err.contains("reading Dockerfile"), "{err}");

    // A Dockerfile that really holds such a line: the error names the line, not its text.
    fs::remove_file(ctx.join("Dockerfile")).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\n{SECRET}")).unwrap();
    let err = s.rimg(["build", "--progress", "plain"]).arg(&ctx).fails();
    assert!(!err.contains("s3cr3t") && !err.contains("root:"), "{err}");
    assert!(
        err.contains("Dockerfile line 2: unknown instruction (the line is not shown"),
        "{err}"
    );
    // A link that stays inside is followed.
    fs::remove_file(ctx.join("Dockerfile")).unwrap();
    fs::write(ctx.join("real.Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
    symlink("real.Dockerfile", ctx.join("Dockerfile")).unwrap();
    s.rimg(["build", "--progress", "plain", "-t", "linked:1"])
        .arg(&ctx)
        .ok();
}

#[test]
fn sources_resolve_inside_the_context() {
    let (s, secret) = store();
    let host_dir = secret.parent().unwrap().join("hostdir");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("shadow"), SECRET).unwrap();
    let ctx = s.path("ctx");
    fs::create_dir_all(ctx.join("inside")).unwrap();
    fs::write(ctx.join("inside/hostname"), "ctx-hostname\n").unwrap();
    fs::write(ctx.join("inside/ignored"), "ignored\n").unwrap();
    fs::write(ctx.join(".dockerignore"), "inside/ignored\n").unwrap();
    symlink("/", ctx.join("root")).unwrap();
    symlink("../../../../../../../..", ctx.join("up")).unwrap();
    symlink(&host_dir, ctx.join("out")).unwrap();
    symlink("inside", ctx.join("in")).unwrap();
    let build = |dockerfile: &str, tag: &str| {
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        s.rimg(["build", "--progress", "plain", "-t", tag])
            .arg(&ctx)
    };
    let up = format!("up{}/shadow", host_dir.display());
    for (ins, src) in [
        ("COPY", "out/shadow"),
        ("ADD", "out/shadow"),
        ("COPY", up.as_str()),
        ("ADD", up.as_str()),
        ("COPY", "out/*"),
        ("COPY", "in/ignored"),
    ] {
        let err = build(&format!("FROM busybox\n{ins} {src} /leak/\n"), "leak:1").fails();
        assert!(!err.contains("s3cr3t"), "{ins} {src}: {err}");
        assert!(
            err.contains(&format!(
                "file not found in build context or excluded by .dockerignore: {src}"
            )),
            "{ins} {src}: {err}"
        );
    }
    assert!(!s.rimg(["images"]).ok().contains("leak"));
    // A link that leaves resolves as if the context were `/`; one inside is followed.
    build(
        "FROM busybox\nCOPY root/inside/hostname /a\nCOPY in/hostname /b\nCOPY up/inside/hostname /c\n",
        "resolved:1",
    )
    .ok();
    let out = s
        .rimg(["run", "--rm", "resolved:1", "cat", "/a", "/b", "/c"])
        .ok();
    assert_eq!(out, "ctx-hostname\n".repeat(3));
    // Copying the whole context copies the links as links, never what they lead to.
    build("FROM busybox\nCOPY . /ctx/\n", "whole:1").ok();
    let out = s
        .rimg([
            "run",
            "--rm",
            "whole:1",
            "sh",
            "-c",
            "readlink /ctx/out; ls /ctx/inside; cat /ctx/out/shadow 2>/dev/null || echo none",
        ])
        .ok();
    assert_eq!(
        out,
        format!("{}\nhostname\nnone\n", host_dir.display()),
        "{out}"
    );
}

#[test]
fn add_refuses_archive_members_it_cannot_honour() {
    use rimg_tests::tree::Layer;
    let (s, _) = store();
    let ctx = s.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Layer::new().dir("etc", 0o755).whiteout("etc/passwd").build(),
            "archive member etc/.wh.passwd: a name starting with .wh. would be a whiteout in the layer",
        ),
        (
            Layer::new().dir("bin", 0o755).opaque("bin").build(),
            "archive member bin/.wh..wh..opq: a name starting with .wh. would be a whiteout in the layer",
        ),
        (
            Layer::new().hardlink("h", "missing").build(),
            "archive member h: a hard link to \"missing\", which is not an earlier file of the archive",
        ),
        (
            Layer::new().dir("d", 0o755).hardlink("h", "d").build(),
            "archive member h: a hard link to \"d\", which is not an earlier file of the archive",
        ),
        (
            Layer::new().device("null0", false, 0, 0).build(),
            "archive member null0: a 0:0 character device would be a whiteout in the layer",
        ),
        (
            Layer::new().fifo("p").build(),
            "archive member p: ADD does not add FIFOs",
        ),
    ];
    for (i, (tar, says)) in cases.into_iter().enumerate() {
        fs::write(ctx.join("a.tar"), tar).unwrap();
        fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD a.tar /\n").unwrap();
        let err = s
            .rimg(["build", "--progress", "plain", "-t", &format!("wh{i}:1")])
            .arg(&ctx)
            .fails();
        assert!(err.contains(says), "case {i}: {err}");
    }
    assert!(!s.rimg(["images"]).ok().contains("wh"));
    // A good archive with a hard link to an earlier file is added, and /etc/passwd stays.
    let tar = Layer::new()
        .file("f", b"data\n", 0o644)
        .hardlink("g", "f")
        .build();
    fs::write(ctx.join("a.tar"), tar).unwrap();
    s.rimg(["build", "--progress", "plain", "-t", "good:1"])
        .arg(&ctx)
        .ok();
    let out = s
        .rimg([
            "run",
            "--rm",
            "good:1",
            "sh",
            "-c",
            "cat /g; test -s /etc/passwd && ls /bin/sh",
        ])
        .ok();
    assert_eq!(out, "data\n/bin/sh\n");
}
