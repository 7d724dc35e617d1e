//! The Dockerfile parser: a pure function from the file's text to its instructions, each with
//! the line it starts on. It handles the `# syntax=` and `# escape=` directives, comments,
//! line continuations and case-insensitive keywords, and checks each instruction's shape
//! (flags, argument forms) so a malformed line is reported before anything is built.
//! Variable substitution happens later, per step, with the scope the builder tracks
//! ([`crate::image::change::Lexer`]).

use std::fmt;

use super::heredoc::{self, Heredoc};
use crate::image::change::{raw_words, split_instruction, CommandForm, Lexer};

/// Why a Dockerfile cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile line {line}: {message}{}", if text.is_empty() { String::new() } else { format!(": {text}") })]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// The line's text (the instruction as written, continuations joined).
    pub text: String,
    /// What is wrong.
    pub message: String,
}

/// A `--name=value` flag of an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    /// The name without dashes.
    pub name: String,
    /// The value (`None` for a bare `--name`).
    pub value: Option<String>,
}

/// One instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The 1-based line it starts on.
    pub line: usize,
    /// The keyword, upper case (`COPY`).
    pub keyword: String,
    /// Leading `--flag=value` words.
    pub flags: Vec<Flag>,
    /// The arguments after the keyword and flags, continuation lines joined.
    pub args: String,
    /// The instruction as written (continuations joined, keyword as written).
    pub text: String,
    /// The here-documents it opens (RUN, COPY and ADD), bodies read from the lines after it.
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    /// The value of flag `name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .and_then(|f| f.value.as_deref())
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            text: self.text.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// The `# syntax=` directive, if any (recorded; rimg has one frontend).
    pub syntax: Option<String>,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
}

/// Every instruction keyword rimg knows.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The flags each instruction accepts.
fn allowed_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "COPY" => &["chown", "chmod", "from", "link", "exclude", "parents"],
        "ADD" => &[
            "chown",
            "chmod",
            "link",
            "exclude",
            "checksum",
            "keep-git-dir",
        ],
        "RUN" => &["network", "security", "mount"],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let mut escape = '\\';
    let mut syntax = None;
    let mut directives_open = true;
    let mut instructions = Vec::new();
    // The instruction being assembled: start line, text so far.
    let mut pending: Option<(usize, String)> = None;
    let mut lines = text.lines().enumerate();
    while let Some((idx, raw)) = lines.next() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_start();
        if pending.is_none() && directives_open {
            if let Some((key, value)) = directive(trimmed) {
                match key.as_str() {
                    "escape" => {
                        escape = match value.as_str() {
                            "\\" => '\\',
                            "`" => '`',
                            _ => {
                                return Err(ParseError {
                                    line: line_no,
                                    text: raw.to_string(),
                                    message: "invalid escape character (use \\ or `)".into(),
                                })
                            }
                        };
                        continue;
                    }
                    "syntax" => {
                        syntax = Some(value);
                        continue;
                    }
                    "check" => continue,
                    _ => {}
                }
            }
            directives_open = false;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            // Comments and blank lines, also inside a continued instruction, are dropped.
            continue;
        }
        let (body, continues) = continuation(raw, escape);
        match &mut pending {
            Some((_, acc)) => acc.push_str(body),
            None => pending = Some((line_no, body.trim_start().to_string())),
        }
        if !continues {
            if let Some((start, acc)) = pending.take() {
                let mut ins = instruction(start, &acc)?;
                read_heredocs(&mut ins, &mut lines)?;
                instructions.push(ins);
            }
        }
    }
    if let Some((start, acc)) = pending.take() {
        if !acc.trim().is_empty() {
            instructions.push(instruction(start, &acc)?);
        }
    }
    let df = Dockerfile {
        escape,
        syntax,
        instructions,
    };
    validate(&df)?;
    Ok(df)
}

/// Reads the bodies of the heredocs a RUN, COPY or ADD opens from the lines after it.
fn read_heredocs<'t>(
    ins: &mut Instruction,
    lines: &mut impl Iterator<Item = (usize, &'t str)>,
) -> Result<(), ParseError> {
    if !matches!(ins.keyword.as_str(), "RUN" | "COPY" | "ADD") {
        return Ok(());
    }
    for mut doc in heredoc::openers(&ins.args) {
        let mut terminated = false;
        for (_, raw) in lines.by_ref() {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if heredoc::is_terminator(&doc, raw) {
                terminated = true;
                break;
            }
            doc.content.push_str(raw);
            doc.content.push('\n');
        }
        if !terminated {
            return Err(ins.error(format!(
                "unterminated heredoc: no line {:?} ends it",
                doc.name
            )));
        }
        ins.heredocs.push(doc);
    }
    Ok(())
}

