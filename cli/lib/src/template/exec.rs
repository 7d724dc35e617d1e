//! The executor: walks the tree over a JSON value, as Go's `text/template` executes.

use serde_json::Value;

use super::funcs;
use super::parse::{Arg, Branch, Cmd, Node, Pipe};
use super::value::{kind_of, zero_of, Kind, Val};
use super::TemplateError;

/// What a list's execution asks of the loop around it.
enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Exec<'a> {
    src: &'a str,
    vars: Vec<(String, Val)>,
    /// Whether a key missing from an object is an error (Go's `missingkey=error`, what
    /// Docker's `inspect` uses) rather than `<no value>`.
    missing_is_error: bool,
    /// Whether this renders a table's header: Docker's own functions then return their
    /// first argument (the column's name) unchanged.
    header: bool,
}

type Res<T> = Result<T, TemplateError>;

impl<'a> Exec<'a> {
    pub fn new(src: &'a str, root: &Value, missing_is_error: bool, header: bool) -> Exec<'a> {
        Exec {
            src,
            vars: vec![("$".to_string(), Val::any(root.clone()))],
            missing_is_error,
            header,
        }
    }

    pub fn run(&mut self, nodes: &[Node], dot: &Val, out: &mut String) -> Res<()> {
        self.list(nodes, dot, out).map(|_| ())
    }

    fn err(&self, cmd: &Cmd, msg: impl std::fmt::Display) -> TemplateError {
        let before = &self.src[..cmd.pos.min(self.src.len())];
        let line = 1 + before.matches('\n').count();
        let col = cmd.pos - before.rfind('\n').map_or(0, |i| i + 1);
        TemplateError::Exec(format!(
            "template: :{line}:{col}: executing \"\" at <{}>: {msg}",
            cmd.text
        ))
    }

    fn list(&mut self, nodes: &[Node], dot: &Val, out: &mut String) -> Res<Flow> {
        let mark = self.vars.len();
        let flow = self.list_inner(nodes, dot, out);
        self.vars.truncate(mark);
        flow
    }

    fn list_inner(&mut self, nodes: &[Node], dot: &Val, out: &mut String) -> Res<Flow> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        out.push_str(&v.print());
                    }
                }
                Node::If(b) | Node::With(b) => {
                    let mark = self.vars.len();
                    let v = self.pipe(&b.pipe, dot)?;
                    let flow = if v.truth() {
                        let inner = if matches!(node, Node::With(_)) {
                            &v
                        } else {
                            dot
                        };
                        self.list(&b.list, inner, out)?
                    } else {
                        self.list(&b.else_list, dot, out)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => {
                    let mark = self.vars.len();
                    let done = self.range(b, dot, out);
                    self.vars.truncate(mark);
                    done?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, b: &Branch, dot: &Val, out: &mut String) -> Res<()> {
        let v = self.pipe_value(&b.pipe, dot)?;
        let items: Vec<(Val, Val)> = match &v.v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Val::any(Value::from(i)), Val::any(x.clone())))
                .collect(),
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                keys.into_iter()
                    .map(|k| (Val::str(k.clone()), Val::any(m[k].clone())))
                    .collect()
            }
            Value::Null => Vec::new(),
            Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                .map(|i| (Val::any(Value::from(i)), Val::any(Value::from(i))))
                .collect(),
            _ => {
                return Err(self.err(
                    &b.pipe.cmds[0],
                    format!("range can't iterate over {}", v.print()),
                ))
            }
        };
        if items.is_empty() {
            return self.list(&b.else_list, dot, out).map(|_| ());
        }
        let mark = self.vars.len();
        for (k, x) in items {
            self.vars.truncate(mark);
            match b.pipe.decl.as_slice() {
                [one] => self.bind(one, x.clone(), b.pipe.assign),
                [i, e] => {
                    self.bind(i, k, b.pipe.assign);
                    self.bind(e, x.clone(), b.pipe.assign);
                }
                _ => {}
            }
            if let Flow::Break = self.list(&b.list, &x, out)? {
                break;
            }
        }
        Ok(())
    }

    fn bind(&mut self, name: &str, v: Val, assign: bool) {
        if assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
                return;
            }
        }
        self.vars.push((name.to_string(), v));
    }

    /// A pipeline's value, binding its declared variables.
    fn pipe(&mut self, p: &Pipe, dot: &Val) -> Res<Val> {
        let v = self.pipe_value(p, dot)?;
        if let Some(name) = p.decl.first() {
            self.bind(name, v.clone(), p.assign);
        }
        Ok(v)
    }

    /// A pipeline's value, ignoring its declarations.
    fn pipe_value(&mut self, p: &Pipe, dot: &Val) -> Res<Val> {
        let mut last: Option<Val> = None;
        for cmd in &p.cmds {
            last = Some(self.command(cmd, dot, last)?);
        }
        Ok(last.unwrap_or_else(|| Val::any(Value::Null)))
    }

    fn command(&mut self, cmd: &Cmd, dot: &Val, piped: Option<Val>) -> Res<Val> {
        if let Some(v) = self.label_method(cmd, dot, &piped)? {
            return Ok(v);
        }
        let Some(Arg::Func(name)) = cmd.args.first() else {
            if cmd.args.len() > 1 || piped.is_some() {
                return Err(self.err(
                    cmd,
                    format!("can't give argument to non-function {}", cmd.text),
                ));
            }
            if let Some(Arg::Nil) = cmd.args.first() {
                return Err(self.err(cmd, "nil is not a command"));
            }
            return self.arg(cmd, &cmd.args[0], dot);
        };
        // `and` and `or` stop at the first argument that decides them, as Go's do.
        if name == "and" || name == "or" {
            let n = cmd.args.len() - 1 + usize::from(piped.is_some());
            if n == 0 {
                return Err(self.err(
                    cmd,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut v = Val::any(Value::Null);
            for a in &cmd.args[1..] {
                v = self.arg(cmd, a, dot)?;
                if v.truth() == (name == "or") {
                    return Ok(v);
                }
            }
            return Ok(piped.unwrap_or(v));
        }
        let mut args = Vec::with_capacity(cmd.args.len());
        for a in &cmd.args[1..] {
            args.push(self.arg(cmd, a, dot)?);
        }
        args.extend(piped);
        if self.header && funcs::is_docker(name) {
            if let Some(first) = args.into_iter().next() {
                return Ok(first);
            }
            return Err(self.err(cmd, format!("wrong number of args for {name}")));
        }
        funcs::call(name, &args).map_err(|e| self.err(cmd, e))
    }

    /// Docker's `.Label "key"` method of `ps` and `images` rows: one label of the row's
    /// `Labels` (a map, or Docker's `k=v,k2=v2` text); `None` if `cmd` is not such a call.
    fn label_method(&mut self, cmd: &Cmd, dot: &Val, piped: &Option<Val>) -> Res<Option<Val>> {
        let (recv, fields) = match cmd.args.first() {
            Some(Arg::Field(f)) => (dot.clone(), f),
            Some(Arg::Var(n, f)) => (self.arg(cmd, &Arg::Var(n.clone(), Vec::new()), dot)?, f),
            _ => return Ok(None),
        };
        match fields.split_last() {
            Some((last, _)) if last == "Label" && (cmd.args.len() > 1 || piped.is_some()) => {}
            _ => return Ok(None),
        }
        let mut args = Vec::new();
        for a in &cmd.args[1..] {
            args.push(self.arg(cmd, a, dot)?);
        }
        args.extend(piped.iter().cloned());
        let key = match args.as_slice() {
            [k] if !self.header => k.as_str().map(str::to_string),
            _ => None,
        }
        .ok_or_else(|| self.err(cmd, "Label wants one string argument"))?;
        let recv = self.fields(cmd, recv, &fields[..fields.len() - 1])?;
        let value = match recv.v.get("Labels") {
            Some(Value::Object(m)) => m.get(&key).and_then(Value::as_str).map(str::to_string),
            Some(Value::String(s)) => s.split(',').find_map(|kv| {
                kv.split_once('=')
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }),
            _ => None,
        };
        Ok(Some(Val::str(value.unwrap_or_default())))
    }

    fn arg(&mut self, cmd: &Cmd, arg: &Arg, dot: &Val) -> Res<Val> {
        match arg {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(f) => self.fields(cmd, dot.clone(), f),
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.err(cmd, format!("undefined variable: {name}")))?;
                self.fields(cmd, v, f)
            }
            Arg::Func(name) => funcs::call(name, &[]).map_err(|e| self.err(cmd, e)),
            Arg::Str(s) => Ok(Val::str(s.clone())),
            Arg::Num(n) => Ok(Val::any(Value::Number(n.clone()))),
            Arg::Bool(b) => Ok(Val::any(Value::Bool(*b))),
            Arg::Nil => Ok(Val::any(Value::Null)),
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                self.fields(cmd, v, f)
            }
        }
    }

    fn fields(&self, cmd: &Cmd, mut v: Val, names: &[String]) -> Res<Val> {
        for name in names {
            v = self.field(cmd, &v, name)?;
        }
        Ok(v)
    }

    fn field(&self, cmd: &Cmd, v: &Val, name: &str) -> Res<Val> {
        match (&v.v, v.kind) {
            (_, Kind::NoValue) | (Value::Null, Kind::Any | Kind::Ptr) => {
                Err(self.err(cmd, format!("nil pointer evaluating interface {{}}.{name}")))
            }
            (Value::Object(m), _) => match m.get(name) {
                Some(x) if !x.is_null() => Ok(Val::new(x.clone(), kind_of(name))),
                found => match zero_of(name) {
                    Some(zero) => Ok(zero),
                    None if found.is_some() => Ok(Val::any(Value::Null)),
                    None if self.missing_is_error => {
                        Err(self.err(cmd, format!("map has no entry for key {name:?}")))
                    }
                    None => Ok(Val::new(Value::Null, Kind::NoValue)),
                },
            },
            (Value::Null, Kind::Map) => Ok(Val::new(Value::Null, Kind::NoValue)),
            _ => Err(self.err(
                cmd,
                format!("can't evaluate field {name} in type {}", v.type_name()),
            )),
        }
    }
}
