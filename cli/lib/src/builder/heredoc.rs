//! Here-documents in RUN, COPY and ADD, as BuildKit's Dockerfile frontend defines them: a
//! word `<<NAME`, `<<-NAME` (leading tabs stripped from the body and the terminator),
//! `<<"NAME"` or `<<'NAME'` (quoted: the body is not expanded) makes the lines after the
//! instruction, up to a line that is just `NAME`, part of it. One line may open several;
//! their bodies follow in order.

use crate::image::change::{raw_words, Lexer};

/// A heredoc of an instruction: its delimiter and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed (`EOF`); COPY's file name.
    pub name: String,
    /// The body as written: each line with its newline, the terminator left out.
    pub content: String,
    /// `<<-`: leading tabs are stripped from each line.
    pub chomp: bool,
    /// The delimiter was not quoted: COPY and ADD substitute variables in the body.
    pub expand: bool,
}

impl Heredoc {
    /// The body with `<<-`'s tabs stripped.
    pub fn data(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Parses one word as a heredoc opener (`<<EOF`, `<<-"EOF"`, `3<<EOF`): its body is still
/// empty. `None` when the word is not one.
pub fn parse_word(word: &str) -> Option<Heredoc> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let words = Lexer::literal('\\').words(rest).ok()?;
    let [name] = words.as_slice() else {
        return None;
    };
    if name.is_empty() {
        return None;
    }
    // Quoting any part of the delimiter turns expansion off, as in the shell.
    let expand = !rest.contains(['"', '\'', '\\']);
    Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        chomp,
        expand,
    })
}

/// The heredocs a (continuation-joined) line opens, in order.
pub fn openers(line: &str) -> Vec<Heredoc> {
    raw_words(line, '\\')
        .unwrap_or_default()
        .iter()
        .filter_map(|w| parse_word(w))
        .collect()
}

/// Whether `line` ends the body of `doc`.
pub fn is_terminator(doc: &Heredoc, line: &str) -> bool {
    let l = if doc.chomp {
        line.trim_start_matches('\t')
    } else {
        line
    };
    l == doc.name
}

/// Strips leading tabs from each line (`<<-`).
pub fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// Substitutes `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}` in a COPY body,
/// keeping quotes and everything else as written; `\$` is a literal `$`.
pub fn expand(content: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let c: Vec<char> = content.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_name = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
    while i < c.len() {
        match c[i] {
            '\\' if c.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if c.get(i + 1) == Some(&'{') => {
                let Some(len) = c[i + 2..].iter().position(|&x| x == '}') else {
                    out.extend(&c[i..]);
                    break;
                };
                let inner: String = c[i + 2..i + 2 + len].iter().collect();
                let (name, op) = match inner.find(|ch: char| !is_name(ch)) {
                    Some(p) => (&inner[..p], &inner[p..]),
                    None => (inner.as_str(), ""),
                };
                let val = lookup(name);
                let set = val.as_deref().is_some_and(|v| !v.is_empty());
                let s = if let Some(w) = op.strip_prefix(":-") {
                    if set {
                        val.unwrap_or_default()
                    } else {
                        w.to_string()
                    }
                } else if let Some(w) = op.strip_prefix(":+") {
                    if set {
                        w.to_string()
                    } else {
                        String::new()
                    }
                } else {
                    val.unwrap_or_default()
                };
                out.push_str(&s);
                i += len + 3;
            }
            '$' if c
                .get(i + 1)
                .is_some_and(|&ch| is_name(ch) && !ch.is_ascii_digit()) =>
            {
                let len = c[i + 1..].iter().take_while(|&&ch| is_name(ch)).count();
                let name: String = c[i + 1..i + 1 + len].iter().collect();
                out.push_str(&lookup(&name).unwrap_or_default());
                i += len + 1;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openers_and_quoting() {
        let d = openers("<<EOF bash");
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].name.as_str(), d[0].chomp, d[0].expand),
            ("EOF", false, true)
        );
        let d = openers("<<-\"END\" python3 <<'two' 3<<x");
        let names: Vec<_> = d
            .iter()
            .map(|h| (h.name.as_str(), h.chomp, h.expand))
            .collect();
        assert_eq!(
            names,
            [
                ("END", true, false),
                ("two", false, false),
                ("x", false, true)
            ]
        );
        assert!(openers("echo '<<EOF' <<<here a<<b").is_empty());
    }

    #[test]
    fn chomp_and_expand() {
        assert_eq!(chomp("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
        let vars = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(
            expand("$A ${A} ${B:-d} ${A:+x} \\$A '$A' $1\n", &vars),
            "1 1 d x $A '1' $1\n"
        );
    }
}
