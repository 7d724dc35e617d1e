//! `run/create --init`, `--stop-signal`, `--stop-timeout`, `--oom-score-adj`: checked at
//! create and folded into the process spec and the container's config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use rimg::container::Container;
use rimg::runtime::mounts::{MountKind, MountSpec};
use rimg::runtime::ProcessSpec;

use super::containers::{fail, parse_signal};

/// The host's static tini (Debian's `tini` package), mounted at [`INIT_TARGET`].
const INIT_SOURCE: &str = "/usr/bin/tini-static";
/// Where Docker puts its init inside the container.
const INIT_TARGET: &str = "/dev/init";
/// `stop`'s wait before SIGKILL when neither `-t` nor `--stop-timeout` says.
const DEFAULT_STOP_TIMEOUT: u64 = 10;

/// The process-lifecycle flags of `run` and `create`.
#[derive(Args, Default)]
pub struct InitFlags {
    /// Run an init (tini) as pid 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container with (overrides the image's STOPSIGNAL).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before killing the container (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Tune the container's OOM preference (-1000 to 1000).
    #[arg(
        long = "oom-score-adj",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub oom_score_adj: Option<i32>,
}

/// What `stop` uses, recorded in the container's config.
pub struct StopSettings {
    /// `--stop-signal`, checked.
    pub signal: Option<String>,
    /// `--stop-timeout`.
    pub timeout: Option<u64>,
}

impl InitFlags {
    /// Checks the flags and applies `--init` and `--oom-score-adj` to `process`.
    pub fn apply(&self, process: &mut ProcessSpec) -> Result<StopSettings> {
        if let Some(sig) = &self.stop_signal {
            parse_signal(sig).map_err(|e| fail(125, format!("{e:#}")))?;
        }
        if let Some(adj) = self.oom_score_adj {
            if !(-1000..=1000).contains(&adj) {
                return Err(fail(
                    125,
                    format!("Invalid value {adj}, range for oom score adj is [-1000, 1000]"),
                ));
            }
            process.oom_score_adj = Some(adj);
        }
        if self.init {
            if !Path::new(INIT_SOURCE).is_file() {
                return Err(fail(
                    125,
                    format!("--init needs {INIT_SOURCE} (install Debian's tini package)"),
                ));
            }
            process.mounts.push(MountSpec {
                kind: MountKind::Bind,
                source: PathBuf::from(INIT_SOURCE),
                target: INIT_TARGET.into(),
                readonly: true,
                options: Vec::new(),
            });
            let mut argv = vec![INIT_TARGET.to_string(), "--".to_string()];
            argv.append(&mut process.argv);
            process.argv = argv;
        }
        Ok(StopSettings {
            signal: self.stop_signal.clone(),
            timeout: self.stop_timeout,
        })
    }
}

/// `stop`'s timeout: `-t`, else the container's `--stop-timeout`, else 10 seconds.
pub fn stop_timeout(flag: Option<u64>, c: &Container) -> Duration {
    Duration::from_secs(
        flag.or(c.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT),
    )
}
