//! Which containers `ps --filter` and `container prune --filter` select, and Docker's time
//! arguments (`--since`, `--until`, `until=`): RFC 3339 times, dates, Unix timestamps, or
//! Go durations counted back from now.

use std::collections::BTreeMap;

use crate::units::parse_rfc3339;

use super::{Container, Status};

/// A filter Docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not `KEY=VALUE`.
    #[error("bad format of filter (expected name=value)")]
    Syntax(String),
    /// A key this command does not know.
    #[error("invalid filter '{0}'")]
    Unknown(String),
    /// A value that does not fit its key.
    #[error("invalid filter '{0}'")]
    Value(String),
    /// A time that is neither a timestamp nor a duration.
    #[error("invalid value for \"{0}\": failed to parse value as time or duration: \"{1}\"")]
    Time(String, String),
}

/// Parses a Go duration (`10m`, `1h30m`, `1.5s`, `-2h`) to seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(sign * total)
}

/// Docker's `GetTimestamp`: `value` as seconds since the epoch. A Go duration counts back
/// from `now`; otherwise an RFC 3339 time (the zone optional: UTC), a date, or a Unix
/// timestamp with an optional fraction.
pub fn parse_time(value: &str, now: f64) -> Option<f64> {
    if value != "0" {
        if let Some(d) = parse_go_duration(value) {
            return Some(now - d);
        }
    }
    if value.contains('-') {
        let full = match value.len() {
            10 => format!("{value}T00:00:00Z"),
            16 => format!("{value}:00"),
            _ => value.to_string(),
        };
        return rfc3339_secs(&full);
    }
    let (secs, nanos) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let frac = if nanos.is_empty() {
        0.0
    } else {
        format!("0.{nanos}").parse::<f64>().ok()?
    };
    Some(secs as f64 + frac)
}

/// The fraction of a second of an RFC 3339 time (`.5` of `…:05.5Z`).
fn fraction(t: &str) -> f64 {
    t.get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| &r[..r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len())])
        .and_then(|d| format!("0.{d}").parse().ok())
        .unwrap_or(0.0)
}

/// An RFC 3339 time with its fraction of a second, in seconds since the epoch.
pub fn rfc3339_secs(t: &str) -> Option<f64> {
    parse_rfc3339(t).map(|s| s as f64 + fraction(t))
}

/// A container's creation time in seconds since the epoch.
pub fn created_secs(c: &Container) -> f64 {
    rfc3339_secs(&c.config.created).unwrap_or(0.0)
}

/// A `label=` condition: the key, and the value when one is given.
type Label = (String, Option<String>);

fn parse_label(v: &str) -> Label {
    match v.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (v.to_string(), None),
    }
}

fn has_label(labels: &BTreeMap<String, String>, (k, v): &Label) -> bool {
    match v {
        Some(v) => labels.get(k) == Some(v),
        None => labels.contains_key(k),
    }
}

/// `ps --filter`: each key's values are alternatives, and every key must match.
#[derive(Clone, Debug, Default)]
pub struct PsFilter {
    status: Vec<String>,
    names: Vec<String>,
    ids: Vec<String>,
    labels: Vec<Label>,
    ancestors: Vec<String>,
    exited: Vec<i32>,
    before: Vec<String>,
    since: Vec<String>,
}

/// What a [`PsFilter`] needs beyond the container: other containers (`before`, `since`) and
/// images (`ancestor`, labels).
pub trait PsContext {
    /// The container named by `key` (name, id, prefix).
    fn container(&self, key: &str) -> Option<Container>;
    /// Whether the container's image is `image` (a name or id) or built on it.
    fn descends_from(&self, c: &Container, image: &str) -> bool;
    /// The container's labels (its image's, as Docker merges them).
    fn labels(&self, c: &Container) -> BTreeMap<String, String>;
}

impl PsFilter {
    /// Parses `-f KEY=VALUE` arguments.
    pub fn parse(args: &[String]) -> Result<Self, FilterError> {
        let mut f = PsFilter::default();
        for arg in args {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| FilterError::Syntax(arg.clone()))?;
            let v = v.to_string();
            match k {
                "status" => {
                    const WORDS: [&str; 7] = [
                        "created",
                        "restarting",
                        "running",
                        "removing",
                        "paused",
                        "exited",
                        "dead",
                    ];
                    if !WORDS.contains(&v.as_str()) {
                        return Err(FilterError::Value(format!(
                            "Unrecognised filter value for status: {v}"
                        )));
                    }
                    f.status.push(v);
                }
                "name" => f.names.push(v),
                "id" => f.ids.push(v),
                "label" => f.labels.push(parse_label(&v)),
                "ancestor" => f.ancestors.push(v),
                "exited" => f.exited.push(
                    v.parse()
                        .map_err(|_| FilterError::Value(format!("invalid filter 'exited={v}'")))?,
                ),
                "before" => f.before.push(v),
                "since" => f.since.push(v),
                _ => return Err(FilterError::Unknown(k.to_string())),
            }
        }
        Ok(f)
    }

    /// Whether the filter selects stopped containers as well (any key but a running
    /// `status`), so `ps` without `-a` lists them (Docker's rule for `status` and `exited`).
    pub fn lists_stopped(&self) -> bool {
        !self.status.is_empty() || !self.exited.is_empty()
    }

    /// Whether `c` passes every condition.
    pub fn matches(&self, c: &Container, ctx: &dyn PsContext) -> bool {
        let status = c.status();
        let any = |v: &[String], f: &dyn Fn(&str) -> bool| v.is_empty() || v.iter().any(|x| f(x));
        any(&self.status, &|s| s == status.word())
            && any(&self.names, &|n| name_matches(c.name(), n))
            && any(&self.ids, &|i| c.id().starts_with(i))
            && any(&self.ancestors, &|a| ctx.descends_from(c, a))
            && (self.exited.is_empty()
                || matches!(status, Status::Exited(code) if self.exited.contains(&code)))
            && (self.labels.is_empty() || {
                let labels = ctx.labels(c);
                self.labels.iter().all(|l| has_label(&labels, l))
            })
            && self.before.iter().all(|b| {
                ctx.container(b)
                    .is_some_and(|o| created_secs(c) < created_secs(&o))
            })
            && self.since.iter().all(|b| {
                ctx.container(b)
                    .is_some_and(|o| created_secs(c) > created_secs(&o))
            })
    }
}

