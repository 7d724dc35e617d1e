//! `rimg system check [--repair]` (issue 8): damage is found, one line each, exit 1; repair
//! removes what is broken and never what an intact image uses.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rimg_tests::archives::{corrupt_blobs, tmp_files};
use rimg_tests::tree::Layer;
use rimg_tests::Store;

fn layer(tag: &str) -> Vec<u8> {
    Layer::new()
        .dir("etc", 0o755)
        .file("etc/tag", tag.as_bytes(), 0o644)
        .build()
}

/// A store with busybox and a two-layer image sharing nothing with it.
fn store() -> (Store, String, String) {
    let s = Store::new();
    s.busybox("busybox:latest");
    s.image_from_layers(&[layer("a"), layer("b")], "two:1");
    let layer_of = |name: &str, i: usize| {
        let v: serde_json::Value = serde_json::from_str(&s.rimg(["inspect", name]).ok()).unwrap();
        v[0]["RootFS"]["Layers"][i].as_str().unwrap().to_string()
    };
    let bb_layer = layer_of("busybox:latest", 0);
    let two_layer = layer_of("two:1", 1);
    (s, bb_layer, two_layer)
}

fn blob(s: &Store, d: &str) -> std::path::PathBuf {
    s.root()
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"))
}

fn index(s: &Store, d: &str) -> std::path::PathBuf {
    s.root()
        .join("rimg/indexes/sha256")
        .join(d.trim_start_matches("sha256:"))
}

fn check(s: &Store, args: &[&str]) -> (i32, String) {
    let out = s.rimg(["system", "check"]).args(args).output();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_clean_store_checks_clean() {
    let (s, _, _) = store();
    let (code, out) = check(&s, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problems"), "{out}");
}

#[test]
fn a_corrupt_layer_is_found_and_repair_keeps_the_other_images() {
    let (s, bb, two) = store();
    let p = blob(&s, &two);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&p).unwrap();
    bytes[600] ^= 1;
    fs::write(&p, bytes).unwrap();
    let (code, out) = check(&s, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("blob {two}: content does not match its digest")),
        "{out}"
    );
    assert!(
        out.contains("image two:1 (manifest") && out.contains(&format!("layer {two} is corrupt")),
        "{out}"
    );
    let (code, out) = check(&s, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("removed corrupt blob {two}")),
        "{out}"
    );
    assert!(out.contains("removed index.json entry two:1"), "{out}");
    assert!(out.contains("removed unreferenced blob"), "{out}");
    assert!(blob(&s, &bb).exists(), "busybox's layer was removed");
    assert_eq!(check(&s, &[]).0, 0);
    assert!(corrupt_blobs(&s.root()).is_empty());
    let images = s.rimg(["images"]).ok();
    assert!(
        images.contains("busybox") && !images.contains("two"),
        "{images}"
    );
    s.rimg(["run", "--rm", "busybox", "true"]).ok();
}

#[test]
fn bad_and_missing_layer_indexes_are_rebuilt() {
    let (s, bb, two) = store();
    fs::remove_file(index(&s, &bb)).unwrap();
    let p = index(&s, &two);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&p).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&p, bytes).unwrap();
    let (code, out) = check(&s, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("layer {bb}: no layer index")),
        "{out}"
    );
    assert!(out.contains(&format!("layer index of {two}:")), "{out}");
    let (code, out) = check(&s, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("rebuilt the layer index of {bb}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("rebuilt the layer index of {two}")),
        "{out}"
    );
    assert_eq!(check(&s, &[]).0, 0);
    s.rimg(["run", "--rm", "busybox", "cat", "/etc/passwd"])
        .ok();
}

#[test]
fn garbage_is_not_damage_and_repair_removes_it() {
    let (s, _, _) = store();
    s.rimg(["rmi", "two:1"]).ok();
    fs::write(s.root().join("rimg/tmp/123-leftover"), b"partial").unwrap();
    // An unreferenced layer, as a kill between storing a layer and naming it leaves.
    let images = rimg::image::Images::open(&s.root()).unwrap();
    images
        .store()
        .ingest_layer(&layer("orphan")[..], None)
        .unwrap();
    let (code, out) = check(&s, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 unreferenced blobs and 1 temporary files"),
        "{out}"
    );
    let (code, out) = check(&s, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("removed unreferenced blob"), "{out}");
    assert!(out.contains("removed 1 temporary files"), "{out}");
    assert!(tmp_files(&s.root()).is_empty());
    assert!(!check(&s, &[]).1.contains("unreferenced"));
}

