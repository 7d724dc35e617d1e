//! The parser: tokens to a tree of nodes, with Go's checks (known functions, declared
//! variables, matching `{{end}}`s).

use serde_json::Number;

use super::lex::{line_of, Tok, Token};
use super::{funcs, TemplateError};

/// A node of the template's tree.
#[derive(Debug)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
    Break,
    Continue,
}

/// `{{if}}`, `{{range}}` or `{{with}}`: its pipeline, body and `{{else}}` body.
#[derive(Debug)]
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Vec<Node>,
}

/// A pipeline: `$x := cmd | cmd`.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

/// One command of a pipeline: an operand or a function and its arguments.
#[derive(Debug)]
pub(crate) struct Cmd {
    pub args: Vec<Arg>,
    /// Where it starts, for error messages.
    pub pos: usize,
    /// Its source text, for error messages (`at <index .RepoTags 5>`).
    pub text: String,
}

/// An operand.
#[derive(Debug)]
pub(crate) enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Num(Number),
    Bool(bool),
    Nil,
    /// `(pipeline).Field.Sub`
    Sub(Box<Pipe>, Vec<String>),
}

/// Parses a template's source into its list of nodes.
pub(crate) fn parse(src: &str, tokens: Vec<Token>) -> Result<Vec<Node>, TemplateError> {
    let mut p = Parser {
        src,
        toks: tokens,
        i: 0,
        vars: vec!["$".to_string()],
        loops: 0,
    };
    let (list, end) = p.list()?;
    match end {
        Closer::Eof => Ok(list),
        Closer::End => Err(p.err_at(p.prev_pos(), "unexpected {{end}}")),
        Closer::Else(_) => Err(p.err_at(p.prev_pos(), "unexpected {{else}}")),
    }
}

/// What ended a list.
enum Closer {
    Eof,
    End,
    /// `{{else}}`, or `{{else if …}}` / `{{else with …}}` (the keyword).
    Else(Option<String>),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    vars: Vec<String>,
    loops: usize,
}