/// `# key=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim();
    let (k, v) = rest.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// Strips a trailing escape character (and whitespace after it): the instruction continues on
/// the next line. An escaped escape (`echo one\\`) does not continue, as BuildKit's
/// `([^\\])\\[ \t]*$` rule says.
fn continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(body) if !body.ends_with(escape) => (body, true),
        _ => (line, false),
    }
}

fn instruction(line: usize, text: &str) -> Result<Instruction, ParseError> {
    let text = text.trim().to_string();
    let (keyword, rest) = split_instruction(&text);
    let err = |message: String| ParseError {
        line,
        text: text.clone(),
        message,
    };
    if !KEYWORDS.contains(&keyword.as_str()) {
        // Never more than the word, and only when it could be an instruction: a line that is
        // not one (a host file read as a Dockerfile) must not end up in a CI log.
        let word = text.split_whitespace().next().unwrap_or("");
        let message = if !word.is_empty()
            && word.len() <= 32
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            format!("unknown instruction: {word}")
        } else {
            "unknown instruction (the line is not shown: it does not start with an instruction word)".to_string()
        };
        return Err(ParseError {
            line,
            text: String::new(),
            message,
        });
    }
    let mut flags = Vec::new();
    let mut args = rest;
    while let Some(f) = args.strip_prefix("--") {
        if f.is_empty() || f.starts_with(char::is_whitespace) {
            // `--` ends the flags: what follows is arguments, even if it starts with `--`.
            args = f.trim_start();
            break;
        }
        let (word, after) = match f.find(char::is_whitespace) {
            Some(i) => (&f[..i], f[i..].trim_start()),
            None => (f, ""),
        };
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (word.to_string(), None),
        };
        if !allowed_flags(&keyword).contains(&name.as_str()) {
            return Err(err(format!("unknown flag --{name} for {keyword}")));
        }
        flags.push(Flag { name, value });
        args = after;
    }
    Ok(Instruction {
        line,
        keyword,
        flags,
        args: args.to_string(),
        text,
        heredocs: Vec::new(),
    })
}

/// Checks every instruction's shape and that a FROM comes first.
fn validate(df: &Dockerfile) -> Result<(), ParseError> {
    let lexer = Lexer::literal(df.escape);
    let mut seen_from = false;
    for ins in &df.instructions {
        check(ins, &lexer)?;
        match ins.keyword.as_str() {
            "FROM" => seen_from = true,
            "ARG" => {}
            _ if !seen_from => {
                return Err(ins.error(format!(
                    "{} before the first FROM (only ARG may come before FROM)",
                    ins.keyword
                )))
            }
            _ => {}
        }
    }
    if !seen_from {
        return Err(ParseError {
            line: df.instructions.first().map_or(1, |i| i.line),
            text: df
                .instructions
                .first()
                .map(|i| i.text.clone())
                .unwrap_or_default(),
            message: "no FROM instruction: a Dockerfile must start its build stage with FROM"
                .into(),
        });
    }
    Ok(())
}

/// What FROM says: the image (before substitution), and the stage name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct From {
    /// The image reference, `scratch`, or an earlier stage's name.
    pub image: String,
    /// `AS name`, lower-cased.
    pub alias: Option<String>,
}

/// Parses FROM's arguments: `image [AS name]`.
pub fn parse_from(ins: &Instruction) -> Result<From, ParseError> {
    let words: Vec<&str> = ins.args.split_whitespace().collect();
    match words.as_slice() {
        [image] => Ok(From {
            image: image.to_string(),
            alias: None,
        }),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let valid = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            if !valid {
                return Err(ins.error(format!("invalid stage name {name:?}")));
            }
            Ok(From {
                image: image.to_string(),
                alias: Some(name.to_ascii_lowercase()),
            })
        }
        _ => Err(ins.error("FROM requires one image and optionally AS name")),
    }
}

