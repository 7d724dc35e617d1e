//! The build loop: stages in order, each instruction one step, each step either a cache hit
//! or executed (the steps themselves are in [`super::steps`]).
//!
//! A state is an image config (its `rootfs.diff_ids` name the layers); its id is the digest
//! of its serialized config, exactly the image id it would get if it were stored. The final
//! state of the target stage becomes the image.
//!
//! Timestamps: every file a step writes and every cache key get one epoch —
//! `SOURCE_DATE_EPOCH` if set, else the base image's own `created` time (0 for `scratch`).
//! The history entries of the steps that run, and so the image's `created`, get the build's
//! time (as BuildKit's), or `SOURCE_DATE_EPOCH` when set: then the same Dockerfile and
//! context give the same image id on any machine. A fully cached rebuild takes the cached
//! states, so it gives the same image id either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rimg_fs::{Digest, LayerIndex};

use super::cache::{BuildCache, Entry, PROGRESS_PIN_PREFIX};
use super::cache_io;
use super::context::Context;
use super::dockerfile::{self, Dockerfile, Instruction};
use super::layer::ImageFiles;
use super::mounts::{Scratch, SecretSource};
use super::output::{self, Output};
use super::run::{BuildLease, Runner};
use super::steps::{self, State};
use super::BuildError;
use crate::image::change::Lexer;
use crate::image::config::host_arch;
use crate::image::{Image, ImageError, Images, Reference};

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The context directory.
    pub context: PathBuf,
    /// `--build-arg` values (a `None` value takes the variable from rimg's environment).
    pub build_args: Vec<(String, Option<String>)>,
    /// `--target`: the stage to stop at (default: the last).
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--explain`: say why each cache miss missed.
    pub explain: bool,
    /// Tags for the image.
    pub tags: Vec<Reference>,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// `--pull`: fetch every named image even when the store has it.
    pub pull_always: bool,
    /// `--secret`s, by id, for `RUN --mount=type=secret`.
    pub secrets: Vec<(String, SecretSource)>,
    /// `--ssh` agent sockets, by id, for `RUN --mount=type=ssh`.
    pub ssh: Vec<(String, PathBuf)>,
    /// `--label`s set on the image.
    pub labels: Vec<(String, String)>,
    /// `-o`: export the final stage's files instead of creating an image.
    pub output: Option<Output>,
    /// `--cache-to type=local,dest=DIR`: export the steps of this build there.
    pub cache_to: Option<PathBuf>,
    /// `--cache-from type=local,src=DIR`: import exported steps before building.
    pub cache_from: Vec<PathBuf>,
    /// Ignore rules replacing the context's `.dockerignore` (`<Dockerfile>.dockerignore`).
    pub ignore_text: Option<String>,
    /// `--add-host`: (name, address) lines added to RUN steps' `/etc/hosts`.
    pub add_hosts: Vec<(String, String)>,
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reused from the cache.
    Cached,
    /// Executed.
    Done,
}

/// Fetches images a build names (`FROM`, `COPY --from`) into the store: the binary pulls
/// them from their registry.
pub trait BaseImages {
    /// Makes `name` present in the store, fetching it (again, with `--pull`) from where it
    /// lives. The error is one line.
    fn fetch(&self, name: &str) -> Result<(), String>;
}

/// Receives progress as the build goes.
pub trait Progress {
    /// Step `n` of `total` starts.
    fn step(&mut self, n: usize, total: usize, text: &str);
    /// Step `n` ended.
    fn done(&mut self, n: usize, outcome: Outcome, elapsed: Duration);
    /// A remark: a cache-miss explanation or a warning.
    fn note(&mut self, text: &str);
}

/// The result of a build.
#[derive(Clone, Debug)]
pub struct Built {
    /// The image.
    pub image: Image,
    /// How many steps were cache hits.
    pub cached: usize,
    /// How many steps ran.
    pub ran: usize,
}

/// One stage: its FROM and the instructions after it.
pub(super) struct Stage<'a> {
    pub(super) from: &'a Instruction,
    pub(super) alias: Option<String>,
    pub(super) body: &'a [Instruction],
}

/// The index of the stage `name` (its alias or its number) among the stages before `before`.
pub(super) fn stage_index(stages: &[Stage], name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    stages[..before]
        .iter()
        .position(|s| s.alias.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|&n| n < before))
}

/// Runs a build. What the whole build shares lives here; what one stage's steps share is
/// a `StageContext` (`steps/`).
pub struct Builder<'a> {
    pub(super) images: &'a Images,
    pub(super) runner: &'a dyn Runner,
    pub(super) progress: &'a mut dyn Progress,
    pub(super) opts: BuildOptions,
    fetcher: Option<&'a dyn BaseImages>,
    /// Images fetched so far (each once per build).
    fetched: BTreeSet<String>,
    pub(super) cache: BuildCache,
    pub(super) context: Context,
    pub(super) escape: char,
    /// `--build-arg` values (resolved), and which were used.
    pub(super) build_args: BTreeMap<String, String>,
    pub(super) used_args: BTreeSet<String>,
    /// Values of the ARGs declared before the first FROM.
    pub(super) global_args: BTreeMap<String, Option<String>>,
    /// Final states of the stages built so far, by index.
    pub(super) stage_states: HashMap<usize, State>,
    /// Every layer the stages ended with (pinned for the cache).
    stage_layers: BTreeSet<Digest>,
    pub(super) step: usize,
    pub(super) total: usize,
    cached: usize,
    ran: usize,
    files_cache: HashMap<Digest, Rc<ImageFiles>>,
    /// Layer indexes read so far (a base's is read once per build).
    index_cache: HashMap<Digest, LayerIndex>,
    /// The build's lease on the store, let go of while a RUN step's command runs.
    pub(super) lease: BuildLease<'a>,
    /// How many of `stage_layers` the progress pin holds.
    progress_pinned: usize,
    /// Secrets and scripts for RUN steps, made when a step first needs them.
    scratch: Option<Scratch>,
    /// The cache entries this build hit or wrote (what `--cache-to` exports).
    pub(super) used_entries: Vec<Entry>,
}

/// This build's progress pin: the process's pid and start time, so a pin whose build is gone
/// is known stale.
fn progress_pin_name() -> String {
    let pid = std::process::id();
    let start = i32::try_from(pid)
        .ok()
        .and_then(crate::container::process_start_time)
        .unwrap_or(0);
    format!("{PROGRESS_PIN_PREFIX}{pid}-{start}")
}

/// A step's error, naming its line and text.
pub(super) fn step_err(ins: &Instruction, message: impl std::fmt::Display) -> BuildError {
    BuildError::Step {
        line: ins.line,
        text: ins.text.clone(),
        message: message.to_string(),
    }
}

impl<'a> Builder<'a> {
    /// Prepares a build of `opts` into `images`.
    pub fn new(
        images: &'a Images,
        runner: &'a dyn Runner,
        progress: &'a mut dyn Progress,
        opts: BuildOptions,
    ) -> Result<Self, BuildError> {
        let mut context = Context::open(&opts.context)?;
        if let Some(text) = &opts.ignore_text {
            context = context.with_ignore(text);
        }
        let mut build_args = BTreeMap::new();
        for (k, v) in &opts.build_args {
            match v {
                Some(v) => {
                    build_args.insert(k.clone(), v.clone());
                }
                None => {
                    if let Ok(v) = std::env::var(k) {
                        build_args.insert(k.clone(), v);
                    }
                }
            }
        }
        Ok(Builder {
            images,
            runner,
            progress,
            cache: BuildCache::new(images.store()),
            context,
            escape: '\\',
            build_args,
            used_args: BTreeSet::new(),
            global_args: BTreeMap::new(),
            stage_states: HashMap::new(),
            stage_layers: BTreeSet::new(),
            step: 0,
            total: 0,
            cached: 0,
            ran: 0,
            files_cache: HashMap::new(),
            index_cache: HashMap::new(),
            fetcher: None,
            fetched: BTreeSet::new(),
            scratch: None,
            used_entries: Vec::new(),
            opts,
            lease: BuildLease::new(images.store()),
            progress_pinned: 0,
        })
    }

    /// The build's scratch directory (made on first use, with a copy of every secret).
    pub(super) fn scratch(&mut self) -> Result<&mut Scratch, BuildError> {
        let s = match self.scratch.take() {
            Some(s) => s,
            None => Scratch::new(&self.images.store().private_dir(), &self.opts.secrets)?,
        };
        Ok(self.scratch.insert(s))
    }

    /// Lets the build fetch the images it names and the store lacks (and, with
    /// [`BuildOptions::pull_always`], all of them), as `docker build` pulls.
    pub fn fetch_with(mut self, fetcher: &'a dyn BaseImages) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// The image `name` from the store, fetched first when it is missing or `--pull` asks.
    pub(super) fn named_image(&mut self, name: &str) -> Result<Image, String> {
        let Some(fetcher) = self.fetcher else {
            return self.images.resolve(name).map_err(|e| crate::error_line(&e));
        };
        if self.opts.pull_always && !self.fetched.contains(name) {
            self.fetch(fetcher, name)?;
        }
        match self.images.resolve(name) {
            Err(ImageError::NotFound(_)) if !self.fetched.contains(name) => {
                self.fetch(fetcher, name)?;
                self.images.resolve(name).map_err(|e| crate::error_line(&e))
            }
            other => other.map_err(|e| crate::error_line(&e)),
        }
    }

    fn fetch(&mut self, fetcher: &dyn BaseImages, name: &str) -> Result<(), String> {
        // A note first: it ends the step's line, so the fetch's own output starts on a new one.
        self.progress.note(&format!("pulling {name}"));
        fetcher.fetch(name)?;
        self.fetched.insert(name.to_string());
        Ok(())
    }

    /// Parses the Dockerfile, builds the target stage and the stages it needs, and stores
    /// and tags the image.
    pub fn build(mut self) -> Result<Built, BuildError> {
        let df: Dockerfile = dockerfile::parse(&self.opts.dockerfile)?;
        self.escape = df.escape;
        let first_from = df
            .instructions
            .iter()
            .position(|i| i.keyword == "FROM")
            .unwrap_or(0);
        self.init_global_args(&df.instructions[..first_from])?;
        let stages = split_stages(&df.instructions, first_from)?;
        let target = self.target(&stages)?;
        let needed = self.needed_stages(&stages, target);
        self.total = needed.iter().map(|&i| 1 + stages[i].body.len()).sum();
        // Keep garbage collection off the layers written until they are referenced (a RUN
        // step lets go of the lease while its command runs: see `pin_progress`).
        self.lease.take()?;
        for dir in self.opts.cache_from.clone() {
            let n = cache_io::import(self.images, &self.cache, &dir)?;
            self.progress
                .note(&format!("imported {n} cached steps from {}", dir.display()));
        }
        for &i in &needed {
            let state = match self.run_stage(&stages, i) {
                Ok(s) => s,
                Err(e) => {
                    self.keep_failed_steps();
                    self.unpin_progress();
                    return Err(e);
                }
            };
            self.stage_layers
                .extend(state.config.rootfs.diff_ids.iter().copied());
            self.stage_states.insert(i, state);
        }
        self.warn_unused_args();
        let state = self
            .stage_states
            .remove(&target)
            .ok_or_else(|| BuildError::NoTarget(target.to_string()))?;
        if let Some(dir) = &self.opts.cache_to {
            cache_io::export(self.images, &self.used_entries, dir)?;
        }
        let mut config = state.config;
        if !self.opts.labels.is_empty() {
            let labels = config.config.labels.get_or_insert_with(Default::default);
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        if let Some(out) = &self.opts.output {
            // No image: an unlisted state for the export's mount.
            let bytes = serde_json::to_vec(&config).map_err(|e| {
                rimg_fs::error::IoError::new("serialize", "config", std::io::Error::other(e))
            })?;
            let image = self.images.write_image(&bytes)?;
            output::export(self.images, &image, out)?;
            return Ok(Built {
                image,
                cached: self.cached,
                ran: self.ran,
            });
        }
        let layers = config.rootfs.diff_ids.clone();
        let image = self.images.create(&layers, config, &self.opts.tags)?;
        let pinned: Vec<Digest> = self.stage_layers.iter().copied().collect();
        self.cache.pin_build(self.images, &image.id, &pinned)?;
        self.unpin_progress();
        Ok(Built {
            image,
            cached: self.cached,
            ran: self.ran,
        })
    }

    /// Before a RUN step lets go of the lease: pins the layers of the stages built so far
    /// (`COPY --from` and the image need them after the step), as `building-<pid>-<start>`,
    /// which `image prune` drops once that process is gone. The stage's own state is pinned
    /// by the step's mount.
    pub(super) fn pin_progress(&mut self) -> Result<(), BuildError> {
        if self.progress_pinned == self.stage_layers.len() {
            return Ok(());
        }
        let layers: Vec<Digest> = self.stage_layers.iter().copied().collect();
        self.images.pin_volatile(&progress_pin_name(), &layers)?;
        self.progress_pinned = layers.len();
        Ok(())
    }

    /// Drops the progress pin (the build's own pins hold what it keeps).
    fn unpin_progress(&mut self) {
        if self.progress_pinned > 0 {
            let _ = self.images.unpin(&progress_pin_name());
            self.progress_pinned = 0;
        }
    }

    /// Keeps what the steps before a failure wrote until the next prune, as Docker keeps a
    /// failed build's cache (best effort: the build's error matters more).
    fn keep_failed_steps(&self) {
        let layers: Vec<Digest> = self.stage_layers.iter().copied().collect();
        if !layers.is_empty() {
            let name = Digest::of(format!("{layers:?}").as_bytes());
            let _ = self.cache.pin_build(self.images, &name, &layers);
        }
    }

    fn warn_unused_args(&mut self) {
        let unused: Vec<&str> = self
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            self.progress.note(&format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            ));
        }
    }

    /// The stage `--target` names (an alias or a number), else the last.
    fn target(&self, stages: &[Stage]) -> Result<usize, BuildError> {
        Ok(match &self.opts.target {
            Some(t) => stages
                .iter()
                .position(|s| s.alias.as_deref() == Some(&t.to_ascii_lowercase()))
                .or_else(|| t.parse::<usize>().ok().filter(|&n| n < stages.len()))
                .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
            None => stages.len().saturating_sub(1),
        })
    }

    fn predefined_args() -> Vec<(String, String)> {
        let arch = host_arch();
        let platform = format!("linux/{arch}");
        vec![
            ("TARGETPLATFORM".into(), platform.clone()),
            ("TARGETOS".into(), "linux".into()),
            ("TARGETARCH".into(), arch.into()),
            ("TARGETVARIANT".into(), String::new()),
            ("BUILDPLATFORM".into(), platform),
            ("BUILDOS".into(), "linux".into()),
            ("BUILDARCH".into(), arch.into()),
            ("BUILDVARIANT".into(), String::new()),
        ]
    }

    fn init_global_args(&mut self, args: &[Instruction]) -> Result<(), BuildError> {
        for (k, v) in Self::predefined_args() {
            self.global_args.insert(k, Some(v));
        }
        for ins in args {
            for (name, default) in dockerfile::parse_arg(ins, self.escape)? {
                let value = match self.take_build_arg(&name) {
                    Some(v) => Some(v),
                    None => match default {
                        Some(d) => Some(self.global_word(ins, &d)?),
                        None => None,
                    },
                };
                self.global_args.insert(name, value);
            }
        }
        Ok(())
    }

    /// The `--build-arg` value of `name`, marked as used.
    pub(super) fn take_build_arg(&mut self, name: &str) -> Option<String> {
        let v = self.build_args.get(name)?.clone();
        self.used_args.insert(name.to_string());
        Some(v)
    }

    /// Substitutes global ARGs (the scope of FROM lines).
    pub(super) fn global_word(&self, ins: &Instruction, word: &str) -> Result<String, BuildError> {
        let globals = &self.global_args;
        let lookup = |n: &str| globals.get(n).cloned().flatten();
        Lexer::with_vars(self.escape, &lookup)
            .word(word)
            .map_err(|m| step_err(ins, m))
    }

    /// The stages the target needs (FROM a stage, COPY --from a stage), in order.
    fn needed_stages(&self, stages: &[Stage], target: usize) -> Vec<usize> {
        let mut need = BTreeSet::from([target]);
        for i in (0..=target).rev() {
            if !need.contains(&i) {
                continue;
            }
            let s = &stages[i];
            if let Ok(f) = dockerfile::parse_from(s.from) {
                let image = self.global_word(s.from, &f.image).unwrap_or(f.image);
                if let Some(j) = stage_index(stages, &image, i) {
                    need.insert(j);
                }
            }
            for ins in s.body {
                // COPY --from=, RUN --mount=...,from=
                let mount_froms = ins
                    .flags
                    .iter()
                    .filter(|f| f.name == "mount")
                    .filter_map(|f| f.value.as_deref())
                    .flat_map(|v| v.split(','))
                    .filter_map(|kv| kv.strip_prefix("from="));
                for from in ins.flag("from").into_iter().chain(mount_froms) {
                    if let Some(j) = stage_index(stages, from, i) {
                        need.insert(j);
                    }
                }
            }
        }
        need.into_iter().collect()
    }

    /// The files of a state (its union tree), built once per state from indexes read once.
    pub(super) fn files(&mut self, state: &State) -> Result<Rc<ImageFiles>, BuildError> {
        if let Some(f) = self.files_cache.get(&state.id) {
            return Ok(f.clone());
        }
        let store = self.images.store();
        let mut indexes = Vec::with_capacity(state.config.rootfs.diff_ids.len());
        for d in &state.config.rootfs.diff_ids {
            if !self.index_cache.contains_key(d) {
                self.index_cache.insert(*d, store.layer_index(d)?);
            }
            if let Some(i) = self.index_cache.get(d) {
                indexes.push(i.clone());
            }
        }
        let f = Rc::new(ImageFiles::from_indexes(store, &indexes));
        self.files_cache.insert(state.id, f.clone());
        Ok(f)
    }

    /// Builds stage `index`: its FROM, the base's ONBUILD triggers, then its instructions.
    fn run_stage(&mut self, stages: &[Stage], index: usize) -> Result<State, BuildError> {
        let (mut cx, triggers) = steps::from::from(self, stages, index)?;
        for ins in &triggers {
            self.progress
                .note(&format!("running the base's trigger {}", ins.text));
            steps::dispatch(self, &mut cx, ins)?;
        }
        for ins in stages[index].body {
            self.step += 1;
            let started = Instant::now();
            self.progress.step(self.step, self.total, &ins.text);
            let outcome = steps::dispatch(self, &mut cx, ins)?;
            match outcome {
                Outcome::Cached => self.cached += 1,
                Outcome::Done => self.ran += 1,
            }
            self.progress.done(self.step, outcome, started.elapsed());
            self.stage_layers
                .extend(cx.state.config.rootfs.diff_ids.iter().copied());
        }
        Ok(cx.state)
    }
}

/// The stages of a Dockerfile whose first FROM is instruction `first_from`.
fn split_stages(
    instructions: &[Instruction],
    first_from: usize,
) -> Result<Vec<Stage<'_>>, BuildError> {
    let mut stages: Vec<Stage> = Vec::new();
    for (i, ins) in instructions.iter().enumerate().skip(first_from) {
        if ins.keyword == "FROM" {
            let f = dockerfile::parse_from(ins)?;
            let end = instructions[i + 1..]
                .iter()
                .position(|x| x.keyword == "FROM")
                .map_or(instructions.len(), |p| i + 1 + p);
            stages.push(Stage {
                from: ins,
                alias: f.alias,
                body: &instructions[i + 1..end],
            });
        }
    }
    Ok(stages)
}

#[cfg(test)]
mod tests;
