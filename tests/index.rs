//! The layer index against GNU tar: every entry the index records must be what `tar -x` leaves
//! (kind, mode, owner, link target, device numbers), and a file's bytes read through the index
//! (offset and size into the tar) must equal the extracted file.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use rimg_fs::layer_index::{index_tar_bytes, EntryKind};
use rimg_tests::tree::every_kind_layers;
use rimg_tests::{busybox_tar, sh};

fn check_against_tar_x(tar: &[u8]) -> usize {
    let idx = index_tar_bytes(tar).expect("index");
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("layer.tar");
    fs::write(&tar_path, tar).unwrap();
    let out = dir.path().join("x");
    fs::create_dir(&out).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --numeric-owner --same-owner -xpf {} -C {}",
        tar_path.display(),
        out.display()
    ));
    let mut files = 0;
    for e in idx.entries() {
        // The last entry for a path is what extraction leaves.
        if idx.find(&e.path) != Some(e) || e.path.is_empty() {
            continue;
        }
        let rel = String::from_utf8(e.path.clone()).unwrap();
        let p = out.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|_| panic!("{rel} not extracted"));
        let ft = m.file_type();
        match e.kind {
            EntryKind::File | EntryKind::Hardlink => {
                assert!(ft.is_file(), "{rel}: not a file");
                let d = idx.data_entry(e);
                let via_index = &tar[d.offset as usize..(d.offset + d.size) as usize];
                assert_eq!(via_index, &fs::read(&p).unwrap()[..], "{rel}: bytes differ");
                files += 1;
            }
            EntryKind::Dir => assert!(ft.is_dir(), "{rel}: not a dir"),
            EntryKind::Symlink => {
                assert!(ft.is_symlink(), "{rel}: not a symlink");
                assert_eq!(
                    fs::read_link(&p).unwrap().as_os_str().as_encoded_bytes(),
                    &e.link[..],
                    "{rel}: link target"
                );
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                assert!(ft.is_char_device() || ft.is_block_device(), "{rel}");
                let (ma, mi) = (
                    m.rdev() >> 8 & 0xfff,
                    (m.rdev() & 0xff) | (m.rdev() >> 12 & 0xfff00),
                );
                assert_eq!((ma as u32, mi as u32), (e.dev_major, e.dev_minor), "{rel}");
            }
            EntryKind::Fifo => assert!(ft.is_fifo(), "{rel}: not a fifo"),
        }
        // A hard link is the inode of the entry it names: its attributes are that entry's.
        let a = idx.data_entry(e);
        if e.kind != EntryKind::Symlink {
            assert_eq!(m.mode() & 0o7777, a.mode, "{rel}: mode");
        }
        assert_eq!((m.uid(), m.gid()), (a.uid, a.gid), "{rel}: owner");
        if e.kind != EntryKind::Dir {
            assert_eq!(m.mtime(), a.mtime, "{rel}: mtime");
        }
        for (k, v) in &e.xattrs {
            let name = String::from_utf8(k.clone()).unwrap();
            assert_eq!(
                xattr::get(&p, &name).unwrap().as_deref(),
                Some(&v[..]),
                "{rel}: {name}"
            );
        }
    }
    files
}

#[test]
fn busybox_bytes_through_the_index_equal_tar_x() {
    let files = check_against_tar_x(&fs::read(busybox_tar()).unwrap());
    assert!(
        files >= 3,
        "busybox has /bin/busybox, /etc/passwd, /etc/group"
    );
}

#[test]
fn every_entry_kind_through_the_index_equals_tar_x() {
    for layer in every_kind_layers() {
        check_against_tar_x(&layer);
    }
}
