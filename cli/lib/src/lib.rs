//! rimg's container side as a library: the image model ([`image`]), the builder
//! ([`builder`]), the runtime ([`runtime`]), containers ([`container`]), the registry client
//! ([`registry`]) and mounted stacks ([`mount`]); [`random`] makes their random ids and names.
//!
//! It knows no command line: it does not depend on clap, anyhow or indicatif, and it prints
//! nothing. The binaries (`rimg`, `rimgfs`, in the `rimg-cli` package) parse flags, call into
//! it, and print; Cargo enforces the split.

pub mod builder;
pub mod container;
pub mod glob;
pub mod image;
pub mod info;
pub mod mount;
pub mod random;
pub mod registry;
pub mod runtime;
pub mod table;
pub mod units;

/// An error and its causes as one line, `outer: cause: root cause`, leaving out a cause
/// whose text the line already holds (many errors here name their source in their own
/// message, and anyhow's `{:#}` would print it twice).
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// The default store: `/var/lib/rimg` as root; `$XDG_DATA_HOME/rimg` (or
/// `~/.local/share/rimg`) otherwise.
pub fn default_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/rimg");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("rimg");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/rimg")
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("create /x: {source}")]
    struct Repeats {
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("saving to /x")]
    struct Outer(#[source] Repeats);

    #[test]
    fn error_line_names_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = Outer(Repeats { source: io });
        assert_eq!(
            super::error_line(&e),
            "saving to /x: create /x: entity not found"
        );
    }
}
