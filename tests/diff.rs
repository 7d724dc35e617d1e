//! diff and commit of real overlayfs upper dirs: a workload runs on kernel overlayfs over the
//! extracted layers of an image (the reference mount), then `rimg_fs::upper` lists the upper
//! dir's changes and commits it as a layer, and the committed image must show exactly the tree
//! the overlay mount showed. `rimg diff IMAGE` / `rimg diff IMAGE1 IMAGE2` run as binaries.

use std::fs;
use std::path::Path;

use rimg::image::commit::{commit_upper, image_tree, CommitError};
use rimg::image::{History, Image, ImageConfig, Images, Reference as Tag};
use rimg_fs::changes::Change;
use rimg_fs::upper::RUNTIME_INJECTED;
use rimg_fs::upper::{upper_changes, LayerOptions, UpperError};
use rimg_tests::archives::{DockerImage, Podman};
use rimg_tests::tree::{hardlink_groups, snapshot, Layer, Reference};
use rimg_tests::{busybox_tar, require_tool, sh, Store, SEEDS_LAB_DIFF};

/// Runs a shell workload (stopping at the first failure) in `dir`.
#[track_caller]
fn workload(dir: &Path, script: &str) {
    sh(&format!("set -e; cd '{}'\n{script}", dir.display()));
}

fn changes_of(store: &Store, name: &str, upper: &Path, opts: &LayerOptions) -> Vec<Change> {
    let images = Images::open(&store.root()).expect("open");
    let img = images.resolve(name).expect("resolve");
    let tree = image_tree(&images, &img).expect("tree");
    upper_changes(upper, &tree, opts).expect("upper_changes")
}

fn lines(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.to_string()).collect()
}

/// Commits `upper` on image `base` as `tag`, the way `rimg commit` will.
fn commit(store: &Store, base: &str, upper: &Path, tag: &str) -> Result<Image, CommitError> {
    let images = Images::open(&store.root()).expect("open");
    let base = images.resolve(base).expect("resolve");
    let history = History {
        created_by: Some("/bin/sh -c workload".into()),
        comment: Some("committed by the test".into()),
        ..Default::default()
    };
    commit_upper(
        &images,
        &base,
        upper,
        &LayerOptions::default(),
        history,
        &[],
        &[Tag::parse(tag).expect("tag")],
    )
}

/// The image's layer tars, read back from the store.
fn stored_layers(store: &Store, img: &Image) -> Vec<Vec<u8>> {
    let images = Images::open(&store.root()).expect("open");
    img.diff_ids()
        .iter()
        .map(|d| fs::read(images.store().blob_path(d)).expect("read layer"))
        .collect()
}

fn lab_layers() -> Vec<Vec<u8>> {
    vec![Layer::new()
        .dir("diamol", 0o755)
        .file("diamol/ch03.txt", b"Lab solution, by: \n", 0o644)
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/some-file", b"remove me\n", 0o644)
        .build()]
}

fn lab_image(store: &Store) -> Image {
    let mut config = ImageConfig::new_for_host();
    config.config.cmd = Some(vec!["sh".into()]);
    config.config.working_dir = Some("/diamol".into());
    store.image_with_config(&lab_layers(), config, "lab")
}

