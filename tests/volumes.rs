//! Volumes and mounts (issue 16), end to end: named and anonymous volumes, bind mounts,
//! tmpfs, `--read-only`, what `diff` and `commit` leave out, and hostile images whose mount
//! targets are symlinks out of the rootfs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rimg_tests::containers::{assert_no_mounts, Cleanup};
use rimg_tests::tree::Layer;
use rimg_tests::{busybox_tar, mounts_under, Store};

fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

/// busybox plus `extra` on top, with `volumes` as the image's `VOLUME`s, tagged `name`.
fn image_over_busybox(s: &Store, extra: Vec<u8>, volumes: &[&str], name: &str) {
    let base = fs::read(busybox_tar()).unwrap();
    let mut config = rimg::image::ImageConfig::new_for_host();
    config.config.cmd = Some(vec!["sh".into()]);
    if !volumes.is_empty() {
        config.config.volumes = Some(
            volumes
                .iter()
                .map(|v| (v.to_string(), serde_json::json!({})))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    s.image_with_config(&[base, extra], config, name);
}

fn volume_names(s: &Store, extra: &[&str]) -> Vec<String> {
    s.rimg(["volume", "ls", "-q"])
        .args(extra)
        .ok()
        .lines()
        .map(String::from)
        .collect()
}

/// Every path under `dir` with its content (files) or kind.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if m.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn named_volume_outlives_containers_and_is_shared() {
    let s = store();
    let _c = Cleanup(&s);
    let count = "n=$(cat /data/n 2>/dev/null || echo 0); echo $((n+1)) > /data/n; cat /data/n";
    for want in ["1", "2", "3"] {
        let out = s
            .rimg([
                "run",
                "--rm",
                "-v",
                "counter:/data",
                "busybox",
                "sh",
                "-c",
                count,
            ])
            .ok();
        assert_eq!(out.trim(), want);
    }
    assert!(volume_names(&s, &[]).contains(&"counter".to_string()));
    let df = s.rimg(["system", "df"]).ok();
    let row = df.lines().find(|l| l.starts_with("Local Volumes")).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("1"), "{df}");
    let dfv = s.rimg(["system", "df", "-v"]).ok();
    assert!(
        dfv.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["counter", "0", "2B"]),
        "{dfv}"
    );

    // Two running containers see one volume.
    let a = s
        .rimg(["run", "-d", "-v", "shared:/s", "busybox", "sh", "-c"])
        .arg("echo from-a > /s/a; sleep 60")
        .ok();
    let b = s
        .rimg([
            "run",
            "-d",
            "--mount",
            "type=volume,source=shared,target=/t",
            "busybox",
        ])
        .args(["sleep", "60"])
        .ok();
    let (a, b) = (a.trim(), b.trim());
    // The first container writes its file once it runs: wait for it inside the second.
    let seen = s
        .rimg(["exec", b, "timeout", "20", "sh", "-c"])
        .arg("until [ -e /t/a ]; do sleep 0.1; done; cat /t/a")
        .ok();
    assert_eq!(seen.trim(), "from-a");
    s.rimg(["exec", b, "sh", "-c", "echo from-b > /t/b"]).ok();
    assert_eq!(s.rimg(["exec", a, "cat", "/s/b"]).ok().trim(), "from-b");
    // --volumes-from: the same volume at the same place; `:ro` makes it read-only.
    let from = format!("{a}:ro");
    let o = s
        .rimg([
            "run",
            "--rm",
            "--volumes-from",
            &from,
            "busybox",
            "sh",
            "-c",
        ])
        .arg("cat /s/a; echo x > /s/c")
        .output();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-a\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"));
    // In use: `volume rm` refuses, naming the volume.
    let err = s.rimg(["volume", "rm", "shared"]).fails();
    assert!(err.contains("volume is in use"), "{err}");
    let err = s.rimg(["volume", "rm", "-f", "shared"]).fails();
    assert!(err.contains("volume is in use"), "{err}");
    s.rimg(["rm", "-f", a, b]).ok();
    s.rimg(["volume", "rm", "shared"]).ok();
    s.rimg(["volume", "rm", "-f", "shared"]).ok();
    assert!(!volume_names(&s, &[]).contains(&"shared".to_string()));
    assert_no_mounts(s.dir.path());
}

