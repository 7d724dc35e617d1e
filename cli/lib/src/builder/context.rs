//! The build context: the directory COPY and ADD read from, as `.dockerignore` lets the build
//! see it. Resolves sources (exact paths, directories, Go-style globs per component), walks
//! directories in sorted order, and hashes what a step reads for its cache key: each file's
//! content, relative path and mode — never its mtime.
//!
//! Every path is resolved inside the context root, as BuildKit does: a symlink on the way is
//! followed only while it stays inside, and one that leaves (`etc -> /etc`, `up -> ../..`)
//! resolves as if the context were `/`. The kernel does it (`openat2` with
//! `RESOLVE_IN_ROOT`), so no host file outside the context is ever read. A path's last
//! component is not followed: a symlink there is copied as a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};

use rimg_fs::digest::HashingReader;
use rimg_fs::error::{io_err, IoError};
use rimg_fs::Digest;

use super::ignore::{go_match, Ignore};

/// Errors reading the context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A source path leaves the context.
    #[error("forbidden path outside the build context: {0}")]
    Outside(String),
    /// Nothing in the context matches a source.
    #[error("file not found in build context or excluded by .dockerignore: {0}")]
    NotFound(String),
    /// A Dockerfile could not be read inside its directory.
    #[error("reading Dockerfile {path}")]
    Dockerfile {
        /// The Dockerfile as named.
        path: PathBuf,
        /// The OS error (`ELOOP`, `ENOENT`: a link that leads nowhere inside).
        source: io::Error,
    },
    /// Reading the context failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// What a context entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// A directory.
    Dir,
    /// A regular file of this size.
    File(u64),
    /// A symbolic link to this target.
    Symlink(Vec<u8>),
}

/// One entry of the context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// Path relative to the context root (`src/app.js`; empty for the root).
    pub rel: String,
    /// What it is.
    pub kind: HostKind,
    /// Permission bits.
    pub mode: u32,
}

impl HostEntry {
    /// The last component of the path.
    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }
}

/// A source matched: the entry and whether it came from a wildcard.
#[derive(Clone, Debug)]
pub struct Matched {
    /// The matched entry.
    pub entry: HostEntry,
    /// The pattern had wildcards.
    pub wildcard: bool,
}

/// Opens `root` itself, for lookups inside it.
fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `rel` under the directory `root` with `flags`, every symlink on the way resolved
/// inside `root` (`RESOLVE_IN_ROOT`: `..` and absolute targets never leave it) and no
/// `/proc` magic link followed.
fn openat_in_root(root: impl AsFd, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Opens the regular file `rel` of the directory `root` for reading, resolved inside `root`;
/// a symlink as the last component is refused (`ELOOP`).
pub fn open_in_root(root: &Path, rel: &Path) -> io::Result<fs::File> {
    let fd = openat_in_root(open_root(root)?, rel, OFlags::RDONLY | OFlags::NOFOLLOW)?;
    Ok(fs::File::from(fd))
}

/// Reads the Dockerfile at `path` inside its own directory, as BuildKit reads it: a symlink
/// is followed only within that directory (the context, by default), so a Dockerfile that
/// links to a host file (`Dockerfile -> /etc/shadow`) is not found rather than read.
pub fn read_dockerfile(path: &Path) -> Result<String, ContextError> {
    let err = |source: io::Error| ContextError::Dockerfile {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let fd = openat_in_root(
        open_root(dir).map_err(err)?,
        Path::new(name),
        OFlags::RDONLY,
    )
    .map_err(err)?;
    io::read_to_string(fs::File::from(fd)).map_err(err)
}

/// The build context directory.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    /// `root` opened, every lookup starts from it.
    root_fd: OwnedFd,
    /// `root` with its own symlinks resolved, to tell a resolved directory's relative path.
    canonical: PathBuf,
    ignore: Ignore,
    hashes: Mutex<HashMap<String, Digest>>,
}

/// Whether a lookup error means "no such entry inside the context": missing, a file where a
/// directory was wanted, or a link loop (`etc -> /etc` resolves to itself).
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP))
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a source path relative to the context root; `None` if it leaves the root.
pub fn clean_rel(src: &str) -> Option<String> {
    rimg_fs::path::clean_rel(src)
}

