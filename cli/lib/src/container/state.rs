//! The container state machine: the live [`Status`] from the recorded [`State`] and two
//! live checks, and what each status allows (youki's `can_*` predicates). Pure, so its
//! table tests run without root.

use super::{State, Status};

impl Status {
    /// The live status from the recorded `state`, whether its monitor still holds its lock
    /// (`monitor_alive`) and whether its recorded pid 1 still runs (`process_alive`, the
    /// pid with its recorded start time).
    ///
    /// A recorded `running` container whose monitor and process are both gone is
    /// [`Status::Dead`] (the machine rebooted, or the monitor was killed); a `restarting`
    /// one without its monitor too. Anything unknown is [`Status::Created`].
    pub fn from_record(state: &State, monitor_alive: bool, process_alive: bool) -> Status {
        match state.status.as_str() {
            "running" if monitor_alive || process_alive => {
                if state.paused {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
            "running" => Status::Dead,
            "exited" => Status::Exited(state.exit_code),
            "restarting" if monitor_alive => Status::Restarting(state.exit_code),
            "restarting" => Status::Dead,
            _ => Status::Created,
        }
    }

    /// `start` starts it: created, exited or dead (a running one is left as it is).
    pub fn can_start(self) -> bool {
        !self.is_running()
    }

    /// `pause` freezes it: only a running, not yet paused container.
    pub fn can_pause(self) -> bool {
        self == Status::Running
    }

    /// `unpause` thaws it: only a paused container.
    pub fn can_unpause(self) -> bool {
        self == Status::Paused
    }

    /// `exec` runs a process in it: only a running, not paused container.
    pub fn can_exec(self) -> bool {
        self == Status::Running
    }

    /// `attach` connects to it: only a running, not paused container.
    pub fn can_attach(self) -> bool {
        self == Status::Running
    }

    /// `kill` signals it: running or paused (a restarting one has no process to signal).
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    /// `rm` removes it: when it does not run, or always with `force` (which kills it
    /// first).
    pub fn can_remove(self, force: bool) -> bool {
        force || !self.is_running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, paused: bool, exit_code: i32) -> State {
        State {
            status: status.into(),
            paused,
            exit_code,
            ..State::default()
        }
    }

    #[test]
    fn every_recorded_state_and_live_check_gives_its_status() {
        // (recorded status, paused, monitor alive, process alive) -> status
        let table = [
            ("created", false, false, false, Status::Created),
            ("created", false, true, true, Status::Created),
            ("", false, false, false, Status::Created),
            ("running", false, true, true, Status::Running),
            ("running", false, true, false, Status::Running),
            ("running", false, false, true, Status::Running),
            ("running", false, false, false, Status::Dead),
            ("running", true, true, true, Status::Paused),
            ("running", true, false, true, Status::Paused),
            ("running", true, false, false, Status::Dead),
            ("exited", false, false, false, Status::Exited(3)),
            ("exited", false, true, true, Status::Exited(3)),
            ("restarting", false, true, false, Status::Restarting(3)),
            ("restarting", false, false, false, Status::Dead),
            ("restarting", false, false, true, Status::Dead),
        ];
        for (recorded, paused, monitor, process, want) in table {
            let got = Status::from_record(&state(recorded, paused, 3), monitor, process);
            assert_eq!(
                got, want,
                "{recorded:?} paused={paused} monitor={monitor} process={process}"
            );
        }
    }

    #[test]
    fn every_status_allows_what_docker_allows() {
        // status -> (start, pause, unpause, exec, attach, kill, rm, rm -f)
        let table = [
            (
                Status::Created,
                [true, false, false, false, false, false, true, true],
            ),
            (
                Status::Running,
                [false, true, false, true, true, true, false, true],
            ),
            (
                Status::Paused,
                [false, false, true, false, false, true, false, true],
            ),
            (
                Status::Restarting(1),
                [false, false, false, false, false, false, false, true],
            ),
            (
                Status::Exited(0),
                [true, false, false, false, false, false, true, true],
            ),
            (
                Status::Dead,
                [true, false, false, false, false, false, true, true],
            ),
        ];
        for (s, want) in table {
            let got = [
                s.can_start(),
                s.can_pause(),
                s.can_unpause(),
                s.can_exec(),
                s.can_attach(),
                s.can_kill(),
                s.can_remove(false),
                s.can_remove(true),
            ];
            assert_eq!(got, want, "{s:?}");
        }
    }
}
