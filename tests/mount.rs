//! rimgfs with real mounts: the union of the stored tar layers must look exactly like GNU tar
//! extracting each layer and kernel overlayfs stacking them, read-only and writable; writes
//! land in the upper dir and survive a remount and a killed daemon.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rimg_tests::archives::{corrupt_blobs, store_state};
use rimg_tests::tree::{every_kind_layers, hardlink_groups, snapshot, Reference};
use rimg_tests::{busybox_tar, mounts_under, sh, Store};

/// The writes every writable mount gets: every kind of change overlayfs handles.
const WORKLOAD: &str = r#"
set -e
cd "$1"
echo created > newfile
echo appended >> etc/passwd
truncate -s 5 big
chmod 600 etc/labelled
chown 1234:5678 data/owned
echo replacement > src && mv src opq/upper
rm etc/shadow
rm home/user/.profile home/user/profile-link && rmdir home/user
mkdir -p newdir/sub && echo deep > newdir/sub/f
ln -s ../etc/passwd newdir/link
ln bin/tool newdir/tool-hardlink
setfattr -n user.test -v value newfile
setfattr -n user.comment -v changed etc/labelled
rm -rf opq && mkdir opq && echo fresh > opq/only
mv bin/sh bin/sh-renamed
"#;

fn without_mtimes(snap: BTreeMap<String, String>) -> BTreeMap<String, String> {
    snap.into_iter()
        .map(|(k, v)| {
            let v = match v.find(" mtime=") {
                Some(i) => {
                    let rest = &v[i + 7..];
                    let end = rest.find(' ').unwrap_or(rest.len());
                    format!("{}{}", &v[..i], &rest[end..])
                }
                None => v,
            };
            (k, v)
        })
        .collect()
}

fn opaque_dirs(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = snapshot(root)
        .keys()
        .filter(|rel| {
            xattr::get(root.join(rel), "trusted.overlay.opaque")
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y")
        })
        .cloned()
        .collect();
    out.sort();
    out
}

fn assert_same_tree(actual: &Path, expected: &Path, what: &str) {
    let (a, e) = (snapshot(actual), snapshot(expected));
    for (k, v) in &e {
        assert_eq!(a.get(k), Some(v), "{what}: {k} differs");
    }
    for k in a.keys() {
        assert!(e.contains_key(k), "{what}: unexpected {k}");
    }
    assert_eq!(
        hardlink_groups(actual),
        hardlink_groups(expected),
        "{what}: hard links"
    );
}

#[test]
fn every_kind_across_three_layers_reads_as_extracted_layers() {
    let s = Store::new();
    let layers = every_kind_layers();
    s.image_from_layers(&layers, "kinds");
    let reference = Reference::mount(&layers, false);

    let ro = s.mount("kinds", "ro", &["--read-only"]);
    assert_same_tree(&ro.mountpoint, &reference.mountpoint, "read-only mount");
    let upper_dir = s.path("upper");
    let rw = s.mount("kinds", "rw", &["--upper", upper_dir.to_str().unwrap()]);
    assert_same_tree(&rw.mountpoint, &reference.mountpoint, "writable mount");
    // Nothing was copied up by reading.
    assert_eq!(fs::read_dir(&upper_dir).unwrap().count(), 0);

    // Hard links share an inode and count their names; setuid and devices are as stored.
    let tool = fs::metadata(ro.join("bin/tool-link")).unwrap();
    assert_eq!(
        tool.ino(),
        fs::metadata(ro.join("bin/tool-link")).unwrap().ino()
    );
    let profile = fs::metadata(ro.join("home/user/.profile")).unwrap();
    assert_eq!(profile.nlink(), 2);
    assert_eq!(
        profile.ino(),
        fs::metadata(ro.join("home/user/profile-link"))
            .unwrap()
            .ino()
    );
    // readdir shows . and .., and statfs answers.
    let listing = sh(&format!("ls -a {}", ro.join("etc").display()));
    assert!(listing.starts_with(".\n..\n"), "{listing}");
    let statfs = sh(&format!("stat -f -c '%l' {}", ro.mountpoint.display()));
    assert_eq!(statfs.trim(), "255");
    // A name over 255 bytes is ENAMETOOLONG, not ENOENT.
    let err = fs::metadata(ro.join(&"x".repeat(256))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_enametoolong()));

    ro.umount();
    rw.umount();
    assert!(mounts_under(s.dir.path()).is_empty());
}

fn libc_enametoolong() -> i32 {
    36
}

#[test]
fn busybox_mounts_as_its_tar_extracts_and_inodes_are_stable() {
    let s = Store::new();
    s.busybox("busybox");
    let reference = Reference::mount(&[fs::read(busybox_tar()).unwrap()], false);
    let before = store_state(&s.root());
    let m = s.mount("busybox", "mnt", &["--read-only"]);
    assert_same_tree(&m.mountpoint, &reference.mountpoint, "busybox");
    let ino = fs::metadata(m.join("bin/busybox")).unwrap().ino();
    m.umount();
    let m = s.mount("busybox", "mnt", &["--read-only"]);
    assert_eq!(fs::metadata(m.join("bin/busybox")).unwrap().ino(), ino);
    // Busybox runs from the mount.
    let out = sh(&format!(
        "{} echo from-the-mount",
        m.join("bin/busybox").display()
    ));
    assert_eq!(out.trim(), "from-the-mount");
    m.umount();
    // Mounting wrote nothing into the store's content.
    assert_eq!(store_state(&s.root()), before);
}

