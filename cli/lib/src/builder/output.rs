//! `rimg build -o`: the final stage's files exported instead of an image: into a directory
//! (`type=local,dest=DIR`) or a tar (`type=tar,dest=FILE`), as BuildKit's local and tar
//! exporters. The state is mounted read-only for the copy and unmounted after.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use rimg_fs::error::{io_err, IoError};

use super::BuildError;
use crate::image::Image;
use crate::image::Images;
use crate::mount::{MountRequest, Stacks};

/// Where `-o` puts the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `type=local,dest=DIR`.
    Local(PathBuf),
    /// `type=tar,dest=FILE` (`-` for standard output).
    Tar(PathBuf),
}

impl Output {
    /// Parses `-o`'s value: `type=local,dest=DIR`, `type=tar,dest=FILE`, or a bare path
    /// (a directory, as Docker's shorthand; `-` is a tar on standard output).
    pub fn parse(spec: &str) -> Result<Self, String> {
        if !spec.contains('=') {
            return Ok(if spec == "-" {
                Output::Tar(PathBuf::from("-"))
            } else {
                Output::Local(PathBuf::from(spec))
            });
        }
        let (mut ty, mut dest) = (None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => ty = Some(v.to_string()),
                Some(("dest", v)) => dest = Some(PathBuf::from(v)),
                _ => {
                    return Err(format!(
                        "invalid --output {spec:?}: use type=local|tar,dest=PATH"
                    ))
                }
            }
        }
        let dest = dest.ok_or_else(|| format!("--output {spec:?} needs dest="))?;
        match ty.as_deref() {
            Some("local") | None => Ok(Output::Local(dest)),
            Some("tar") => Ok(Output::Tar(dest)),
            Some(o) => Err(format!(
                "--output type={o} is not supported (use local or tar)"
            )),
        }
    }
}

/// Writes the files of `image` (an unlisted build state) where `out` says.
pub fn export(images: &Images, image: &Image, out: &Output) -> Result<(), BuildError> {
    let dir = images
        .store()
        .private_dir()
        .join("build")
        .join(format!("output-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let req = MountRequest {
        image: image.manifest_digest.to_string(),
        mountpoint: dir.clone(),
        read_only: true,
        ..Default::default()
    };
    let mounted = Stacks::new(images)
        .mount(&req)
        .map_err(|e| IoError::new("mount", &dir, io::Error::other(crate::error_line(&e))));
    let result = match mounted {
        Ok(m) => {
            let r = write(&dir, out);
            let _ = m.unmount();
            r
        }
        Err(e) => Err(e.into()),
    };
    let _ = fs::remove_dir(&dir);
    result
}

fn write(root: &Path, out: &Output) -> Result<(), BuildError> {
    match out {
        Output::Local(dest) => copy_tree(root, dest).map_err(io_err("export to", dest))?,
        Output::Tar(dest) => {
            let sink: Box<dyn io::Write> = if dest.as_os_str() == "-" {
                Box::new(io::stdout().lock())
            } else {
                Box::new(fs::File::create(dest).map_err(io_err("create", dest))?)
            };
            let mut tar = tar::Builder::new(sink);
            tar.follow_symlinks(false);
            tar.mode(tar::HeaderMode::Complete);
            tar.append_dir_all(".", root)
                .and_then(|()| tar.finish())
                .map_err(io_err("write tar", dest))?;
        }
    }
    Ok(())
}

/// Copies a tree (directories, files, symlinks; modes and owners kept; anything else left
/// out) into `to`, which may exist.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir_all(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_symlink() {
        let _ = fs::remove_file(to);
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_file() {
        let _ = fs::remove_file(to);
        fs::copy(from, to)?;
    } else {
        return Ok(());
    }
    let _ = lchown(to, Some(meta.uid()), Some(meta.gid()));
    Ok(())
}
