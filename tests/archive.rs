//! `rimg save` and `rimg load`: round trips, and archives exchanged with podman and skopeo
//! (issue: store, layer index and image commands).

use std::fs;

use rimg_tests::archives::{gzip, store_state, tmp_files, OciImage, Podman};
use rimg_tests::tree::Layer;
use rimg_tests::{busybox_tar, require_tool, sh, Store};

/// (image id, tags) of every image in a store, sorted.
fn listing(s: &Store) -> Vec<String> {
    let out = s
        .rimg([
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ])
        .ok();
    let mut lines: Vec<String> = out.lines().map(String::from).collect();
    lines.sort();
    lines
}

/// A store with busybox (also tagged other:v2) and app:1, which adds a layer on busybox.
fn seeded() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s.rimg(["tag", "busybox", "other:v2"]).ok();
    let base = fs::read(busybox_tar()).unwrap();
    let extra = Layer::new()
        .dir("app", 0o755)
        .file("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
        .build();
    s.image_from_layers(&[base, extra], "app:1");
    s
}

#[test]
fn save_then_load_keeps_ids_and_tags_in_both_formats() {
    let src = seeded();
    for format in ["docker-archive", "oci-archive"] {
        let file = src.path(&format!("all-{format}.tar"));
        src.rimg(["save", "--format", format, "-o"])
            .arg(&file)
            .args(["busybox", "other:v2", "app:1"])
            .ok();
        let dst = Store::new();
        let out = dst.rimg(["load", "-i"]).arg(&file).ok();
        let mut loaded: Vec<&str> = out.lines().collect();
        loaded.sort();
        assert_eq!(
            loaded,
            [
                "Loaded image: app:1",
                "Loaded image: busybox:latest",
                "Loaded image: other:v2"
            ],
            "{format}"
        );
        assert_eq!(listing(&dst), listing(&src), "{format}");
        // The shared busybox layer is stored once, and the loaded images read like the
        // originals.
        let layers = |s: &Store| {
            let v: serde_json::Value =
                serde_json::from_str(&s.rimg(["inspect", "app:1"]).ok()).unwrap();
            v[0]["RootFS"]["Layers"].clone()
        };
        assert_eq!(layers(&dst), layers(&src));
        assert_eq!(
            dst.rimg(["history", "app:1"]).ok(),
            src.rimg(["history", "app:1"]).ok()
        );
        assert!(tmp_files(&dst.root()).is_empty());
    }
}

#[test]
fn load_reads_stdin_and_compressed_archives_and_untagged_images() {
    let src = seeded();
    let file = src.path("bb.tar");
    let id = src.rimg(["images", "-q", "--no-trunc", "busybox"]).ok();
    let id = id.trim();
    // Saved by id, the image carries no name: load prints its id, as docker does.
    src.rimg(["save", "-o"]).arg(&file).arg(&id[7..19]).ok();
    let bytes = fs::read(&file).unwrap();
    let dst = Store::new();
    let out = dst.rimg(["load"]).stdin_bytes(&bytes);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Loaded image ID: {id}\n")
    );
    assert_eq!(
        dst.rimg(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .ok(),
        "<none>:<none>\n"
    );

    // A gzip-compressed archive, through the `image load` alias.
    src.rimg(["save", "-o"]).arg(&file).arg("busybox").ok();
    let gz = src.path("bb.tar.gz");
    fs::write(&gz, gzip(&fs::read(&file).unwrap())).unwrap();
    let out = dst.rimg(["image", "load", "-q", "-i"]).arg(&gz).ok();
    assert_eq!(out, "Loaded image: busybox:latest\n");
    assert_eq!(
        dst.rimg(["images", "-q", "--no-trunc"]).ok().trim(),
        id,
        "the tag now names the image loaded by id"
    );
}

#[test]
fn load_accepts_compressed_oci_layers_in_any_member_order() {
    let layer = Layer::new()
        .dir("etc", 0o755)
        .file("etc/hostname", b"oci\n", 0o644)
        .build();
    let img = OciImage::new(&[layer], Some("gz:1")).gzipped();
    let mut members = img.members();
    // Metadata first this time (the builder writes blobs first).
    members.reverse();
    let s = Store::new();
    let file = s.path("gz.tar");
    fs::write(&file, rimg_tests::archives::tar_of(&members)).unwrap();
    assert_eq!(
        s.rimg(["load", "-i"]).arg(&file).ok(),
        "Loaded image: gz:1\n"
    );
    assert_eq!(listing(&s), [format!("{} gz:1", img.id())]);
    // Stored uncompressed: the manifest names the diff_id as the layer blob.
    let v: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect --raw oci:{}:gz:1",
        s.root().display()
    )))
    .unwrap();
    assert_eq!(
        v["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(
        v["layers"][0]["digest"],
        img.config["rootfs"]["diff_ids"][0]
    );
}

