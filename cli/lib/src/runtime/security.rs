//! How a container process is confined beyond its namespaces: its seccomp profile, its
//! capabilities and `no_new_privs` — what `--security-opt`, `--cap-add` and `--cap-drop`
//! set, kept in the container's config so `exec` gets the same. [`Confinement`] is the
//! resolved form the runtime applies: computed before the fork, so a bad profile or name
//! fails `create`/`run` with Docker's message rather than inside the child.

use caps::Capability;
use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use super::{caps as capabilities, seccomp};

/// The seccomp profile of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format (the file's content, read at create).
    Custom(String),
}

/// The confinement options of a container (Docker's defaults when empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// The seccomp profile.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// Set `no_new_privs` (`--security-opt no-new-privileges`): setuid binaries and file
    /// capabilities grant nothing.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `--cap-add`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability, no seccomp, the host's devices, `/sys` and `/proc`
    /// unprotected, as Docker gives.
    #[serde(default)]
    pub privileged: bool,
}

impl Security {
    /// Applies one `--security-opt` (`seccomp=unconfined`, `seccomp=PROFILE.json`,
    /// `no-new-privileges[=true|false]`; `:` also separates, as older Docker allowed).
    /// Profiles are read from the file now.
    pub fn apply_option(&mut self, opt: &str) -> Result<(), String> {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("no-new-privileges", None) => self.no_new_privileges = true,
            ("no-new-privileges", Some(v)) => {
                self.no_new_privileges = v
                    .parse::<bool>()
                    .map_err(|_| format!("invalid --security-opt 2: {opt:?}"))?
            }
            ("seccomp", Some("unconfined")) => self.seccomp = SeccompProfile::Unconfined,
            ("seccomp", Some("builtin")) => self.seccomp = SeccompProfile::Default,
            ("seccomp", Some(path)) if !path.is_empty() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("opening seccomp profile ({path}) failed: {e}"))?;
                self.seccomp = SeccompProfile::Custom(text);
            }
            // Nothing to confine with on this host; Docker accepts these there too.
            ("apparmor", Some(_)) | ("label", Some(_)) => {}
            _ => return Err(format!("invalid --security-opt: {opt:?}")),
        }
        Ok(())
    }

    /// Resolves the options: the capability set and the compiled seccomp filters.
    pub fn resolve(&self) -> Result<Confinement, String> {
        if self.privileged {
            return Ok(Confinement {
                caps: capabilities::resolve(&["ALL".into()], &[])?,
                filters: Vec::new(),
                no_new_privileges: self.no_new_privileges,
                privileged: true,
            });
        }
        let caps = capabilities::resolve(&self.cap_add, &self.cap_drop)?;
        let filters = match &self.seccomp {
            SeccompProfile::Unconfined => Vec::new(),
            SeccompProfile::Default => seccomp::compile(seccomp::DEFAULT_PROFILE, &caps)?,
            SeccompProfile::Custom(text) => seccomp::compile(text, &caps)?,
        };
        Ok(Confinement {
            caps,
            filters,
            no_new_privileges: self.no_new_privileges,
            privileged: false,
        })
    }
}

/// Resolved [`Security`], ready for the container process.
#[derive(Clone, Debug)]
pub struct Confinement {
    /// Bounding, effective and permitted set.
    pub caps: Vec<Capability>,
    /// The seccomp filters, installed in this order.
    pub filters: Vec<BpfProgram>,
    /// Set `no_new_privs`.
    pub no_new_privileges: bool,
    /// `--privileged`.
    pub privileged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opts_in_dockers_spellings() {
        let mut s = Security::default();
        s.apply_option("no-new-privileges").unwrap();
        assert!(s.no_new_privileges);
        s.apply_option("no-new-privileges=false").unwrap();
        assert!(!s.no_new_privileges);
        s.apply_option("no-new-privileges:true").unwrap();
        assert!(s.no_new_privileges);
        s.apply_option("seccomp=unconfined").unwrap();
        assert_eq!(s.seccomp, SeccompProfile::Unconfined);
        assert!(s.apply_option("seccomp=/no/such/profile.json").is_err());
        assert!(s.apply_option("bogus").is_err());
    }

    #[test]
    fn the_default_resolves_to_dockers_caps_and_filters() {
        let c = Security::default().resolve().unwrap();
        assert_eq!(c.caps.len(), 14);
        assert!(!c.filters.is_empty());
        assert!(!c.no_new_privileges);
        let u = Security {
            seccomp: SeccompProfile::Unconfined,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(u.filters.is_empty());
    }
}