#[test]
fn seeds_lab_diff_commit_and_image_diff() {
    let s = Store::new();
    lab_image(&s);
    let r = Reference::mount(&lab_layers(), true);
    let upper = r.upper.clone().expect("upper");
    workload(
        &r.mountpoint.join("diamol"),
        "echo jslee >> ch03.txt; echo x > new.txt; rm ../etc/some-file; mkdir ../data; echo y > ../data/f",
    );
    let changes = changes_of(&s, "lab", &upper, &LayerOptions::for_container());
    assert_eq!(lines(&changes), SEEDS_LAB_DIFF);

    let img = commit(&s, "lab", &upper, "lab-solution:v1").expect("commit");
    assert_eq!(img.diff_ids().len(), 2);
    assert_eq!(img.config.config.working_dir.as_deref(), Some("/diamol"));
    let committed = Reference::mount(&stored_layers(&s, &img), false);
    assert_eq!(
        fs::read_to_string(committed.mountpoint.join("diamol/ch03.txt")).expect("read"),
        "Lab solution, by: \njslee\n"
    );
    assert_eq!(snapshot(&committed.mountpoint), snapshot(&r.mountpoint));

    let history = s.rimg(["history", "lab-solution:v1"]).ok();
    let first_row = history.lines().nth(1).expect("a history row");
    assert!(first_row.contains("/bin/sh -c workload"), "{history}");

    // The same list from the images alone: top layer against the layers below, and from one
    // image to the other.
    let want: String = SEEDS_LAB_DIFF.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(s.rimg(["diff", "lab-solution:v1"]).ok(), want);
    assert_eq!(s.rimg(["diff", "lab", "lab-solution:v1"]).ok(), want);
    let back = s.rimg(["diff", "lab-solution:v1", "lab"]).ok();
    assert_eq!(
        back,
        "D /data\nC /diamol\nC /diamol/ch03.txt\nD /diamol/new.txt\nC /etc\nA /etc/some-file\n"
    );
}

