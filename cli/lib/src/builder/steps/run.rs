//! RUN: the command through the build's [`Runner`](super::super::run::Runner), its changes
//! the step's layer; heredocs become the script, `--mount`s the runner's extra mounts.

use std::fs;
use std::os::unix::fs::symlink;

use rimg_fs::error::io_err;

use super::super::cache::FileKey;
use super::super::context::HostKind;
use super::super::dockerfile::Instruction;
use super::super::heredoc;
use super::super::mounts::{cache_dir, RunMount, StepMount};
use super::super::run::{BuildNetwork, RunRequest};
use super::super::stages::{step_err, Builder, Outcome};
use super::super::BuildError;
use super::copy::{source_entries, source_keys, source_state};
use super::{StageContext, State};
use crate::image::change::{CommandForm, Lexer};
use crate::image::config::set_env;
use crate::runtime::write_etc_files;

/// Where a heredoc script with a `#!` line is mounted, as BuildKit does.
const PIPES: &str = "/dev/pipes";

/// Runs a RUN step (or takes its cache hit). Its key is the command as run (a heredoc's body
/// included), its network mode, its mounts' identities (and the context files a bind mount
/// shows) and the stage's ARGs the Env does not override (`|2 A=1 B=2 ...`, as Docker).
pub(in crate::builder) fn run(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
    lexer: &Lexer<'_>,
) -> Result<Outcome, BuildError> {
    if ins.flags.iter().any(|f| f.name == "security") {
        return Err(step_err(ins, "RUN --security is not supported"));
    }
    let network = match ins.flag("network") {
        None => None,
        Some(n) => Some(n.parse::<BuildNetwork>().map_err(|_| {
            step_err(
                ins,
                format!("RUN --network={n} is not supported (use default, host or none)"),
            )
        })?),
    };
    let no_network = network == Some(BuildNetwork::None);
    let mut mounts = Vec::new();
    for f in ins.flags.iter().filter(|f| f.name == "mount") {
        let raw = f.value.as_deref().unwrap_or("");
        let value = lexer.word(raw).map_err(|m| step_err(ins, m))?;
        let m =
            RunMount::parse(&value).map_err(|e| step_err(ins, format!("--mount={value}: {e}")))?;
        mounts.push(m);
    }
    let (argv_tail, script) = command(ins)?;
    let mut req = request(cx, argv_tail, no_network);
    req.network = network;
    let mut files: Vec<FileKey> = Vec::new();
    let mut ids = Vec::new();
    for m in &mounts {
        let mut id = m.identity();
        match m {
            RunMount::Bind {
                source, from: None, ..
            } => files.extend(source_keys(b, ins, source, None)?),
            RunMount::Bind {
                from: Some(from), ..
            } => {
                let state = from_state(b, cx, ins, from)?;
                id.push_str(&format!(" # from {}", state.id));
            }
            _ => {}
        }
        ids.push(id);
    }
    for (host, ip) in &b.opts.add_hosts {
        ids.push(format!("--add-host={host}:{ip}"));
    }
    let text = key_text(&req, &arg_env(cx), &ids);
    let parts = cx.key(&text, files);
    if b.cache_hit(cx, &parts) {
        return Ok(Outcome::Cached);
    }
    if let Some((name, data)) = script {
        let path = b.scratch()?.write(data.as_bytes(), 0o755)?;
        req.mounts.push(StepMount::Host {
            source: path,
            target: format!("{PIPES}/{name}"),
            read_only: true,
        });
    }
    if !b.opts.add_hosts.is_empty() {
        req.mounts.push(hosts_file(b, no_network)?);
    }
    for m in &mounts {
        if let Some(sm) = prepare(b, cx, ins, m, &mut req)? {
            req.mounts.push(sm);
        }
    }
    b.pin_progress()?;
    let layer = match b.runner.run(b.images, &cx.state.config, &req, &mut b.lease) {
        Ok(l) => l,
        Err(e @ (BuildError::RunFailed { .. } | BuildError::Interrupted(_))) => return Err(e),
        Err(e) => return Err(step_err(ins, crate::error_line(&e))),
    };
    let config = cx.state.config.clone();
    b.commit_step(cx, parts, config, layer, &text)
}

