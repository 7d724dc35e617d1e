//! Go's `path.Match`: the one glob matcher of rimg, used by `rimg images PATTERN` (and
//! `--filter reference=`), `.dockerignore` lines and `COPY`/`ADD` sources, so the same pattern
//! means the same thing everywhere, as in Docker.
//!
//! The syntax is Go's:
//! - `*` any run of characters but `/`; `?` one character but `/`;
//! - `[...]` one character of a class: characters, `lo-hi` ranges, `\` escapes, negated only
//!   by a leading `^` (`[!a]` is the class of `!` and `a`, as in Go, not a negation);
//! - `\c` the character `c`; anything else itself.
//!
//! A malformed pattern (`[`, `[]a]`, `[a-]`, a trailing `\`) is an error wherever it is
//! malformed, even when the name would fail to match before reaching it; [`matches`] treats
//! it as matching nothing. Matching follows Go's algorithm step by step: after a `*`, the
//! first place where the next piece fits is taken, as Go takes it. (Go's `*` may also stop
//! inside a multi-byte UTF-8 character; here it skips whole characters, which only differs
//! for patterns that would match half a character.)

/// A pattern Go's `path.Match` refuses (`ErrBadPattern`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern")]
pub struct BadPattern;

/// One single-character step of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// This character.
    Char(char),
    /// `?`: any character but `/`.
    Any,
    /// `[...]`: a character in (or, negated, not in) the inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Step {
    fn accepts(&self, c: char) -> bool {
        match self {
            Step::Char(want) => c == *want,
            Step::Any => c != '/',
            Step::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// A run of steps, after one or more `*` (`star`) or at the pattern's start.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    star: bool,
    steps: Vec<Step>,
}

impl Piece {
    /// What is left of `name` once the steps match its beginning.
    fn strip<'a>(&self, name: &'a str) -> Option<&'a str> {
        let mut rest = name;
        for step in &self.steps {
            let mut chars = rest.chars();
            let c = chars.next()?;
            if !step.accepts(c) {
                return None;
            }
            rest = chars.as_str();
        }
        Some(rest)
    }
}

/// A parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pieces: Vec<Piece>,
}

impl Glob {
    /// Parses `pattern`, refusing it where Go's `path.Match` would.
    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        let mut pieces = Vec::new();
        let mut chars = pattern.chars().peekable();
        let mut current = Piece {
            star: false,
            steps: Vec::new(),
        };
        while let Some(c) = chars.next() {
            match c {
                // `**` is one star; a star after steps starts the next piece.
                '*' if current.steps.is_empty() => current.star = true,
                '*' => pieces.push(std::mem::replace(
                    &mut current,
                    Piece {
                        star: true,
                        steps: Vec::new(),
                    },
                )),
                '?' => current.steps.push(Step::Any),
                '\\' => current
                    .steps
                    .push(Step::Char(chars.next().ok_or(BadPattern)?)),
                '[' => current.steps.push(class(&mut chars)?),
                c => current.steps.push(Step::Char(c)),
            }
        }
        if current.star || !current.steps.is_empty() {
            pieces.push(current);
        }
        Ok(Glob { pieces })
    }

    /// Whether all of `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let mut name = name;
        let last = self.pieces.len().saturating_sub(1);
        'pieces: for (i, piece) in self.pieces.iter().enumerate() {
            let is_last = i == last;
            if piece.star && piece.steps.is_empty() {
                // A trailing star takes the rest, unless it holds a `/`.
                return !name.contains('/');
            }
            if let Some(rest) = piece.strip(name) {
                if rest.is_empty() || !is_last {
                    name = rest;
                    continue;
                }
            }
            if piece.star {
                // The star takes one more character at a time, never a `/`.
                for (at, c) in name.char_indices() {
                    if c == '/' {
                        break;
                    }
                    let Some(rest) = piece.strip(&name[at + c.len_utf8()..]) else {
                        continue;
                    };
                    if is_last && !rest.is_empty() {
                        continue;
                    }
                    name = rest;
                    continue 'pieces;
                }
            }
            return false;
        }
        name.is_empty()
    }
}

/// Parses a class after its `[`, through its `]`.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Step, BadPattern> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Ok(Step::Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let hi = match chars.next_if_eq(&'-') {
            Some(_) => class_char(chars)?,
            None => lo,
        };
        ranges.push((lo, hi));
    }
}

/// One character of a class, `\`-escaped or not; a bare `-` or `]` here is malformed, and
/// so is a class the pattern ends in.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, BadPattern> {
    let c = match chars.next() {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => chars.next().ok_or(BadPattern)?,
        Some(c) => c,
    };
    if chars.peek().is_none() {
        return Err(BadPattern);
    }
    Ok(c)
}

/// Go's `path.Match(pattern, name)`: whether all of `name` matches, or [`BadPattern`].
pub fn path_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    Ok(Glob::new(pattern)?.is_match(name))
}

