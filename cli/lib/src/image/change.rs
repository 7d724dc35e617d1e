//! Config-only Dockerfile instructions, as `import -c`, `commit -c` and the builder apply them:
//! CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD.
//! The word-level helpers (exec/shell form, `K=V` lists) are shared with the Dockerfile parser.

use std::collections::BTreeMap;

use serde_json::Value;

use super::config::{set_env, RunConfig};

/// Why an instruction could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The instruction is not one that only changes the config.
    #[error("{0} is not a supported change instruction (use CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME or WORKDIR)")]
    Unsupported(String),
    /// The arguments are malformed.
    #[error("{instruction}: {message}")]
    Malformed {
        /// The instruction keyword.
        instruction: String,
        /// What is wrong.
        message: String,
    },
}

/// The command form of CMD, ENTRYPOINT, RUN, SHELL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandForm {
    /// `["exe", "arg"]`.
    Exec(Vec<String>),
    /// `exe arg` (run through the shell).
    Shell(String),
}

impl CommandForm {
    /// Parses the JSON exec form when the text is a JSON array of strings, else shell form
    /// (Docker's rule: anything that does not parse as a JSON string array is shell form).
    pub fn parse(args: &str) -> Self {
        let t = args.trim();
        if t.starts_with('[') {
            if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
                return CommandForm::Exec(v);
            }
        }
        CommandForm::Shell(t.to_string())
    }

    /// The argv, wrapping shell form in `shell` (default `/bin/sh -c`).
    pub fn to_argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut v = if shell.is_empty() {
                    vec!["/bin/sh".to_string(), "-c".to_string()]
                } else {
                    shell.to_vec()
                };
                v.push(s.clone());
                v
            }
        }
    }
}

/// Splits `K=V K2="v 2" K3=v\ 3` into pairs, handling double and single quotes and backslash
/// escapes as Docker does for ENV and LABEL, with a lexer that may substitute variables (the
/// Dockerfile's ENV, LABEL and ARG). Keys and values are processed separately, so a value's
/// `=` stays in it. A legacy `K value with spaces` (first word has no `=`) gives one pair.
pub fn parse_key_values_with(
    instruction: &str,
    args: &str,
    lexer: &Lexer<'_>,
) -> Result<Vec<(String, String)>, ChangeError> {
    let malformed = |m: &str| ChangeError::Malformed {
        instruction: instruction.to_string(),
        message: m.to_string(),
    };
    let args = args.trim();
    if args.is_empty() {
        return Err(malformed("requires at least one argument"));
    }
    let words = raw_words(args, lexer.escape()).map_err(|m| malformed(&m))?;
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        // Legacy form: NAME value...
        let (name, rest) = match args.split_once(char::is_whitespace) {
            Some((n, r)) => (n, r.trim_start()),
            None => return Err(malformed("requires a value (NAME=VALUE or NAME VALUE)")),
        };
        let value = lexer.word(rest).map_err(|m| malformed(&m))?;
        return Ok(vec![(name.to_string(), value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| malformed(&format!("{w:?} is not NAME=VALUE")))?;
        let k = lexer.word(k).map_err(|m| malformed(&m))?;
        if k.is_empty() {
            return Err(malformed("empty name"));
        }
        out.push((k, lexer.word(v).map_err(|m| malformed(&m))?));
    }
    Ok(out)
}

/// Splits on unquoted whitespace keeping quotes and escapes in the words (they are removed
/// when each word is processed by a [`Lexer`]).
pub fn raw_words(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!(
            "unterminated {} quote",
            if q == '"' { "double" } else { "single" }
        ));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// Looks up a variable for substitution: `Some(value)` when it is set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Docker's word processing for Dockerfile arguments: quotes, escapes (with the Dockerfile's
/// escape character) and, when it has variables, `$VAR`, `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?message}` and `${VAR?message}`.
/// Single quotes keep everything literal; double quotes allow substitution.
#[derive(Clone, Copy)]
pub struct Lexer<'a> {
    escape: char,
    vars: Option<Lookup<'a>>,
}

