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
