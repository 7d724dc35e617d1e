//! The JSON Docker prints for volumes (`volume inspect`, `volume ls --format json`) and for a
//! container's mounts (`inspect`'s `Mounts`).

use serde_json::{json, Value};

use super::{ContainerMount, Volume};

/// Docker's `CreatedAt`: RFC 3339 to the second.
fn created_at(v: &Volume) -> String {
    match v.meta.created_at.get(..19) {
        Some(s) => format!("{s}Z"),
        None => v.meta.created_at.clone(),
    }
}

/// A volume as `docker volume inspect` shows it.
pub fn volume_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": created_at(v),
        "Driver": "local",
        "Labels": v.meta.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.meta.name,
        "Options": if v.meta.options.is_empty() { Value::Null } else { json!(v.meta.options) },
        "Scope": "local",
    })
}

/// A volume as `docker volume ls --format json` shows it (`Labels` as `k=v,…`).
pub fn volume_ls_json(v: &Volume) -> Value {
    let labels: Vec<String> = v
        .meta
        .labels
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect();
    json!({
        "Availability": "N/A",
        "Driver": "local",
        "Group": "N/A",
        "Labels": labels.join(","),
        "Links": "N/A",
        "Mountpoint": v.mountpoint,
        "Name": v.meta.name,
        "Scope": "local",
        "Size": "N/A",
        "Status": "N/A",
    })
}

/// One of a container's mounts as `docker inspect` shows it under `Mounts`.
pub fn mount_json(m: &ContainerMount) -> Value {
    match m.kind.as_str() {
        "volume" => json!({
            "Type": "volume",
            "Name": m.name,
            "Source": m.source,
            "Destination": m.destination,
            "Driver": "local",
            "Mode": m.mode,
            "RW": m.rw,
            "Propagation": "",
        }),
        "bind" => json!({
            "Type": "bind",
            "Source": m.source,
            "Destination": m.destination,
            "Mode": m.mode,
            "RW": m.rw,
            "Propagation": "rprivate",
        }),
        _ => json!({
            "Type": m.kind,
            "Source": "",
            "Destination": m.destination,
            "Mode": m.mode,
            "RW": m.rw,
            "Propagation": "",
        }),
    }
}
