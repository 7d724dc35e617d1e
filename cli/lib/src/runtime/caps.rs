//! Capabilities: Docker's default set changed by `--cap-add`/`--cap-drop` (moby's
//! `TweakCapabilities`), and applied in the container process as runc applies them: the
//! bounding set first, the user switch with `PR_SET_KEEPCAPS`, then effective = permitted
//! = the set, inheritable and ambient empty (as Docker's spec leaves them). So root in the
//! container sees `CapEff` = `CapBnd` = the set, and another user execs with none, as under
//! Docker.

use caps::{CapSet, Capability, CapsHashSet};

/// Docker's default capabilities.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// `CHOWN`, `cap_chown`, `CAP_CHOWN` → `CAP_CHOWN`; `ALL` stays. Docker's error otherwise.
fn normalize(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map(|_| full.clone())
        .map_err(|_| format!("unknown capability: {name:?}"))
}

fn all_capabilities() -> Vec<Capability> {
    let mut v: Vec<Capability> = caps::all().into_iter().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// The capability set of a container: Docker's default changed by `add` and `drop` (names
/// with or without `CAP_`, any case, or `ALL`), as Docker computes it: `--cap-add ALL`
/// gives every capability but those dropped, `--cap-drop ALL` only those added.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<Capability>, String> {
    let add = add
        .iter()
        .map(|n| normalize(n))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = drop
        .iter()
        .map(|n| normalize(n))
        .collect::<Result<Vec<_>, _>>()?;
    let parse = |names: &[String]| -> Vec<Capability> {
        names.iter().filter_map(|n| n.parse().ok()).collect()
    };
    let all = "ALL".to_string();
    let mut out: Vec<Capability> = if add.contains(&all) {
        let dropped = parse(&drop);
        all_capabilities()
            .into_iter()
            .filter(|c| !dropped.contains(c))
            .collect()
    } else if drop.contains(&all) {
        parse(&add)
    } else {
        let dropped = parse(&drop);
        let mut v: Vec<Capability> = DOCKER_DEFAULT
            .iter()
            .copied()
            .filter(|c| !dropped.contains(c))
            .collect();
        v.extend(parse(&add));
        v
    };
    out.sort_by_key(|c| c.index());
    out.dedup();
    Ok(out)
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops from the bounding set every capability not in `keep` (in the container process,
/// before it changes user).
pub(crate) fn apply_bounding(keep: &[Capability]) -> Result<(), String> {
    let last = last_cap();
    for c in all_capabilities() {
        if keep.contains(&c) || c.index() > last {
            continue;
        }
        caps::drop(None, CapSet::Bounding, c)
            .map_err(|e| format!("dropping {c} from the bounding set: {e}"))?;
    }
    Ok(())
}

/// Keeps the permitted set across the coming `setuid` (runc's `SetKeepCaps`).
pub(crate) fn keep_across_setuid(keep: bool) -> Result<(), String> {
    nix::sys::prctl::set_keepcaps(keep).map_err(|e| format!("prctl(PR_SET_KEEPCAPS): {e}"))
}

/// After the user switch: effective and permitted = `set`, inheritable and ambient empty.
pub(crate) fn apply(set: &[Capability]) -> Result<(), String> {
    // What this process may still hold: a host that withholds a capability from rimg
    // (a sandbox's bounding set) withholds it from `--privileged` and `--cap-add ALL` too.
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("permitted"))?;
    let set: CapsHashSet = set
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    fn err(what: &'static str) -> impl Fn(caps::errors::CapsError) -> String {
        move |e| format!("setting {what} capabilities: {e}")
    }
    // Effective may only shrink within permitted: shrink it first.
    let effective_now = caps::read(None, CapSet::Effective).map_err(err("effective"))?;
    let narrowed: CapsHashSet = effective_now.intersection(&set).copied().collect();
    caps::set(None, CapSet::Effective, &narrowed).map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &set).map_err(err("permitted"))?;
    caps::set(None, CapSet::Effective, &set).map_err(err("effective"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("inheritable"))?;
    // Kernels without ambient capabilities have nothing to clear.
    let _ = caps::clear(None, CapSet::Ambient);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Capability]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_default_is_dockers_fourteen() {
        let d = resolve(&[], &[]).unwrap();
        assert_eq!(d.len(), 14);
        assert!(d.contains(&Capability::CAP_MKNOD));
        assert!(!d.contains(&Capability::CAP_SYS_ADMIN));
    }

    #[test]
    fn names_with_or_without_cap_and_any_case() {
        let d = resolve(
            &s(&["sys_admin", "CAP_NET_ADMIN"]),
            &s(&["chown", "Cap_Kill"]),
        )
        .unwrap();
        let n = names(&d);
        assert!(n.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(n.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!n.contains(&"CAP_CHOWN".to_string()));
        assert!(!n.contains(&"CAP_KILL".to_string()));
    }

    #[test]
    fn all_as_docker_reads_it() {
        assert!(resolve(&[], &s(&["ALL"])).unwrap().is_empty());
        assert_eq!(
            names(&resolve(&s(&["NET_ADMIN"]), &s(&["all"])).unwrap()),
            ["CAP_NET_ADMIN"]
        );
        let everything = resolve(&s(&["ALL"]), &s(&["MKNOD"])).unwrap();
        assert!(everything.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!everything.contains(&Capability::CAP_MKNOD));
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!(
            resolve(&s(&["FLY"]), &[]).unwrap_err(),
            "unknown capability: \"FLY\""
        );
    }
}
