//! Column output as Docker prints it (Go's `tabwriter` with minwidth 10, padding 3), and
//! Docker's `--format` for list commands ([`Format`]: `table`, `json`, templates of
//! [`crate::template`]).

use serde_json::Value;

use crate::template::Template;
pub use crate::template::TemplateError;

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

/// Go's `text/tabwriter` as Docker configures it (minwidth 10, tabwidth 1, padding 3,
/// padded with spaces): each `\t`-terminated cell is padded to the widest cell of its
/// column block (consecutive lines that have that column) plus 3, and to at least 10; the
/// last cell of a line is not padded.
pub fn tabwrite(text: &str) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let has_cell = |l: &Vec<&str>| column + 1 < l.len();
    let mut this = line0;
    while this < line1 {
        if !has_cell(&lines[this]) {
            this += 1;
            continue;
        }
        write_lines(&lines[line0..this], widths, out);
        line0 = this;
        let mut width = MIN_WIDTH;
        while this < line1 && has_cell(&lines[this]) {
            width = width.max(lines[this][column].chars().count() + PADDING);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(&lines[line0..line1], widths, out);
}

fn write_lines(lines: &[Vec<&str>], widths: &[usize], out: &mut String) {
    for line in lines {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j).filter(|_| j + 1 < line.len()) {
                for _ in cell.chars().count()..*w {
                    out.push(' ');
                }
            }
        }
        out.push('\n');
    }
}

/// A `--format` value as Docker's list commands (`ps`, `images`, `history`, `system df`)
/// read it: `json` (one JSON object per line), `table TEMPLATE` (a header row, then
/// columns aligned by [`tabwrite`]) or a plain template; `\t` and `\n` in it are a tab and
/// a newline.
#[derive(Debug)]
pub struct Format {
    table: bool,
    template: Template,
}

impl Format {
    /// Parses `format`; a bare `table` means `default_table`, the command's own columns
    /// (`table {{.ID}}\t{{.Names}}`).
    pub fn parse(format: &str, default_table: &str) -> Result<Format, TemplateError> {
        let (table, body) = if format == "json" {
            (false, "{{json .}}")
        } else if let Some(rest) = format.strip_prefix("table") {
            let rest = if rest.trim().is_empty() {
                default_table.strip_prefix("table").unwrap_or(default_table)
            } else {
                rest
            };
            (true, rest)
        } else {
            (false, format)
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        Ok(Format {
            table,
            template: Template::parse(&body)?,
        })
    }

    /// Whether this is a `table` format.
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// One line per row; for a table, first a header row (the template over `headers`,
    /// field name to column name, as Docker builds it) and then the columns aligned.
    pub fn render(
        &self,
        rows: &[Value],
        headers: &[(&str, &str)],
    ) -> Result<String, TemplateError> {
        let mut s = String::new();
        if self.table {
            let names: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            s.push_str(&self.template.execute_header(&Value::Object(names)));
            s.push('\n');
        }
        for row in rows {
            s.push_str(&self.template.execute(row)?);
            s.push('\n');
        }
        Ok(if self.table { tabwrite(&s) } else { s })
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
    fn ellipsis_shortens() {
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }

    #[test]
    fn tabwriter_aligns_column_blocks_as_gos() {
        // Docker's `docker ps --format "table {{.ID}}\t{{.Names}}"`.
        assert_eq!(
            tabwrite("CONTAINER ID\tNAMES\n4fa6e0f0c678\tweb\n"),
            "CONTAINER ID   NAMES\n4fa6e0f0c678   web\n"
        );
        // Short cells still take 10 columns; a line without the column ends its block.
        assert_eq!(
            tabwrite("a\tb\tc\nlonger cell\td\nx\n"),
            "a             b         c\nlonger cell   d\nx\n"
        );
        assert_eq!(tabwrite("a\t\n"), "a         \n");
        // The same rows through render() and tabwrite() line up alike.
        let t = render(
            &["IMAGE", "SIZE"],
            &[vec!["busybox:latest".into(), "4MB".into()]],
        );
        assert_eq!(t, tabwrite("IMAGE\tSIZE\nbusybox:latest\t4MB\n"));
    }

    #[test]
    fn formats_read_as_dockers() {
        let rows = [
            serde_json::json!({"ID": "4fa6e0f0c678", "Names": "web", "Image": "nginx"}),
            serde_json::json!({"ID": "0123456789ab", "Names": "a-much-longer-name", "Image": "busybox"}),
        ];
        let headers = [
            ("ID", "CONTAINER ID"),
            ("Names", "NAMES"),
            ("Image", "IMAGE"),
        ];
        let f = Format::parse("table {{.ID}}\\t{{.Names}}", "").unwrap();
        assert!(f.is_table());
        assert_eq!(
            f.render(&rows, &headers).unwrap(),
            "CONTAINER ID   NAMES\n\
             4fa6e0f0c678   web\n\
             0123456789ab   a-much-longer-name\n"
        );
        let f = Format::parse("table", "table {{.Names}}\t{{.Image}}").unwrap();
        assert_eq!(
            f.render(&rows[..1], &headers).unwrap(),
            "NAMES     IMAGE\nweb       nginx\n"
        );
        let f = Format::parse("{{.Names}}\\t{{upper .Image}}", "").unwrap();
        assert_eq!(
            f.render(&rows, &headers).unwrap(),
            "web\tNGINX\na-much-longer-name\tBUSYBOX\n"
        );
        let f = Format::parse("json", "").unwrap();
        assert_eq!(
            f.render(&rows[..1], &headers).unwrap(),
            "{\"ID\":\"4fa6e0f0c678\",\"Names\":\"web\",\"Image\":\"nginx\"}\n"
        );
        let e = Format::parse("table {{.ID", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template parsing error: template: :1: unclosed action"
        );
    }
}
