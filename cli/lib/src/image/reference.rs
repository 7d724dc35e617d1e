//! Image references: `name[:tag]`, `registry/repo:tag`, `name@sha256:…`, as Docker parses them.
//!
//! Grammar (from the distribution reference package):
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [domain "/"] component ("/" component)*
//! domain     := host [":" port]      (first part, if it has "." or ":" or is "localhost")
//! component  := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```

use std::fmt;

use rimg_fs::Digest;

/// The tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";

/// Why a string is not a reference.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The string does not follow the reference grammar.
    #[error("invalid reference format {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host (and port), if the name has one: `localhost:5000`.
    pub domain: Option<String>,
    /// Repository path below the domain: `library/busybox`, `web-ping`.
    pub path: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The manifest digest, for `name@sha256:…`.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; `latest` is filled in when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let bad = |why| ReferenceError::Invalid(s.to_string(), why);
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 4096 {
            return Err(bad("too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|_| bad("bad digest"))?)),
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad("bad tag"));
            }
        }
        if name.is_empty() || name.len() > 255 {
            return Err(bad("bad repository name length"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, more))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_domain(first) {
                    return Err(bad("bad registry host"));
                }
                (Some(first.to_string()), more)
            }
            _ => (None, name),
        };
        // Docker Hub has several spellings; its official images live under `library/`.
        // All of them name the one repository, stored and shown as the familiar `busybox`.
        let (domain, path) = match domain.as_deref() {
            None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => {
                (None, familiar_path(path))
            }
            _ => (domain, path),
        };
        if path.split('/').any(|c| !valid_component(c)) {
            return Err(bad(
                "repository name must be lowercase letters, digits and separators",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some(DEFAULT_TAG.into())
        } else {
            tag
        };
        Ok(Reference {
            domain,
            path: path.to_string(),
            tag,
            digest,
        })
    }

    /// The repository as Docker shows it: `busybox`, `localhost:5000/web-ping`.
    pub fn repository(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The fully qualified name Docker prints after a pull:
    /// `docker.io/library/busybox:latest`, `localhost:5000/web-ping:v2`.
    pub fn full_name(&self) -> String {
        let repository = match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None if self.path.contains('/') => format!("docker.io/{}", self.path),
            None => format!("docker.io/library/{}", self.path),
        };
        let mut name = repository;
        if let Some(t) = &self.tag {
            name = format!("{name}:{t}");
        }
        if let Some(d) = &self.digest {
            name = format!("{name}@{d}");
        }
        name
    }

    /// The tag, or `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// The name stored in `index.json` for this tag: `repository:tag`, with `:latest` left
    /// out so that `skopeo inspect oci:$RIMG_ROOT:busybox` finds `busybox:latest`.
    pub fn ref_name(&self) -> String {
        match self.tag.as_deref() {
            None | Some(DEFAULT_TAG) => self.repository(),
            Some(t) => format!("{}:{t}", self.repository()),
        }
    }

    /// Parses an `index.json` ref name written by rimg or another OCI tool. Tools such as
    /// umoci store bare tags (`latest`); those read as a repository of that name.
    pub fn from_ref_name(name: &str) -> Option<Self> {
        let r = Reference::parse(name).ok()?;
        if r.digest.is_some() {
            return None;
        }
        Some(r)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `library/busybox` on Docker Hub is `busybox`; `library/a/b` stays as it is.
fn familiar_path(path: &str) -> &str {
    match path.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest,
        _ => path,
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or one or more "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

fn alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_docker_accepts() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.domain.as_deref(), r.path.as_str(), r.tag.as_deref()),
            (None, "busybox", Some("latest"))
        );
        assert_eq!(r.ref_name(), "busybox");
        let r = Reference::parse("web-ping:v2").unwrap();
        assert_eq!(r.ref_name(), "web-ping:v2");
        let r = Reference::parse("localhost:5000/a/b_c:1.0").unwrap();
        assert_eq!(r.domain.as_deref(), Some("localhost:5000"));
        assert_eq!(r.path, "a/b_c");
        assert_eq!(r.to_string(), "localhost:5000/a/b_c:1.0");
        let r = Reference::parse("127.0.0.1:5000/busybox").unwrap();
        assert_eq!(r.repository(), "127.0.0.1:5000/busybox");
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest), (None, Some(d)));
        assert_eq!(
            Reference::parse("localhost/x").unwrap().domain.as_deref(),
            Some("localhost")
        );
    }

    #[test]
    fn docker_hub_spellings_name_one_repository() {
        for name in [
            "busybox",
            "docker.io/busybox",
            "docker.io/library/busybox",
            "index.docker.io/library/busybox:latest",
            "library/busybox",
        ] {
            let r = Reference::parse(name).unwrap();
            assert_eq!(
                (r.domain.as_deref(), r.path.as_str()),
                (None, "busybox"),
                "{name}"
            );
            assert_eq!(r.ref_name(), "busybox", "{name}");
            assert_eq!(r.full_name(), "docker.io/library/busybox:latest", "{name}");
        }
        let r = Reference::parse("docker.io/diamol/ch03-web-ping").unwrap();
        assert_eq!(r.to_string(), "diamol/ch03-web-ping:latest");
        assert_eq!(r.full_name(), "docker.io/diamol/ch03-web-ping:latest");
        let r = Reference::parse("localhost:5000/busybox:v1").unwrap();
        assert_eq!(r.full_name(), "localhost:5000/busybox:v1");
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "Busybox",
            "a:",
            ":tag",
            "a b",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a:b:c",
            "a@sha256:zz",
            "a:-tag",
            "host:port/x",
            "../x",
            "a/.b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }
}