/// [`path_match`], with a malformed pattern matching nothing.
pub fn matches(pattern: &str, name: &str) -> bool {
    path_match(pattern, name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of Go's `src/path/match_test.go`: pattern, name, Go's answer.
    const GO_CASES: &[(&str, &str, Result<bool, BadPattern>)] = &[
        ("abc", "abc", Ok(true)),
        ("*", "abc", Ok(true)),
        ("*c", "abc", Ok(true)),
        ("a*", "a", Ok(true)),
        ("a*", "abc", Ok(true)),
        ("a*", "ab/c", Ok(false)),
        ("a*/b", "abc/b", Ok(true)),
        ("a*/b", "a/c/b", Ok(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
        ("ab[c]", "abc", Ok(true)),
        ("ab[b-d]", "abc", Ok(true)),
        ("ab[e-g]", "abc", Ok(false)),
        ("ab[^c]", "abc", Ok(false)),
        ("ab[^b-d]", "abc", Ok(false)),
        ("ab[^e-g]", "abc", Ok(true)),
        ("a\\*b", "a*b", Ok(true)),
        ("a\\*b", "ab", Ok(false)),
        ("a?b", "a☺b", Ok(true)),
        ("a[^a]b", "a☺b", Ok(true)),
        ("a???b", "a☺b", Ok(false)),
        ("a[^a][^a][^a]b", "a☺b", Ok(false)),
        ("[a-ζ]*", "α", Ok(true)),
        ("*[a-ζ]", "A", Ok(false)),
        ("a?b", "a/b", Ok(false)),
        ("a*b", "a/b", Ok(false)),
        ("[\\]a]", "]", Ok(true)),
        ("[\\-]", "-", Ok(true)),
        ("[x\\-]", "x", Ok(true)),
        ("[x\\-]", "-", Ok(true)),
        ("[x\\-]", "z", Ok(false)),
        ("[\\-x]", "x", Ok(true)),
        ("[\\-x]", "-", Ok(true)),
        ("[\\-x]", "a", Ok(false)),
        ("[]a]", "]", Err(BadPattern)),
        ("[-]", "-", Err(BadPattern)),
        ("[x-]", "x", Err(BadPattern)),
        ("[x-]", "-", Err(BadPattern)),
        ("[x-]", "z", Err(BadPattern)),
        ("[-x]", "x", Err(BadPattern)),
        ("[-x]", "-", Err(BadPattern)),
        ("[-x]", "a", Err(BadPattern)),
        ("\\", "a", Err(BadPattern)),
        ("[a-b-c]", "a", Err(BadPattern)),
        ("[", "a", Err(BadPattern)),
        ("[^", "a", Err(BadPattern)),
        ("[^bc", "a", Err(BadPattern)),
        ("a[", "a", Err(BadPattern)),
        ("a[", "ab", Err(BadPattern)),
        ("a[", "x", Err(BadPattern)),
        ("a/b[", "x", Err(BadPattern)),
        ("*x", "xxx", Ok(true)),
    ];

    fn check(cases: &[(&str, &str, Result<bool, BadPattern>)]) {
        for &(pattern, name, want) in cases {
            assert_eq!(path_match(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn matches_as_go_path_match_does() {
        check(GO_CASES);
    }

    #[test]
    fn bracket_bang_is_literal_as_in_go() {
        // Issue 19: `[!a]` is the class of `!` and `a` in Go, not "anything but a".
        check(&[
            ("[!a]x", "bx", Ok(false)),
            ("[!a]x", "ax", Ok(true)),
            ("[!a]x", "!x", Ok(true)),
            ("[^a]x", "bx", Ok(true)),
            ("[!a-c]x", "dx", Ok(false)),
        ]);
    }

    #[test]
    fn go_quirks_are_kept() {
        check(&[
            // Go's class may match `/` (only `*` and `?` stop at it).
            ("a[^x]b", "a/b", Ok(true)),
            // After a `*`, Go takes the first place the next piece fits and does not go
            // back: `*a[^x]*` fits `aa` of `aa/b`, then the trailing star meets the `/`.
            ("*a[^x]*", "aa/b", Ok(false)),
            // A malformed class is an error even after a mismatch; a `*` inside a class is
            // part of it.
            ("x*y[", "abc", Err(BadPattern)),
            ("[*]", "*", Ok(true)),
            ("**", "abc", Ok(true)),
            ("", "", Ok(true)),
            ("", "a", Ok(false)),
            ("*", "", Ok(true)),
        ]);
    }

    #[test]
    fn image_references_match_as_docker_filters_them() {
        assert!(matches("w*", "web-ping"));
        assert!(!matches("w*", "busybox"));
        assert!(!matches("*", "library/busybox"));
        assert!(matches("*/busybox", "library/busybox"));
        assert!(matches("web-ping:v?", "web-ping:v2"));
        assert!(!matches("[", "["));
    }
}
