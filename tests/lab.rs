//! The seeds' lab, end to end through the real binaries: run a container that changes files,
//! `rimg diff` it, commit it, run the new image; then hand the images to podman and check that
//! podman sees the same files and lists the same changes for the same container.

use rimg_tests::archives::Podman;
use rimg_tests::{mounts_under, require_tool, Store, SEEDS_LAB_DIFF};

const LAB_CHANGES: &str =
    "echo jslee >> ch03.txt; echo x > new.txt; rm /etc/some-file; mkdir /data; echo y > /data/f";

/// An image `lab` with /diamol/ch03.txt, /etc/some-file and WORKDIR /diamol, made with rimg
/// itself (run + commit).
fn lab_image(s: &Store) {
    s.busybox("busybox");
    s.rimg([
        "run",
        "--name",
        "prep",
        "busybox",
        "sh",
        "-c",
        "mkdir /diamol && echo 'ch03 lab' > /diamol/ch03.txt && echo x > /etc/some-file",
    ])
    .ok();
    s.rimg(["commit", "-c", "WORKDIR /diamol", "prep", "lab"])
        .ok();
    s.rimg(["rm", "prep"]).ok();
}

#[test]
fn seeds_lab_run_diff_commit_history() {
    let s = Store::new();
    lab_image(&s);
    s.rimg(["run", "--name", "c", "lab", "sh", "-c", LAB_CHANGES])
        .ok();
    let diff = s.rimg(["diff", "c"]).ok();
    assert_eq!(diff.lines().collect::<Vec<_>>(), SEEDS_LAB_DIFF);

    let id = s
        .rimg(["commit", "-m", "lab solution", "c", "lab-solution:v1"])
        .ok();
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let out = s
        .rimg(["run", "--rm", "lab-solution:v1", "cat", "/diamol/ch03.txt"])
        .ok();
    assert_eq!(out, "ch03 lab\njslee\n");
    let ls = s
        .rimg([
            "run",
            "--rm",
            "lab-solution:v1",
            "ls",
            "/data",
            "/etc/some-file",
        ])
        .output();
    assert!(String::from_utf8_lossy(&ls.stdout).contains('f'));
    assert!(String::from_utf8_lossy(&ls.stderr).contains("some-file"));

    // The new layer sits on top of the lab's history, with the command and the message.
    let history = s.rimg(["history", "--no-trunc", "lab-solution:v1"]).ok();
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert!(rows[0].contains(LAB_CHANGES), "{history}");
    assert!(rows[0].contains("lab solution"), "{history}");
    let base_rows = s.rimg(["history", "lab"]).ok().lines().count() - 1;
    assert_eq!(rows.len(), base_rows + 1);

    // The committed layer holds exactly the container's changes.
    let image_diff = s.rimg(["diff", "lab-solution:v1"]).ok();
    assert_eq!(image_diff.lines().collect::<Vec<_>>(), SEEDS_LAB_DIFF);

    s.rimg(["rm", "c"]).ok();
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn podman_runs_what_rimg_committed_and_diffs_the_same() {
    require_tool("podman");
    let s = Store::new();
    lab_image(&s);
    s.rimg(["run", "--name", "c", "lab", "sh", "-c", LAB_CHANGES])
        .ok();
    s.rimg(["commit", "c", "lab-solution:v1"]).ok();
    let archive = s.path("lab.tar");
    s.rimg(["save", "-o"])
        .arg(&archive)
        .args(["lab", "lab-solution:v1"])
        .ok();

    let podman = Podman::new(&s);
    podman.cmd().args(["load", "-i"]).arg(&archive).ok();
    let run = |args: &[&str]| {
        podman
            .cmd()
            .args(["run", "--network=host", "--ulimit", "host"])
            .args(args)
            .ok()
    };
    assert_eq!(
        run(&[
            "--rm",
            "localhost/lab-solution:v1",
            "cat",
            "/diamol/ch03.txt"
        ]),
        "ch03 lab\njslee\n"
    );
    assert_eq!(
        run(&["--rm", "localhost/lab-solution:v1", "cat", "/data/f"]),
        "y\n"
    );
    // podman's own diff of an equivalent container lists what rimg lists.
    run(&["--name", "pc", "localhost/lab", "sh", "-c", LAB_CHANGES]);
    let podman_diff = podman.cmd().args(["diff", "pc"]).ok();
    let rimg_diff = s.rimg(["diff", "c"]).ok();
    assert_eq!(rimg_diff, podman_diff);
    podman.cmd().args(["rm", "-f", "pc"]).ok();
    podman.cmd().args(["rmi", "-a", "-f"]).ok();
    s.rimg(["rm", "c"]).ok();
    assert!(mounts_under(s.dir.path()).is_empty());
}