#[test]
fn an_index_whose_blob_never_arrived_is_garbage() {
    let (s, bb_layer, _) = store();
    // A kill between publishing a layer's index and its blob leaves this.
    let stale = index(&s, &"ab".repeat(32));
    fs::copy(index(&s, &bb_layer), &stale).unwrap();
    let (code, out) = check(&s, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 temporary files"), "{out}");
    let (code, out) = check(&s, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unpublished blob"), "{out}");
    assert!(!stale.exists());
    assert!(check(&s, &[]).1.contains("no problems"));
}

#[test]
fn records_of_containers_whose_image_is_gone_are_reported() {
    let (s, _, _) = store();
    s.rimg(["create", "--name", "c1", "two:1", "true"]).ok();
    // Remove the image's config blob behind rimg's back.
    let v: serde_json::Value = serde_json::from_str(&s.rimg(["inspect", "two:1"]).ok()).unwrap();
    let config = v[0]["Id"].as_str().unwrap().to_string();
    fs::remove_file(blob(&s, config.trim())).unwrap();
    let (code, out) = check(&s, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record container-"), "{out}");
    assert!(
        out.contains(&format!("config {} is missing", config.trim())),
        "{out}"
    );
    let (code, out) = check(&s, &["--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("still broken: record container-"), "{out}");
    s.rimg(["rm", "c1"]).ok();
    assert_eq!(check(&s, &["--repair"]).0, 0);
    assert_eq!(check(&s, &[]).0, 0);
}

/// Issue 21: garbage collection waits its turn fairly, so `image prune` keeps completing while
/// builds (RUN steps, some `--no-cache`) run back to back; the store stays sound.
#[test]
fn prune_is_not_starved_by_concurrent_builds() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let s = Store::new();
    s.busybox("busybox:latest");
    for i in 0..4 {
        let ctx = s.path(&format!("ctx{i}"));
        fs::create_dir_all(&ctx).unwrap();
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nRUN echo {i} > /f\nRUN date > /g\n"),
        )
        .unwrap();
    }
    let stop = AtomicBool::new(false);
    let builds = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..4 {
            let (s, stop, builds) = (&s, &stop, &builds);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let mut c = s.rimg(["build", "-q", "-t", &format!("b{i}")]);
                    if n % 2 == 1 {
                        c = c.arg("--no-cache");
                    }
                    let out = c.arg(s.path(&format!("ctx{i}"))).output();
                    if !out.status.success() {
                        stop.store(true, Ordering::SeqCst);
                        panic!("build {i}: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    builds.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                }
            });
        }
        // Every prune must finish while the builds go on; a starved one would wait for ever,
        // so each gets a generous deadline (a failure, not a measurement).
        // The whole loop is bounded too: 20 prunes and 20 builds (the bar is 20
        // prunes in 60 s; on an idle 2-core machine both take a few seconds).
        let deadline = Duration::from_secs(120);
        let overall = Instant::now() + Duration::from_secs(600);
        let mut prunes = 0;
        while !stop.load(Ordering::SeqCst) && (prunes < 20 || builds.load(Ordering::SeqCst) < 20) {
            if Instant::now() > overall {
                stop.store(true, Ordering::SeqCst);
                panic!(
                    "{prunes} prunes and {} builds in 600 s",
                    builds.load(Ordering::SeqCst)
                );
            }
            let mut child = s
                .rimg(["image", "prune", "-f"])
                .0
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break st;
                }
                if started.elapsed() > deadline {
                    let _ = child.kill();
                    stop.store(true, Ordering::SeqCst);
                    panic!("image prune never got its turn among the builds");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(status.success());
            prunes += 1;
        }
        stop.store(true, Ordering::SeqCst);
        eprintln!("{prunes} prunes, {} builds", builds.load(Ordering::SeqCst));
        assert!(prunes >= 20);
    });
    assert_eq!(corrupt_blobs(&s.root()), Vec::<String>::new());
    s.rimg(["system", "check"]).ok();
}

/// Waits for `child` with a deadline; `None` if it is still running then.
fn wait_until(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What an exited child wrote to its piped stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Issue 21 #5: a build holds no lease while a RUN step's command runs, so `image prune`
/// finishes while the step waits (here on the test itself: it answers the step's HTTP
/// request only after the prune). The mounted state and the finished stage's layers (which
/// `COPY --from` reads after the step) are pinned meanwhile; the build completes intact and
/// a progress pin whose build is gone is dropped by the next prune.
#[test]
fn prune_finishes_while_a_run_step_runs() {
    use std::io::{Read, Write};
    let s = Store::new();
    s.busybox("busybox:latest");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = s.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox AS first\nRUN echo one > /one\n\
             FROM busybox\nRUN wget -q -O /got http://127.0.0.1:{port}/\n\
             COPY --from=first /one /one\n"
        ),
    )
    .unwrap();
    let mut build = s
        // The RUN step asks this test on 127.0.0.1: the host's network, not the bridge.
        .rimg(["build", "--network", "host", "-q", "-t", "waited"])
        .arg(&ctx)
        .0
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (mut conn, _) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(st) = build.try_wait().unwrap() {
            let err = stderr_of(&mut build);
            panic!("the build ended before its RUN step asked ({st}): {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN step never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The RUN step waits for our answer: the prune must finish without it.
    let mut prune = s
        .rimg(["image", "prune", "-f"])
        .0
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pruned = wait_until(&mut prune, 60);
    if pruned.is_none() {
        let _ = prune.kill();
    }
    conn.set_nonblocking(false).unwrap();
    let mut req = [0u8; 1024];
    let _ = conn.read(&mut req).unwrap();
    conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nhi\n")
        .unwrap();
    drop(conn);
    assert!(
        pruned.is_some_and(|st| st.success()),
        "image prune waited for the build's RUN step"
    );
    let built = wait_until(&mut build, 120).expect("the build never finished");
    assert!(built.success(), "{}", stderr_of(&mut build));
    let out = s
        .rimg(["run", "--rm", "waited", "cat", "/one", "/got"])
        .ok();
    assert_eq!(out, "one\nhi\n");

    // A progress pin of a build that is gone (pid past pid_max) is dropped by prune.
    let images = rimg::image::Images::open(&s.root()).unwrap();
    images.pin_volatile("building-4194305-1", &[]).unwrap();
    s.rimg(["image", "prune", "-f"]).ok();
    let pins: Vec<String> = images.pins().unwrap().into_iter().map(|p| p.0).collect();
    assert!(!pins.iter().any(|p| p.starts_with("building-")), "{pins:?}");
    s.rimg(["system", "check"]).ok();
}