/// The command's shell-form text (heredocs folded in as BuildKit does) or JSON form, and a
/// `#!` script to mount at `/dev/pipes/NAME` and run. A RUN that is only `<<EOF` runs the
/// body (as a file when it starts with `#!`); otherwise the bodies follow the line and the
/// shell reads them as its own heredocs.
fn command(ins: &Instruction) -> Result<(String, Option<(String, String)>), BuildError> {
    if ins.heredocs.is_empty() {
        return Ok((ins.args.clone(), None));
    }
    let line = ins.args.trim();
    if let (Some(only), [doc]) = (heredoc::parse_word(line), ins.heredocs.as_slice()) {
        if only.name == doc.name {
            let data = doc.data();
            if data.starts_with("#!") {
                let name = doc.name.replace('/', "_");
                return Ok((format!("{PIPES}/{name}"), Some((name, data))));
            }
            return Ok((data, None));
        }
    }
    let mut full = line.to_string();
    for doc in &ins.heredocs {
        full.push('\n');
        full.push_str(&doc.content);
        full.push_str(&doc.name);
    }
    Ok((full, None))
}

/// `--add-host`: the step's `/etc/hosts` (what the runtime would write, plus the extra
/// names), mounted over the runtime's.
fn hosts_file(b: &mut Builder<'_>, no_network: bool) -> Result<StepMount, BuildError> {
    let dir = b.scratch()?.dir()?;
    write_etc_files(&dir, "buildkitsandbox", !no_network).map_err(io_err("write", &dir))?;
    let path = dir.join("hosts");
    let mut text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
    for (host, ip) in &b.opts.add_hosts {
        text.push_str(&format!("{ip}\t{host}\n"));
    }
    fs::write(&path, text).map_err(io_err("write", &path))?;
    Ok(StepMount::Host {
        source: path,
        target: "/etc/hosts".into(),
        read_only: false,
    })
}

/// The state a `from=` bind names: an earlier stage, or an image.
fn from_state(
    b: &mut Builder<'_>,
    cx: &StageContext<'_>,
    ins: &Instruction,
    name: &str,
) -> Result<State, BuildError> {
    source_state(b, cx, ins, Some(name))?
        .ok_or_else(|| step_err(ins, format!("{name}: no such stage or image")))
}