#[test]
fn bind_mounts_both_ways_read_only_and_missing_sources() {
    let s = store();
    let _c = Cleanup(&s);
    let host = s.path("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "hello\n").unwrap();
    let spec = format!("{}:/mnt", host.display());
    let out = s
        .rimg(["run", "--rm", "-v", &spec, "busybox", "sh", "-c"])
        .arg("cat /mnt/in; echo back > /mnt/out")
        .ok();
    assert_eq!(out, "hello\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "back\n");

    // `:ro`: writes fail with EROFS, and the mount cannot be made writable from inside.
    let ro = format!("{}:/mnt:ro", host.display());
    let o = s
        .rimg(["run", "--rm", "-v", &ro, "busybox", "sh", "-c"])
        .arg("echo x > /mnt/f; mount -o remount,rw /mnt; echo y > /mnt/g")
        .output();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.join("f").exists() && !host.join("g").exists());
    let ro_mount = format!("type=bind,source={},target=/m,readonly", host.display());
    let o = s
        .rimg([
            "run", "--rm", "--mount", &ro_mount, "busybox", "touch", "/m/z",
        ])
        .output();
    assert!(!o.status.success());
    assert!(!host.join("z").exists());

    // A file bind mount, also over one of the runtime's own /etc files.
    let hosts = s.path("my-hosts");
    fs::write(&hosts, "10.0.0.1 db\n").unwrap();
    let spec = format!("{}:/etc/hosts:ro", hosts.display());
    let out = s
        .rimg(["run", "--rm", "-v", &spec, "busybox", "cat", "/etc/hosts"])
        .ok();
    assert_eq!(out, "10.0.0.1 db\n");

    // -v makes a missing host directory; --mount refuses a missing source, naming it.
    let made = s.path("made/by/v");
    let spec = format!("{}:/made", made.display());
    s.rimg(["run", "--rm", "-v", &spec, "busybox", "touch", "/made/f"])
        .ok();
    assert!(made.join("f").is_file());
    let missing = s.path("missing-source");
    let m = format!("type=bind,source={},target=/x", missing.display());
    let o = s
        .rimg(["run", "--rm", "--mount", &m, "busybox", "true"])
        .output();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!missing.exists());
    // Malformed values are refused before the image is looked up or pulled.
    for bad in [
        ["-v", "rel/dir:/x"],
        ["--mount", "type=bind,source=/h"],
        ["-v", "/a:/b:bogus"],
    ] {
        let o = s
            .rimg(["run", "--rm"])
            .args(bad)
            .args(["no-such-image", "true"])
            .output();
        assert_eq!(o.status.code(), Some(125), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("Unable to find image"), "{bad:?}: {err}");
    }
    assert_no_mounts(s.dir.path());
}