/// Parses ARG's arguments: `NAME[=default] ...` (defaults keep their quotes for the lexer).
pub fn parse_arg(
    ins: &Instruction,
    escape: char,
) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let words = raw_words(&ins.args, escape).map_err(|m| ins.error(m))?;
    if words.is_empty() {
        return Err(ins.error("ARG requires a name"));
    }
    let mut out = Vec::new();
    for w in words {
        let (name, default) = match w.split_once('=') {
            Some((n, d)) => (n.to_string(), Some(d.to_string())),
            None => (w.clone(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ins.error(format!("invalid ARG name {name:?}")));
        }
        out.push((name, default));
    }
    Ok(out)
}

/// COPY/ADD arguments: sources and destination, before substitution. JSON form elements are
/// returned already unquoted (substitution still applies to them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyArgs {
    /// Source paths or patterns.
    pub sources: Vec<String>,
    /// The destination.
    pub dest: String,
    /// Whether the words came from the JSON form (no quote processing left to do).
    pub json: bool,
    /// Sources that are heredocs (`COPY <<EOF /etc/x`): files named after the delimiter,
    /// holding the body.
    pub inline: Vec<Heredoc>,
}

/// Splits COPY/ADD arguments into sources and destination.
pub fn parse_copy(ins: &Instruction, escape: char) -> Result<CopyArgs, ParseError> {
    let (words, json) = match CommandForm::parse(&ins.args) {
        CommandForm::Exec(v) => (v, true),
        CommandForm::Shell(s) => (raw_words(&s, escape).map_err(|m| ins.error(m))?, false),
    };
    if words.len() < 2 {
        return Err(ins.error(format!(
            "{} requires at least one source and a destination",
            ins.keyword
        )));
    }
    let mut sources = words;
    let dest = sources.pop().unwrap_or_default();
    if !json && heredoc::parse_word(&dest).is_some() {
        return Err(ins.error(format!(
            "{} requires a destination that is not a heredoc",
            ins.keyword
        )));
    }
    let mut inline = Vec::new();
    if !json && !ins.heredocs.is_empty() {
        sources.retain(|w| match heredoc::parse_word(w) {
            Some(h) => {
                if let Some(doc) = ins.heredocs.iter().find(|d| d.name == h.name) {
                    inline.push(doc.clone());
                }
                false
            }
            None => true,
        });
    }
    Ok(CopyArgs {
        sources,
        dest,
        json,
        inline,
    })
}

fn check(ins: &Instruction, lexer: &Lexer<'_>) -> Result<(), ParseError> {
    let args = ins.args.trim();
    let needs_args = |what: &str| -> Result<(), ParseError> {
        if args.is_empty() {
            Err(ins.error(format!("{} requires {what}", ins.keyword)))
        } else {
            Ok(())
        }
    };
    match ins.keyword.as_str() {
        "FROM" => {
            parse_from(ins)?;
        }
        "ARG" => {
            for (_, d) in parse_arg(ins, lexer.escape())? {
                if let Some(d) = d {
                    lexer.word(&d).map_err(|m| ins.error(m))?;
                }
            }
        }
        "COPY" | "ADD" => {
            parse_copy(ins, lexer.escape())?;
            if let Some(m) = ins.flag("chmod") {
                if !m.contains('$') && u32::from_str_radix(m, 8).map_or(true, |v| v > 0o7777) {
                    return Err(ins.error(format!("invalid --chmod={m}: use an octal mode")));
                }
            }
        }
        "RUN" => {
            needs_args("a command")?;
            if !ins.heredocs.is_empty() && matches!(CommandForm::parse(args), CommandForm::Exec(_))
            {
                return Err(ins.error("heredocs need the shell form of RUN"));
            }
            not_string_array(ins, args)?;
            if let CommandForm::Exec(v) = CommandForm::parse(args) {
                if v.is_empty() {
                    return Err(ins.error("RUN requires a command"));
                }
            }
        }
        "CMD" | "ENTRYPOINT" => {
            needs_args("a command (use [] for none)")?;
            not_string_array(ins, args)?;
        }
        "SHELL" => match CommandForm::parse(args) {
            CommandForm::Exec(v) if !v.is_empty() => {}
            _ => {
                return Err(
                    ins.error("SHELL requires the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]")
                )
            }
        },
        "ENV" | "LABEL" => {
            crate::image::change::parse_key_values_with(&ins.keyword, args, lexer)
                .map_err(|e| ins.error(e.to_string()))?;
        }
        "EXPOSE" | "VOLUME" => {
            needs_args("at least one argument")?;
            lexer.words(args).map_err(|m| ins.error(m))?;
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            needs_args("an argument")?;
            lexer.word(args).map_err(|m| ins.error(m))?;
        }
        "HEALTHCHECK" => {
            let full = flags_text(ins);
            crate::image::change::parse_healthcheck(&full, &[])
                .map_err(|m| ins.error(format!("HEALTHCHECK: {m}")))?;
        }
        "ONBUILD" => {
            needs_args("an instruction")?;
            let (inner, _) = split_instruction(args);
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(ins.error(format!("{inner} isn't allowed as an ONBUILD trigger")));
            }
            let nested = instruction(ins.line, args)?;
            check(&nested, lexer)?;
        }
        _ => {}
    }
    Ok(())
}

