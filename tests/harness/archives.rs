//! Image archives made to order (OCI archives and docker-archives whose every part a test can
//! spoil), store snapshots to prove a refused command changed nothing, and podman with a
//! private store.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use rimg::image::config::host_arch;
use rimg_fs::Digest;
use serde_json::{json, Value};

use crate::Store;

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

fn hex(bytes: &[u8]) -> String {
    Digest::of(bytes).hex()
}

/// gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A tar of `members` (path, bytes), in order.
pub fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, path, &data[..]).expect("append");
    }
    b.into_inner().expect("tar")
}

/// One layer of an [`OciImage`], as it will be written.
pub struct OciLayer {
    /// The blob's bytes in the archive (compressed or not).
    pub blob: Vec<u8>,
    /// Its media type in the manifest.
    pub media_type: String,
    /// The digest the manifest claims (and the member's name).
    pub digest: String,
}

/// An OCI archive under construction: every field can be spoiled before [`OciImage::build`].
pub struct OciImage {
    pub layers: Vec<OciLayer>,
    /// The image config; `rootfs.diff_ids` are the uncompressed layers' digests.
    pub config: Value,
    /// `org.opencontainers.image.ref.name` of the index entry.
    pub ref_name: Option<String>,
    /// Member paths left out of the archive.
    pub omit: Vec<String>,
}

impl OciImage {
    /// An image of uncompressed layers.
    pub fn new(layers: &[Vec<u8>], ref_name: Option<&str>) -> Self {
        let config = json!({
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
            "history": layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
        });
        OciImage {
            layers: layers
                .iter()
                .map(|l| OciLayer {
                    blob: l.clone(),
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                    digest: sha256(l),
                })
                .collect(),
            config,
            ref_name: ref_name.map(String::from),
            omit: Vec::new(),
        }
    }

    /// The same image with gzip-compressed layers.
    pub fn gzipped(mut self) -> Self {
        for l in &mut self.layers {
            l.blob = gzip(&l.blob);
            l.digest = sha256(&l.blob);
            l.media_type = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        }
        self
    }

    /// The image id the config gets.
    pub fn id(&self) -> String {
        sha256(&serde_json::to_vec(&self.config).expect("json"))
    }

    /// The archive's members, in the order skopeo writes them (blobs first).
    pub fn members(&self) -> Vec<(String, Vec<u8>)> {
        let config = serde_json::to_vec(&self.config).expect("json");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": self.layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        let mut entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&manifest), "size": manifest.len()});
        if let Some(r) = &self.ref_name {
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": r});
        }
        let index = json!({"schemaVersion": 2, "manifests": [entry]});
        let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let mut members = Vec::new();
        for l in &self.layers {
            members.push((blob(&l.digest), l.blob.clone()));
        }
        members.push((blob(&sha256(&config)), config));
        members.push((blob(&sha256(&manifest)), manifest));
        members.push((
            "index.json".into(),
            serde_json::to_vec(&index).expect("json"),
        ));
        members.push((
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        members.retain(|(p, _)| !self.omit.contains(p));
        members
    }

    /// The archive as a tar.
    pub fn build(&self) -> Vec<u8> {
        tar_of(&self.members())
    }
}

/// A docker-archive (`docker save` format) under construction.
pub struct DockerImage {
    /// Uncompressed layer tars, written as `<n>/layer.tar`.
    pub layers: Vec<Vec<u8>>,
    pub config: Value,
    pub repo_tags: Vec<String>,
}

impl DockerImage {
    /// An image of `layers` with one tag.
    pub fn new(layers: &[Vec<u8>], tag: &str) -> Self {
        let oci = OciImage::new(layers, None);
        DockerImage {
            layers: layers.to_vec(),
            config: oci.config,
            repo_tags: vec![tag.to_string()],
        }
    }

    /// The image id the config gets.
    pub fn id(&self) -> String {
        sha256(&serde_json::to_vec(&self.config).expect("json"))
    }

    /// The archive as a tar, in `docker save`'s order (layers first, manifest.json last).
    pub fn build(&self) -> Vec<u8> {
        let config = serde_json::to_vec(&self.config).expect("json");
        let id = hex(&config);
        let mut members = Vec::new();
        let mut paths = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("layer{i}/layer.tar");
            members.push((p.clone(), l.clone()));
            paths.push(p);
        }
        members.push((format!("{id}.json"), config));
        let manifest =
            json!([{"Config": format!("{id}.json"), "RepoTags": self.repo_tags, "Layers": paths}]);
        members.push((
            "manifest.json".into(),
            serde_json::to_vec(&manifest).expect("json"),
        ));
        tar_of(&members)
    }
}

/// What a store holds that a refused command must not change: every blob (by content hash),
/// `index.json`, and every layer index.
pub fn store_state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        "index.json".into(),
        sha256(&fs::read(root.join("index.json")).unwrap_or_default()),
    );
    for dir in ["blobs/sha256", "rimg/indexes/sha256"] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let e = e.expect("entry");
            out.insert(
                format!("{dir}/{}", e.file_name().to_string_lossy()),
                sha256(&fs::read(e.path()).expect("read")),
            );
        }
    }
    out
}

/// Files left in the store's `rimg/tmp/`.
pub fn tmp_files(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("rimg/tmp"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Blobs whose content does not hash to their name.
pub fn corrupt_blobs(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for e in fs::read_dir(root.join("blobs/sha256")).expect("blobs") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if hex(&fs::read(e.path()).expect("read")) != name {
            bad.push(name);
        }
    }
    bad
}

/// podman with a private store under a test's temp dir, and the containers.conf podman needs
/// on this machine.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// A podman whose storage lives beside the test's rimg store.
    pub fn new(s: &Store) -> Self {
        let dir = s.path("podman");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n",
        )
        .expect("write");
        Podman { dir }
    }

    /// The `containers-storage:` transport prefix skopeo needs for this store.
    pub fn storage_transport(&self) -> String {
        format!(
            "containers-storage:[overlay@{}+{}]",
            self.dir.join("root").display(),
            self.dir.join("runroot").display()
        )
    }

    /// A podman command against the private store.
    pub fn cmd(&self) -> crate::Cmd {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "overlay", "--runtime", "runc"]);
        crate::Cmd(c)
    }
}
