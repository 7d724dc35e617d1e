//! Column output as Docker prints it (Go's `tabwriter` with minwidth 10, padding 3), and the
//! small Go-template subset (`{{.Field}}`, `{{json .Field}}`) that `--format` accepts.

use serde_json::Value;

/// Lays out rows in columns: every column but the last is padded to its widest cell plus 3
/// spaces, and to at least 10 characters, as Docker's table output is.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let ncol = header.len();
    let mut widths = vec![0usize; ncol];
    for row in std::iter::once(&header.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .chain(rows.iter())
    {
        for (i, cell) in row.iter().enumerate().take(ncol) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == ncol {
                s.push_str(cell);
            } else {
                let w = (widths[i] + 3).max(10);
                s.push_str(cell);
                for _ in cell.chars().count()..w {
                    s.push(' ');
                }
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last replaced by `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Why a `--format` template could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template is not `{{.Path}}` / `{{json .Path}}` text.
    #[error("template parsing error: {0}")]
    Parse(String),
}

/// Applies a Go-template subset to a JSON value: literal text, `{{.A.B}}` (Go's `%v`
/// formatting) and `{{json .A.B}}`. `{{.}}` is the whole value.
pub fn apply_template(template: &str, value: &Value) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Parse("unclosed {{".into()))?;
        let action = after[..end].trim();
        rest = &after[end + 2..];
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        if !path.starts_with('.') {
            return Err(TemplateError::Parse(format!(
                "unsupported action {action:?}"
            )));
        }
        let mut v = value;
        let null = Value::Null;
        for field in path[1..].split('.').filter(|f| !f.is_empty()) {
            v = match v {
                Value::Object(m) => m.get(field).unwrap_or(&null),
                _ => &null,
            };
        }
        if json {
            out.push_str(&serde_json::to_string(v).unwrap_or_default());
        } else {
            out.push_str(&go_format(v));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Go's `%v` for decoded JSON: strings bare, arrays `[a b]`, maps `map[k:v]`, null `<nil>`.
fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_docker() {
        let out = render(
            &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            &[vec![
                "web-ping".into(),
                "latest".into(),
                "a5b350fa1a90".into(),
                "9 minutes ago".into(),
                "6.89MB".into(),
            ]],
        );
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n\
             web-ping     latest    a5b350fa1a90   9 minutes ago   6.89MB\n"
        );
    }

    #[test]
    fn templates_and_ellipsis() {
        let v = serde_json::json!({"Config": {"Env": ["A=1", "B=2"], "Cmd": null}, "Id": "x"});
        assert_eq!(apply_template("{{.Config.Env}}", &v).unwrap(), "[A=1 B=2]");
        assert_eq!(apply_template("id={{ .Id }}", &v).unwrap(), "id=x");
        assert_eq!(
            apply_template("{{json .Config.Env}}", &v).unwrap(),
            r#"["A=1","B=2"]"#
        );
        assert!(apply_template("{{", &v).is_err());
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}
