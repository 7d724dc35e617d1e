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