#[test]
fn image_volume_gets_an_anonymous_volume_with_the_images_files() {
    let s = store();
    let _c = Cleanup(&s);
    let layer = Layer::new()
        .dir("var/lib/app", 0o750)
        .file_with(
            "var/lib/app/seed",
            b"seeded\n",
            0o640,
            1000,
            1000,
            1_700_000_000,
        )
        .build();
    image_over_busybox(&s, layer, &["/var/lib/app"], "app:latest");
    let out = s
        .rimg(["run", "--name", "c1", "app", "sh", "-c"])
        .arg("cat /var/lib/app/seed; stat -c %u:%a /var/lib/app/seed /var/lib/app; echo new > /var/lib/app/new")
        .ok();
    assert_eq!(out, "seeded\n1000:640\n0:750\n");
    let inspect: serde_json::Value = serde_json::from_str(&s.rimg(["inspect", "c1"]).ok()).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap().clone();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/var/lib/app");
    assert_eq!(mounts[0]["RW"], true);
    let name = mounts[0]["Name"].as_str().unwrap().to_string();
    let source = mounts[0]["Source"].as_str().unwrap().to_string();
    assert_eq!(listing(Path::new(&source)), vec!["new", "seed"]);
    assert_eq!(
        fs::metadata(Path::new(&source).join("seed")).unwrap().uid(),
        1000
    );
    // Named volumes are not dangling while a container uses them; this one is in use.
    assert!(volume_names(&s, &["-f", "dangling=true"]).is_empty());

    // `rm -v` removes the container's anonymous volume.
    s.rimg(["rm", "-v", "c1"]).ok();
    assert!(!volume_names(&s, &[]).contains(&name));
    assert!(!Path::new(&source).exists());

    // `rm` without -v leaves it dangling; prune takes it.
    s.rimg(["run", "--name", "c2", "app", "true"]).ok();
    s.rimg(["run", "--rm", "-v", "keep:/k", "app", "true"]).ok();
    s.rimg(["rm", "c2"]).ok();
    let dangling = volume_names(&s, &["-f", "dangling=true"]);
    assert_eq!(dangling.len(), 2, "{dangling:?}");
    assert!(dangling.contains(&"keep".to_string()));
    let pruned = s.rimg(["volume", "prune", "-f"]).ok();
    assert!(pruned.starts_with("Deleted Volumes:\n"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    // Without -a, a named volume stays.
    assert_eq!(volume_names(&s, &[]), vec!["keep".to_string()]);
    s.rimg(["volume", "prune", "-a", "-f"]).ok();
    assert!(volume_names(&s, &[]).is_empty());
    let check = s.rimg(["system", "check"]).ok();
    assert!(check.contains("no problems"), "{check}");
    assert_no_mounts(s.dir.path());
}

#[test]
fn diff_and_commit_leave_out_volumes_binds_and_tmpfs() {
    let s = store();
    let _c = Cleanup(&s);
    let host = s.path("bindsrc");
    let bind = format!("{}:/bind", host.display());
    s.rimg(["run", "--name", "w", "-v", "vol:/vol", "-v", &bind, "--tmpfs", "/scratch"])
        .args(["busybox", "sh", "-c"])
        .arg("echo a > /vol/in-volume; echo b > /bind/in-bind; echo c > /scratch/in-tmpfs; echo d > /real")
        .ok();
    let diff = s.rimg(["diff", "w"]).ok();
    assert!(diff.lines().any(|l| l == "A /real"), "{diff}");
    for hidden in ["in-volume", "in-bind", "in-tmpfs"] {
        assert!(!diff.contains(hidden), "{hidden} in diff:\n{diff}");
    }
    s.rimg(["commit", "w", "committed:1"]).ok();
    let out = s
        .rimg(["run", "--rm", "committed:1", "sh", "-c"])
        .arg("cat /real; ls -A /vol /bind /scratch 2>/dev/null")
        .ok();
    assert!(out.starts_with("d\n"), "{out}");
    for hidden in ["in-volume", "in-bind", "in-tmpfs"] {
        assert!(!out.contains(hidden), "{hidden} was committed:\n{out}");
    }
    assert_eq!(fs::read_to_string(host.join("in-bind")).unwrap(), "b\n");
    assert_no_mounts(s.dir.path());
}

#[test]
fn hostile_mount_targets_stay_inside_the_container() {
    let s = store();
    let _c = Cleanup(&s);
    let victim = s.path("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("keep"), "untouched\n").unwrap();
    let up = format!(
        "{}{}",
        "../".repeat(20),
        victim.display().to_string().trim_start_matches('/')
    );
    let layer = Layer::new()
        .symlink("abs", &victim.display().to_string())
        .symlink("up", &up)
        .dir("d", 0o755)
        .symlink("d/rel", "../../../../../../..")
        .symlink("toproc", "/proc/self")
        .build();
    image_over_busybox(&s, layer, &[], "hostile:latest");
    let before = listing(&victim);
    let host = s.path("h");
    fs::create_dir(&host).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["-v".into(), "v1:/abs".into()],
        vec!["-v".into(), format!("{}:/up", host.display())],
        vec!["--tmpfs".into(), "/abs/sub".into()],
        vec![
            "-v".into(),
            format!("{}:/d/rel{}", host.display(), victim.display()),
        ],
    ];
    for args in &cases {
        let out = s
            .rimg(["run", "--rm"])
            .args(args)
            .args(["hostile", "sh", "-c", "echo pwned > $0/pwned; echo ok"])
            .arg(args[1].rsplit(':').next().unwrap())
            .ok();
        assert_eq!(out.trim(), "ok", "{args:?}");
        assert_eq!(listing(&victim), before, "{args:?} reached the host");
    }
    // The writes went into the volume and the bind source instead.
    let v1 = s
        .rimg(["volume", "inspect", "-f", "{{.Mountpoint}}", "v1"])
        .ok();
    assert!(Path::new(v1.trim()).join("pwned").is_file());
    assert!(host.join("pwned").is_file());
    // Targets in /proc are refused, directly or through a link.
    for target in ["/proc/sys/kernel/x", "/toproc/x", "/sys/kernel/x"] {
        let spec = format!("{}:{target}", host.display());
        let o = s
            .rimg(["run", "--rm", "-v", &spec, "hostile", "true"])
            .output();
        assert!(!o.status.success(), "{target} was mounted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("cannot be mounted") || err.contains("not followed"),
            "{err}"
        );
    }
    assert_eq!(
        fs::read_to_string(victim.join("keep")).unwrap(),
        "untouched\n"
    );
    assert!(mounts_under(&victim).is_empty());
    assert_no_mounts(s.dir.path());
}

#[test]
fn read_only_root_with_a_writable_tmpfs_and_volume() {
    let s = store();
    let _c = Cleanup(&s);
    let out = s
        .rimg(["run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", "rw:/data", "busybox"])
        .args(["sh", "-c"])
        .arg("touch /x 2>&1; touch /tmp/y && echo tmp-ok; touch /data/z && echo vol-ok; echo 1 > /dev/null && echo dev-ok")
        .ok();
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmp-ok\n"), "{out}");
    assert!(out.contains("vol-ok\n"), "{out}");
    assert!(out.contains("dev-ok\n"), "{out}");
    // The working directory is made before the root turns read-only, as Docker does.
    let out = s
        .rimg([
            "run",
            "--rm",
            "--read-only",
            "-w",
            "/new/work",
            "busybox",
            "pwd",
        ])
        .ok();
    assert_eq!(out, "/new/work\n");
    // --tmpfs options: size and mode.
    let out = s
        .rimg(["run", "--rm", "--tmpfs", "/t:size=1m,mode=1770", "busybox"])
        .args(["sh", "-c", "stat -c %a /t; df -k /t | tail -1"])
        .ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1770"), "{out}");
    assert!(
        lines.next().unwrap().split_whitespace().nth(1) == Some("1024"),
        "{out}"
    );
    assert_no_mounts(s.dir.path());
}