impl Parser<'_> {
    fn err_at(&self, pos: usize, msg: impl Into<String>) -> TemplateError {
        TemplateError::parse(line_of(self.src, pos), msg)
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |t| t.pos)
    }

    fn prev_pos(&self) -> usize {
        self.toks.get(self.i.saturating_sub(1)).map_or(0, |t| t.pos)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn expect_close(&mut self, context: &str) -> Result<(), TemplateError> {
        match self.next() {
            Tok::Close => Ok(()),
            t => Err(self.err_at(
                self.prev_pos(),
                format!("unexpected {} in {context}", show(&t)),
            )),
        }
    }

    /// Nodes up to `{{end}}`, `{{else}}` or the end of the text; variables declared in the
    /// list go out of scope after it.
    fn list(&mut self) -> Result<(Vec<Node>, Closer), TemplateError> {
        let mark = self.vars.len();
        let mut out = Vec::new();
        let end = loop {
            match self.next() {
                Tok::Eof => break Closer::Eof,
                Tok::Text(t) => out.push(Node::Text(t)),
                Tok::Open => {
                    if let Some(end) = self.action(&mut out)? {
                        break end;
                    }
                }
                t => return Err(self.err_at(self.prev_pos(), format!("unexpected {}", show(&t)))),
            }
        };
        self.vars.truncate(mark);
        Ok((out, end))
    }

    fn action(&mut self, out: &mut Vec<Node>) -> Result<Option<Closer>, TemplateError> {
        let at = self.pos();
        let Tok::Ident(word) = self.peek().clone() else {
            let pipe = self.pipe("command", true)?;
            out.push(Node::Action(pipe));
            return Ok(None);
        };
        match word.as_str() {
            "end" => {
                self.i += 1;
                self.expect_close("end")?;
                Ok(Some(Closer::End))
            }
            "else" => {
                self.i += 1;
                match self.peek().clone() {
                    Tok::Ident(k) if k == "if" || k == "with" => Ok(Some(Closer::Else(Some(k)))),
                    _ => {
                        self.expect_close("else")?;
                        Ok(Some(Closer::Else(None)))
                    }
                }
            }
            "if" | "with" | "range" => {
                self.i += 1;
                out.push(self.branch(&word, at)?);
                Ok(None)
            }
            "break" | "continue" => {
                self.i += 1;
                if self.loops == 0 {
                    return Err(self.err_at(at, format!("{{{{{word}}}}} outside {{{{range}}}}")));
                }
                self.expect_close(&word)?;
                out.push(if word == "break" {
                    Node::Break
                } else {
                    Node::Continue
                });
                Ok(None)
            }
            "define" | "template" | "block" => {
                Err(self.err_at(at, format!("{{{{{word}}}}} is not supported in --format")))
            }
            _ => {
                let pipe = self.pipe("command", true)?;
                out.push(Node::Action(pipe));
                Ok(None)
            }
        }
    }

    /// `if`/`with`/`range` after its keyword, through its `{{end}}`.
    fn branch(&mut self, kind: &str, at: usize) -> Result<Node, TemplateError> {
        let mark = self.vars.len();
        let pipe = self.pipe(kind, true)?;
        if kind == "range" {
            self.loops += 1;
        }
        let (list, mut end) = self.list()?;
        if kind == "range" {
            self.loops -= 1;
        }
        let mut else_list = Vec::new();
        if let Closer::Else(chained) = end {
            match chained {
                // `{{else if x}}` is `{{else}}{{if x}}…{{end}}` sharing the outer `{{end}}`.
                Some(k) => {
                    let pos = self.pos();
                    self.i += 1;
                    else_list.push(self.branch(&k, pos)?);
                    end = Closer::End;
                }
                None => {
                    let (l, e) = self.list()?;
                    else_list = l;
                    end = match e {
                        Closer::Else(_) => {
                            return Err(self.err_at(self.prev_pos(), "expected end; found {{else}}"))
                        }
                        e => e,
                    };
                }
            }
        }
        self.vars.truncate(mark);
        if let Closer::Eof = end {
            return Err(self.err_at(self.src.len().max(at), "unexpected EOF"));
        }
        let branch = Branch {
            pipe,
            list,
            else_list,
        };
        Ok(match kind {
            "if" => Node::If(branch),
            "with" => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    /// A pipeline up to `}}` (consumed) — or, inside parentheses, up to `)` (consumed).
    fn pipe(&mut self, context: &str, allow_decl: bool) -> Result<Pipe, TemplateError> {
        let decl_end = self.declaration(allow_decl, context == "range");
        let mut decl = Vec::new();
        let mut assign = false;
        if let Some((names, is_assign)) = decl_end {
            for name in &names {
                if is_assign && !self.vars.contains(name) {
                    return Err(self.err_at(self.pos(), format!("undefined variable {name:?}")));
                }
            }
            decl = names;
            assign = is_assign;
        }
        let mut cmds = Vec::new();
        loop {
            match self.peek() {
                Tok::Close | Tok::RParen => {
                    self.i += 1;
                    break;
                }
                Tok::Pipe if !cmds.is_empty() => {
                    self.i += 1;
                }
                Tok::Pipe => return Err(self.err_at(self.pos(), "missing command before |")),
                _ => {}
            }
            cmds.push(self.command()?);
            match self.peek() {
                Tok::Pipe | Tok::Close | Tok::RParen => {}
                t => {
                    let msg = format!("unexpected {} in operand", show(t));
                    return Err(self.err_at(self.pos(), msg));
                }
            }
        }
        if cmds.is_empty() {
            return Err(self.err_at(self.prev_pos(), format!("missing value for {context}")));
        }
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    /// `$x :=`, `$x =`, or (for range) `$i, $v :=` at the current position: consumed and
    /// returned.
    fn declaration(&mut self, allow: bool, two: bool) -> Option<(Vec<String>, bool)> {
        if !allow {
            return None;
        }
        let var = |t: Option<&Token>| match t.map(|t| &t.tok) {
            Some(Tok::Var(v, f)) if f.is_empty() => Some(v.clone()),
            _ => None,
        };
        let first = var(self.toks.get(self.i))?;
        match self.toks.get(self.i + 1).map(|t| &t.tok) {
            Some(Tok::Declare) => {
                self.i += 2;
                Some((vec![first], false))
            }
            Some(Tok::Assign) => {
                self.i += 2;
                Some((vec![first], true))
            }
            Some(Tok::Comma) if two => {
                let second = var(self.toks.get(self.i + 2))?;
                let op = self.toks.get(self.i + 3).map(|t| t.tok.clone());
                match op {
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        self.i += 4;
                        Some((vec![first, second], op == Some(Tok::Assign)))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn command(&mut self) -> Result<Cmd, TemplateError> {
        let pos = self.pos();
        let mut args = Vec::new();
        while !matches!(self.peek(), Tok::Pipe | Tok::Close | Tok::RParen | Tok::Eof) {
            if !args.is_empty() && self.toks.get(self.i).is_some_and(|t| !t.spaced) {
                let msg = format!("unexpected {} in operand", show(self.peek()));
                return Err(self.err_at(self.pos(), msg));
            }
            args.push(self.operand()?);
        }
        if args.is_empty() {
            return Err(self.err_at(pos, "missing value for command"));
        }
        let end = self.pos().min(self.src.len());
        let text = self.src[pos..end.max(pos)].trim().to_string();
        Ok(Cmd { args, pos, text })
    }

    fn operand(&mut self) -> Result<Arg, TemplateError> {
        let at = self.pos();
        let arg = match self.next() {
            Tok::Dot => Arg::Dot,
            Tok::Field(f) => Arg::Field(f),
            Tok::Var(v, f) => {
                if !self.vars.contains(&v) {
                    return Err(self.err_at(at, format!("undefined variable {v:?}")));
                }
                Arg::Var(v, f)
            }
            Tok::Ident(name) => {
                if !funcs::exists(&name) {
                    return Err(self.err_at(at, format!("function {name:?} not defined")));
                }
                Arg::Func(name)
            }
            Tok::Str(s) => Arg::Str(s),
            Tok::Num(n) => Arg::Num(n),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Nil => Arg::Nil,
            Tok::LParen => {
                let pipe = self.pipe("parenthesized pipeline", false)?;
                Arg::Sub(Box::new(pipe), Vec::new())
            }
            t => return Err(self.err_at(at, format!("unexpected {} in operand", show(&t)))),
        };
        // `(x).Field`: fields directly after an operand chain onto it.
        let attached = self.toks.get(self.i).is_some_and(|t| !t.spaced);
        if let (Tok::Field(more), true) = (self.peek().clone(), attached) {
            self.i += 1;
            return Ok(match arg {
                Arg::Sub(p, mut f) => {
                    f.extend(more);
                    Arg::Sub(p, f)
                }
                Arg::Field(mut f) => {
                    f.extend(more);
                    Arg::Field(f)
                }
                Arg::Var(v, mut f) => {
                    f.extend(more);
                    Arg::Var(v, f)
                }
                Arg::Dot => Arg::Field(more),
                _ => return Err(self.err_at(at, "unexpected . after term")),
            });
        }
        Ok(arg)
    }
}

/// How Go's parser names a token in its messages.
fn show(t: &Tok) -> String {
    match t {
        Tok::Close => "\"}}\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Eof => "EOF".into(),
        Tok::Text(s) | Tok::Ident(s) => format!("{s:?}"),
        Tok::Str(s) => format!("quoted string {s:?}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Field(f) => format!("<.{}>", f.join(".")),
        Tok::Var(v, _) => format!("<{v}>"),
        Tok::Bool(b) => format!("bool {b}"),
        Tok::Nil => "nil".into(),
        Tok::Dot => "<.>".into(),
        Tok::Open => "\"{{\"".into(),
    }
}
