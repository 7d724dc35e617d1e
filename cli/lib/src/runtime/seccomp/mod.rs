//! Seccomp: Docker's profile format (moby's `profiles/seccomp`) compiled to classic BPF with
//! seccompiler. `default.json` is Docker's default profile, shipped as data (moby/profiles
//! seccomp v0.2.3, Apache-2.0): an allow-list with `EPERM` for everything else, argument
//! filters (`clone` without namespace flags, `personality`, `socket` families) and the parts
//! that a capability (`includes.caps`), an architecture or a kernel version switches on or
//! off, resolved against the container's bounding set as Docker does.
//!
//! seccompiler compiles one action per filter, so a profile becomes a stack of filters: the
//! first returns the profile's default action for every call no rule names (and allows the
//! others); one more per other action (`SCMP_ACT_ERRNO` with `errnoRet` 38 for `clone3`, say)
//! returns it for the calls its rules match. The kernel runs every filter and keeps the most
//! restrictive answer, and of two errno answers the later filter's, so the stack means what
//! libseccomp's single filter means. A system call of another architecture (a 32-bit `int
//! 0x80` on x86_64) kills the process, where libseccomp would apply the profile's
//! sub-architecture tables.

use std::collections::BTreeMap;

use caps::Capability;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;

/// Docker's default profile.
pub const DEFAULT_PROFILE: &str = include_str!("default.json");

#[cfg(target_arch = "x86_64")]
const SYSCALLS: &str = include_str!("syscalls_x86_64.txt");
#[cfg(target_arch = "aarch64")]
const SYSCALLS: &str = include_str!("syscalls_aarch64.txt");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALLS: &str = "";

/// Docker's (Go's) name of the architecture rimg runs on.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: &str = "amd64";
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: &str = "arm64";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCH: &str = std::env::consts::ARCH;

/// A profile in Docker's JSON format.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Option<Vec<SyscallRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn action(name: &str, errno: Option<u32>, default_errno: u32) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(default_errno)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno.unwrap_or(default_errno)),
        other => return Err(format!("seccomp profile: unsupported action {other:?}")),
    })
}

fn condition(a: &Arg) -> Result<SeccompCondition, String> {
    let op = match a.op.as_str() {
        "SCMP_CMP_NE" => SeccompCmpOp::Ne,
        "SCMP_CMP_LT" => SeccompCmpOp::Lt,
        "SCMP_CMP_LE" => SeccompCmpOp::Le,
        "SCMP_CMP_EQ" => SeccompCmpOp::Eq,
        "SCMP_CMP_GE" => SeccompCmpOp::Ge,
        "SCMP_CMP_GT" => SeccompCmpOp::Gt,
        // libseccomp: (arg & value) == valueTwo.
        "SCMP_CMP_MASKED_EQ" => SeccompCmpOp::MaskedEq(a.value),
        other => return Err(format!("seccomp profile: unsupported operator {other:?}")),
    };
    let value = if a.op == "SCMP_CMP_MASKED_EQ" {
        a.value_two
    } else {
        a.value
    };
    // libseccomp compares all 64 bits of an argument.
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| format!("seccomp profile: argument {}: {e}", a.index))
}

/// The rules of one profile entry: its conditions ANDed, except that several conditions on
/// the same argument become separate rules (ORed), as runc makes them.
fn rules(args: &[Arg]) -> Result<Vec<SeccompRule>, String> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let mut indexes: Vec<u8> = args.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    let groups: Vec<Vec<&Arg>> = if indexes.len() == args.len() {
        vec![args.iter().collect()]
    } else {
        args.iter().map(|a| vec![a]).collect()
    };
    groups
        .into_iter()
        .map(|g| {
            let conds = g
                .into_iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            SeccompRule::new(conds).map_err(|e| format!("seccomp profile: {e}"))
        })
        .collect()
}

fn kernel_at_least(min: &str) -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let nums = |s: &str| -> Vec<u64> {
        s.split(['.', '-'])
            .take(2)
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    };
    nums(&release) >= nums(min)
}

/// Whether an entry applies, as moby's `setupSeccomp` decides: its `excludes` name none of
/// the architecture, capabilities (of the bounding set) and kernel, its `includes` all.
fn applies(rule: &SyscallRule, caps: &[String]) -> bool {
    if let Some(ex) = &rule.excludes {
        if ex
            .arches
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a == NATIVE_ARCH))
        {
            return false;
        }
        if ex
            .caps
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| caps.contains(c)))
        {
            return false;
        }
        if ex.min_kernel.as_deref().is_some_and(kernel_at_least) {
            return false;
        }
    }
    if let Some(inc) = &rule.includes {
        if inc
            .arches
            .as_ref()
            .is_some_and(|a| !a.is_empty() && !a.iter().any(|a| a == NATIVE_ARCH))
        {
            return false;
        }
        if inc
            .caps
            .as_ref()
            .is_some_and(|c| !c.iter().all(|c| caps.contains(c)))
        {
            return false;
        }
        if inc
            .min_kernel
            .as_deref()
            .is_some_and(|k| !kernel_at_least(k))
        {
            return false;
        }
    }
    true
}

