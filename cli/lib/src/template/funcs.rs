//! The functions a template can call: Go's built-ins (`index`, `len`, `print`, `printf`,
//! `println`, `eq` … `ge`, `not`; `and`/`or` are evaluated lazily by the executor) and
//! Docker's (`json`, `join`, `split`, `title`, `upper`, `lower`, `pad`, `truncate`).

use serde_json::Value;

use super::value::{Kind, Val};

const NAMES: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "json", "join", "split", "title", "upper", "lower", "pad", "truncate",
];

/// Whether `name` is one of Docker's functions (which a table's header row leaves out).
pub(crate) fn is_docker(name: &str) -> bool {
    NAMES[14..].contains(&name)
}

/// Whether `name` is a function templates can call.
pub(crate) fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

fn want(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn string<'a>(v: &'a Val, want: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| {
        format!(
            "wrong type for value; expected {want}; got {}",
            v.type_name()
        )
    })
}

fn int(v: &Val) -> Result<i64, String> {
    v.as_int()
        .ok_or_else(|| format!("wrong type for value; expected int; got {}", v.type_name()))
}

/// Calls function `name` (already checked to exist) with evaluated arguments. An `Err`
/// is the message Go puts after `error calling NAME: `, or a wrong-arguments message.
pub(crate) fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    match name {
        "not" => {
            want(name, args, 1)?;
            Ok(Val::any(Value::Bool(!args[0].truth())))
        }
        "len" => {
            want(name, args, 1)?;
            let n = match (&args[0].v, args[0].kind) {
                (Value::String(s), _) => s.len(),
                (Value::Array(a), _) => a.len(),
                (Value::Object(m), _) => m.len(),
                (Value::Null, Kind::Slice | Kind::Map | Kind::Str) => 0,
                _ => {
                    return Err(format!(
                        "error calling len: len of type {}",
                        args[0].type_name()
                    ))
                }
            };
            Ok(Val::any(Value::from(n)))
        }
        "index" => index(args).map_err(|e| format!("error calling index: {e}")),
        "print" => Ok(Val::str(sprint(args))),
        "println" => {
            let s: Vec<String> = args.iter().map(Val::print).collect();
            Ok(Val::str(s.join(" ") + "\n"))
        }
        "printf" => {
            let Some((f, rest)) = args.split_first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            };
            Ok(Val::str(sprintf(string(f, "string")?, rest)))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("error calling eq: missing argument for comparison".into());
            }
            for b in &args[1..] {
                if compare(&args[0], b).map_err(|e| format!("error calling eq: {e}"))?
                    == Some(std::cmp::Ordering::Equal)
                {
                    return Ok(Val::any(Value::Bool(true)));
                }
            }
            Ok(Val::any(Value::Bool(false)))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            let ord =
                compare(&args[0], &args[1]).map_err(|e| format!("error calling {name}: {e}"))?;
            use std::cmp::Ordering::*;
            let r = match (name, ord) {
                ("ne", o) => o != Some(Equal),
                (_, None) => {
                    return Err(format!("error calling {name}: invalid type for comparison"))
                }
                ("lt", Some(o)) => o == Less,
                ("le", Some(o)) => o != Greater,
                ("gt", Some(o)) => o == Greater,
                (_, Some(o)) => o != Less,
            };
            Ok(Val::any(Value::Bool(r)))
        }
        "json" => {
            want(name, args, 1)?;
            Ok(Val::str(args[0].json()))
        }
        "join" => {
            want(name, args, 2)?;
            let sep = string(&args[1], "string")?;
            let items: Vec<&str> = match &args[0].v {
                Value::Null => Vec::new(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Option<_>>()
                    .ok_or("wrong type for value; expected []string; got []interface {}")?,
                _ => {
                    return Err(format!(
                        "wrong type for value; expected []string; got {}",
                        args[0].type_name()
                    ))
                }
            };
            Ok(Val::str(items.join(sep)))
        }
        "split" => {
            want(name, args, 2)?;
            let (s, sep) = (string(&args[0], "string")?, string(&args[1], "string")?);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::String(p.into())).collect()
            };
            Ok(Val::new(Value::Array(parts), Kind::Slice))
        }
        "title" => {
            want(name, args, 1)?;
            Ok(Val::str(title(string(&args[0], "string")?)))
        }
        "upper" => {
            want(name, args, 1)?;
            Ok(Val::str(string(&args[0], "string")?.to_uppercase()))
        }
        "lower" => {
            want(name, args, 1)?;
            Ok(Val::str(string(&args[0], "string")?.to_lowercase()))
        }
        "pad" => {
            want(name, args, 3)?;
            let s = string(&args[0], "string")?;
            if s.is_empty() {
                return Ok(Val::str(""));
            }
            let n = |v: &Val| int(v).map(|i| " ".repeat(usize::try_from(i).unwrap_or(0)));
            Ok(Val::str(format!("{}{s}{}", n(&args[1])?, n(&args[2])?)))
        }
        "truncate" => {
            want(name, args, 2)?;
            let s = string(&args[0], "string")?;
            let n = usize::try_from(int(&args[1])?).unwrap_or(0);
            let mut end = n.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Ok(Val::str(&s[..end]))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

fn index(args: &[Val]) -> Result<Val, String> {
    let Some((first, keys)) = args.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    let mut cur = first.clone();
    for k in keys {
        cur = match (&cur.v, cur.kind) {
            (Value::Array(a), _) => {
                let i = k.as_int().ok_or_else(|| {
                    format!("cannot index slice/array with type {}", k.type_name())
                })?;
                let item = usize::try_from(i)
                    .ok()
                    .and_then(|i| a.get(i))
                    .ok_or_else(|| format!("index out of range: {i}"))?;
                Val::any(item.clone())
            }
            (Value::Null, Kind::Slice) => {
                return Err(format!("index out of range: {}", k.print()));
            }
            (Value::Object(m), _) => {
                let key = k
                    .as_str()
                    .ok_or_else(|| format!("value has type {}; should be string", k.type_name()))?;
                match m.get(key) {
                    Some(v) => Val::any(v.clone()),
                    None => Val::new(Value::Null, Kind::Str),
                }
            }
            (Value::Null, Kind::Map) => Val::new(Value::Null, Kind::Str),
            (Value::Null, Kind::Any) => return Err("index of untyped nil".into()),
            _ => return Err(format!("can't index item of type {}", cur.type_name())),
        };
    }
    Ok(cur)
}

/// Orders two values Go's way: numbers with numbers, strings with strings, bools only for
/// equality (`None` when only equality is defined).
fn compare(a: &Val, b: &Val) -> Result<Option<std::cmp::Ordering>, String> {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return Ok(Some(x.cmp(y)));
    }
    match (&a.v, &b.v) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Ok(Some(x.cmp(&y)));
            }
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(x.partial_cmp(&y))
        }
        (Value::Bool(x), Value::Bool(y)) => Ok((x == y).then_some(std::cmp::Ordering::Equal)),
        (Value::Null, Value::Null) => Ok(Some(std::cmp::Ordering::Equal)),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            Err("non-comparable type".into())
        }
        _ => Err("incompatible types for comparison".into()),
    }
}