impl Context {
    /// Opens the context at `root`, reading its `.dockerignore`.
    pub fn open(root: &Path) -> Result<Self, ContextError> {
        let meta = fs::metadata(root).map_err(io_err("open context", root))?;
        if !meta.is_dir() {
            return Err(IoError::new(
                "open context",
                root,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            )
            .into());
        }
        let root_fd = open_root(root).map_err(io_err("open context", root))?;
        let canonical = fs::canonicalize(root).map_err(io_err("open context", root))?;
        let ig_path = root.join(".dockerignore");
        let ignore = match openat_in_root(&root_fd, Path::new(".dockerignore"), OFlags::RDONLY)
            .and_then(|fd| io::read_to_string(fs::File::from(fd)))
        {
            Ok(t) => Ignore::parse(&t),
            Err(e) if is_missing(&e) => Ignore::default(),
            Err(e) => return Err(io_err("read", &ig_path)(e).into()),
        };
        Ok(Context {
            root: root.to_path_buf(),
            root_fd,
            canonical,
            ignore,
            hashes: Mutex::new(HashMap::new()),
        })
    }

    /// Opens directory `rel` resolved inside the root (`O_PATH` unless `flags` say more), and
    /// says where it is: its path relative to the root, symlinks resolved. `None` when it is
    /// not a directory inside.
    fn open_dir(
        &self,
        rel: &str,
        flags: OFlags,
    ) -> Result<Option<(OwnedFd, String)>, ContextError> {
        let p = self.host_path(rel);
        let fd = match openat_in_root(&self.root_fd, Path::new(rel), flags | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_err("open", &p)(e).into()),
        };
        let at = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(io_err("resolve", &p))?;
        let inside = at
            .strip_prefix(&self.canonical)
            .map_err(|_| ContextError::Outside(rel.to_string()))?;
        let inside = inside.to_str().ok_or_else(|| {
            IoError::new(
                "resolve",
                &p,
                io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"),
            )
        })?;
        Ok(Some((fd, inside.to_string())))
    }

    /// The context with `text` as its ignore rules instead of its `.dockerignore` (BuildKit's
    /// `<Dockerfile>.dockerignore` beside a named Dockerfile).
    pub fn with_ignore(mut self, text: &str) -> Self {
        self.ignore = Ignore::parse(text);
        self
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the regular file `rel` for reading, resolved inside the root.
    pub fn open_file(&self, rel: &str) -> io::Result<fs::File> {
        let fd = openat_in_root(
            &self.root_fd,
            Path::new(rel),
            OFlags::RDONLY | OFlags::NOFOLLOW,
        )?;
        Ok(fs::File::from(fd))
    }

    /// The host path of a context-relative path. Only for an entry this context returned
    /// (its directories are resolved); reading through it is what [`Context::open_file`] and
    /// [`open_in_root`] are for.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// The entry `rel` names, its directories resolved inside the root (its `rel` is the
    /// resolved path); its last component is not followed.
    fn entry(&self, rel: &str) -> Result<Option<HostEntry>, ContextError> {
        let (dir, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None if rel.is_empty() => ("", "."),
            None => ("", rel),
        };
        let Some((dir_fd, dir_rel)) = self.open_dir(dir, OFlags::PATH)? else {
            return Ok(None);
        };
        let rel = match (dir_rel.is_empty(), name) {
            (_, ".") => dir_rel,
            (true, n) => n.to_string(),
            (false, n) => format!("{dir_rel}/{n}"),
        };
        let p = self.host_path(&rel);
        let st = match rustix::fs::statat(&dir_fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if is_missing(&e.into()) => return Ok(None),
            Err(e) => return Err(io_err("stat", &p)(e.into()).into()),
        };
        let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::Directory => HostKind::Dir,
            rustix::fs::FileType::Symlink => {
                let t = rustix::fs::readlinkat(&dir_fd, name, Vec::new())
                    .map_err(|e| io_err("readlink", &p)(e.into()))?;
                HostKind::Symlink(t.into_bytes())
            }
            rustix::fs::FileType::RegularFile => HostKind::File(st.st_size as u64),
            // Sockets, fifos and devices are not copied (Docker skips them too).
            _ => return Ok(None),
        };
        Ok(Some(HostEntry {
            rel,
            kind,
            mode: st.st_mode & 0o7777,
        }))
    }

    fn visible(&self, e: &HostEntry) -> bool {
        !self.ignore.excluded(&e.rel)
            || (e.kind == HostKind::Dir && self.ignore.may_include_below(&e.rel))
    }

    /// The visible entries directly in directory `rel`, sorted by name.
    fn list(&self, rel: &str) -> Result<Vec<HostEntry>, ContextError> {
        let p = self.host_path(rel);
        let Some((fd, rel)) = self.open_dir(rel, OFlags::RDONLY)? else {
            return Err(io_err("list", &p)(io::Error::from(io::ErrorKind::NotFound)).into());
        };
        let mut names: Vec<String> = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).map_err(|e| io_err("list", &p)(e.into()))? {
            let e = e.map_err(|e| io_err("list", &p)(e.into()))?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_string_lossy().into_owned());
            }
        }
        names.sort();
        let mut out = Vec::new();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            if let Some(e) = self.entry(&child)? {
                if self.visible(&e) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// Everything below directory `rel` (not `rel` itself), depth-first in sorted order,
    /// without what `.dockerignore` excludes.
    pub fn walk(&self, rel: &str) -> Result<Vec<HostEntry>, ContextError> {
        let mut out = Vec::new();
        let mut stack = vec![rel.to_string()];
        while let Some(dir) = stack.pop() {
            let children = self.list(&dir)?;
            for c in children.iter().rev() {
                if c.kind == HostKind::Dir {
                    stack.push(c.rel.clone());
                }
            }
            out.extend(children);
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        // A directory excluded but walked for its exceptions is left out when it holds
        // nothing visible.
        let keep: Vec<bool> = out
            .iter()
            .map(|e| {
                !self.ignore.excluded(&e.rel)
                    || out.iter().any(|x| {
                        x.rel.starts_with(&format!("{}/", e.rel)) && !self.ignore.excluded(&x.rel)
                    })
            })
            .collect();
        Ok(out
            .into_iter()
            .zip(keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect())
    }

    /// The entries a COPY/ADD source names: an exact path, or a pattern with `*`, `?` or
    /// `[...]` in any component.
    pub fn resolve(&self, src: &str) -> Result<Vec<Matched>, ContextError> {
        let rel = clean_rel(src).ok_or_else(|| ContextError::Outside(src.to_string()))?;
        if !has_wildcard(&rel) {
            let e = self
                .entry(&rel)?
                .filter(|e| {
                    self.visible(e) && (e.kind == HostKind::Dir || !self.ignore.excluded(&e.rel))
                })
                .ok_or_else(|| ContextError::NotFound(src.to_string()))?;
            return Ok(vec![Matched {
                entry: e,
                wildcard: false,
            }]);
        }
        let mut current = vec![String::new()];
        let comps: Vec<&str> = rel.split('/').collect();
        let mut found = Vec::new();
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for dir in &current {
                for e in self.list(dir)? {
                    if !go_match(comp, e.name()) {
                        continue;
                    }
                    if last {
                        if !self.ignore.excluded(&e.rel) || e.kind == HostKind::Dir {
                            found.push(Matched {
                                entry: e,
                                wildcard: true,
                            });
                        }
                    } else if e.kind == HostKind::Dir {
                        next.push(e.rel);
                    }
                }
            }
            current = next;
        }
        if found.is_empty() {
            return Err(ContextError::NotFound(src.to_string()));
        }
        Ok(found)
    }

    /// The sha256 of a context file's content (memoized for the build).
    pub fn hash(&self, rel: &str) -> Result<Digest, ContextError> {
        if let Ok(m) = self.hashes.lock() {
            if let Some(d) = m.get(rel) {
                return Ok(*d);
            }
        }
        let p = self.host_path(rel);
        let f = self.open_file(rel).map_err(io_err("open", &p))?;
        let mut r = HashingReader::new(io::BufReader::with_capacity(1 << 16, f));
        io::copy(&mut r, &mut io::sink()).map_err(io_err("read", &p))?;
        let d = r.finish().0;
        if let Ok(mut m) = self.hashes.lock() {
            m.insert(rel.to_string(), d);
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("src/lib")).unwrap();
        fs::create_dir_all(r.join("node_modules/x")).unwrap();
        fs::write(r.join("app.js"), "a").unwrap();
        fs::write(r.join("b.js"), "b").unwrap();
        fs::write(r.join("src/main.js"), "m").unwrap();
        fs::write(r.join("src/lib/l.js"), "l").unwrap();
        fs::write(r.join("node_modules/x/i.js"), "i").unwrap();
        fs::write(r.join(".dockerignore"), "node_modules\n*.md\n").unwrap();
        fs::write(r.join("README.md"), "r").unwrap();
        let c = Context::open(r).unwrap();
        (d, c)
    }

    #[test]
    fn resolves_paths_globs_and_ignores() {
        let (_d, c) = ctx();
        let names = |v: Vec<Matched>| v.into_iter().map(|m| m.entry.rel).collect::<Vec<_>>();
        assert_eq!(names(c.resolve("app.js").unwrap()), ["app.js"]);
        assert_eq!(names(c.resolve("./src/../app.js").unwrap()), ["app.js"]);
        assert_eq!(names(c.resolve("*.js").unwrap()), ["app.js", "b.js"]);
        assert_eq!(names(c.resolve("src/*.js").unwrap()), ["src/main.js"]);
        assert!(matches!(
            c.resolve("README.md"),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(
            c.resolve("node_modules"),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(c.resolve("nope*"), Err(ContextError::NotFound(_))));
        assert!(matches!(
            c.resolve("../etc/passwd"),
            Err(ContextError::Outside(_))
        ));
        let all: Vec<String> = c.walk("").unwrap().into_iter().map(|e| e.rel).collect();
        assert_eq!(
            all,
            [
                ".dockerignore",
                "app.js",
                "b.js",
                "src",
                "src/lib",
                "src/lib/l.js",
                "src/main.js"
            ]
        );
        assert_eq!(c.hash("app.js").unwrap(), Digest::of(b"a"));
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let (d, c) = ctx();
        let r = d.path();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "host").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("out")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/src", r.join("abs")).unwrap();
        let c2 = Context::open(r).unwrap();
        assert!(matches!(
            c2.resolve("out/secret"),
            Err(ContextError::NotFound(_))
        ));
        let names = |v: Vec<Matched>| v.into_iter().map(|m| m.entry.rel).collect::<Vec<_>>();
        assert_eq!(names(c2.resolve("up/app.js").unwrap()), ["app.js"]);
        assert_eq!(names(c2.resolve("abs/main.js").unwrap()), ["src/main.js"]);
        assert_eq!(c2.hash("src/main.js").unwrap(), Digest::of(b"m"));
        // The last component is not followed: a link is an entry of its own.
        assert_eq!(
            c2.resolve("out").unwrap()[0].entry.kind,
            HostKind::Symlink(outside.path().as_os_str().as_encoded_bytes().to_vec())
        );
        drop(c);
    }
}
