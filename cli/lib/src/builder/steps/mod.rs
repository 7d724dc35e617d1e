//! The steps: one module per instruction kind, each a function of the [`Builder`] (what the
//! whole build shares) and a [`StageContext`] (what the stage's steps share).
//!
//! Every step follows one pattern: expand the instruction, key it ([`KeyParts`]: the
//! parent state, the expanded text, the input files), take the cache hit if there is one
//! ([`Builder::cache_hit`]), else do the work and commit the result ([`Builder::commit_step`]).

pub(super) mod config;
pub(super) mod copy;
pub(super) mod from;
pub(super) mod run;
mod sources;
pub(super) mod workdir;

use std::collections::BTreeMap;

use rimg_fs::Digest;

use super::cache::{Entry, FileKey, KeyParts};
use super::dockerfile::Instruction;
use super::stages::{Builder, Outcome, Stage};
use super::BuildError;
use crate::image::change::{ChangeState, Lexer};
use crate::image::commit::commit_config;
use crate::image::config::env_value;
use crate::image::{History, ImageConfig};

/// A build state: an image config and its id.
#[derive(Clone, Debug)]
pub(super) struct State {
    pub(super) config: ImageConfig,
    pub(super) id: Digest,
}

impl State {
    pub(super) fn new(config: ImageConfig) -> Self {
        let id = Digest::of(&serde_json::to_vec(&config).unwrap_or_default());
        State { config, id }
    }

    /// The value of `name` in the state's `Env`.
    fn env(&self, name: &str) -> Option<&str> {
        self.config.env_value(name)
    }
}

/// One stage being built: where it is in the Dockerfile, its state so far, and the
/// variable, instruction and cache state its steps share.
pub(super) struct StageContext<'s> {
    /// All the stages (`COPY --from` reads the ones before).
    pub(super) stages: &'s [Stage<'s>],
    /// This stage's index in `stages`.
    pub(super) index: usize,
    /// The state the last step left.
    pub(super) state: State,
    /// ARGs declared in the stage that have a value.
    pub(super) args: BTreeMap<String, String>,
    /// What earlier config-only instructions of the stage set (CMD seen, ...).
    pub(super) change: ChangeState,
    /// A step of this stage missed the cache (or the cache is off): every later step runs.
    pub(super) missed: bool,
    /// The build's timestamp for this stage (seconds since the epoch).
    pub(super) epoch: i64,
    /// `epoch` as RFC 3339, every history entry's `created`.
    pub(super) created: String,
}

impl StageContext<'_> {
    /// The cache key of a step on the current state.
    fn key(&self, text: &str, files: Vec<FileKey>) -> KeyParts {
        KeyParts {
            parent: self.state.id,
            epoch: self.epoch,
            instruction: text.to_string(),
            files,
        }
    }
}

/// Runs one instruction of the stage `cx` (its variables expanded in the scope of the
/// state before it) and leaves its result in `cx.state`.
pub(super) fn dispatch(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
) -> Result<Outcome, BuildError> {
    // ENV wins over ARG; both as they were before this instruction.
    let env = cx.state.config.config.env.clone().unwrap_or_default();
    let args = cx.args.clone();
    let lookup = move |n: &str| -> Option<String> {
        env_value(&env, n)
            .map(str::to_string)
            .or_else(|| args.get(n).cloned())
    };
    let lexer = Lexer::with_vars(b.escape, &lookup);
    match ins.keyword.as_str() {
        "ARG" => config::arg(b, cx, ins, &lexer),
        "MAINTAINER" => config::maintainer(b, cx, ins, &lexer),
        "RUN" => run::run(b, cx, ins, &lexer),
        "COPY" | "ADD" => copy::copy(b, cx, ins, &lexer, &lookup),
        "WORKDIR" => workdir::workdir(b, cx, ins, &lexer),
        _ => config::change(b, cx, ins, &lexer),
    }
}

impl Builder<'_> {
    /// Takes the cache hit for `parts` as the stage's state, unless the cache is off or an
    /// earlier step missed. On a miss, marks the stage missed (every later step runs) and,
    /// with `--explain`, says why the first miss missed.
    pub(super) fn cache_hit(&mut self, cx: &mut StageContext<'_>, parts: &KeyParts) -> bool {
        if cx.missed {
            return false;
        }
        if let Some(e) = self.cache.get(parts) {
            cx.state = State::new(e.config.clone());
            self.used_entries.push(e);
            return true;
        }
        cx.missed = true;
        if self.opts.explain {
            let why = self.cache.explain(parts);
            self.progress.note(&format!("cache miss: {why}"));
        }
        false
    }

    /// Appends a step's history entry `text` (and its layer, if any) to `config`, records
    /// the result in the cache under `parts`, and makes it the stage's state.
    pub(super) fn commit_step(
        &mut self,
        cx: &mut StageContext<'_>,
        parts: KeyParts,
        config: ImageConfig,
        layer: Option<Digest>,
        text: &str,
    ) -> Result<Outcome, BuildError> {
        let next = commit(config, layer, text, &cx.created)?;
        self.record(parts, &next)?;
        cx.state = next;
        Ok(Outcome::Done)
    }

    fn record(&mut self, parts: KeyParts, state: &State) -> Result<(), BuildError> {
        let entry = Entry {
            parts,
            config: state.config.clone(),
        };
        self.used_entries.push(entry.clone());
        self.cache.put(&entry).map_err(|source| {
            rimg_fs::error::IoError::new(
                "write build cache entry",
                self.images.store().private_dir().join("build-cache"),
                source,
            )
            .into()
        })
    }
}

/// Appends a history entry (and the layer, if any) to a config, as `commit` does.
fn commit(
    config: ImageConfig,
    layer: Option<Digest>,
    text: &str,
    created: &str,
) -> Result<State, BuildError> {
    let history = History {
        created: Some(created.to_string()),
        created_by: Some(text.to_string()),
        ..Default::default()
    };
    Ok(State::new(commit_config(
        Some(&config),
        layer.as_ref(),
        history,
        &[],
    )?))
}
