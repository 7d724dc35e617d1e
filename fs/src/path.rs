//! Lexical path cleaning, shared by everything that takes a path relative to a root from
//! outside (a build context's `COPY` sources, the members and links of an image archive).

/// Cleans `path` lexically, relative to a root: empty and `.` components go, `..` removes the
/// component before it, and a leading `/` means the root. `None` when a `..` would climb above
/// the root. The root itself is the empty string; nothing touches the filesystem, so a symlink
/// on the way is not followed.
///
/// Other cleaners in the workspace keep rules of their own on purpose: a tar member's name
/// ([`crate::tar_stream::normalize_path`]) refuses `..` outright, as a layer must never name a
/// path through its parent; `.dockerignore` patterns clamp `..` at the root, as Go's
/// `filepath.Clean` does for Docker.
pub fn clean_rel(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_rel_table() {
        for (input, want) in [
            ("", Some("")),
            ("/", Some("")),
            (".", Some("")),
            ("a", Some("a")),
            ("/etc/hosts", Some("etc/hosts")),
            ("etc//x/./y/", Some("etc/x/y")),
            ("./tmp", Some("tmp")),
            ("a/b/../c", Some("a/c")),
            ("a/..", Some("")),
            ("a/../..", None),
            ("..", None),
            ("../x", None),
            ("/../etc/passwd", None),
            ("a/./../b/.", Some("b")),
            ("...", Some("...")),
            ("a/.hidden/..x", Some("a/.hidden/..x")),
        ] {
            assert_eq!(clean_rel(input).as_deref(), want, "{input:?}");
        }
    }
}
