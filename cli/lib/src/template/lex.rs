//! The lexer: template text to tokens, as Go's `text/template/parse` lexes it (`{{`/`}}`
//! delimiters, `{{- ` and ` -}}` trim markers, `{{/* comments */}}`).

use super::TemplateError;

/// One token and where it starts in the template (a byte offset).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
    /// Whether spaces separate it from the token before it (`.A .B` against `(x).B`).
    pub spaced: bool,
}

/// The kinds of token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    Open,
    Close,
    /// `.A.B.C`: the field names.
    Field(Vec<String>),
    /// `$x.A.B`: the variable (with its `$`) and the field names after it.
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
    Dot,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Eof,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The 1-based line of byte offset `pos`.
pub(crate) fn line_of(src: &str, pos: usize) -> usize {
    1 + src[..pos.min(src.len())].matches('\n').count()
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<Token>,
    parens: usize,
    trim_next: bool,
}

/// Splits `src` into tokens.
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, TemplateError> {
    let mut l = Lexer {
        src,
        pos: 0,
        out: Vec::new(),
        parens: 0,
        trim_next: false,
    };
    l.run()?;
    Ok(l.out)
}

impl Lexer<'_> {
    fn err(&self, msg: impl Into<String>) -> TemplateError {
        TemplateError::parse(line_of(self.src, self.pos), msg)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn push(&mut self, tok: Tok, pos: usize, spaced: bool) {
        self.out.push(Token { tok, pos, spaced });
    }

    fn run(&mut self) -> Result<(), TemplateError> {
        loop {
            let start = self.pos;
            let (text_end, next) = match self.rest().find("{{") {
                Some(i) => (self.pos + i, Some(self.pos + i)),
                None => (self.src.len(), None),
            };
            let mut text = &self.src[start..text_end];
            if self.trim_next {
                text = text.trim_start_matches(is_space);
                self.trim_next = false;
            }
            let Some(open) = next else {
                if !text.is_empty() {
                    self.push(Tok::Text(text.to_string()), start, false);
                }
                self.push(Tok::Eof, self.src.len(), false);
                return Ok(());
            };
            let after = &self.src[open + 2..];
            let trim_left = after.starts_with('-') && after[1..].starts_with(is_space);
            if trim_left {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                self.push(Tok::Text(text.to_string()), start, false);
            }
            self.pos = open + 2 + usize::from(trim_left) * 2;
            // A comment fills the whole action.
            if self.rest().starts_with("/*") {
                let Some(end) = self.rest().find("*/") else {
                    return Err(self.err("unclosed comment"));
                };
                self.pos += end + 2;
                if let Some(r) = self.close_at() {
                    self.pos += r;
                    continue;
                }
                return Err(self.err("comment ends before closing delimiter"));
            }
            self.push(Tok::Open, open, false);
            self.action()?;
        }
    }

    /// If the action closes here (`}}` or ` -}}`), how many bytes the closing takes, noting
    /// a right trim marker.
    fn close_at(&mut self) -> Option<usize> {
        let rest = self.rest();
        if rest.starts_with("}}") {
            return Some(2);
        }
        let spaces = rest.len() - rest.trim_start_matches(is_space).len();
        let after = &rest[spaces..];
        if spaces > 0 && after.starts_with("-}}") {
            self.trim_next = true;
            return Some(spaces + 3);
        }
        if after.starts_with("}}") {
            return Some(spaces + 2);
        }
        None
    }

    fn action(&mut self) -> Result<(), TemplateError> {
        let mut spaced = true;
        loop {
            if let Some(n) = self.close_at() {
                if self.parens > 0 {
                    return Err(self.err("unclosed left paren"));
                }
                let at = self.pos;
                self.pos += n;
                self.push(Tok::Close, at, spaced);
                return Ok(());
            }
            let Some(c) = self.rest().chars().next() else {
                return Err(self.err("unclosed action"));
            };
            let at = self.pos;
            if is_space(c) {
                self.pos += c.len_utf8();
                spaced = true;
                continue;
            }
            let tok = match c {
                '|' => self.one(Tok::Pipe),
                ',' => self.one(Tok::Comma),
                '(' => {
                    self.parens += 1;
                    self.one(Tok::LParen)
                }
                ')' => {
                    if self.parens == 0 {
                        return Err(self.err("unexpected right paren"));
                    }
                    self.parens -= 1;
                    self.one(Tok::RParen)
                }
                '=' => self.one(Tok::Assign),
                ':' => {
                    if !self.rest().starts_with(":=") {
                        return Err(self.err("expected :="));
                    }
                    self.pos += 2;
                    Tok::Declare
                }
                '"' => self.quoted()?,
                '`' => self.raw()?,
                '\'' => self.char_const()?,
                '$' => {
                    self.pos += 1;
                    let name = format!("${}", self.word());
                    Tok::Var(name, self.fields())
                }
                '.' => {
                    let next = self.rest()[1..].chars().next();
                    if next.is_some_and(|c| c.is_ascii_digit()) {
                        self.number()?
                    } else if next.is_some_and(is_alnum) {
                        Tok::Field(self.fields())
                    } else {
                        self.one(Tok::Dot)
                    }
                }
                '+' | '-' | '0'..='9' => self.number()?,
                c if is_alnum(c) => match self.word() {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    w => Tok::Ident(w.to_string()),
                },
                c => return Err(self.err(format!("bad character {}", go_rune(c)))),
            };
            self.push(tok, at, spaced);
            spaced = false;
        }
    }

    fn one(&mut self, t: Tok) -> Tok {
        self.pos += 1;
        t
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        let n = self
            .rest()
            .find(|c: char| !is_alnum(c))
            .unwrap_or(self.rest().len());
        self.pos += n;
        &self.src[start..self.pos]
    }

    /// `.A.B` at the current position (possibly none).
    fn fields(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while self.rest().starts_with('.') && self.rest()[1..].starts_with(is_alnum) {
            self.pos += 1;
            out.push(self.word().to_string());
        }
        out
    }

    fn number(&mut self) -> Result<Tok, TemplateError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = self.pos;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        while let Some(&b) = bytes.get(i) {
            let exp_sign = matches!(b, b'+' | b'-')
                && matches!(bytes.get(i - 1), Some(b'e' | b'E' | b'p' | b'P'));
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || exp_sign {
                i += 1;
            } else {
                break;
            }
        }
        self.pos = i;
        let text = &self.src[start..i];
        parse_number(text).ok_or_else(|| self.err(format!("bad number syntax: {text:?}")))
    }

    fn quoted(&mut self) -> Result<Tok, TemplateError> {
        let mut out = String::new();
        let mut chars = self.rest()[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 2;
                    return Ok(Tok::Str(out));
                }
                '\n' => break,
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'a' => '\x07',
                        'b' => '\x08',
                        'f' => '\x0c',
                        'v' => '\x0b',
                        '0' => '\0',
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                            u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err("invalid syntax"))?
                        }
                        e => e,
                    }),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.err("unterminated quoted string"))
    }

    fn raw(&mut self) -> Result<Tok, TemplateError> {
        match self.rest()[1..].find('`') {
            Some(end) => {
                let s = self.rest()[1..1 + end].to_string();
                self.pos += end + 2;
                Ok(Tok::Str(s))
            }
            None => Err(self.err("unterminated raw quoted string")),
        }
    }

    fn char_const(&mut self) -> Result<Tok, TemplateError> {
        let mut it = self.rest()[1..].chars();
        let c = match it.next() {
            Some('\\') => match it.next() {
                Some('n') => '\n',
                Some('t') => '\t',
                Some(c) => c,
                None => return Err(self.err("unterminated character constant")),
            },
            Some(c) => c,
            None => return Err(self.err("unterminated character constant")),
        };
        let used = self.rest().len() - 1 - it.as_str().len();
        if !it.as_str().starts_with('\'') {
            return Err(self.err("unterminated character constant"));
        }
        self.pos += used + 2;
        Ok(Tok::Num(serde_json::Number::from(u32::from(c))))
    }
}

/// Go's `%#U`: `U+0040 '@'`.
fn go_rune(c: char) -> String {
    format!("U+{:04X} '{c}'", u32::from(c))
}

fn parse_number(text: &str) -> Option<Tok> {
    let clean = text.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ]
    .iter()
    .find_map(|(p, r)| body.strip_prefix(p).map(|d| (d, *r)));
    let int = match radix {
        Some((digits, r)) => i64::from_str_radix(digits, r).ok(),
        None if body.len() > 1
            && body.starts_with('0')
            && body.bytes().all(|b| b.is_ascii_digit()) =>
        {
            i64::from_str_radix(&body[1..], 8).ok()
        }
        None => body.parse::<i64>().ok(),
    };
    if let Some(i) = int {
        return Some(Tok::Num(serde_json::Number::from(if neg { -i } else { i })));
    }
    if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let f: f64 = body.parse().ok()?;
        return serde_json::Number::from_f64(if neg { -f } else { f }).map(Tok::Num);
    }
    None
}