/// System call number → its rules (`None`: matched unconditionally).
type Calls = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// This architecture's system call table: name → number.
fn syscall_table() -> std::collections::HashMap<&'static str, i64> {
    SYSCALLS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (n, nr) = l.split_once(' ')?;
            Some((n, nr.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
fn syscall_number(name: &str) -> Option<i64> {
    syscall_table().get(name).copied()
}

/// Adds `rules` for `nr`: no rules means the call matches unconditionally, which wins over
/// any conditional rule for it.
fn add(map: &mut Calls, nr: i64, rules: Vec<SeccompRule>) {
    let slot = map.entry(nr).or_insert_with(|| Some(Vec::new()));
    match (slot.as_mut(), rules.is_empty()) {
        (Some(_), true) => *slot = None,
        (Some(existing), false) => existing.extend(rules),
        (None, _) => {}
    }
}

fn filter(
    rules: Calls,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("seccomp: {e}: use --security-opt seccomp=unconfined"))?;
    let rules = rules
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    let f = SeccompFilter::new(rules, mismatch, matched, arch)
        .map_err(|e| format!("seccomp profile: {e}"))?;
    BpfProgram::try_from(f).map_err(|e| format!("seccomp profile: {e}"))
}

/// Compiles a profile (Docker's JSON) for a process whose bounding set is `caps`: the
/// filters to install, in order. Names the architecture lacks are skipped, as libseccomp
/// skips them. Empty when the profile names no default action and no calls (Docker's
/// "seccomp disabled").
pub fn compile(profile_json: &str, caps: &[Capability]) -> Result<Vec<BpfProgram>, String> {
    let profile: Profile = serde_json::from_str(profile_json)
        .map_err(|e| format!("decoding seccomp profile failed: {e}"))?;
    let syscalls = profile.syscalls.unwrap_or_default();
    if profile.default_action.is_empty() && syscalls.is_empty() {
        return Ok(Vec::new());
    }
    let default_errno = profile.default_errno_ret.unwrap_or(libc::EPERM as u32);
    let default = action(&profile.default_action, None, default_errno)?;
    let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    let table = syscall_table();
    // Every named call (for the default filter), and the calls of each other action.
    let mut named: Calls = BTreeMap::new();
    let mut by_action: Vec<(SeccompAction, Calls)> = Vec::new();
    for rule in &syscalls {
        if !applies(rule, &caps) {
            continue;
        }
        let act = action(&rule.action, rule.errno_ret, default_errno)?;
        let names: Vec<&str> = match (&rule.name, &rule.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err("both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'".into());
            }
            (Some(n), _) => vec![n.as_str()],
            (None, Some(n)) => n.iter().map(String::as_str).collect(),
            (None, None) => Vec::new(),
        };
        let rs = rules(rule.args.as_deref().unwrap_or(&[]))?;
        for name in names {
            let Some(&nr) = table.get(name) else {
                continue;
            };
            add(&mut named, nr, rs.clone());
            if act != SeccompAction::Allow {
                let slot = match by_action.iter().position(|(a, _)| *a == act) {
                    Some(i) => &mut by_action[i].1,
                    None => {
                        by_action.push((act.clone(), BTreeMap::new()));
                        let last = by_action.len() - 1;
                        &mut by_action[last].1
                    }
                };
                add(slot, nr, rs.clone());
            }
        }
    }
    let mut out = Vec::new();
    if default != SeccompAction::Allow {
        out.push(filter(named, default, SeccompAction::Allow)?);
    }
    for (act, calls) in by_action {
        out.push(filter(calls, SeccompAction::Allow, act)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_default_caps() -> Vec<Capability> {
        crate::runtime::caps::resolve(&[], &[]).unwrap()
    }

    #[test]
    fn the_default_profile_compiles_to_a_default_filter_and_one_for_clone3() {
        let progs = compile(DEFAULT_PROFILE, &docker_default_caps()).unwrap();
        // The allow-list with EPERM, and clone3's ENOSYS.
        assert_eq!(progs.len(), 2);
        assert!(progs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        let with_admin = {
            let mut c = docker_default_caps();
            c.push(Capability::CAP_SYS_ADMIN);
            c
        };
        // With SYS_ADMIN clone3 is allowed: no ENOSYS filter.
        assert_eq!(compile(DEFAULT_PROFILE, &with_admin).unwrap().len(), 1);
    }

    #[test]
    fn syscall_names_resolve_for_this_architecture() {
        assert!(syscall_number("read").is_some());
        assert!(syscall_number("keyctl").is_some());
        assert_eq!(syscall_number("no_such_call"), None);
    }

    #[test]
    fn a_profile_without_default_action_or_calls_is_no_filter() {
        assert!(compile(r#"{"defaultAction":""}"#, &[]).unwrap().is_empty());
    }

    #[test]
    fn bad_profiles_are_refused_with_docker_words() {
        let e = compile("{", &[]).unwrap_err();
        assert!(e.starts_with("decoding seccomp profile failed"), "{e}");
        let e = compile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(e.contains("unsupported action"), "{e}");
    }

    #[test]
    fn includes_and_excludes_follow_the_bounding_set() {
        let rule: SyscallRule = serde_json::from_str(
            r#"{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}"#,
        )
        .unwrap();
        assert!(!applies(&rule, &["CAP_CHOWN".into()]));
        assert!(applies(&rule, &["CAP_SYS_ADMIN".into()]));
        let rule: SyscallRule = serde_json::from_str(
            r#"{"names":["clone"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}}"#,
        )
        .unwrap();
        assert!(applies(&rule, &["CAP_CHOWN".into()]));
        assert!(!applies(&rule, &["CAP_SYS_ADMIN".into()]));
        assert!(kernel_at_least("2.6"));
        assert!(!kernel_at_least("999.0"));
    }
}
