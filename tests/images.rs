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
