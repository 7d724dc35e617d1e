//! Values as a template sees them: JSON plus what Go's type would say about a field that is
//! absent or null (a nil slice prints `[]`, a nil map `map[]`, an empty string nothing, a
//! nil pointer `<nil>`), and Go's `%v` and `encoding/json` printing of them.

use serde_json::{Map, Value};

/// What Go type a value has, as far as printing it cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anything else: a struct, a pointer, an interface.
    Any,
    /// A string: null or absent prints nothing.
    Str,
    /// A slice: null or absent prints `[]`.
    Slice,
    /// A map: printed `map[k:v]` with sorted keys; null or absent prints `map[]`.
    Map,
    /// A pointer: null or absent prints `<nil>`.
    Ptr,
    /// A bool: absent is `false`.
    Bool,
    /// A number: absent is `0`.
    Int,
    /// A key missing from a map (`<no value>`).
    NoValue,
}

/// A value and its kind.
#[derive(Debug, Clone)]
pub(crate) struct Val {
    pub v: Value,
    pub kind: Kind,
}

impl Val {
    pub fn new(v: Value, kind: Kind) -> Val {
        Val { v, kind }
    }

    pub fn any(v: Value) -> Val {
        Val { v, kind: Kind::Any }
    }

    pub fn str(s: impl Into<String>) -> Val {
        Val::new(Value::String(s.into()), Kind::Str)
    }

    /// The string this is, if it is one (a nil string field is "").
    pub fn as_str(&self) -> Option<&str> {
        match (&self.v, self.kind) {
            (Value::String(s), _) => Some(s),
            (Value::Null, Kind::Str) => Some(""),
            _ => None,
        }
    }

    /// The integer this is, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match &self.v {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// Go's name for the value's type, in error messages.
    pub fn type_name(&self) -> &'static str {
        match (&self.v, self.kind) {
            (_, Kind::NoValue) => "invalid",
            (Value::Null, Kind::Str) | (Value::String(_), _) => "string",
            (Value::Null, Kind::Slice) => "[]string",
            (Value::Null, Kind::Ptr) => "ptr",
            (Value::Null, Kind::Map) | (Value::Object(_), Kind::Map) => "map[string]interface {}",
            (Value::Null, _) => "nil",
            (Value::Bool(_), _) => "bool",
            (Value::Number(n), _) if n.is_f64() => "float64",
            (Value::Number(_), _) => "int",
            (Value::Array(_), _) => "[]interface {}",
            (Value::Object(_), _) => "struct",
        }
    }

    /// Go's `truth`: false, 0, nil and empty strings, slices and maps are false; structs are
    /// true.
    pub fn truth(&self) -> bool {
        match &self.v {
            _ if self.kind == Kind::NoValue => false,
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(m) => self.kind != Kind::Map || !m.is_empty(),
        }
    }

    /// Go's `%v`.
    pub fn print(&self) -> String {
        let mut out = String::new();
        print_into(&mut out, &self.v, self.kind);
        out
    }

    /// Go's `encoding/json` (maps with sorted keys, no HTML escaping), as Docker's `json`
    /// function prints it.
    pub fn json(&self) -> String {
        if self.kind == Kind::NoValue {
            return "null".into();
        }
        serde_json::to_string(&sorted(&self.v, self.kind)).unwrap_or_default()
    }
}

fn print_into(out: &mut String, v: &Value, kind: Kind) {
    match v {
        _ if kind == Kind::NoValue => out.push_str("<no value>"),
        Value::Null => out.push_str(match kind {
            Kind::Slice => "[]",
            Kind::Map => "map[]",
            Kind::Str => "",
            _ => "<nil>",
        }),
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => out.push_str(&go_float(f)),
            None => out.push_str(&n.to_string()),
        },
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_into(out, x, Kind::Any);
            }
            out.push(']');
        }
        Value::Object(m) if kind == Kind::Map => {
            out.push_str("map[");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_into(out, &m[k], Kind::Any);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_into(out, x, kind_of(k));
            }
            out.push('}');
        }
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form below 1e-4 and from 1e21.
fn go_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{f:e}");
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = e.strip_prefix('-').map_or(('+', e), |d| ('-', d));
            return format!("{m}e{sign}{digits:0>2}");
        }
    }
    f.to_string()
}

/// A copy with every map's keys sorted, as Go encodes maps (structs keep their order).
fn sorted(v: &Value, kind: Kind) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| sorted(x, Kind::Any)).collect()),
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            if kind == Kind::Map {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            let child = |k: &str| {
                if kind == Kind::Map {
                    Kind::Any
                } else {
                    kind_of(k)
                }
            };
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, x)| (k.clone(), sorted(x, child(k))))
                    .collect::<Map<String, Value>>(),
            )
        }
        v => v.clone(),
    }
}

