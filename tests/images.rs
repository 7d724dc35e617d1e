//! The store and the image commands, driven through the real `rimg` binary (issue: store,
//! layer index and image commands).

use rimg_tests::{require_tool, sh, Store};

#[test]
fn import_then_images_history_inspect() {
    let s = Store::new();
    let id = s.busybox("busybox:latest");
    assert!(
        id.starts_with("sha256:"),
        "import prints the image id, got {id:?}"
    );
    let images = s.rimg(["images"]).ok();
    let mut lines = images.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["busybox", "latest", &id[7..19]]);
    let inspect: serde_json::Value =
        serde_json::from_str(&s.rimg(["inspect", "busybox"]).ok()).unwrap();
    assert_eq!(inspect[0]["Id"], id);
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    require_tool("skopeo");
    require_tool("umoci");
    let s = Store::new();
    let id = s.busybox("busybox:latest");
    let root = s.root();
    let info = sh(&format!(
        "skopeo inspect --config oci:{}:busybox",
        root.display()
    ));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["config"]["Cmd"][0], "sh");
    let bundle = s.path("bundle");
    sh(&format!(
        "cd {} && umoci unpack --image {}:busybox {}",
        s.dir.path().display(),
        root.display(),
        bundle.display()
    ));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(id.len() > 7);
}

#[test]
fn multi_layer_images_from_generated_tars() {
    let s = Store::new();
    let layers = rimg_tests::tree::every_kind_layers();
    let id = s.image_from_layers(&layers, "kinds:v1");
    let hist = s.rimg(["history", "kinds:v1"]).ok();
    assert_eq!(hist.lines().count(), 4, "{hist}");
    assert!(hist.contains("test layer 2"));
    let listed = s.rimg(["images", "-q", "--no-trunc"]).ok();
    assert_eq!(listed.trim(), id);
}

/// What Docker reports as a layer's size: the bytes of the files it leaves once extracted
/// (regular files, symlinks by target length; hard links and directories add nothing).
fn docker_layer_size(tar_bytes: &[u8]) -> u64 {
    let mut sizes = std::collections::HashMap::new();
    for e in tar::Archive::new(tar_bytes).entries().unwrap() {
        let e = e.unwrap();
        let size = match e.header().entry_type() {
            tar::EntryType::Regular => e.header().size().unwrap(),
            tar::EntryType::Symlink => e.link_name_bytes().unwrap().len() as u64,
            _ => 0,
        };
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        sizes.insert(path, size);
    }
    sizes.values().sum()
}

fn columns(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn sizes_count_shared_layers_once_as_docker_does() {
    use rimg::units::{human_size, human_size4};
    let s = Store::new();
    let base = std::fs::read(rimg_tests::busybox_tar()).unwrap();
    let extra = rimg_tests::tree::Layer::new()
        .dir("app", 0o755)
        .file("app/data", &[7u8; 300_000], 0o644)
        .symlink("app/link", "data")
        .hardlink("app/again", "app/data")
        .build();
    let (b, l) = (docker_layer_size(&base), docker_layer_size(&extra));
    assert_eq!(l, 300_000 + 4);
    s.image_from_layers(std::slice::from_ref(&base), "busybox:latest");
    s.rimg(["tag", "busybox", "other:v2"]).ok();
    s.image_from_layers(&[base, extra], "app:1");

    let size = |name: &str| -> u64 {
        s.rimg(["inspect", "-f", "{{.Size}}", name])
            .ok()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!((size("busybox"), size("app:1")), (b, b + l));

    let images = s
        .rimg(["images", "--format", "{{.Repository}} {{.Size}}"])
        .ok();
    let mut rows: Vec<&str> = images.lines().collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            format!("app {}", human_size(b + l)),
            format!("busybox {}", human_size(b)),
            format!("other {}", human_size(b)),
        ]
    );

    // SIZE counts busybox's layer once; with no container, all of it is reclaimable.
    let df = s.rimg(["system", "df"]).ok();
    let images_row = columns(df.lines().nth(1).unwrap());
    let total = human_size4(b + l);
    assert_eq!(
        images_row,
        [
            "Images",
            "2",
            "0",
            total.as_str(),
            &format!("{total} (100%)")
        ]
    );

    // -v: one row per image (under its first tag); the base layer is shared by both.
    let v = s.rimg(["system", "df", "-v"]).ok();
    let mut rows: Vec<Vec<String>> = v
        .lines()
        .skip(3)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let c = columns(l);
            vec![
                c[0].clone(),
                c[1].clone(),
                c[4].clone(),
                c[5].clone(),
                c[6].clone(),
            ]
        })
        .collect();
    rows.sort();
    let h = human_size;
    assert_eq!(
        rows,
        [
            vec!["app".into(), "1".into(), h(b + l), h(b), h(l)],
            vec!["busybox".into(), "latest".into(), h(b), h(b), h(0)],
        ]
    );
    let history = s.rimg(["history", "app:1"]).ok();
    assert!(history.lines().nth(1).unwrap().contains(&h(l)), "{history}");
}
