//! What a container process gets from its image and `run`'s flags: the environment
//! (image `Env`, then `-e`/`--env-file`, with Docker's defaults) and the command line
//! (Entrypoint + Cmd with Docker's override rules).
//! [`ProcessSpec::for_image`] puts them together with the user and working directory: the
//! process `run` and `create` start.

use super::{Network, ProcessSpec};
use crate::image::RunConfig;

/// The `PATH` a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn key_of(kv: &str) -> &str {
    kv.split_once('=').map_or(kv, |(k, _)| k)
}

fn set(env: &mut Vec<String>, kv: String) {
    let k = key_of(&kv).to_string();
    match env.iter_mut().find(|e| key_of(e) == k) {
        Some(slot) => *slot = kv,
        None => env.push(kv),
    }
}

/// Parses one `-e` argument: `KEY=VALUE` as is, `KEY` alone takes the value from `host`
/// (and is dropped when the host has none, as Docker does). The error is Docker's wording.
pub fn parse_env_arg(
    arg: &str,
    host: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let key = key_of(arg);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid environment variable: {arg}"));
    }
    if arg.contains('=') {
        return Ok(Some(arg.to_string()));
    }
    Ok(host(key).map(|v| format!("{key}={v}")))
}

/// Parses an `--env-file`: one `KEY=VALUE` (or `KEY`, from the host) per line; blank lines
/// and lines starting with `#` are skipped; values are taken literally (no quotes removed).
pub fn parse_env_file(
    text: &str,
    host: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match parse_env_arg(l, &host) {
            Ok(Some(kv)) => out.push(kv),
            Ok(None) => {}
            Err(e) => return Err(format!("line {}: {e}", i + 1)),
        }
    }
    Ok(out)
}

/// The environment of a container: `PATH` (the image's or [`DEFAULT_PATH`]), `HOSTNAME`,
/// `TERM=xterm` with a tty, then the image's `Env` and the overrides in order, later values
/// replacing earlier ones in place.
pub fn container_env(
    image_env: &[String],
    overrides: &[String],
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".into());
    }
    for kv in image_env.iter().chain(overrides) {
        set(&mut env, kv.clone());
    }
    env
}

/// Docker's command rules: `--entrypoint` replaces the image's Entrypoint and clears its
/// Cmd (an empty `--entrypoint ""` clears both); arguments after the image replace Cmd.
/// The result is Entrypoint followed by Cmd.
pub fn command_line(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let (ep, default_cmd): (Vec<String>, &[String]) = match entrypoint {
        Some("") => (Vec::new(), &[]),
        Some(e) => (vec![e.to_string()], &[]),
        None => (
            image_entrypoint.map(<[String]>::to_vec).unwrap_or_default(),
            image_cmd.unwrap_or(&[]),
        ),
    };
    let cmd = if args.is_empty() { default_cmd } else { args };
    ep.into_iter().chain(cmd.iter().cloned()).collect()
}

/// What `run`/`create` flags say about the process, over the image's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessOverrides {
    /// `--entrypoint`: replaces the image's Entrypoint and drops its Cmd (`""` clears both).
    pub entrypoint: Option<String>,
    /// The arguments after the image: replace the image's Cmd.
    pub command: Vec<String>,
    /// `--env-file` then `-e` values, `KEY=VALUE`, in order (later wins).
    pub env: Vec<String>,
    /// `-w`: the working directory, absolute.
    pub workdir: Option<String>,
    /// `-u`: the user, replacing the image's.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--network`.
    pub network: Network,
    /// `--security-opt`, `--cap-add`, `--cap-drop`, `--privileged`.
    pub security: super::Security,
    /// The cgroup the process starts in (`None`: the monitor sets the container's).
    pub cgroup: Option<std::path::PathBuf>,
}

/// Why a container cannot be made from an image and flags (Docker's words; `run` exits 125).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither the image nor the flags name a command.
    #[error("No command specified")]
    NoCommand,
    /// `-w` is not an absolute path.
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
}