impl std::fmt::Debug for Lexer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lexer")
            .field("escape", &self.escape)
            .field("substitutes", &self.vars.is_some())
            .finish()
    }
}

impl<'a> Lexer<'a> {
    /// A lexer that removes quotes and escapes but leaves `$` alone.
    pub fn literal(escape: char) -> Self {
        Lexer { escape, vars: None }
    }

    /// A lexer that also substitutes variables from `vars`.
    pub fn with_vars(escape: char, vars: Lookup<'a>) -> Self {
        Lexer {
            escape,
            vars: Some(vars),
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Processes `s` into words split on unquoted whitespace (also inside unquoted
    /// substitutions, as Docker does).
    pub fn words(&self, s: &str) -> Result<Vec<String>, String> {
        let chars: Vec<char> = s.chars().collect();
        self.process(&chars, true)
    }

    /// Processes `s` as one word: whitespace is kept.
    pub fn word(&self, s: &str) -> Result<String, String> {
        let chars: Vec<char> = s.chars().collect();
        Ok(self.process(&chars, false)?.concat())
    }

    fn process(&self, c: &[char], split: bool) -> Result<Vec<String>, String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut i = 0;
        while i < c.len() {
            let ch = c[i];
            i += 1;
            if ch.is_whitespace() && split {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            } else if ch == '\'' {
                in_word = true;
                loop {
                    match c.get(i) {
                        None => return Err("unterminated single quote".into()),
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            cur.push(x);
                            i += 1;
                        }
                    }
                }
            } else if ch == '"' {
                in_word = true;
                loop {
                    let Some(&x) = c.get(i) else {
                        return Err("unterminated double quote".into());
                    };
                    i += 1;
                    if x == '"' {
                        break;
                    } else if x == self.escape {
                        match c.get(i) {
                            None => return Err("unterminated double quote".into()),
                            Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                cur.push(n);
                                i += 1;
                            }
                            Some(_) => cur.push(x),
                        }
                    } else if x == '$' && self.vars.is_some() {
                        let (value, next) = self.variable(c, i)?;
                        cur.push_str(&value);
                        i = next;
                    } else {
                        cur.push(x);
                    }
                }
            } else if ch == self.escape {
                in_word = true;
                if let Some(&n) = c.get(i) {
                    cur.push(n);
                    i += 1;
                }
            } else if ch == '$' && self.vars.is_some() {
                let (value, next) = self.variable(c, i)?;
                i = next;
                if split {
                    // Unquoted substitutions are split on whitespace after expansion.
                    let mut parts = value.split(char::is_whitespace);
                    if let Some(first) = parts.next() {
                        if !first.is_empty() {
                            in_word = true;
                        }
                        cur.push_str(first);
                    }
                    for p in parts {
                        if in_word {
                            words.push(std::mem::take(&mut cur));
                            in_word = false;
                        }
                        if !p.is_empty() {
                            cur.push_str(p);
                            in_word = true;
                        }
                    }
                } else {
                    cur.push_str(&value);
                    in_word = true;
                }
            } else {
                in_word = true;
                cur.push(ch);
            }
        }
        if in_word || (!split && words.is_empty()) {
            words.push(cur);
        }
        Ok(words)
    }

