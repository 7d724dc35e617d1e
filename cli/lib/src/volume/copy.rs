//! Docker's copy-up: an empty volume mounted where the image has files is first filled with
//! them (owners, modes, symlinks and special files kept), so a database image's `VOLUME`
//! starts with the image's files. Runs on the host side over the mounted rootfs, before the
//! container process starts. The image's directory is opened with `openat2`
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` inside the rootfs, and every file below it by its
//! parent's descriptor with `O_NOFOLLOW`: an image's symlink never leads the copy out of it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rimg_fs::error::IoError;
use rustix::fs::{
    chownat, fchmod, fchown, mkdirat, mknodat, openat, openat2, readlinkat, statat, symlinkat,
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Uid,
};

use super::{ContainerMount, Result};

fn errno<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(rustix::io::Errno) -> IoError + 'a {
    move |e| IoError::new(op, path, io::Error::from(e))
}

fn open_dir_at(dir: &impl AsFd, name: &std::ffi::CStr) -> rustix::io::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn owner(fd: &impl AsFd, uid: u32, gid: u32, mode: u32) -> rustix::io::Result<()> {
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    fchmod(fd, Mode::from_raw_mode(mode & 0o7777))
}

/// Gives the entry `name` of `dir` (not followed) its owner.
fn chown_entry(
    dir: &impl AsFd,
    name: &std::ffi::CStr,
    uid: u32,
    gid: u32,
) -> rustix::io::Result<()> {
    chownat(
        dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

/// Copies the contents of directory `src` into the empty directory `dst`; `shown` names
/// `dst` in errors.
fn copy_dir(src: &OwnedFd, dst: &OwnedFd, shown: &Path) -> Result<()> {
    let dir = Dir::read_from(src).map_err(errno("listing", shown))?;
    for entry in dir {
        let entry = entry.map_err(errno("listing", shown))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let path = shown.join(name.to_string_lossy().as_ref());
        let st = statat(src, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno("reading", &path))?;
        let mode = st.st_mode;
        let (uid, gid) = (st.st_uid, st.st_gid);
        match FileType::from_raw_mode(mode) {
            FileType::Directory => {
                mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(errno("creating", &path))?;
                let s = open_dir_at(src, name).map_err(errno("opening", &path))?;
                let d = open_dir_at(dst, name).map_err(errno("opening", &path))?;
                copy_dir(&s, &d, &path)?;
                owner(&d, uid, gid, mode).map_err(errno("setting the owner of", &path))?;
            }
            FileType::RegularFile => {
                let s = openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno("opening", &path))?;
                let d = openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(errno("creating", &path))?;
                let mut from = File::from(s);
                let mut to = File::from(d);
                io::copy(&mut from, &mut to).map_err(|e| IoError::new("copying", &path, e))?;
                owner(&to, uid, gid, mode).map_err(errno("setting the owner of", &path))?;
            }
            FileType::Symlink => {
                let target = readlinkat(src, name, Vec::new()).map_err(errno("reading", &path))?;
                symlinkat(target.as_c_str(), dst, name).map_err(errno("creating", &path))?;
                chown_entry(dst, name, uid, gid).map_err(errno("setting the owner of", &path))?;
            }
            kind @ (FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice) => {
                mknodat(
                    dst,
                    name,
                    kind,
                    Mode::from_raw_mode(mode & 0o7777),
                    st.st_rdev,
                )
                .map_err(errno("creating", &path))?;
                chown_entry(dst, name, uid, gid).map_err(errno("setting the owner of", &path))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fills each empty volume of `mounts` that asks for it (`copy_up`) with the files of the
/// image at its destination in the mounted `rootfs`; the volume's root takes the image
/// directory's owner and mode. A destination the image lacks, or that is no directory,
/// leaves the volume as it is.
pub fn copy_up(rootfs: &Path, mounts: &[ContainerMount]) -> Result<()> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno("opening", rootfs))?;
    for m in mounts {
        if m.kind != "volume" || !m.copy_up {
            continue;
        }
        let empty = std::fs::read_dir(&m.source)
            .map_err(|e| IoError::new("listing", &m.source, e))?
            .next()
            .is_none();
        if !empty {
            continue;
        }
        let rel = m.destination.trim_start_matches('/');
        let src = match openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => continue,
            Err(e) => return Err(errno("opening", &rootfs.join(rel))(e).into()),
        };
        let dst = rustix::fs::open(
            &m.source,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("opening", &m.source))?;
        copy_dir(&src, &dst, &m.source)?;
        let st = rustix::fs::fstat(&src).map_err(errno("reading", &rootfs.join(rel)))?;
        owner(&dst, st.st_uid, st.st_gid, st.st_mode)
            .map_err(errno("setting the owner of", &m.source))?;
    }
    Ok(())
}
