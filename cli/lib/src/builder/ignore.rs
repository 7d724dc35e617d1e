//! `.dockerignore`: which context paths a build may not see, with Docker's rules — one pattern
//! a line, `#` comments, patterns relative to the context root (a leading `/` is dropped),
//! Go `filepath.Match` per path component plus `**` for any number of directories, a pattern
//! also excluding everything under a directory it matches, and `!pattern` lines re-including
//! what earlier lines excluded (the last matching line wins).

use crate::glob;

/// One `.dockerignore` line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
    exception: bool,
}

/// The parsed rules of a `.dockerignore` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let parts = clean(pat);
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts, exception });
        }
        Ignore { patterns }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded: the last pattern
    /// that matches it or one of its parent directories decides.
    pub fn excluded(&self, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            return false;
        }
        let mut excluded = false;
        for p in &self.patterns {
            let hit = (1..=comps.len()).any(|n| match_parts(&p.parts, &comps[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception pattern could re-include a path below directory `dir`, so an
    /// excluded directory must still be walked.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let comps: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| prefix_could_match(&p.parts, &comps))
    }
}

/// Cleans a pattern as Go's `filepath.Clean` does, relative to the root. Not
/// [`rimg_fs::path::clean_rel`]: a `..` above the root stays at the root here (Docker matches
/// `../x` as `x`) where a source path that climbs out is refused.
fn clean(pat: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in pat.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Whether pattern components match path components exactly (`**` = any number of them).
fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|i| match_parts(&pat[1..], &path[i..])),
        Some(p) => match path.first() {
            Some(c) => glob::matches(p, c) && match_parts(&pat[1..], &path[1..]),
            None => false,
        },
    }
}

/// Whether the directory `dir` could be a prefix of a path the pattern matches.
fn prefix_could_match(pat: &[String], dir: &[&str]) -> bool {
    match (pat.first(), dir.first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(p), Some(_)) if p == "**" => true,
        (Some(p), Some(c)) => glob::matches(p, c) && prefix_could_match(&pat[1..], &dir[1..]),
    }
}

/// Go's `filepath.Match` for one path component: [`crate::glob::matches`], the matcher
/// `rimg images` also uses (a malformed pattern matches nothing).
pub use crate::glob::matches as go_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracket_bang_is_literal_as_in_go() {
        // Issue 19: Go negates a class with `^` only; `[!a]` is the class of `!` and `a`.
        let ig = Ignore::parse("[!a]*.txt\n[^c]*.md\n");
        assert!(ig.excluded("a.txt"));
        assert!(ig.excluded("!.txt"));
        assert!(!ig.excluded("b.txt"));
        assert!(ig.excluded("d.md"));
        assert!(!ig.excluded("c.md"));
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse(
            "# comment\n\nnode_modules\n*.log\n!keep.log\n/secret\n**/*.tmp\ndocs/**\n!docs/README.md\ntemp?\n",
        );
        let cases = [
            ("node_modules", true),
            ("node_modules/x/y.js", true),
            ("app.js", false),
            ("err.log", true),
            ("keep.log", false),
            ("sub/err.log", false),
            ("secret", true),
            ("secret/key", true),
            ("a/b/c.tmp", true),
            ("c.tmp", true),
            ("docs/guide.md", true),
            ("docs/README.md", false),
            ("temp1", true),
            ("temp12", false),
            ("Dockerfile", false),
        ];
        for (path, want) in cases {
            assert_eq!(ig.excluded(path), want, "{path}");
        }
        assert!(ig.may_include_below("docs"));
        assert!(!ig.may_include_below("node_modules"));
    }

    #[test]
    fn the_last_matching_line_wins() {
        let ig = Ignore::parse("*\n!src\nsrc/*.bak\n");
        assert!(ig.excluded("Dockerfile"));
        assert!(!ig.excluded("src/main.rs"));
        assert!(ig.excluded("src/old.bak"));
        assert!(Ignore::parse("").is_empty());
    }
}
