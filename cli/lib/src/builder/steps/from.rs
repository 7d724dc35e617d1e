//! FROM: a stage's first state (scratch, an earlier stage or a named image), its epoch,
//! and the base's ONBUILD triggers.

use std::collections::BTreeMap;
use std::time::Instant;

use super::super::dockerfile::{self, Instruction};
use super::super::stages::{stage_index, step_err, Builder, Outcome, Stage};
use super::super::BuildError;
use super::{StageContext, State};
use crate::image::change::ChangeState;
use crate::image::config::host_arch;
use crate::image::ImageConfig;
use crate::runtime::env::DEFAULT_PATH;
use crate::units;

/// Runs stage `index`'s FROM step: its context, and the base's triggers to run first.
pub(in crate::builder) fn from<'s>(
    b: &mut Builder<'_>,
    stages: &'s [Stage<'s>],
    index: usize,
) -> Result<(StageContext<'s>, Vec<Instruction>), BuildError> {
    let stage = &stages[index];
    let from = dockerfile::parse_from(stage.from)?;
    let image_name = b.global_word(stage.from, &from.image)?;
    b.step += 1;
    let started = Instant::now();
    let alias = stage
        .alias
        .as_ref()
        .map(|a| format!(" AS {a}"))
        .unwrap_or_default();
    b.progress
        .step(b.step, b.total, &format!("FROM {image_name}{alias}"));
    let mut config = base_config(b, stages, index, &image_name)?;
    if let Some(p) = stage.from.flag("platform") {
        let p = b.global_word(stage.from, p)?;
        if p != format!("linux/{}", host_arch()) {
            return Err(step_err(
                stage.from,
                format!("platform {p} is not this machine's (linux/{})", host_arch()),
            ));
        }
    }
    let triggers = take_triggers(&mut config, stage.from)?;
    // As Docker and podman do, a base without PATH gets the default one.
    if config.env_value("PATH").is_none() {
        config
            .config
            .env
            .get_or_insert_with(Vec::new)
            .insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    for k in ["container", "container_config", "docker_version"] {
        config.extra.remove(k);
    }
    let epoch = b.opts.source_date_epoch.unwrap_or_else(|| {
        config
            .created
            .as_deref()
            .and_then(units::parse_rfc3339)
            .unwrap_or(0)
    });
    config.created = Some(units::rfc3339(epoch));
    // The steps' history entries, and so the image's `created`, carry the build's time as
    // BuildKit's do, unless SOURCE_DATE_EPOCH pins it; file times and cache keys keep the
    // epoch, so a cached rebuild gives the same image.
    let created = units::rfc3339(b.opts.source_date_epoch.unwrap_or_else(units::now_unix));
    let cx = StageContext {
        stages,
        index,
        state: State::new(config),
        args: BTreeMap::new(),
        change: ChangeState::default(),
        missed: b.opts.no_cache,
        epoch,
        created,
    };
    b.progress.done(b.step, Outcome::Done, started.elapsed());
    Ok((cx, triggers))
}

/// The config FROM `image_name` starts from: an empty one for `scratch`, an earlier stage's
/// final state, or a named image (fetched if missing).
fn base_config(
    b: &mut Builder<'_>,
    stages: &[Stage],
    index: usize,
    image_name: &str,
) -> Result<ImageConfig, BuildError> {
    let from = stages[index].from;
    if image_name.eq_ignore_ascii_case("scratch") {
        Ok(ImageConfig::new_for_host())
    } else if let Some(j) = stage_index(stages, image_name, index) {
        b.stage_states
            .get(&j)
            .map(|s| s.config.clone())
            .ok_or_else(|| step_err(from, format!("stage {image_name} was not built")))
    } else {
        let img = b.named_image(image_name).map_err(|e| step_err(from, e))?;
        b.images.ensure_layers(&img)?;
        Ok(img.config)
    }
}

/// Removes the base's ONBUILD triggers from `config` (they are not inherited) and returns
/// them as instructions on the FROM's line, which run right after FROM.
fn take_triggers(
    config: &mut ImageConfig,
    from: &Instruction,
) -> Result<Vec<Instruction>, BuildError> {
    let triggers = config.config.on_build.take().unwrap_or_default();
    let mut out = Vec::new();
    for t in &triggers {
        let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))
            .ok()
            .and_then(|d| d.instructions.into_iter().nth(1))
            .ok_or_else(|| step_err(from, format!("bad ONBUILD trigger in the base: {t}")))?;
        out.push(Instruction {
            line: from.line,
            text: format!("ONBUILD {}", parsed.text),
            ..parsed
        });
    }
    Ok(out)
}