    /// Expands the variable reference after a `$` at `c[i..]`; returns the value and the
    /// index after the reference. A `$` not followed by a name is a literal `$`.
    fn variable(&self, c: &[char], mut i: usize) -> Result<(String, usize), String> {
        let lookup = |name: &str| self.vars.and_then(|v| v(name));
        let is_name = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
        match c.get(i) {
            Some('{') => {
                i += 1;
                let start = i;
                while c.get(i).is_some_and(|&ch| is_name(ch)) {
                    i += 1;
                }
                let name: String = c[start..i].iter().collect();
                if name.is_empty() {
                    return Err("bad substitution: missing variable name in ${}".into());
                }
                if c.get(i) == Some(&'}') {
                    return Ok((lookup(&name).unwrap_or_default(), i + 1));
                }
                let colon = c.get(i) == Some(&':');
                if colon {
                    i += 1;
                }
                let op = match c.get(i) {
                    Some(&op @ ('-' | '+' | '?')) => op,
                    _ => {
                        return Err(format!(
                            "unsupported modifier in ${{{name}...}}: use :-, -, :+, +, :? or ?"
                        ))
                    }
                };
                i += 1;
                // The word runs to the matching brace (nested ${...} and quotes allowed).
                let word_start = i;
                let mut depth = 0usize;
                loop {
                    match c.get(i) {
                        None => return Err(format!("missing '}}' in ${{{name}...")),
                        Some(&ch) if ch == self.escape => i += 2,
                        Some('$') if c.get(i + 1) == Some(&'{') => {
                            depth += 1;
                            i += 2;
                        }
                        Some('}') if depth == 0 => break,
                        Some('}') => {
                            depth -= 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
                let raw: String = c[word_start..i.min(c.len())].iter().collect();
                let next = i + 1;
                let value = lookup(&name);
                let set = value.is_some();
                let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                let present = if colon { non_empty } else { set };
                let out = match op {
                    '-' if present => value.unwrap_or_default(),
                    '-' => self.word(&raw)?,
                    '+' if present => self.word(&raw)?,
                    '+' => String::new(),
                    _ if present => value.unwrap_or_default(),
                    _ => {
                        let msg = self.word(&raw)?;
                        return Err(if msg.is_empty() {
                            format!("{name}: is not allowed to be unset")
                        } else {
                            format!("{name}: {msg}")
                        });
                    }
                };
                Ok((out, next))
            }
            Some(&ch) if is_name(ch) => {
                let start = i;
                while c.get(i).is_some_and(|&ch| is_name(ch)) {
                    i += 1;
                }
                let name: String = c[start..i].iter().collect();
                Ok((lookup(&name).unwrap_or_default(), i))
            }
            _ => Ok(("$".into(), i)),
        }
    }
}

/// Normalizes an EXPOSE port: `80` → `80/tcp`, `53/UDP` → `53/udp`.
pub fn normalize_port(p: &str) -> Result<String, ChangeError> {
    let (port, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    let valid_num = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match port.split_once('-') {
        Some((a, b)) => valid_num(a) && valid_num(b),
        None => valid_num(port),
    };
    if !ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(ChangeError::Malformed {
            instruction: "EXPOSE".into(),
            message: format!("invalid port {p:?}"),
        });
    }
    Ok(format!("{port}/{proto}"))
}

/// Resolves a WORKDIR against the previous one (relative paths are relative to it).
pub fn join_workdir(previous: Option<&str>, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{dir}", previous.unwrap_or("/").trim_end_matches('/'))
    };
    // Clean the path: drop empty and "." components, resolve "..".
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Tracks what earlier instructions of the same sequence set (Docker resets CMD when
/// ENTRYPOINT is set, unless CMD was set in the same sequence).
#[derive(Clone, Debug, Default)]
pub struct ChangeState {
    /// CMD was set by this sequence.
    pub cmd_set: bool,
}

/// Splits an instruction line into its upper-cased keyword and the rest.
pub fn split_instruction(line: &str) -> (String, &str) {
    let line = line.trim();
    match line.split_once(char::is_whitespace) {
        Some((k, rest)) => (k.to_ascii_uppercase(), rest.trim()),
        None => (line.to_ascii_uppercase(), ""),
    }
}

/// Applies one config-only instruction (`CMD ["sh"]`, `ENV A=1`, …) to `config`.
/// `shell` is the shell for shell-form CMD/ENTRYPOINT (empty for `/bin/sh -c`).
pub fn apply_change(
    config: &mut RunConfig,
    state: &mut ChangeState,
    line: &str,
    shell: &[String],
) -> Result<(), ChangeError> {
    let (keyword, args) = split_instruction(line);
    apply_change_with(config, state, &keyword, args, shell, &Lexer::literal('\\'))?;
    Ok(())
}

/// Formats a command as `docker history` shows it: `["node" "/web-ping/app.js"]`.
pub fn format_argv(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| serde_json::to_string(a).unwrap_or_else(|_| format!("{a:?}")))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Applies one config-only instruction given as upper-case `keyword` and its `args`, with
/// `lexer` doing Docker's quote processing and variable substitution (ENV, LABEL, EXPOSE,
/// VOLUME, USER, WORKDIR, STOPSIGNAL; CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD are
/// kept literally). Returns the instruction as `docker history` shows it (`ENV A=1`).
pub fn apply_change_with(
    config: &mut RunConfig,
    state: &mut ChangeState,
    keyword: &str,
    args: &str,
    shell: &[String],
    lexer: &Lexer<'_>,
) -> Result<String, ChangeError> {
    let malformed = |m: &str| ChangeError::Malformed {
        instruction: keyword.to_string(),
        message: m.into(),
    };
    let word = |a: &str| lexer.word(a.trim()).map_err(|m| malformed(&m));
    let shown = match keyword {
        "CMD" => {
            let argv = CommandForm::parse(args).to_argv(shell);
            let shown = format!("CMD {}", format_argv(&argv));
            config.cmd = Some(argv);
            state.cmd_set = true;
            shown
        }
        "ENTRYPOINT" => {
            let form = CommandForm::parse(args);
            config.entrypoint = match &form {
                CommandForm::Shell(s) if s.is_empty() => None,
                _ => Some(form.to_argv(shell)),
            };
            if !state.cmd_set {
                config.cmd = None;
            }
            format!(
                "ENTRYPOINT {}",
                format_argv(config.entrypoint.as_deref().unwrap_or_default())
            )
        }
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            let pairs = parse_key_values_with(keyword, args, lexer)?;
            let mut shown = Vec::new();
            for (k, v) in pairs {
                set_env(env, &k, &v);
                shown.push(format!("{k}={v}"));
            }
            format!("ENV {}", shown.join(" "))
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            let mut shown = Vec::new();
            for (k, v) in parse_key_values_with(keyword, args, lexer)? {
                shown.push(format!("{k}={v}"));
                labels.insert(k, v);
            }
            format!("LABEL {}", shown.join(" "))
        }
        "EXPOSE" => {
            let ports = lexer.words(args).map_err(|m| malformed(&m))?;
            if ports.is_empty() {
                return Err(malformed("requires at least one port"));
            }
            let map = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            let mut shown = Vec::new();
            for p in ports {
                let p = normalize_port(&p)?;
                shown.push(p.clone());
                map.insert(p, Value::Object(Default::default()));
            }
            format!("EXPOSE {}", shown.join(" "))
        }
        "VOLUME" => {
            let t = args.trim();
            let vols = match serde_json::from_str::<Vec<String>>(t) {
                Ok(v) if t.starts_with('[') => {
                    v.iter().map(|x| word(x)).collect::<Result<Vec<_>, _>>()?
                }
                _ => lexer.words(t).map_err(|m| malformed(&m))?,
            };
            if vols.is_empty() || vols.iter().any(|v| v.is_empty()) {
                return Err(malformed("requires at least one path"));
            }
            let map = config.volumes.get_or_insert_with(BTreeMap::new);
            for v in &vols {
                map.insert(v.clone(), Value::Object(Default::default()));
            }
            format!("VOLUME [{}]", vols.join(" "))
        }
        "USER" => {
            let user = word(args)?;
            if user.is_empty() {
                return Err(malformed("requires a user"));
            }
            config.user = Some(user.clone());
            format!("USER {user}")
        }
        "WORKDIR" => {
            let dir = word(args)?;
            if dir.is_empty() {
                return Err(malformed("requires a directory"));
            }
            let dir = join_workdir(config.working_dir.as_deref(), &dir);
            config.working_dir = Some(dir.clone());
            format!("WORKDIR {dir}")
        }
        "STOPSIGNAL" => {
            let sig = word(args)?;
            if sig.is_empty() || sig.contains(char::is_whitespace) {
                return Err(malformed("requires one signal name or number"));
            }
            config.stop_signal = Some(sig.clone());
            format!("STOPSIGNAL {sig}")
        }
        "SHELL" => {
            let CommandForm::Exec(argv) = CommandForm::parse(args) else {
                return Err(malformed(
                    "requires the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
                ));
            };
            if argv.is_empty() {
                return Err(malformed("requires at least one argument"));
            }
            let shown = format!("SHELL {}", format_argv(&argv));
            config.shell = Some(argv);
            shown
        }
        "HEALTHCHECK" => {
            config.healthcheck = Some(parse_healthcheck(args, shell).map_err(|m| malformed(&m))?);
            format!("HEALTHCHECK {}", args.trim())
        }
        "ONBUILD" => {
            let (inner, _) = split_instruction(args);
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER" | "") {
                return Err(malformed(&format!(
                    "{inner} isn't allowed as an ONBUILD trigger"
                )));
            }
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(args.trim().to_string());
            format!("ONBUILD {}", args.trim())
        }
        _ => return Err(ChangeError::Unsupported(keyword.to_string())),
    };
    Ok(shown)
}

/// Parses `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
/// [--retries=N] CMD command` or `HEALTHCHECK NONE` into Docker's `Healthcheck` object.
pub fn parse_healthcheck(args: &str, shell: &[String]) -> Result<Value, String> {
    let mut rest = args.trim();
    let mut obj = serde_json::Map::new();
    let mut durations: Vec<(&str, i64)> = Vec::new();
    let mut retries = None;
    while let Some(flag) = rest.strip_prefix("--") {
        let (word, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        rest = after.trim_start();
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| format!("flag --{word} needs a value"))?;
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("--retries={value} is not a number"))?;
                retries = Some(n);
                continue;
            }
            other => return Err(format!("unknown flag --{other}")),
        };
        durations.push((key, parse_go_duration(value)?));
    }
    let (kind, cmd) = split_instruction(rest);
    match kind.as_str() {
        "NONE" if cmd.is_empty() => {
            obj.insert("Test".into(), Value::from(vec!["NONE"]));
            return Ok(Value::Object(obj));
        }
        "NONE" => return Err("NONE takes no arguments".into()),
        "CMD" => {}
        _ => return Err("expected CMD or NONE".into()),
    }
    let test: Vec<String> = match CommandForm::parse(cmd) {
        CommandForm::Exec(v) if !v.is_empty() => {
            std::iter::once("CMD".to_string()).chain(v).collect()
        }
        CommandForm::Shell(s) if !s.is_empty() => {
            let _ = shell;
            vec!["CMD-SHELL".to_string(), s]
        }
        _ => return Err("CMD requires a command".into()),
    };
    obj.insert("Test".into(), Value::from(test));
    for (k, v) in durations {
        if v != 0 {
            obj.insert(k.into(), Value::from(v));
        }
    }
    if let Some(r) = retries {
        obj.insert("Retries".into(), Value::from(r));
    }
    Ok(Value::Object(obj))
}