#[test]
fn diff_stat_and_json() {
    let s = Store::new();
    lab_image(&s);
    let r = Reference::mount(&lab_layers(), true);
    workload(
        &r.mountpoint.join("diamol"),
        "echo jslee >> ch03.txt; echo x > new.txt; rm ../etc/some-file; mkdir ../data; echo y > ../data/f",
    );
    commit(
        &s,
        "lab",
        r.upper.as_ref().expect("upper"),
        "lab-solution:v1",
    )
    .expect("commit");
    let stat = s.rimg(["diff", "--stat", "lab", "lab-solution:v1"]).ok();
    assert_eq!(
        stat,
        "A  0B /data\n\
         A  2B /data/f\n\
         C  0B /diamol\n\
         C 25B /diamol/ch03.txt\n\
         A  2B /diamol/new.txt\n\
         C  0B /etc\n\
         D 10B /etc/some-file\n\
         3 added (+4B), 3 changed (25B), 1 deleted (-10B)\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.rimg(["diff", "--format", "json", "lab-solution:v1"]).ok())
            .expect("json");
    assert_eq!(json["deleted"], serde_json::json!(["/etc/some-file"]));
    assert_eq!(json["added"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        json["changed"],
        serde_json::json!(["/diamol", "/diamol/ch03.txt", "/etc"])
    );

    // A one-layer image: everything is added.
    let only = s.rimg(["diff", "lab"]).ok();
    assert_eq!(
        only,
        "A /diamol\nA /diamol/ch03.txt\nA /etc\nA /etc/passwd\nA /etc/some-file\n"
    );
    let err = s.rimg(["diff", "nope"]).fails();
    assert_eq!(err.trim(), "Error: no such container or image: nope");
    let err = s.rimg(["diff", "lab", "nope:v2"]).fails();
    assert!(err.contains("nope:v2"), "{err}");
    let err = s.rimg(["diff", "--format", "yaml", "lab"]).fails();
    assert!(err.contains("--format"), "{err}");
}

/// Every kind of change, on [`workload_layers`].
const WORKLOAD: &str = "echo new > created
echo more >> home/user/notes
: > home/user/big
chmod 600 etc/passwd
chown 1000:1000 etc/group
echo fresh > etc/new-name && mv etc/new-name etc/old-name
rm var/log/a.log
rmdir srv/gone
mkdir srv/new
ln -s ../etc/passwd srv/link
ln bin/tool bin/tool-link2
setfattr -n user.note -v hello home/user/notes
setfattr -n user.dir -v 1 opt
rm -rf opt/app
rm -rf var/log/sub && mkdir var/log/sub && echo c2 > var/log/sub/c.log
mkfifo srv/fifo
setfattr -x user.comment etc/labelled";

/// A base with something for every operation of the workload, over two layers.
fn workload_layers() -> Vec<Vec<u8>> {
    let l1 = Layer::new()
        .dir("bin", 0o755)
        .file("bin/tool", b"\x7fELF tool", 0o755)
        .hardlink("bin/tool-link", "bin/tool")
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
        .file("etc/group", b"root:x:0:\n", 0o644)
        .file("etc/old-name", b"old\n", 0o644)
        .dir("home", 0o755)
        .dir("home/user", 0o755)
        .file("home/user/notes", b"notes\n", 0o644)
        .file("home/user/big", &vec![7u8; 100_000], 0o644)
        .dir("opt", 0o755)
        .dir("opt/app", 0o755)
        .file("opt/app/x", b"x", 0o644)
        .dir("srv", 0o755)
        .dir("srv/gone", 0o755)
        .dir("var", 0o755)
        .dir("var/log", 0o755)
        .file("var/log/a.log", b"a\n", 0o644)
        .file("var/log/b.log", b"b\n", 0o644)
        .dir("var/log/sub", 0o755)
        .file("var/log/sub/c.log", b"c\n", 0o644)
        .file("var/log/sub/d.log", b"d\n", 0o644)
        .build();
    let l2 = Layer::new()
        .file("var/log/b.log", b"b from layer 2\n", 0o644)
        .file_xattrs("etc/labelled", b"xattrs\n", &[("user.comment", b"hello")])
        .build();
    vec![l1, l2]
}

/// A store with image `base` of [`workload_layers`], and the reference mount of the same
/// layers after [`WORKLOAD`] ran on it.
fn base_and_reference_after_workload() -> (Store, Reference) {
    require_tool("setfattr");
    let s = Store::new();
    s.image_with_config(&workload_layers(), ImageConfig::new_for_host(), "base");
    let r = Reference::mount(&workload_layers(), true);
    workload(&r.mountpoint, WORKLOAD);
    (s, r)
}

#[test]
fn every_kind_of_change_lists_like_docker_and_commits_to_the_same_tree() {
    let (s, r) = base_and_reference_after_workload();
    let upper = r.upper.clone().expect("upper");
    let changes = changes_of(&s, "base", &upper, &LayerOptions::default());
    assert_eq!(
        lines(&changes),
        [
            "C /bin",
            "C /bin/tool",
            "A /bin/tool-link2",
            "A /created",
            "C /etc",
            "C /etc/group",
            "C /etc/labelled",
            "C /etc/old-name",
            "C /etc/passwd",
            // Only modified files below: overlayfs restored /home/user's mtime after each
            // copy-up, and podman does not list such directories either.
            "C /home/user/big",
            "C /home/user/notes",
            "C /opt",
            "D /opt/app",
            "C /srv",
            "A /srv/fifo",
            "D /srv/gone",
            "A /srv/link",
            "A /srv/new",
            "C /var",
            "C /var/log",
            "D /var/log/a.log",
            "C /var/log/sub",
            "C /var/log/sub/c.log",
            "D /var/log/sub/d.log",
        ]
    );

    let img = commit(&s, "base", &upper, "base:committed").expect("commit");
    let committed = Reference::mount(&stored_layers(&s, &img), false);
    assert_eq!(snapshot(&committed.mountpoint), snapshot(&r.mountpoint));
    assert_eq!(
        hardlink_groups(&committed.mountpoint),
        hardlink_groups(&r.mountpoint)
    );

    // Committing the same upper again gives the same layer.
    let again = commit(&s, "base", &upper, "base:again").expect("commit");
    assert_eq!(again.diff_ids(), img.diff_ids());
}

#[test]
fn hostile_uppers_etc_symlink_to_root_and_whiteout_names() {
    let s = Store::new();
    lab_image(&s);
    let r = Reference::mount(&lab_layers(), true);
    let upper = r.upper.clone().expect("upper");
    workload(&r.mountpoint, "rm -rf etc && ln -s / etc");
    let changes = changes_of(&s, "lab", &upper, &LayerOptions::default());
    assert_eq!(lines(&changes), ["C /etc"]);
    let img = commit(&s, "lab", &upper, "lab:hostile").expect("commit");
    let layers = stored_layers(&s, &img);
    let top = rimg_fs::layer_index::index_tar_bytes(&layers[1]).expect("index");
    let entries: Vec<(String, Vec<u8>)> = top
        .entries()
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.path).into_owned(),
                e.link.clone(),
            )
        })
        .collect();
    assert_eq!(entries, [("etc".to_string(), b"/".to_vec())]);

    // A user file named like a whiteout is refused, and nothing new is stored.
    let r2 = Reference::mount(&lab_layers(), true);
    workload(&r2.mountpoint, "touch diamol/.wh.foo");
    let blobs = |s: &Store| {
        fs::read_dir(s.root().join("blobs/sha256"))
            .expect("ls")
            .count()
    };
    let before = blobs(&s);
    let err = commit(&s, "lab", r2.upper.as_ref().expect("upper"), "lab:bad").unwrap_err();
    assert!(
        matches!(err, CommitError::Upper(UpperError::WhiteoutName(ref p)) if p == "/diamol/.wh.foo"),
        "{err}"
    );
    assert!(err.to_string().contains("/diamol/.wh.foo"), "{err}");
    assert_eq!(blobs(&s), before);
    assert!(s.rimg(["inspect", "lab:bad"]).output().status.code() != Some(0));
}