/// BuildKit's rule for the JSON form: text that parses as a JSON array is the exec form, and
/// then every element must be a string (`CMD [1, 2]`, `CMD ["a", ["b"]]` are errors, not
/// shell form). Text that is not JSON at all stays shell form.
fn not_string_array(ins: &Instruction, args: &str) -> Result<(), ParseError> {
    let t = args.trim();
    if !t.starts_with('[') {
        return Ok(());
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(t) {
        Ok(v) if v.iter().any(|e| !e.is_string()) => {
            Err(ins.error("when using JSON array syntax, arrays must be comprised of strings only"))
        }
        _ => Ok(()),
    }
}

/// The instruction's flags and arguments as one string again (`--interval=5s CMD true`).
pub fn flags_text(ins: &Instruction) -> String {
    let mut s = String::new();
    for f in &ins.flags {
        s.push_str("--");
        s.push_str(&f.name);
        if let Some(v) = &f.value {
            s.push('=');
            s.push_str(v);
        }
        s.push(' ');
    }
    s.push_str(&ins.args);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(df: &Dockerfile) -> Vec<(usize, String, String)> {
        df.instructions
            .iter()
            .map(|i| (i.line, i.keyword.clone(), i.args.clone()))
            .collect()
    }

    #[test]
    fn parses_the_web_ping_dockerfile() {
        let df = parse(
            "FROM diamol/node\n\nENV TARGET=\"blog.sixeyed.com\"\nENV METHOD=\"HEAD\"\nENV INTERVAL=\"3000\"\n\nWORKDIR /web-ping\nCOPY app.js .\n\nCMD [\"node\", \"/web-ping/app.js\"]\n",
        )
        .unwrap();
        assert_eq!(
            kw(&df),
            [
                (1, "FROM".into(), "diamol/node".into()),
                (3, "ENV".into(), "TARGET=\"blog.sixeyed.com\"".into()),
                (4, "ENV".into(), "METHOD=\"HEAD\"".into()),
                (5, "ENV".into(), "INTERVAL=\"3000\"".into()),
                (7, "WORKDIR".into(), "/web-ping".into()),
                (8, "COPY".into(), "app.js .".into()),
                (10, "CMD".into(), "[\"node\", \"/web-ping/app.js\"]".into()),
            ]
        );
        assert_eq!(df.escape, '\\');
    }

    #[test]
    fn continuations_comments_directives_and_case() {
        let df = parse(
            "# syntax=docker/dockerfile:1\n# escape=`\n\n# a comment\nfrom busybox as Build\nenv A=1 `\n    # comment inside\n    B=2\nrun echo a \\\ncopy --chown=1:2 --from=build [\"/a b\", \"/c\"]\n",
        )
        .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        let k = kw(&df);
        assert_eq!(k[0], (5, "FROM".into(), "busybox as Build".into()));
        assert_eq!(k[1], (6, "ENV".into(), "A=1     B=2".into()));
        // With ` as the escape character a trailing backslash is just text.
        assert_eq!(k[2], (9, "RUN".into(), "echo a \\".into()));
        assert_eq!(k[3].0, 10);
        assert_eq!(df.instructions[3].flag("chown"), Some("1:2"));
        assert_eq!(df.instructions[3].flag("from"), Some("build"));
        assert_eq!(
            parse_from(&df.instructions[0]).unwrap().alias.as_deref(),
            Some("build")
        );
        let c = parse_copy(&df.instructions[3], '`').unwrap();
        assert_eq!(c.sources, ["/a b"]);
        assert_eq!(c.dest, "/c");
    }

    #[test]
    fn directives_only_count_at_the_top() {
        let df = parse("FROM x\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].args, "a  b");
    }

    #[test]
    fn arg_before_from_and_copy_forms() {
        let df =
            parse("ARG V=1.0\nARG B\nFROM busybox:${V}\nARG X=\"a b\" Y\nCOPY a b c/\n").unwrap();
        assert_eq!(
            parse_arg(&df.instructions[0], '\\').unwrap(),
            [("V".to_string(), Some("1.0".to_string()))]
        );
        assert_eq!(
            parse_arg(&df.instructions[3], '\\').unwrap(),
            [
                ("X".to_string(), Some("\"a b\"".to_string())),
                ("Y".to_string(), None)
            ]
        );
        let c = parse_copy(&df.instructions[4], '\\').unwrap();
        assert_eq!((c.sources.len(), c.dest.as_str()), (2, "c/"));
    }

    #[test]
    fn an_escaped_escape_does_not_continue_the_line() {
        let df = parse("FROM x\nRUN echo one\\\\\nRUN echo two\nRUN a \\  \n b\n").unwrap();
        assert_eq!(df.instructions[1].args, "echo one\\\\");
        assert_eq!(df.instructions[2].args, "echo two");
        assert_eq!(df.instructions[3].args, "a  b");
        let df = parse("# escape=`\nFROM x\nRUN echo one``\nRUN echo two\n").unwrap();
        assert_eq!(df.instructions.len(), 3);
    }

    #[test]
    fn double_dash_ends_the_flags() {
        let df = parse("FROM x\nCOPY -- foo /tmp/\nCOPY --chown=1 -- --odd /tmp/\n").unwrap();
        let c = parse_copy(&df.instructions[1], '\\').unwrap();
        assert_eq!(
            (c.sources, c.dest),
            (vec!["foo".to_string()], "/tmp/".to_string())
        );
        assert_eq!(df.instructions[2].flag("chown"), Some("1"));
        let c = parse_copy(&df.instructions[2], '\\').unwrap();
        assert_eq!(c.sources, ["--odd"]);
    }

    #[test]
    fn json_arrays_of_non_strings_are_errors() {
        for text in [
            "CMD [ \"echo\", [ \"nested json\" ] ]",
            "CMD [1, 2]",
            "ENTRYPOINT [\"a\", {\"b\": 1}]",
            "RUN [\"a\", null]",
        ] {
            let e = parse(&format!("FROM x\n{text}\n")).unwrap_err();
            assert!(
                e.to_string()
                    .contains("arrays must be comprised of strings"),
                "{e}"
            );
        }
        // Not JSON at all: still shell form.
        parse("FROM x\nCMD [ not json\nRUN [ -f /x ] || true\n").unwrap();
    }

    #[test]
    fn errors_name_the_line_and_text() {
        let cases: &[(&str, usize, &str)] = &[
            ("FROM busybox\nFORM x\n", 2, "unknown instruction: FORM"),
            ("FROM busybox\n\nRUN\n", 3, "RUN requires a command"),
            ("ENV A=1\nFROM x\n", 1, "before the first FROM"),
            ("FROM x\nCOPY onlyone\n", 2, "at least one source"),
            ("FROM x\nCOPY --bogus=1 a b\n", 2, "unknown flag --bogus"),
            ("FROM x\nSHELL /bin/bash -c\n", 2, "JSON form"),
            ("FROM x\nENV A=\"open\n", 2, "unterminated double quote"),
            ("FROM a b c d\n", 1, "FROM requires"),
            (
                "FROM x\nHEALTHCHECK --interval=5 CMD true\n",
                2,
                "invalid duration",
            ),
            ("FROM x\nONBUILD FROM y\n", 2, "isn't allowed"),
            ("FROM x\nCOPY --chmod=999 a b\n", 2, "--chmod"),
            ("# just a comment\n", 1, "no FROM"),
            ("FROM x\nARG 1-a\n", 2, "invalid ARG name"),
        ];
        for (text, line, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.to_string().contains(msg), "{text:?}: {e}");
            assert!(e.to_string().contains(&format!("line {line}")), "{e}");
        }
        let e = parse("FROM busybox\nFORM x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile line 2: unknown instruction: FORM"
        );
        // A line that is no instruction (a password file read as a Dockerfile) is not echoed.
        let e = parse("root:$6$salt$hash:20228:0:99999:7:::\nFROM x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile line 1: unknown instruction (the line is not shown: it does not start with an instruction word)"
        );
    }
}
