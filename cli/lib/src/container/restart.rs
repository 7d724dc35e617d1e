//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), carried out by
//! the container's monitor as Docker's daemon does: the rootfs stays mounted between runs
//! (the upper dir is kept), the delay before each restart starts at 100 ms and doubles (at
//! most a minute), and goes back to 100 ms after a run of 10 seconds or more.
//!
//! A container stopped by the user (`stop`, `kill`, `rm -f`) is not restarted: those
//! commands leave a `stopped-by-user` file in the container's dir before they signal it,
//! the monitor reads it after each exit and while it waits, and a manual `start` removes
//! it. `start --all-restartable` (the boot-time unit) starts the containers whose policy
//! is `always`, and those with `unless-stopped` that carry no such file.

use std::fmt;
use std::fs;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rimg_fs::error::{io_err, IoError};
use serde::{Deserialize, Serialize};

/// When the monitor restarts a container that exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (Docker's default).
    #[default]
    No,
    /// After a non-zero exit, at most `max_retries` times (0: without limit).
    OnFailure {
        /// Docker's `MaximumRetryCount`.
        #[serde(default)]
        max_retries: u32,
    },
    /// After every exit, unless the user stopped it; also at boot.
    Always,
    /// After every exit, unless the user stopped it; at boot only if the user had not.
    UnlessStopped,
}

impl RestartPolicy {
    /// Docker's name of the policy (`HostConfig.RestartPolicy.Name`).
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Docker's `MaximumRetryCount`.
    pub fn max_retries(self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => max_retries,
            _ => 0,
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts is started
    /// again (the user's stop is checked apart).
    pub fn should_restart(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && (max_retries == 0 || restarts < max_retries)
            }
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// Whether `start --all-restartable` starts the container (`stopped_by_user`: the
    /// user stopped it last).
    pub fn starts_at_boot(self, stopped_by_user: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !stopped_by_user,
            _ => false,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure { max_retries } if *max_retries > 0 => {
                write!(f, "on-failure:{max_retries}")
            }
            p => f.write_str(p.name()),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = String;

    /// Docker's spellings: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max_retries = match count {
                    Some(c) => c
                        .parse::<u32>()
                        .map_err(|_| format!("invalid restart policy format: maximum retry count must be an integer: {c:?}"))?,
                    None => 0,
                };
                return Ok(RestartPolicy::OnFailure { max_retries });
            }
            _ => return Err(format!("invalid restart policy format: {s:?}")),
        };
        if count.is_some() {
            return Err(format!(
                "invalid restart policy format: maximum retry count can only be used with 'on-failure': {s:?}"
            ));
        }
        Ok(policy)
    }
}

/// The delay before the next restart: Docker's restart manager.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backoff {
    delay: Duration,
}

/// The first delay.
const FIRST: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(10);

impl Backoff {
    /// The delay before restarting a container whose last run lasted `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER || self.delay.is_zero() {
            self.delay = FIRST;
        } else {
            self.delay = (self.delay * 2).min(MAX);
        }
        self.delay
    }
}

/// The file that says the user stopped the container.
const STOPPED_BY_USER: &str = "stopped-by-user";

/// Records in container dir `dir` that the user stopped the container (before it is
/// signalled), so its monitor does not restart it.
pub fn mark_stopped_by_user(dir: &Path) -> Result<(), IoError> {
    let p = dir.join(STOPPED_BY_USER);
    fs::write(&p, b"").map_err(io_err("writing", &p))
}

/// Forgets the user's stop (a manual `start`).
pub fn clear_stopped_by_user(dir: &Path) -> Result<(), IoError> {
    let p = dir.join(STOPPED_BY_USER);
    match fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IoError::new("removing", p, e)),
        _ => Ok(()),
    }
}

/// Whether the user stopped the container last.
pub fn stopped_by_user(dir: &Path) -> bool {
    dir.join(STOPPED_BY_USER).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_dockers() {
        assert_eq!("no".parse(), Ok(RestartPolicy::No));
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!("unless-stopped".parse(), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(
            "on-failure".parse(),
            Ok(RestartPolicy::OnFailure { max_retries: 0 })
        );
        assert_eq!(
            "on-failure:3".parse(),
            Ok(RestartPolicy::OnFailure { max_retries: 3 })
        );
        assert!("always:3".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert_eq!(
            RestartPolicy::OnFailure { max_retries: 3 }.to_string(),
            "on-failure:3"
        );
    }

    #[test]
    fn on_failure_counts_and_ignores_success() {
        let p = RestartPolicy::OnFailure { max_retries: 3 };
        assert!(p.should_restart(3, 0));
        assert!(p.should_restart(3, 2));
        assert!(!p.should_restart(3, 3));
        assert!(!p.should_restart(0, 0));
        assert!(RestartPolicy::OnFailure { max_retries: 0 }.should_restart(1, 1000));
        assert!(RestartPolicy::Always.should_restart(0, 1000));
        assert!(!RestartPolicy::No.should_restart(1, 0));
    }

    #[test]
    fn boot_starts_always_and_unless_stopped_not_stopped() {
        assert!(RestartPolicy::Always.starts_at_boot(true));
        assert!(RestartPolicy::UnlessStopped.starts_at_boot(false));
        assert!(!RestartPolicy::UnlessStopped.starts_at_boot(true));
        assert!(!RestartPolicy::OnFailure { max_retries: 0 }.starts_at_boot(false));
    }

    #[test]
    fn the_delay_doubles_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(50);
        assert_eq!(b.next(short), Duration::from_millis(100));
        assert_eq!(b.next(short), Duration::from_millis(200));
        assert_eq!(b.next(short), Duration::from_millis(400));
        assert_eq!(b.next(Duration::from_secs(10)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(short);
        }
        assert_eq!(b.next(short), Duration::from_secs(60));
    }

    #[test]
    fn the_policy_is_stored_as_dockers_fields() {
        let v = serde_json::to_value(RestartPolicy::OnFailure { max_retries: 2 }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "on-failure", "max_retries": 2})
        );
        let p: RestartPolicy =
            serde_json::from_value(serde_json::json!({"name": "always"})).unwrap();
        assert_eq!(p, RestartPolicy::Always);
    }
}