#[test]
fn unchanged_container_commits_a_valid_empty_layer_and_ignored_paths_stay_out() {
    let s = Store::new();
    lab_image(&s);
    let r = Reference::mount(&lab_layers(), true);
    let upper = r.upper.clone().expect("upper");
    // What a runtime leaves: mount points and injected files, nothing of the user's.
    workload(
        &r.mountpoint,
        "mkdir proc sys dev && echo 127.0.0.1 > etc/hosts && echo c1 > etc/hostname && : > etc/resolv.conf",
    );
    assert!(changes_of(&s, "lab", &upper, &LayerOptions::for_container()).is_empty());
    let images = Images::open(&s.root()).expect("open");
    let base = images.resolve("lab").expect("resolve");
    let img = commit_upper(
        &images,
        &base,
        &upper,
        &LayerOptions::for_container(),
        History::default(),
        &["ENV A=1".into(), "CMD [\"cat\", \"ch03.txt\"]".into()],
        &[],
    )
    .expect("commit");
    let layers = stored_layers(&s, &img);
    let top = rimg_fs::layer_index::index_tar_bytes(&layers[1]).expect("index");
    let paths: Vec<String> = top
        .entries()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    // Not even /etc, which the upper holds only for the injected files: as in `diff`.
    assert!(paths.is_empty(), "{paths:?}");
    assert_eq!(img.config.env_value("A"), Some("1"));
    // Untagged: listed as <none>, inspectable by id.
    let shown = s.rimg(["inspect", &img.id.to_string()]).ok();
    assert!(shown.contains("\"A=1\""), "{shown}");

    let err = commit_upper(
        &images,
        &base,
        &upper,
        &LayerOptions::default(),
        History::default(),
        &["RUN true".into()],
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("RUN true"), "{err}");
}