/// Parses a Go duration (`30s`, `1m30s`, `500ms`, `1h`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_all(lines: &[&str]) -> Result<RunConfig, ChangeError> {
        let mut c = RunConfig::default();
        let mut st = ChangeState::default();
        for l in lines {
            apply_change(&mut c, &mut st, l, &[])?;
        }
        Ok(c)
    }

    #[test]
    fn applies_docker_change_instructions() {
        let c = apply_all(&[
            "ENV TARGET=blog.sixeyed.com METHOD=\"HEAD\" X=a\\ b",
            "env LEGACY some value",
            "CMD [\"node\", \"/web-ping/app.js\"]",
            "EXPOSE 80 53/UDP",
            "LABEL a=b \"c d\"=e",
            "WORKDIR /web-ping",
            "WORKDIR sub/../x",
            "USER 1000:1000",
            "VOLUME [\"/data\"]",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        assert_eq!(
            c.env.unwrap(),
            [
                "TARGET=blog.sixeyed.com",
                "METHOD=HEAD",
                "X=a b",
                "LEGACY=some value"
            ]
        );
        assert_eq!(c.cmd.unwrap(), ["node", "/web-ping/app.js"]);
        assert_eq!(
            c.exposed_ports.unwrap().keys().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
        assert_eq!(c.labels.unwrap().get("c d").map(String::as_str), Some("e"));
        assert_eq!(c.working_dir.as_deref(), Some("/web-ping/x"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert!(c.volumes.unwrap().contains_key("/data"));
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_and_shell_form_wraps() {
        let mut c = RunConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let mut st = ChangeState::default();
        apply_change(&mut c, &mut st, "ENTRYPOINT echo hi", &[]).unwrap();
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.cmd, None);
    }

    #[test]
    fn rejects_unsupported_and_malformed() {
        assert!(matches!(
            apply_all(&["RUN true"]),
            Err(ChangeError::Unsupported(_))
        ));
        assert!(apply_all(&["EXPOSE 99999"]).is_err());
        assert!(apply_all(&["ENV"]).is_err());
        assert!(apply_all(&["ENV A=\"unterminated"]).is_err());
        assert!(apply_all(&["ONBUILD FROM x"]).is_err());
    }

    #[test]
    fn substitution_table() {
        let vars = |n: &str| match n {
            "A" => Some("1".to_string()),
            "E" => Some(String::new()),
            "SP" => Some("x y".to_string()),
            _ => None,
        };
        let lex = Lexer::with_vars('\\', &vars);
        let words = [
            ("$A", "1"),
            ("${A}b", "1b"),
            ("${U:-d}", "d"),
            ("${E:-d}", "d"),
            ("${E-d}", ""),
            ("${A:+alt}", "alt"),
            ("${U:+alt}", ""),
            ("${E+alt}", "alt"),
            ("${U:-${A}x}", "1x"),
            ("'$A'", "$A"),
            ("\"$A\"", "1"),
            ("\\$A", "$A"),
            ("a$", "a$"),
            ("$U", ""),
            ("\"a \\\" b\"", "a \" b"),
        ];
        for (input, want) in words {
            assert_eq!(lex.word(input).unwrap(), want, "{input}");
        }
        assert_eq!(lex.words("$SP \"$SP\" z").unwrap(), ["x", "y", "x y", "z"]);
        assert!(lex
            .word("${U:?must be set}")
            .unwrap_err()
            .contains("must be set"));
        assert!(lex.word("${A").is_err());
        let tick = Lexer::with_vars('`', &vars);
        assert_eq!(tick.word("`$A \\x").unwrap(), "$A \\x");
        let kv = parse_key_values_with("ENV", "K=$A L=\"${SP}\" M='$A'", &lex).unwrap();
        assert_eq!(
            kv,
            [
                ("K".to_string(), "1".to_string()),
                ("L".to_string(), "x y".to_string()),
                ("M".to_string(), "$A".to_string())
            ]
        );
        let legacy = parse_key_values_with("ENV", "K  $A and \"q\"", &lex).unwrap();
        assert_eq!(legacy, [("K".to_string(), "1 and q".to_string())]);
    }
}
