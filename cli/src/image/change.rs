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
    #[error("{0} is not a supported change instruction (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)")]
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
/// escapes as Docker does for ENV and LABEL. A legacy `K value with spaces` (first word has no
/// `=`) gives one pair.
pub fn parse_key_values(
    instruction: &str,
    args: &str,
) -> Result<Vec<(String, String)>, ChangeError> {
    let malformed = |m: &str| ChangeError::Malformed {
        instruction: instruction.to_string(),
        message: m.to_string(),
    };
    let args = args.trim();
    if args.is_empty() {
        return Err(malformed("requires at least one argument"));
    }
    let words = split_words(args).map_err(|m| malformed(&m))?;
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        // Legacy form: NAME value...
        let (name, rest) = match args.split_once(char::is_whitespace) {
            Some((n, r)) => (n, r.trim_start()),
            None => return Err(malformed("requires a value (NAME=VALUE or NAME VALUE)")),
        };
        return Ok(vec![(name.to_string(), rest.to_string())]);
    }
    let mut out = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| malformed(&format!("{w:?} is not NAME=VALUE")))?;
        if k.is_empty() {
            return Err(malformed("empty name"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated double quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => cur.push(ch),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated single quote".into()),
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses the list form of EXPOSE/VOLUME arguments: a JSON array or whitespace-separated words.
pub fn parse_list(args: &str) -> Vec<String> {
    let t = args.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    split_words(t).unwrap_or_else(|_| t.split_whitespace().map(String::from).collect())
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
    let malformed = |m: &str| ChangeError::Malformed {
        instruction: keyword.clone(),
        message: m.into(),
    };
    match keyword.as_str() {
        "CMD" => {
            config.cmd = Some(CommandForm::parse(args).to_argv(shell));
            state.cmd_set = true;
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
        }
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in parse_key_values(&keyword, args)? {
                set_env(env, &k, &v);
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in parse_key_values(&keyword, args)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = parse_list(args);
            if ports.is_empty() {
                return Err(malformed("requires at least one port"));
            }
            let map = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                map.insert(normalize_port(&p)?, Value::Object(Default::default()));
            }
        }
        "VOLUME" => {
            let vols = parse_list(args);
            if vols.is_empty() {
                return Err(malformed("requires at least one path"));
            }
            let map = config.volumes.get_or_insert_with(BTreeMap::new);
            for v in vols {
                map.insert(v, Value::Object(Default::default()));
            }
        }
        "USER" => {
            if args.is_empty() {
                return Err(malformed("requires a user"));
            }
            config.user = Some(args.to_string());
        }
        "WORKDIR" => {
            if args.is_empty() {
                return Err(malformed("requires a directory"));
            }
            config.working_dir = Some(join_workdir(config.working_dir.as_deref(), args));
        }
        "STOPSIGNAL" => {
            if args.is_empty() || args.contains(char::is_whitespace) {
                return Err(malformed("requires one signal name or number"));
            }
            config.stop_signal = Some(args.to_string());
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
                .push(args.to_string());
        }
        _ => return Err(ChangeError::Unsupported(keyword)),
    }
    Ok(())
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
}
