//! `docker container inspect`'s JSON for a container: the fields Docker's documentation and
//! users' scripts rely on (`{{.State.Status}}`, `{{.State.ExitCode}}`, `{{.Config.Env}}`,
//! `{{.HostConfig.NetworkMode}}`, `{{.Name}}` with its leading `/`).

use serde_json::{json, Value};

use super::{ContainerConfig, State, Status};

/// A container as `docker container inspect` shows it. `status` is the live status
/// ([`super::Container::status`]); `state` the recorded one.
pub fn docker_json(config: &ContainerConfig, state: &State, status: Status) -> Value {
    let p = &config.process;
    let (path, args) = match p.argv.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    // Docker prints the zero time for a container that never started or finished.
    let zero = "0001-01-01T00:00:00Z";
    let network = crate::network::mode_name(p.network, config.net.as_ref());
    json!({
        "Id": config.id,
        "Created": config.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": status.word(),
            "Running": status.is_running(),
            "Paused": status == Status::Paused,
            "Restarting": matches!(status, Status::Restarting(_)),
            "OOMKilled": false,
            "Dead": status == Status::Dead,
            "Pid": if matches!(status, Status::Running | Status::Paused) { state.pid } else { 0 },
            "ExitCode": match status {
                Status::Exited(code) | Status::Restarting(code) => code,
                Status::Dead => state.exit_code,
                _ => 0,
            },
            "Error": state.error.clone().unwrap_or_default(),
            "StartedAt": state.started_at.clone().unwrap_or_else(|| zero.into()),
            "FinishedAt": state.finished_at.clone().unwrap_or_else(|| zero.into()),
        },
        "Image": config.image_id.to_string(),
        "Name": format!("/{}", config.name),
        "RestartCount": state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": network,
            "AutoRemove": config.auto_remove,
            "RestartPolicy": {
                "Name": config.restart.name(),
                "MaximumRetryCount": config.restart.max_retries(),
            },
        },
        "Mounts": config.mounts.iter().map(crate::volume::inspect::mount_json).collect::<Vec<_>>(),
        "Config": {
            "Hostname": p.hostname,
            "User": p.user,
            "Tty": p.tty,
            "OpenStdin": p.interactive,
            "StdinOnce": false,
            "Env": p.env,
            "Cmd": p.argv,
            "Image": config.image,
            "WorkingDir": p.cwd,
            "Entrypoint": Value::Null,
            "StopSignal": config.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        },
        "NetworkSettings": crate::network::inspect::settings(config, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ProcessSpec;
    use rimg_fs::Digest;

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "a".repeat(64),
            name: "web-ping".into(),
            created: "2026-12-04T14:00:00.000000001Z".into(),
            image: "diamol/ch03-web-ping".into(),
            image_id: Digest::of(b"config"),
            image_manifest: Digest::of(b"manifest"),
            process: ProcessSpec {
                argv: vec!["node".into(), "/web-ping/app.js".into()],
                env: vec!["TARGET=blog.sixeyed.com".into()],
                cwd: "/web-ping".into(),
                hostname: "aaaaaaaaaaaa".into(),
                ..ProcessSpec::default()
            },
            auto_remove: false,
            stop_signal: None,
            mounts: Vec::new(),
            restart: Default::default(),
            net: None,
            stop_timeout: None,
        }
    }

    #[test]
    fn a_running_container_reads_as_dockers() {
        let state = State {
            status: "running".into(),
            pid: 4242,
            started_at: Some("2026-12-04T14:00:01Z".into()),
            ..State::default()
        };
        let v = docker_json(&config(), &state, Status::Running);
        assert_eq!(v["Name"], "/web-ping");
        assert_eq!(v["Path"], "node");
        assert_eq!(v["Args"], json!(["/web-ping/app.js"]));
        assert_eq!(v["State"]["Status"], "running");
        assert_eq!(v["State"]["Running"], true);
        assert_eq!(v["State"]["Pid"], 4242);
        assert_eq!(v["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
        assert_eq!(v["Image"], Digest::of(b"config").to_string());
        assert_eq!(v["Config"]["Image"], "diamol/ch03-web-ping");
        assert_eq!(v["Config"]["Env"], json!(["TARGET=blog.sixeyed.com"]));
        assert_eq!(v["Config"]["WorkingDir"], "/web-ping");
    }

    #[test]
    fn an_exited_container_has_its_code_and_no_pid() {
        let state = State {
            status: "exited".into(),
            pid: 4242,
            exit_code: 3,
            finished_at: Some("2026-12-04T14:00:02Z".into()),
            ..State::default()
        };
        let v = docker_json(&config(), &state, Status::Exited(3));
        assert_eq!(v["State"]["Status"], "exited");
        assert_eq!(v["State"]["Running"], false);
        assert_eq!(v["State"]["Pid"], 0);
        assert_eq!(v["State"]["ExitCode"], 3);
        assert_eq!(v["State"]["FinishedAt"], "2026-12-04T14:00:02Z");
        let dead = docker_json(&config(), &state, Status::Dead);
        assert_eq!(dead["State"]["Dead"], true);
    }

    #[test]
    fn a_restarting_container_shows_its_policy_and_count() {
        let mut c = config();
        c.restart = crate::container::restart::RestartPolicy::OnFailure { max_retries: 3 };
        let state = State {
            status: "restarting".into(),
            pid: 4242,
            exit_code: 3,
            restart_count: 2,
            ..State::default()
        };
        let v = docker_json(&c, &state, Status::Restarting(3));
        assert_eq!(v["State"]["Status"], "restarting");
        assert_eq!(v["State"]["Restarting"], true);
        assert_eq!(v["State"]["Running"], true);
        assert_eq!(v["State"]["Pid"], 0);
        assert_eq!(v["State"]["ExitCode"], 3);
        assert_eq!(v["RestartCount"], 2);
        assert_eq!(
            v["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
    }
}