impl ProcessSpec {
    /// The process of a container of an image with config `image`, as `run` makes it: the
    /// command line from Entrypoint and Cmd ([`command_line`]), the environment from `PATH`,
    /// `HOSTNAME`, `TERM`, the image's Env and the overrides ([`container_env`]), the user
    /// from `-u` or the image, the working directory from `-w` or the image or `/`.
    pub fn for_image(image: &RunConfig, o: ProcessOverrides) -> Result<Self, SpecError> {
        let argv = command_line(
            image.entrypoint.as_deref(),
            image.cmd.as_deref(),
            o.entrypoint.as_deref(),
            &o.command,
        );
        if argv.is_empty() {
            return Err(SpecError::NoCommand);
        }
        let cwd = match o.workdir {
            Some(w) if !w.starts_with('/') => return Err(SpecError::RelativeWorkdir(w)),
            Some(w) => w,
            None => image
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
        };
        let hostname = o.hostname.unwrap_or_default();
        let env = container_env(
            image.env.as_deref().unwrap_or(&[]),
            &o.env,
            &hostname,
            o.tty,
        );
        Ok(ProcessSpec {
            argv,
            env,
            cwd,
            user: o.user.or_else(|| image.user.clone()).unwrap_or_default(),
            hostname,
            tty: o.tty,
            interactive: o.interactive,
            network: o.network,
            security: o.security,
            cgroup: o.cgroup,
            netns: None,
            ..ProcessSpec::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::config::env_value;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn env_overrides_image_defaults_and_defaults_path() {
        let env = container_env(
            &s(&["INTERVAL=5", "TARGET=a"]),
            &s(&["INTERVAL=1", "NEW=x"]),
            "abc",
            true,
        );
        assert_eq!(
            env,
            s(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=abc",
                "TERM=xterm",
                "INTERVAL=1",
                "TARGET=a",
                "NEW=x"
            ])
        );
        let env = container_env(&s(&["PATH=/opt/bin"]), &[], "h", false);
        assert_eq!(env_value(&env, "PATH"), Some("/opt/bin"));
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn env_args_and_files_follow_docker() {
        let host = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(parse_env_arg("A=1=2", host).unwrap().unwrap(), "A=1=2");
        assert_eq!(parse_env_arg("HOME", host).unwrap().unwrap(), "HOME=/root");
        assert_eq!(parse_env_arg("UNSET", host).unwrap(), None);
        assert!(parse_env_arg("=x", host).is_err());
        assert!(parse_env_arg("", host).is_err());
        let f = parse_env_file("# c\n\nA=\"q\"\nHOME\nB=2\n", host).unwrap();
        assert_eq!(f, s(&["A=\"q\"", "HOME=/root", "B=2"]));
        assert!(parse_env_file("ok=1\n=bad\n", host)
            .unwrap_err()
            .starts_with("line 2"));
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_in_docker() {
        let ep = s(&["/entry.sh"]);
        let cmd = s(&["run", "--x"]);
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), None, &[]),
            s(&["/entry.sh", "run", "--x"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), None, &s(&["other"])),
            s(&["/entry.sh", "other"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), Some("sh"), &[]),
            s(&["sh"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), Some(""), &s(&["ls"])),
            s(&["ls"])
        );
        assert_eq!(command_line(None, Some(&cmd), None, &[]), cmd);
        assert!(command_line(None, None, None, &[]).is_empty());
    }

    /// An image like `web-ping`: ENTRYPOINT, CMD, ENV, USER and WORKDIR set.
    fn web_ping() -> RunConfig {
        RunConfig {
            entrypoint: Some(s(&["node", "app.js"])),
            cmd: Some(s(&["example.com"])),
            env: Some(s(&["INTERVAL=5", "TARGET=a"])),
            user: Some("node".into()),
            working_dir: Some("/app".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_image_decides_what_the_flags_leave_alone() {
        let p = ProcessSpec::for_image(&web_ping(), ProcessOverrides::default()).unwrap();
        assert_eq!(p.argv, s(&["node", "app.js", "example.com"]));
        assert_eq!(p.cwd, "/app");
        assert_eq!(p.user, "node");
        assert_eq!(env_value(&p.env, "INTERVAL"), Some("5"));
        assert_eq!(env_value(&p.env, "TERM"), None);
        assert_eq!(
            (p.tty, p.interactive, p.network),
            (false, false, Network::Host)
        );
        // An image without WORKDIR, USER or ENTRYPOINT: `/`, root, just the Cmd.
        let plain = RunConfig {
            cmd: Some(s(&["sh"])),
            working_dir: Some(String::new()),
            ..Default::default()
        };
        let p = ProcessSpec::for_image(&plain, ProcessOverrides::default()).unwrap();
        assert_eq!(
            (p.argv, p.cwd, p.user),
            (s(&["sh"]), "/".into(), String::new())
        );
    }

    #[test]
    fn flags_override_the_image_as_in_docker() {
        let o = ProcessOverrides {
            command: s(&["other.org"]),
            env: s(&["INTERVAL=1", "NEW=x"]),
            workdir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            hostname: Some("box".into()),
            tty: true,
            interactive: true,
            network: Network::None,
            ..Default::default()
        };
        let p = ProcessSpec::for_image(&web_ping(), o).unwrap();
        assert_eq!(p.argv, s(&["node", "app.js", "other.org"]));
        assert_eq!(p.cwd, "/tmp");
        assert_eq!(p.user, "1000:1000");
        assert_eq!(p.hostname, "box");
        assert_eq!(
            p.env,
            s(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box",
                "TERM=xterm",
                "INTERVAL=1",
                "TARGET=a",
                "NEW=x"
            ])
        );
        assert_eq!(
            (p.tty, p.interactive, p.network),
            (true, true, Network::None)
        );
    }

    #[test]
    fn refusals_are_dockers() {
        let o = ProcessOverrides {
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        let e = ProcessSpec::for_image(&web_ping(), o).unwrap_err();
        assert_eq!(e.to_string(), "No command specified");
        let o = ProcessOverrides {
            workdir: Some("tmp".into()),
            ..Default::default()
        };
        let e = ProcessSpec::for_image(&web_ping(), o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the working directory 'tmp' is invalid, it needs to be an absolute path"
        );
        // No command wins over a bad working directory, as before.
        let o = ProcessOverrides {
            entrypoint: Some(String::new()),
            workdir: Some("tmp".into()),
            ..Default::default()
        };
        assert_eq!(
            ProcessSpec::for_image(&web_ping(), o).unwrap_err(),
            SpecError::NoCommand
        );
    }
}
