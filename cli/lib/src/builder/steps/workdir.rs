//! WORKDIR: the config's working directory, and a layer with the directory when the state
//! lacks it.

use super::super::dockerfile::Instruction;
use super::super::layer::{self, DirDefaults, Kind, LayerPlan, NewEntry};
use super::super::stages::{step_err, Builder, Outcome};
use super::super::BuildError;
use super::StageContext;
use crate::image::change::{apply_change_with, Lexer};

/// Runs a WORKDIR step (or takes its cache hit).
pub(in crate::builder) fn workdir(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
    lexer: &Lexer<'_>,
) -> Result<Outcome, BuildError> {
    let mut config = cx.state.config.clone();
    let shell = config.config.shell.clone().unwrap_or_default();
    let text = apply_change_with(
        &mut config.config,
        &mut cx.change,
        &ins.keyword,
        &ins.args,
        &shell,
        lexer,
    )
    .map_err(|e| step_err(ins, e))?;
    let dir = config.config.working_dir.clone().unwrap_or_default();
    let parts = cx.key(&text, Vec::new());
    if b.cache_hit(cx, &parts) {
        return Ok(Outcome::Cached);
    }
    let files = b.files(&cx.state)?;
    let layer = if files.lookup_final(&dir).is_some() || dir == "/" {
        None
    } else {
        let mut plan = LayerPlan::new();
        let dir_entry = NewEntry {
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: cx.epoch,
            xattrs: Vec::new(),
        };
        plan.add(&files.canonical_parent(&dir), dir_entry);
        let defaults = DirDefaults {
            uid: 0,
            gid: 0,
            mtime: cx.epoch,
        };
        plan.add_parents(Some(&files), defaults);
        Some(layer::store_plan(b.images.store(), &plan)?)
    };
    b.commit_step(cx, parts, config, layer, &text)
}
