//! RUN: the command through the build's [`Runner`](super::super::run::Runner), its changes
//! the step's layer.

use super::super::dockerfile::Instruction;
use super::super::run::{BuildNetwork, RunRequest};
use super::super::stages::{step_err, Builder, Outcome};
use super::super::BuildError;
use super::{StageContext, State};
use crate::image::change::CommandForm;
use crate::image::config::set_env;

/// Runs a RUN step (or takes its cache hit). Its key is the command as run, its network
/// mode and the stage's ARGs the Env does not override (`|2 A=1 B=2 ...`, as Docker).
pub(in crate::builder) fn run(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
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
    let mut req = request(cx, &ins.args, no_network);
    req.network = network;
    let text = key_text(&req, &arg_env(cx));
    let parts = cx.key(&text, Vec::new());
    if b.cache_hit(cx, &parts) {
        return Ok(Outcome::Cached);
    }
    let layer = match b.runner.run(b.images, &cx.state.config, &req) {
        Ok(l) => l,
        Err(e @ (BuildError::RunFailed { .. } | BuildError::Interrupted(_))) => return Err(e),
        Err(e) => return Err(step_err(ins, crate::error_line(&e))),
    };
    let config = cx.state.config.clone();
    b.commit_step(cx, parts, config, layer, &text)
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
fn request(cx: &StageContext<'_>, args: &str, no_network: bool) -> RunRequest {
    let state: &State = &cx.state;
    let run = &state.config.config;
    let shell = run.shell.clone().unwrap_or_default();
    let argv = CommandForm::parse(args).to_argv(&shell);
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
        network: None,
    }
}

/// The step's text, its cache key and history entry.
fn key_text(req: &RunRequest, arg_env: &[String]) -> String {
    let mut text = String::from("RUN ");
    if req.no_network {
        text.push_str("--network=none ");
    }
    if !arg_env.is_empty() {
        text.push_str(&format!("|{} {} ", arg_env.len(), arg_env.join(" ")));
    }
    text.push_str(&req.shown);
    text
}