#[test]
fn writes_behave_as_kernel_overlayfs_and_survive_a_remount() {
    let s = Store::new();
    let layers = every_kind_layers();
    s.image_from_layers(&layers, "kinds");
    let reference = Reference::mount(&layers, true);
    let upper = s.path("upper");
    let m = s.mount("kinds", "rw", &["--upper", upper.to_str().unwrap()]);

    let script = s.path("workload.sh");
    fs::write(&script, WORKLOAD).unwrap();
    sh(&format!(
        "sh {} {}",
        script.display(),
        m.mountpoint.display()
    ));
    sh(&format!(
        "sh {} {}",
        script.display(),
        reference.mountpoint.display()
    ));

    let ours = snapshot(&m.mountpoint);
    assert_eq!(
        without_mtimes(ours.clone()),
        without_mtimes(snapshot(&reference.mountpoint)),
        "merged trees differ from kernel overlayfs over extracted layers"
    );
    let ref_upper = reference.upper.as_ref().unwrap();
    assert_eq!(
        without_mtimes(snapshot(&upper)),
        without_mtimes(snapshot(ref_upper)),
        "upper dirs differ"
    );
    assert_eq!(opaque_dirs(&upper), ["opq"]);
    assert_eq!(opaque_dirs(&upper), opaque_dirs(ref_upper));

    m.umount();
    let m = s.mount("kinds", "rw", &["--upper", upper.to_str().unwrap()]);
    assert_eq!(
        snapshot(&m.mountpoint),
        ours,
        "changes lost across a remount"
    );
    m.umount();
    assert!(corrupt_blobs(&s.root()).is_empty());
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn a_killed_daemon_loses_no_written_data_and_umount_recovers() {
    let s = Store::new();
    s.busybox("busybox");
    let upper = s.path("upper");
    let m = s.mount("busybox", "mnt", &["--upper", upper.to_str().unwrap()]);
    sh(&format!(
        "dd if=/dev/zero of={} bs=64k count=16 conv=fsync 2>/dev/null",
        m.join("tmp/data").display()
    ));
    let ls = s.rimgfs(["ls"]).ok();
    let row = ls.lines().nth(1).expect("a row");
    assert!(
        row.contains("busybox") && row.contains(upper.to_str().unwrap()),
        "{ls}"
    );
    let pid: u32 = row.split_whitespace().nth(3).unwrap().parse().unwrap();
    sh(&format!("kill -9 {pid}"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(s.rimgfs(["ls"]).ok().contains("daemon dead"));
    m.umount();
    assert!(mounts_under(s.dir.path()).is_empty());
    assert_eq!(
        fs::metadata(upper.join("tmp/data")).unwrap().len(),
        16 * 65536
    );
    // The same upper mounts again with the data in place.
    let m = s.mount("busybox", "mnt", &["--upper", upper.to_str().unwrap()]);
    assert_eq!(fs::metadata(m.join("tmp/data")).unwrap().len(), 16 * 65536);
    m.umount();
}

#[test]
fn a_fresh_upper_is_made_and_printed_when_none_is_given() {
    let s = Store::new();
    s.busybox("busybox");
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let printed = s.rimgfs(["mount", "busybox"]).arg(&mp).ok();
    let upper = Path::new(printed.trim()).to_path_buf();
    assert!(upper.starts_with(s.root()), "{}", upper.display());
    fs::write(mp.join("hello"), "x").unwrap();
    assert_eq!(fs::read(upper.join("hello")).unwrap(), b"x");
    s.rimgfs(["umount"]).arg(&mp).ok();
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn bad_mounts_fail_with_a_clear_error_and_leave_nothing_mounted() {
    let s = Store::new();
    s.busybox("busybox");
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();

    let err = s.rimgfs(["mount", "nosuch:latest"]).arg(&mp).fails();
    assert!(err.contains("no such image"), "{err}");
    let err = s
        .rimgfs(["mount", "busybox"])
        .arg(s.path("missing"))
        .fails();
    assert!(err.contains("does not exist"), "{err}");
    let err = s.rimgfs(["umount"]).arg(&mp).fails();
    assert!(err.contains("not a rimgfs mount"), "{err}");
    let err = s
        .rimgfs(["mount", "-o", "exec", "busybox"])
        .arg(&mp)
        .fails();
    assert!(err.contains("unknown mount option"), "{err}");

    let m = s.mount("busybox", "mnt", &[]);
    let err = s.rimgfs(["mount", "busybox"]).arg(&mp).fails();
    assert!(err.contains("busy"), "{err}");
    // A process inside the mount keeps it busy: umount says so and keeps it mounted.
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(&mp)
        .spawn()
        .unwrap();
    let err = s.rimgfs(["umount"]).arg(&mp).fails();
    assert!(err.contains("busy"), "{err}");
    assert!(mp.join("bin/busybox").exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    m.umount();
    assert!(mounts_under(s.dir.path()).is_empty());
    assert!(s.rimgfs(["ls"]).ok().lines().count() <= 1);
}

#[test]
fn a_stack_left_half_mounted_is_listed_and_cleaned_up() {
    // What a `rimgfs mount` killed between the FUSE layer and the overlay leaves: the FUSE
    // layer mounted under the store, nothing at the mount point. Made here by unmounting the
    // overlay behind rimgfs's back.
    let s = Store::new();
    s.busybox("busybox");
    let m = s.mount("busybox", "mnt", &[]);
    sh(&format!("umount {}", m.mountpoint.display()));
    let ls = s.rimgfs(["ls"]).ok();
    assert!(ls.contains("incomplete"), "{ls}");
    assert!(!mounts_under(s.dir.path()).is_empty());
    m.umount();
    assert!(mounts_under(s.dir.path()).is_empty());
    assert_eq!(s.rimgfs(["ls"]).ok().lines().count(), 1);
    // And a mount at the same point works again.
    let m = s.mount("busybox", "mnt", &[]);
    assert!(m.join("bin/busybox").exists());
    m.umount();
}