/// A field that is null or absent, as Docker's typed object has it: a string, bool or
/// number field its zero value; a slice, map or pointer field nil (printed `[]`, `map[]`,
/// `<nil>`). `None` for a name that is not one of Docker's fields.
pub(crate) fn zero_of(field: &str) -> Option<Val> {
    let kind = kind_of(field);
    Some(match kind {
        Kind::Str => Val::new(Value::String(String::new()), kind),
        Kind::Bool => Val::new(Value::Bool(false), kind),
        Kind::Int => Val::new(Value::from(0), kind),
        Kind::Slice | Kind::Map | Kind::Ptr => Val::new(Value::Null, kind),
        Kind::Any | Kind::NoValue => return None,
    })
}

/// The Go type of a field of Docker's API objects, by name: what a null or absent field
/// is (see [`zero_of`]). Names not listed are structs (an absent one is an error, as a
/// key missing from Docker's `missingkey=error` inspect).
pub(crate) fn kind_of(field: &str) -> Kind {
    const SLICES: &[&str] = &[
        "Args",
        "Aliases",
        "Binds",
        "BlkioDeviceReadBps",
        "CapAdd",
        "CapDrop",
        "Cmd",
        "DNSNames",
        "Devices",
        "Dns",
        "DnsOptions",
        "DnsSearch",
        "Entrypoint",
        "Env",
        "ExtraHosts",
        "GroupAdd",
        "History",
        "Layers",
        "Links",
        "Mounts",
        "OnBuild",
        "RepoDigests",
        "RepoTags",
        "SecurityOpt",
        "Shell",
        "Test",
        "Ulimits",
        "VolumesFrom",
    ];
    const MAPS: &[&str] = &[
        "Annotations",
        "Data",
        "DriverOpts",
        "ExposedPorts",
        "Labels",
        "Networks",
        "Options",
        "PortBindings",
        "Ports",
        "StorageOpt",
        "Sysctls",
        "Tmpfs",
        "Volumes",
    ];
    const STRINGS: &[&str] = &[
        "AppArmorProfile",
        "Architecture",
        "Author",
        "Comment",
        "Command",
        "ContainerIDFile",
        "Created",
        "CreatedAt",
        "CreatedBy",
        "CreatedSince",
        "Destination",
        "Digest",
        "Domainname",
        "Driver",
        "EndpointID",
        "Error",
        "FinishedAt",
        "Gateway",
        "GlobalIPv6Address",
        "HostnamePath",
        "HostsPath",
        "Hostname",
        "ID",
        "Id",
        "IPAddress",
        "IPv6Gateway",
        "Image",
        "IpcMode",
        "LocalVolumes",
        "LogPath",
        "MacAddress",
        "MountLabel",
        "Mode",
        "Name",
        "Names",
        "NetworkID",
        "NetworkMode",
        "Os",
        "OsVersion",
        "Parent",
        "Path",
        "Platform",
        "ProcessLabel",
        "Propagation",
        "Repository",
        "ResolvConfPath",
        "RunningFor",
        "SandboxID",
        "SandboxKey",
        "Size",
        "Source",
        "StartedAt",
        "State",
        "Status",
        "StopSignal",
        "Tag",
        "Type",
        "User",
        "Variant",
        "WorkingDir",
    ];
    const POINTERS: &[&str] = &[
        "Health",
        "Healthcheck",
        "IPAMConfig",
        "Init",
        "MemorySwappiness",
        "Node",
        "OomKillDisable",
        "PidsLimit",
    ];
    const BOOLS: &[&str] = &[
        "ArgsEscaped",
        "AttachStderr",
        "AttachStdin",
        "AttachStdout",
        "AutoRemove",
        "Dead",
        "NetworkDisabled",
        "OOMKilled",
        "OpenStdin",
        "Paused",
        "Privileged",
        "PublishAllPorts",
        "RW",
        "ReadonlyRootfs",
        "Restarting",
        "Running",
        "StdinOnce",
        "Tty",
    ];
    const INTS: &[&str] = &[
        "CpuPeriod",
        "CpuQuota",
        "CpuShares",
        "ExitCode",
        "MaximumRetryCount",
        "Memory",
        "MemoryReservation",
        "MemorySwap",
        "NanoCpus",
        "Pid",
        "RestartCount",
        "ShmSize",
        "Size",
        "SizeRootFs",
        "SizeRw",
    ];
    if POINTERS.contains(&field) {
        Kind::Ptr
    } else if BOOLS.contains(&field) {
        Kind::Bool
    } else if INTS.contains(&field) {
        Kind::Int
    } else if SLICES.contains(&field) {
        Kind::Slice
    } else if MAPS.contains(&field) {
        Kind::Map
    } else if STRINGS.contains(&field) {
        Kind::Str
    } else {
        Kind::Any
    }
}