/// Docker matches `name=` as a regular expression against the name; rimg takes the common
/// forms: a substring, anchored by a leading `^` or a trailing `$`.
fn name_matches(name: &str, pattern: &str) -> bool {
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    match (pattern.strip_prefix('^'), pattern.strip_suffix('$')) {
        (Some(p), _) => match p.strip_suffix('$') {
            Some(exact) => name == exact,
            None => name.starts_with(p),
        },
        (None, Some(p)) => name.ends_with(p),
        (None, None) => name.contains(pattern),
    }
}

/// `container prune --filter`: `until=TIME` (created before) and `label=`/`label!=`.
#[derive(Clone, Debug, Default)]
pub struct PruneFilter {
    until: Option<f64>,
    labels: Vec<Label>,
    not_labels: Vec<Label>,
}

impl PruneFilter {
    /// Parses `--filter KEY=VALUE` arguments; durations count back from `now`.
    pub fn parse(args: &[String], now: f64) -> Result<Self, FilterError> {
        let mut f = PruneFilter::default();
        for arg in args {
            if let Some(v) = arg.strip_prefix("label!=") {
                f.not_labels.push(parse_label(v));
                continue;
            }
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| FilterError::Syntax(arg.clone()))?;
            match k {
                "until" => {
                    f.until = Some(
                        parse_time(v, now).ok_or_else(|| FilterError::Time(k.into(), v.into()))?,
                    )
                }
                "label" => f.labels.push(parse_label(v)),
                _ => return Err(FilterError::Unknown(k.to_string())),
            }
        }
        Ok(f)
    }

    /// Whether `c` (with `labels`) is selected.
    pub fn matches(&self, c: &Container, labels: &BTreeMap<String, String>) -> bool {
        self.until.is_none_or(|t| created_secs(c) < t)
            && self.labels.iter().all(|l| has_label(labels, l))
            && !self.not_labels.iter().any(|l| has_label(labels, l))
    }

    /// Whether the filter looks at labels at all.
    pub fn needs_labels(&self) -> bool {
        !self.labels.is_empty() || !self.not_labels.is_empty()
    }
}

impl PsContext for super::Containers {
    fn container(&self, key: &str) -> Option<Container> {
        self.resolve(key).ok()
    }

    /// The image named `image` is the container's, or its layers are the first layers of
    /// the container's image (an image built `FROM` it).
    fn descends_from(&self, c: &Container, image: &str) -> bool {
        if c.config.image == image {
            return true;
        }
        let Ok(ancestor) = self.images.resolve(image) else {
            return false;
        };
        if &ancestor.id == c.image_id() {
            return true;
        }
        self.images
            .read_config(c.image_id())
            .is_ok_and(|cfg| cfg.rootfs.diff_ids.starts_with(ancestor.diff_ids()))
    }

    fn labels(&self, c: &Container) -> BTreeMap<String, String> {
        super::Containers::labels(self, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_docker_times() {
        assert_eq!(parse_go_duration("10m"), Some(600.0));
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("1.5s"), Some(1.5));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("m"), None);
        let now = 1_000_000.0;
        assert_eq!(parse_time("10m", now), Some(now - 600.0));
        assert_eq!(parse_time("1970-01-02", now), Some(86_400.0));
        assert_eq!(parse_time("1970-01-01T00:01:00Z", now), Some(60.0));
        assert_eq!(parse_time("1970-01-01T00:01:00.5Z", now), Some(60.5));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00", now), Some(0.0));
        assert_eq!(parse_time("1500000000", now), Some(1.5e9));
        assert_eq!(parse_time("1500000000.25", now), Some(1.5e9 + 0.25));
        assert_eq!(parse_time("yesterday", now), None);
    }

    #[test]
    fn names_match_as_docker_users_write_them() {
        assert!(name_matches("web-ping", "ping"));
        assert!(name_matches("web-ping", "^web"));
        assert!(!name_matches("web-ping", "^ping"));
        assert!(name_matches("web-ping", "ping$"));
        assert!(name_matches("web", "^web$"));
        assert!(!name_matches("web2", "^web$"));
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(PsFilter::parse(&["status=sleeping".into()]).is_err());
        assert!(PsFilter::parse(&["colour=red".into()]).is_err());
        assert!(PsFilter::parse(&["status".into()]).is_err());
        assert!(PruneFilter::parse(&["until=soon".into()], 0.0).is_err());
        assert!(PruneFilter::parse(&["until=1h".into(), "label!=a=b".into()], 0.0).is_ok());
    }
}
