//! The build context: the directory COPY and ADD read from, as `.dockerignore` lets the build
//! see it. Resolves sources (exact paths, directories, Go-style globs per component), walks
//! directories in sorted order, and hashes what a step reads for its cache key: each file's
//! content, relative path and mode — never its mtime.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The build context directory.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    hashes: Mutex<HashMap<String, Digest>>,
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
        let ig_path = root.join(".dockerignore");
        let ignore = match fs::read_to_string(&ig_path) {
            Ok(t) => Ignore::parse(&t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(IoError::new("read", &ig_path, e).into()),
        };
        Ok(Context {
            root: root.to_path_buf(),
            ignore,
            hashes: Mutex::new(HashMap::new()),
        })
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

    /// The host path of a context-relative path.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn entry(&self, rel: &str) -> Result<Option<HostEntry>, ContextError> {
        let p = self.host_path(rel);
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IoError::new("stat", &p, e).into()),
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            HostKind::Dir
        } else if ft.is_symlink() {
            let t = fs::read_link(&p).map_err(io_err("readlink", &p))?;
            HostKind::Symlink(t.into_os_string().into_encoded_bytes())
        } else if ft.is_file() {
            HostKind::File(meta.len())
        } else {
            // Sockets, fifos and devices are not copied (Docker skips them too).
            return Ok(None);
        };
        Ok(Some(HostEntry {
            rel: rel.to_string(),
            kind,
            mode: meta.mode() & 0o7777,
        }))
    }

    fn visible(&self, e: &HostEntry) -> bool {
        !self.ignore.excluded(&e.rel)
            || (e.kind == HostKind::Dir && self.ignore.may_include_below(&e.rel))
    }

    /// The visible entries directly in directory `rel`, sorted by name.
    fn list(&self, rel: &str) -> Result<Vec<HostEntry>, ContextError> {
        let p = self.host_path(rel);
        let mut names: Vec<String> = Vec::new();
        for e in fs::read_dir(&p).map_err(io_err("list", &p))? {
            let e = e.map_err(io_err("list", &p))?;
            names.push(e.file_name().to_string_lossy().into_owned());
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
        let f = fs::File::open(&p).map_err(io_err("open", &p))?;
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
}
