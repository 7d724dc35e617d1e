//! `wait`: block until a container stops, then its exit code (Docker's `not-running`
//! condition: a container that is not running answers at once).

use std::time::Duration;

use super::{Container, Result};

/// How often [`Container::wait_exit`] looks at the monitor lock and the process. Waiting on
/// the lock itself would make a `start` racing the wait find the lock taken.
const POLL: Duration = Duration::from_millis(50);

impl Container {
    /// Blocks until the container is not running (its monitor has let go of the lock and
    /// its process is gone), then returns the exit code recorded by the monitor. A created
    /// or exited container returns at once; one whose monitor was killed gives 137, as its
    /// clean-up records.
    pub fn wait_exit(&mut self) -> Result<i32> {
        while self.monitor_alive() || self.live_pid().is_some() {
            std::thread::sleep(POLL);
        }
        self.reload()?;
        Ok(match self.state.status.as_str() {
            // The monitor died without recording the exit.
            "running" => 137,
            _ => self.state.exit_code,
        })
    }
}
