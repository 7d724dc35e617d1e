//! The resource-limit flags of `run`/`create` (`-m`, `--cpus`, `--pids-limit`), stored in the
//! container's process spec and applied to its cgroup by the runtime.

use anyhow::{bail, Result};
use rimg::runtime::cgroup::{parse_bytes, Limits};

/// Resource-limit flags.
#[derive(clap::Args, Default)]
pub struct LimitFlags {
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long = "memory", value_name = "BYTES")]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long = "cpus", value_name = "DECIMAL")]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

impl LimitFlags {
    /// The limits these flags ask for.
    pub fn limits(&self) -> Result<Limits> {
        let memory = match &self.memory {
            Some(m) => match parse_bytes(m) {
                Some(b) if b >= 6 << 20 => Some(b),
                Some(_) => bail!("Minimum memory limit allowed is 6MB"),
                None => bail!("invalid size: '{m}'"),
            },
            None => None,
        };
        let cpus_micro = match self.cpus {
            Some(c) if c > 0.0 => Some((c * 1_000_000.0) as i64),
            Some(_) => bail!("invalid argument for --cpus: must be positive"),
            None => None,
        };
        Ok(Limits {
            memory,
            cpus_micro,
            pids: self.pids_limit,
        })
    }
}