/// `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut prev_sep = true;
    s.chars()
        .map(|c| {
            let out = if prev_sep {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c
            };
            prev_sep = !(c.is_alphanumeric() || c == '_' || c == '\'');
            out
        })
        .collect()
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Val| matches!(v.v, Value::String(_));
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&a.print());
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %f %e %g %x %X %c %%`,
/// with flags `-`, `0`, `+`, width and precision.
pub(crate) fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse::<usize>().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let bad = || format!("%!{verb}({}={})", arg.type_name(), arg.print());
        let num = arg.v.as_f64();
        let mut s = match verb {
            's' if matches!(arg.v, Value::Number(_) | Value::Bool(_)) => bad(),
            'v' | 's' => {
                let s = arg.print();
                match prec {
                    Some(p) if verb == 's' => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            'q' => match arg.as_str() {
                Some(s) => format!("{s:?}"),
                None => bad(),
            },
            't' => match arg.v {
                Value::Bool(b) => b.to_string(),
                _ => bad(),
            },
            'd' => match arg.as_int() {
                Some(i) if plus && i >= 0 => format!("+{i}"),
                Some(i) => i.to_string(),
                None => bad(),
            },
            'c' => match arg
                .as_int()
                .and_then(|i| u32::try_from(i).ok())
                .and_then(char::from_u32)
            {
                Some(c) => c.to_string(),
                None => bad(),
            },
            'x' | 'X' => {
                let s = match (arg.as_int(), arg.as_str()) {
                    (Some(i), _) => format!("{i:x}"),
                    (_, Some(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                    _ => bad(),
                };
                if verb == 'X' {
                    s.to_uppercase()
                } else {
                    s
                }
            }
            'f' | 'F' => match num {
                Some(f) => format!("{f:.*}", prec.unwrap_or(6)),
                None => bad(),
            },
            'e' => match num {
                Some(f) => go_exp(f, prec.unwrap_or(6)),
                None => bad(),
            },
            'g' => match num {
                Some(f) => match prec {
                    Some(p) => format!("{f:.*}", p),
                    None => f.to_string(),
                },
                None => bad(),
            },
            _ => format!("%!{verb}({}={})", arg.type_name(), arg.print()),
        };
        if plus && matches!(verb, 'f' | 'F' | 'e' | 'g') && num.is_some_and(|f| f >= 0.0) {
            s.insert(0, '+');
        }
        let width: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < width {
            let pad = width - len;
            if left {
                s.push_str(&" ".repeat(pad));
            } else if zero && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g' | 'x' | 'X') {
                let at = usize::from(s.starts_with(['-', '+']));
                s.insert_str(at, &"0".repeat(pad));
            } else {
                s.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&s);
    }
    let extra: Vec<String> = args
        .map(|a| format!("{}={}", a.type_name(), a.print()))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// `%e`: `1.234560e+03`.
fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{f:.prec$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}