#[test]
fn podman_and_skopeo_read_what_rimg_saves() {
    require_tool("podman");
    require_tool("skopeo");
    let s = seeded();
    let id = s.rimg(["images", "-q", "--no-trunc", "busybox"]).ok();
    let id = id.trim().trim_start_matches("sha256:").to_string();
    let docker = s.path("bb-docker.tar");
    let oci = s.path("bb-oci.tar");
    s.rimg(["save", "-o"]).arg(&docker).arg("busybox").ok();
    s.rimg(["image", "save", "--format", "oci-archive", "-o"])
        .arg(&oci)
        .arg("busybox")
        .ok();

    let podman = Podman::new(&s);
    let out = podman.cmd().args(["load", "-i"]).arg(&docker).ok();
    assert!(
        out.contains("Loaded image: localhost/busybox:latest"),
        "{out}"
    );
    let images = podman
        .cmd()
        .args([
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ])
        .ok();
    assert_eq!(
        images.trim(),
        format!("sha256:{id} localhost/busybox:latest")
    );
    let hi = podman
        .cmd()
        .args([
            "run",
            "--rm",
            "--network=host",
            "localhost/busybox:latest",
            "echo",
            "hi",
        ])
        .ok();
    assert_eq!(hi, "hi\n");
    podman.cmd().args(["rmi", "-a", "-f"]).ok();

    let out = podman.cmd().args(["load", "-i"]).arg(&oci).ok();
    assert!(
        out.contains("Loaded image: localhost/busybox:latest"),
        "{out}"
    );
    let ids = podman.cmd().args(["images", "-q", "--no-trunc"]).ok();
    assert_eq!(ids.trim(), format!("sha256:{id}"));

    let info = sh(&format!(
        "skopeo inspect --config oci-archive:{}:busybox:latest",
        oci.display()
    ));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["config"]["Cmd"][0], "sh");
    sh(&format!(
        "skopeo copy oci-archive:{} '{}copied/busybox:v1'",
        oci.display(),
        podman.storage_transport()
    ));
    let names = podman
        .cmd()
        .args(["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
        .ok();
    assert!(
        names.contains(&format!("{} docker.io/copied/busybox:v1", &id[..12])),
        "{names}"
    );
}

#[test]
fn rimg_loads_what_podman_and_skopeo_save() {
    require_tool("podman");
    require_tool("skopeo");
    let s = seeded();
    let id = s.rimg(["images", "-q", "--no-trunc", "busybox"]).ok();
    let id = id.trim().to_string();
    let file = s.path("bb.tar");
    s.rimg(["save", "-o"]).arg(&file).arg("busybox").ok();
    let podman = Podman::new(&s);
    podman.cmd().args(["load", "-i"]).arg(&file).ok();

    // podman's oci-archive has gzip layers; its docker-archive links layer.tar to <diff>.tar;
    // skopeo can write zstd layers.
    let p_oci = s.path("p-oci.tar");
    let p_docker = s.path("p-docker.tar");
    let zst = s.path("zstd-oci.tar");
    podman
        .cmd()
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&p_oci)
        .arg("localhost/busybox:latest")
        .ok();
    podman
        .cmd()
        .args(["save", "--format", "docker-archive", "-o"])
        .arg(&p_docker)
        .arg("localhost/busybox:latest")
        .ok();
    let oci = s.path("bb-oci.tar");
    s.rimg(["save", "--format", "oci-archive", "-o"])
        .arg(&oci)
        .arg("busybox")
        .ok();
    sh(&format!(
        "skopeo copy --dest-compress --dest-compress-format zstd oci-archive:{}:busybox:latest oci-archive:{}:zst:1",
        oci.display(),
        zst.display()
    ));
    let media = sh(&format!(
        "skopeo inspect --raw oci-archive:{}:zst:1",
        zst.display()
    ));
    assert!(media.contains("tar+zstd"), "{media}");
    for (archive, name) in [
        (&p_oci, "localhost/busybox:latest"),
        (&p_docker, "localhost/busybox:latest"),
        (&zst, "zst:1"),
    ] {
        let dst = Store::new();
        let out = dst.rimg(["load", "-i"]).arg(archive).ok();
        assert_eq!(out, format!("Loaded image: {name}\n"));
        assert_eq!(listing(&dst), [format!("{id} {name}")]);
        dst.rimg(["history", name]).ok();
    }
}

#[test]
fn save_replaces_the_output_only_when_it_succeeds() {
    let s = seeded();
    let file = s.path("out.tar");
    fs::write(&file, b"previous contents").unwrap();
    let err = s.rimg(["save", "-o"]).arg(&file).arg("nope").fails();
    assert!(err.contains("no such image: nope"), "{err}");
    // A layer blob gone from the store fails the save half-way through writing.
    let app: serde_json::Value = serde_json::from_str(&s.rimg(["inspect", "app:1"]).ok()).unwrap();
    let top = app[0]["RootFS"]["Layers"][1].as_str().unwrap().to_string();
    fs::remove_file(s.root().join("blobs/sha256").join(&top[7..])).unwrap();
    let err = s.rimg(["save", "-o"]).arg(&file).arg("app:1").fails();
    assert!(err.contains(&top), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"previous contents");
    let leftovers: Vec<_> = fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rimg-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let before = store_state(&s.root());
    s.rimg(["save", "-o"]).arg(&file).arg("busybox").ok();
    assert_eq!(
        store_state(&s.root()),
        before,
        "save writes nothing to the store"
    );
}
