//! Go's `text/template`, as Docker's `--format` uses it, over JSON values.
//!
//! [`Template::parse`] lexes (`lex`) and parses (`parse`) the text into a tree, checking
//! what Go's parser checks (known functions, declared variables, matching `{{end}}`);
//! [`Template::execute`] walks the tree over a [`serde_json::Value`] (`exec`). Supported:
//! text and `{{- -}}` trim markers, comments, fields (`.A.B`, `$x.A`, `(pipe).A`),
//! pipelines, variables (`$x := …`, `$x = …`, `range $k, $v := …`), `if`/`else if`/`else`,
//! `range`/`else` (with `break`/`continue`), `with`/`else with`, string, raw-string,
//! number, character, bool and `nil` literals; Go's functions `and or not len index print
//! printf println eq ne lt le gt ge` and Docker's `json join split title upper lower pad
//! truncate` (`funcs`).
//!
//! Values print as Go prints Docker's typed objects (`value`): a null or absent slice field
//! `[]`, map field `map[]`, string field nothing, other fields `<nil>`; maps with sorted
//! keys, structs as `{v1 v2}`. Docker decodes into structs, so a field of an object that
//! Docker's API does not have is an error, as in `docker inspect` (`missingkey=error`).

mod exec;
mod funcs;
mod lex;
mod parse;
mod value;

use serde_json::Value;

/// Why a template could not be parsed or executed. The message is Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template: `template parsing error: template: :1: unclosed
    /// action`, as Docker words it.
    #[error("template parsing error: template: :{line}: {message}")]
    Parse {
        /// The line (from 1) of the template where the error is.
        line: usize,
        /// Go's message.
        message: String,
    },
    /// Executing it failed: `template: :1:2: executing "" at <.Foo>: map has no entry for
    /// key "Foo"`.
    #[error("{0}")]
    Exec(String),
}

impl TemplateError {
    pub(crate) fn parse(line: usize, message: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            line,
            message: message.into(),
        }
    }
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    src: String,
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses Go template text.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let tokens = lex::lex(src)?;
        let nodes = parse::parse(src, tokens)?;
        Ok(Template {
            src: src.to_string(),
            nodes,
        })
    }

    /// Executes the template with `data` as `.` and `$`.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let dot = value::Val::any(data.clone());
        exec::Exec::new(&self.src, data, true, false).run(&self.nodes, &dot, &mut out)?;
        Ok(out)
    }

    /// Executes the template for a table's header: `data` maps field names to column
    /// names, an unknown field prints `<no value>`, and Docker's functions (`upper`,
    /// `json`, …) return the column name unchanged, as Docker's header row does. As
    /// Docker's, it never fails: an error ends the header where it happened.
    pub fn execute_header(&self, data: &Value) -> String {
        let mut out = String::new();
        let dot = value::Val::any(data.clone());
        // Docker ignores the header's error and prints what was written before it.
        let _ = exec::Exec::new(&self.src, data, false, true).run(&self.nodes, &dot, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