/// What the runner mounts for `m` (secrets and context files copied into the build's
/// scratch dir, a cache dir created); `None` for an optional secret or agent not given.
fn prepare(
    b: &mut Builder<'_>,
    cx: &StageContext<'_>,
    ins: &Instruction,
    m: &RunMount,
    req: &mut RunRequest,
) -> Result<Option<StepMount>, BuildError> {
    Ok(Some(match m {
        RunMount::Bind {
            target,
            source,
            from: None,
            rw,
        } => {
            let entries = source_entries(b, ins, source, None)?;
            let scratch = b.scratch()?.dir()?;
            let single_file = entries.len() == 1 && !matches!(entries[0].kind, HostKind::Dir);
            let base = entries.first().map(|e| e.rel.clone()).unwrap_or_default();
            let root = if single_file {
                scratch.join("file")
            } else {
                scratch.clone()
            };
            for e in &entries {
                let rel = if e.rel == base {
                    String::new()
                } else if base.is_empty() {
                    e.rel.clone()
                } else {
                    e.rel[base.len() + 1..].to_string()
                };
                let dst = if rel.is_empty() {
                    root.clone()
                } else {
                    root.join(&rel)
                };
                match &e.kind {
                    HostKind::Dir => fs::create_dir_all(&dst).map_err(io_err("create", &dst))?,
                    HostKind::Symlink(t) => {
                        let t = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(t);
                        symlink(t, &dst).map_err(io_err("symlink", &dst))?
                    }
                    HostKind::File(_) => {
                        let src = b.context.host_path(&e.rel);
                        fs::copy(&src, &dst).map_err(io_err("copy", &src))?;
                    }
                }
            }
            StepMount::Host {
                source: root,
                target: target.clone(),
                read_only: !rw,
            }
        }
        RunMount::Bind {
            target,
            source,
            from: Some(from),
            rw,
        } => StepMount::State {
            config: Box::new(from_state(b, cx, ins, from)?.config),
            source: source.clone(),
            target: target.clone(),
            rw: *rw,
        },
        RunMount::Cache {
            target,
            id,
            sharing,
            mode,
            uid,
            gid,
            read_only,
        } => StepMount::Cache {
            dir: cache_dir(&b.images.store().private_dir(), id, *mode, *uid, *gid)?,
            target: target.clone(),
            sharing: *sharing,
            read_only: *read_only,
        },
        RunMount::Tmpfs { target, size } => StepMount::Tmpfs {
            target: target.clone(),
            size: *size,
        },
        RunMount::Secret {
            id,
            target,
            required,
            mode,
            uid,
            gid,
        } => match b.scratch()?.secret(id, *mode, *uid, *gid)? {
            Some(path) => StepMount::Host {
                source: path,
                target: target.clone(),
                read_only: true,
            },
            None if *required => {
                return Err(step_err(
                    ins,
                    format!("secret {id} not found (use --secret id={id},src=FILE)"),
                ))
            }
            None => return Ok(None),
        },
        RunMount::Ssh {
            id,
            target,
            required,
        } => match b.opts.ssh.iter().find(|(i, _)| i == id) {
            Some((_, sock)) => {
                set_env(&mut req.env, "SSH_AUTH_SOCK", target);
                StepMount::Host {
                    source: sock.clone(),
                    target: target.clone(),
                    read_only: false,
                }
            }
            None if *required => {
                return Err(step_err(
                    ins,
                    format!("no SSH agent {id} was given (use --ssh {id})"),
                ))
            }
            None => return Ok(None),
        },
    }))
}

/// The stage's ARGs the state's Env does not set, as `KEY=value`.
fn arg_env(cx: &StageContext<'_>) -> Vec<String> {
    cx.args
        .iter()
        .filter(|(k, _)| cx.state.env(k).is_none())
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// What the runner gets: the command (shell form wrapped in the state's shell), the Env
/// plus the ARGs it does not override, the workdir and the user.
fn request(cx: &StageContext<'_>, args: String, no_network: bool) -> RunRequest {
    let state: &State = &cx.state;
    let run = &state.config.config;
    let shell = run.shell.clone().unwrap_or_default();
    let argv = CommandForm::parse(&args).to_argv(&shell);
    let mut env = run.env.clone().unwrap_or_default();
    for (k, v) in &cx.args {
        if state.env(k).is_none() {
            set_env(&mut env, k, v);
        }
    }
    RunRequest {
        shown: argv.join(" "),
        argv,
        env,
        cwd: run
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: run.user.clone().unwrap_or_default(),
        epoch: cx.epoch,
        no_network,
        mounts: Vec::new(),
        network: None,
    }
}

/// The step's text, its cache key and history entry: the mounts by identity (a secret by its
/// id, never its content).
fn key_text(req: &RunRequest, arg_env: &[String], mounts: &[String]) -> String {
    let mut text = String::from("RUN ");
    if req.no_network {
        text.push_str("--network=none ");
    }
    for m in mounts {
        text.push_str(m);
        text.push(' ');
    }
    if !arg_env.is_empty() {
        text.push_str(&format!("|{} {} ", arg_env.len(), arg_env.join(" ")));
    }
    text.push_str(&req.shown);
    text
}
