//! Steps that only change the config (no layer): ARG, MAINTAINER, and ENV, CMD, LABEL and
//! the other instructions `image::change` applies.

use super::super::dockerfile::{self, Instruction};
use super::super::stages::{step_err, Builder, Outcome};
use super::super::BuildError;
use super::StageContext;
use crate::image::change::{apply_change_with, Lexer};
use crate::image::ImageConfig;

/// ARG: declares the stage's variables (a `--build-arg`, else the default, else the global
/// ARG's value). As Docker, the value is not part of the step (a new value misses where it
/// is first used, not here).
pub(in crate::builder) fn arg(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
    lexer: &Lexer<'_>,
) -> Result<Outcome, BuildError> {
    let mut shown = Vec::new();
    for (name, default) in dockerfile::parse_arg(ins, b.escape)? {
        let value = match b.take_build_arg(&name) {
            Some(v) => Some(v),
            None => match default {
                Some(d) => Some(lexer.word(&d).map_err(|m| step_err(ins, m))?),
                None => b.global_args.get(&name).cloned().flatten(),
            },
        };
        shown.push(name.clone());
        if let Some(v) = value {
            cx.args.insert(name, v);
        }
    }
    let text = format!("ARG {}", shown.join(" "));
    config_step(b, cx, &text, |_| {})
}

/// MAINTAINER: the image's author.
pub(in crate::builder) fn maintainer(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
    lexer: &Lexer<'_>,
) -> Result<Outcome, BuildError> {
    let who = lexer.word(&ins.args).map_err(|m| step_err(ins, m))?;
    let text = format!("MAINTAINER {who}");
    config_step(b, cx, &text, |c| c.author = Some(who))
}

/// Every other instruction (ENV, CMD, LABEL, USER, SHELL, ONBUILD, ...): the change
/// `image::change` makes to the run config.
pub(in crate::builder) fn change(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
    lexer: &Lexer<'_>,
) -> Result<Outcome, BuildError> {
    let keyword = ins.keyword.as_str();
    let shell = cx.state.config.config.shell.clone().unwrap_or_default();
    let mut probe = cx.state.config.clone();
    let mut change = cx.change.clone();
    let args = if keyword == "HEALTHCHECK" {
        dockerfile::flags_text(ins)
    } else {
        ins.args.clone()
    };
    let text = apply_change_with(
        &mut probe.config,
        &mut change,
        keyword,
        &args,
        &shell,
        lexer,
    )
    .map_err(|e| step_err(ins, e))?;
    cx.change = change;
    let result = probe.config;
    config_step(b, cx, &text, |c| c.config = result)
}

/// A step that only changes the config (or records an ARG): its key is the parent state
/// and `text`, and it adds a history entry with no layer.
fn config_step(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    text: &str,
    change: impl FnOnce(&mut ImageConfig),
) -> Result<Outcome, BuildError> {
    let parts = cx.key(text, Vec::new());
    if b.cache_hit(cx, &parts) {
        return Ok(Outcome::Cached);
    }
    let mut config = cx.state.config.clone();
    change(&mut config);
    b.commit_step(cx, parts, config, None, text)
}
