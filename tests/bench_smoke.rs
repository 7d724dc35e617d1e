//! The benchmark tool as a user runs it: `rimg-bench --quick` on every variant (native, kernel
//! overlayfs, fuse-overlayfs, rimgfs, rimgfs --read-only) completes, and every variant read
//! exactly the source's bytes. Never a timing.

use std::fs;
use std::path::Path;

use rimg_tests::{bin, require_tool, Cmd};

fn bench(work: &Path, args: &[&str]) -> Cmd {
    let mut c = std::process::Command::new(bin("rimg-bench"));
    c.arg("--work").arg(work).args(args);
    Cmd(c)
}

fn work_dir() -> tempfile::TempDir {
    // Cold reads need a disk filesystem, not tmpfs.
    tempfile::Builder::new()
        .prefix("rimg-bench-test-")
        .tempdir_in("/var/tmp")
        .expect("tempdir")
}

/// CSV rows as (workload, variant, status, detail).
fn csv_rows(csv: &str) -> Vec<(String, String, String, String)> {
    csv.lines()
        .skip(1)
        .map(|l| {
            // Labels may be quoted and contain commas; the fields we read are unquoted.
            let fields: Vec<&str> = l.split(',').collect();
            let n = fields.len();
            (
                fields[1].to_string(),
                fields[fields
                    .iter()
                    .position(|f| {
                        [
                            "native",
                            "overlayfs",
                            "fuse-overlayfs",
                            "rimgfs",
                            "rimgfs-ro",
                            "rimg",
                            "podman",
                        ]
                        .contains(f)
                    })
                    .expect("variant field")]
                .to_string(),
                fields[n - 2].to_string(),
                fields[n - 1].to_string(),
            )
        })
        .collect()
}

#[test]
fn quick_fs_run_reads_identical_bytes_on_every_variant() {
    require_tool("fuse-overlayfs");
    require_tool("fio");
    let work = work_dir();
    let out = work.path().join("out");
    let stdout = bench(work.path(), &["--quick", "--out"]).arg(&out).ok();
    for v in [
        "native",
        "overlayfs",
        "fuse-overlayfs",
        "rimgfs",
        "rimgfs-ro",
    ] {
        assert!(stdout.contains(v), "{v} missing from the table:\n{stdout}");
    }
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    let csv = fs::read_to_string(out.join("fs.csv")).expect("fs.csv");
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 12 * 5, "{csv}");
    for (workload, variant, status, detail) in &rows {
        let expected_na = (workload == "mount" && variant == "native")
            || (variant == "rimgfs-ro"
                && ["copy_up_medium", "copy_up_big", "create"].contains(&workload.as_str()));
        let want = if expected_na { "n/a" } else { "ok" };
        assert_eq!(
            status, want,
            "{variant} {workload}: {status} {detail}\n{stdout}"
        );
        // Every read and write workload checked its bytes against the source.
        if want == "ok" && !workload.starts_with("mount") {
            assert_eq!(detail, "bytes checked", "{variant} {workload}");
        }
    }
    let svg = fs::read_to_string(out.join("fs.svg")).expect("fs.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(fs::read_to_string(out.join("fs.md"))
        .expect("fs.md")
        .contains("| workload |"));
    // Nothing left mounted under the work dir.
    let mounts = rimg_fs::mountinfo::read().expect("mountinfo");
    let left = rimg_fs::mountinfo::under(&mounts, &work.path().canonicalize().expect("work dir"));
    assert!(left.is_empty(), "{left:?}");

    // A second run reuses the data set.
    let again = bench(work.path(), &["--quick", "--only", "native", "--out"])
        .arg(&out)
        .output();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("data set: reusing"));
}

#[test]
fn quick_cli_run_compares_rimg_with_podman() {
    require_tool("podman");
    let work = work_dir();
    let out = work.path().join("out");
    let stdout = bench(work.path(), &["--quick", "--group", "cli", "--out"])
        .arg(&out)
        .ok();
    let csv = fs::read_to_string(out.join("cli.csv")).expect("cli.csv");
    let rows = csv_rows(&csv);
    for (variant, name) in [
        ("rimg", "import_rootfs_tar"),
        ("podman", "import_rootfs_tar"),
    ] {
        let r = rows
            .iter()
            .find(|r| r.0 == name && r.1 == variant)
            .expect("import row");
        assert_eq!(r.2, "ok", "{variant} import: {}\n{stdout}", r.3);
    }
    assert!(fs::read_to_string(out.join("cli.svg"))
        .expect("cli.svg")
        .starts_with("<svg"));
}

#[test]
fn bad_flags_are_one_clear_error() {
    let work = work_dir();
    let err = bench(work.path(), &["--base-tar", "/nonexistent/base.tar"]).fails();
    assert!(
        err.contains("Error: --base-tar /nonexistent/base.tar: no such file"),
        "{err}"
    );
    let err = bench(work.path(), &["--group", "disks"]).fails();
    assert!(err.contains("disks"), "{err}");
}