/// The same workload in a podman container (over busybox + the workload layers, loaded into
/// podman from a docker-archive): rimg's list for podman's own upper dir is podman's list, but
/// for the documented differences.
#[test]
fn lists_what_podman_diff_lists_for_the_same_container() {
    require_tool("podman");
    let s = Store::new();
    let mut layers = vec![fs::read(busybox_tar()).expect("busybox tar")];
    layers.extend(workload_layers());
    s.image_from_layers(&layers, "base");
    let archive = s.path("base.tar");
    fs::write(&archive, DockerImage::new(&layers, "base:latest").build()).expect("write");
    let podman = Podman::new(&s);
    podman.cmd().args(["load", "-q", "-i"]).arg(&archive).ok();
    let _cleanup = PodmanCleanup(&podman);
    podman
        .cmd()
        .args([
            "run",
            "--name",
            "c",
            "--network=host",
            "--ulimit",
            "host",
            "base",
        ])
        .args(["sh", "-ec"])
        // busybox has no setfattr: the workload without its xattr lines, from /.
        .arg(
            std::iter::once("cd /")
                .chain(WORKLOAD.lines().filter(|l| !l.starts_with("setfattr")))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .ok();
    let podman_list = podman.cmd().args(["diff", "c"]).ok();
    let upper = podman
        .cmd()
        .args(["inspect", "c", "--format", "{{.GraphDriver.Data.UpperDir}}"])
        .ok();
    // podman's runtime injects /etc/mtab and /run/.containerenv besides rimg's list.
    let mut opts = LayerOptions::for_container();
    opts.ignore
        .extend(["/etc/mtab".to_string(), "/run".to_string()]);
    assert_eq!(opts.ignore.len(), RUNTIME_INJECTED.len() + 2);
    let rimg_list = lines(&changes_of(&s, "base", Path::new(upper.trim()), &opts));

    let podman_set: std::collections::BTreeSet<&str> = podman_list.lines().collect();
    let rimg_set: std::collections::BTreeSet<&str> = rimg_list.iter().map(String::as_str).collect();
    let only_podman: Vec<&str> = podman_set.difference(&rimg_set).copied().collect();
    let only_rimg: Vec<&str> = rimg_set.difference(&podman_set).copied().collect();
    // podman: /etc changed because its runtime created /etc/hosts there; an opaque directory
    // printed as deleted (moby#37880). rimg: the directory changed, and the lower file the
    // opaque directory hides deleted.
    assert_eq!(
        only_podman,
        ["C /etc", "D /var/log/sub"],
        "podman:\n{podman_list}"
    );
    assert_eq!(
        only_rimg,
        ["C /var/log/sub", "D /var/log/sub/d.log"],
        "podman:\n{podman_list}"
    );
    assert!(rimg_set.len() > 15, "{rimg_list:?}");
}

/// Removes the test's podman containers and images, also when an assertion failed.
struct PodmanCleanup<'a>(&'a Podman);

impl Drop for PodmanCleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["rm", "-af"]).output();
        let _ = self.0.cmd().args(["rmi", "-af"]).output();
    }
}

/// The stack containers run on: rimgfs (FUSE lower + kernel overlayfs upper). Its upper dir
/// must diff as the reference's does, and commit to the tree the mount showed, also after
/// the mount is gone (a stopped container).
#[test]
fn rimgfs_upper_dirs_diff_and_commit_like_the_reference() {
    let (s, r) = base_and_reference_after_workload();
    let upper = s.path("upper");
    let m = s.mount("base", "rw", &["--upper", upper.to_str().expect("utf-8")]);
    workload(&m.mountpoint, WORKLOAD);
    let merged = snapshot(&m.mountpoint);
    let links = hardlink_groups(&m.mountpoint);
    m.umount();

    let ours = changes_of(&s, "base", &upper, &LayerOptions::default());
    let reference = changes_of(
        &s,
        "base",
        r.upper.as_ref().expect("upper"),
        &LayerOptions::default(),
    );
    assert_eq!(lines(&ours), lines(&reference));
    assert!(ours.len() > 20);

    let img = commit(&s, "base", &upper, "base:from-rimgfs").expect("commit");
    let committed = Reference::mount(&stored_layers(&s, &img), false);
    assert_eq!(snapshot(&committed.mountpoint), merged);
    assert_eq!(hardlink_groups(&committed.mountpoint), links);
}
