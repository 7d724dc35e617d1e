//! The build loop: stages in order, each instruction one step, each step either a cache hit
//! or executed (config change, a layer written directly, or a RUN through a [`Runner`]).
//!
//! A state is an image config (its `rootfs.diff_ids` name the layers); its id is the digest
//! of its serialized config, exactly the image id it would get if it were stored. The final
//! state of the target stage becomes the image.
//!
//! Timestamps: every history entry, the image's `created` and every file a step writes get
//! one epoch — `SOURCE_DATE_EPOCH` if set, else the base image's own `created` time (0 for
//! `scratch`) — so the same Dockerfile and context give the same image id on any machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rimg_fs::{Digest, LayerIndex};

use super::cache::{BuildCache, Entry, FileKey, KeyParts};
use super::context::{clean_rel, Context, HostKind};
use super::dockerfile::{self, Dockerfile, Instruction};
use super::fetch;
use super::layer::{self, DirDefaults, ImageFiles, Kind, LayerPlan, NewEntry, Source};
use super::run::{RunRequest, Runner};
use super::BuildError;
use crate::image::change::{apply_change_with, join_workdir, ChangeState, CommandForm, Lexer};
use crate::image::commit::commit_config;
use crate::image::config::{host_arch, set_env};
use crate::image::{History, Image, ImageConfig, ImageError, Images, Reference};
use crate::units;

/// The `PATH` a stage gets when its base sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// A build state: an image config and its id.
#[derive(Clone, Debug)]
struct State {
    config: ImageConfig,
    id: Digest,
}

impl State {
    fn new(config: ImageConfig) -> Self {
        let id = Digest::of(&serde_json::to_vec(&config).unwrap_or_default());
        State { config, id }
    }
}

/// One stage: its FROM and the instructions after it.
struct Stage<'a> {
    from: &'a Instruction,
    alias: Option<String>,
    body: &'a [Instruction],
}

/// Runs a build.
pub struct Builder<'a> {
    images: &'a Images,
    runner: &'a dyn Runner,
    progress: &'a mut dyn Progress,
    opts: BuildOptions,
    fetcher: Option<&'a dyn BaseImages>,
    /// Images fetched so far (each once per build).
    fetched: BTreeSet<String>,
    cache: BuildCache,
    context: Context,
    escape: char,
    /// `--build-arg` values (resolved), and which were used.
    build_args: BTreeMap<String, String>,
    used_args: BTreeSet<String>,
    /// Values of the ARGs declared before the first FROM.
    global_args: BTreeMap<String, Option<String>>,
    /// Final states of the stages built so far, by index.
    stage_states: HashMap<usize, State>,
    /// Every layer the stages ended with (pinned for the cache).
    stage_layers: BTreeSet<Digest>,
    step: usize,
    total: usize,
    cached: usize,
    ran: usize,
    files_cache: HashMap<Digest, Rc<ImageFiles>>,
    /// Layer indexes read so far (a base's is read once per build).
    index_cache: HashMap<Digest, LayerIndex>,
}

fn step_err(ins: &Instruction, message: impl std::fmt::Display) -> BuildError {
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
        let context = Context::open(&opts.context)?;
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
            opts,
        })
    }

    /// Lets the build fetch the images it names and the store lacks (and, with
    /// [`BuildOptions::pull_always`], all of them), as `docker build` pulls.
    pub fn fetch_with(mut self, fetcher: &'a dyn BaseImages) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// The image `name` from the store, fetched first when it is missing or `--pull` asks.
    fn named_image(&mut self, name: &str) -> Result<Image, String> {
        let Some(fetcher) = self.fetcher else {
            return self.images.resolve(name).map_err(|e| e.to_string());
        };
        if self.opts.pull_always && !self.fetched.contains(name) {
            self.fetch(fetcher, name)?;
        }
        match self.images.resolve(name) {
            Err(ImageError::NotFound(_)) if !self.fetched.contains(name) => {
                self.fetch(fetcher, name)?;
                self.images.resolve(name).map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
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
        let mut stages: Vec<Stage> = Vec::new();
        for (i, ins) in df.instructions.iter().enumerate().skip(first_from) {
            if ins.keyword == "FROM" {
                let f = dockerfile::parse_from(ins)?;
                let end = df.instructions[i + 1..]
                    .iter()
                    .position(|x| x.keyword == "FROM")
                    .map_or(df.instructions.len(), |p| i + 1 + p);
                stages.push(Stage {
                    from: ins,
                    alias: f.alias,
                    body: &df.instructions[i + 1..end],
                });
            }
        }
        let target = match &self.opts.target {
            Some(t) => stages
                .iter()
                .position(|s| s.alias.as_deref() == Some(&t.to_ascii_lowercase()))
                .or_else(|| t.parse::<usize>().ok().filter(|&n| n < stages.len()))
                .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
            None => stages.len().saturating_sub(1),
        };
        let needed = self.needed_stages(&stages, target);
        self.total = needed.iter().map(|&i| 1 + stages[i].body.len()).sum();
        // Keep garbage collection off the layers written until they are referenced.
        let _lease = self.images.store().lease()?;
        for &i in &needed {
            let state = match self.run_stage(&stages, i) {
                Ok(s) => s,
                Err(e) => {
                    // Keep what the steps before the failure wrote until the next prune, as
                    // Docker keeps a failed build's cache (best effort: the error matters).
                    let layers: Vec<Digest> = self.stage_layers.iter().copied().collect();
                    if !layers.is_empty() {
                        let name = Digest::of(format!("{layers:?}").as_bytes());
                        let _ = self.cache.pin_build(self.images, &name, &layers);
                    }
                    return Err(e);
                }
            };
            self.stage_layers
                .extend(state.config.rootfs.diff_ids.iter().copied());
            self.stage_states.insert(i, state);
        }
        let unused: Vec<&String> = self
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k))
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.progress.note(&format!(
                "[Warning] One or more build-args [{}] were not consumed",
                names.join(" ")
            ));
        }
        let state = self
            .stage_states
            .remove(&target)
            .ok_or_else(|| BuildError::NoTarget(target.to_string()))?;
        let layers = state.config.rootfs.diff_ids.clone();
        let image = self.images.create(&layers, state.config, &self.opts.tags)?;
        let pinned: Vec<Digest> = self.stage_layers.iter().copied().collect();
        self.cache.pin_build(self.images, &image.id, &pinned)?;
        Ok(Built {
            image,
            cached: self.cached,
            ran: self.ran,
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
                let value = match self.build_args.get(&name) {
                    Some(v) => {
                        self.used_args.insert(name.clone());
                        Some(v.clone())
                    }
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

    /// Substitutes global ARGs (the scope of FROM lines).
    fn global_word(&self, ins: &Instruction, word: &str) -> Result<String, BuildError> {
        let globals = &self.global_args;
        let lookup = |n: &str| globals.get(n).cloned().flatten();
        Lexer::with_vars(self.escape, &lookup)
            .word(word)
            .map_err(|m| step_err(ins, m))
    }

    /// The stages the target needs (FROM a stage, COPY --from a stage), in order.
    fn needed_stages(&self, stages: &[Stage], target: usize) -> Vec<usize> {
        let mut need = BTreeSet::from([target]);
        let find = |name: &str, before: usize| -> Option<usize> {
            let lower = name.to_ascii_lowercase();
            stages[..before]
                .iter()
                .position(|s| s.alias.as_deref() == Some(lower.as_str()))
                .or_else(|| name.parse::<usize>().ok().filter(|&n| n < before))
        };
        for i in (0..=target).rev() {
            if !need.contains(&i) {
                continue;
            }
            let s = &stages[i];
            if let Ok(f) = dockerfile::parse_from(s.from) {
                let image = self.global_word(s.from, &f.image).unwrap_or(f.image);
                if let Some(j) = find(&image, i) {
                    need.insert(j);
                }
            }
            for ins in s.body {
                if let Some(from) = ins.flag("from") {
                    if let Some(j) = find(from, i) {
                        need.insert(j);
                    }
                }
            }
        }
        need.into_iter().collect()
    }

    fn stage_index(&self, stages: &[Stage], name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        stages[..before]
            .iter()
            .position(|s| s.alias.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().filter(|&n| n < before))
    }

    /// The files of a state (its union tree), built once per state from indexes read once.
    fn files(&mut self, state: &State) -> Result<Rc<ImageFiles>, BuildError> {
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

    fn run_stage(&mut self, stages: &[Stage], index: usize) -> Result<State, BuildError> {
        let stage = &stages[index];
        let from = dockerfile::parse_from(stage.from)?;
        let image_name = self.global_word(stage.from, &from.image)?;
        self.step += 1;
        let started = Instant::now();
        self.progress.step(
            self.step,
            self.total,
            &format!(
                "FROM {image_name}{}",
                stage
                    .alias
                    .as_ref()
                    .map(|a| format!(" AS {a}"))
                    .unwrap_or_default()
            ),
        );
        let mut config = if image_name.eq_ignore_ascii_case("scratch") {
            ImageConfig::new_for_host()
        } else if let Some(j) = self.stage_index(stages, &image_name, index) {
            self.stage_states
                .get(&j)
                .map(|s| s.config.clone())
                .ok_or_else(|| step_err(stage.from, format!("stage {image_name} was not built")))?
        } else {
            let img = self
                .named_image(&image_name)
                .map_err(|e| step_err(stage.from, e))?;
            self.images.ensure_layers(&img)?;
            img.config
        };
        if let Some(p) = stage.from.flag("platform") {
            let p = self.global_word(stage.from, p)?;
            if p != format!("linux/{}", host_arch()) {
                return Err(step_err(
                    stage.from,
                    format!("platform {p} is not this machine's (linux/{})", host_arch()),
                ));
            }
        }
        // The base's ONBUILD triggers run right after FROM (and are not inherited).
        let triggers = config.config.on_build.take().unwrap_or_default();
        let mut trigger_ins = Vec::new();
        for t in &triggers {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))
                .ok()
                .and_then(|d| d.instructions.into_iter().nth(1))
                .ok_or_else(|| {
                    step_err(stage.from, format!("bad ONBUILD trigger in the base: {t}"))
                })?;
            trigger_ins.push(Instruction {
                line: stage.from.line,
                text: format!("ONBUILD {}", parsed.text),
                ..parsed
            });
        }
        // As Docker and podman do, a base without PATH gets the default one.
        if env_value(&config.config, "PATH").is_none() {
            config
                .config
                .env
                .get_or_insert_with(Vec::new)
                .insert(0, DEFAULT_PATH.to_string());
        }
        for k in ["container", "container_config", "docker_version"] {
            config.extra.remove(k);
        }
        let epoch = self.opts.source_date_epoch.unwrap_or_else(|| {
            config
                .created
                .as_deref()
                .and_then(units::parse_rfc3339)
                .unwrap_or(0)
        });
        let created = units::rfc3339(epoch);
        config.created = Some(created.clone());
        let mut state = State::new(config);
        self.progress
            .done(self.step, Outcome::Done, started.elapsed());

        let mut scope = Scope {
            args: BTreeMap::new(),
            change: ChangeState::default(),
            missed: self.opts.no_cache,
        };
        for ins in &trigger_ins {
            self.progress
                .note(&format!("running the base's trigger {}", ins.text));
            let (next, _) =
                self.dispatch(stages, index, ins, &state, &mut scope, epoch, &created)?;
            state = next;
        }
        for ins in stage.body {
            self.step += 1;
            let started = Instant::now();
            self.progress.step(self.step, self.total, &ins.text);
            let (next, outcome) =
                self.dispatch(stages, index, ins, &state, &mut scope, epoch, &created)?;
            match outcome {
                Outcome::Cached => self.cached += 1,
                Outcome::Done => self.ran += 1,
            }
            self.progress.done(self.step, outcome, started.elapsed());
            self.stage_layers
                .extend(next.config.rootfs.diff_ids.iter().copied());
            state = next;
        }
        Ok(state)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        stages: &[Stage],
        stage_index: usize,
        ins: &Instruction,
        state: &State,
        scope: &mut Scope,
        epoch: i64,
        created: &str,
    ) -> Result<(State, Outcome), BuildError> {
        let env_config = state.config.config.clone();
        let args_snapshot = scope.args.clone();
        let lookup = move |n: &str| -> Option<String> {
            env_value(&env_config, n).or_else(|| args_snapshot.get(n).cloned())
        };
        let lexer = Lexer::with_vars(self.escape, &lookup);
        let keyword = ins.keyword.as_str();
        match keyword {
            "ARG" => {
                let mut shown = Vec::new();
                for (name, default) in dockerfile::parse_arg(ins, self.escape)? {
                    let value = match self.build_args.get(&name) {
                        Some(v) => {
                            self.used_args.insert(name.clone());
                            Some(v.clone())
                        }
                        None => match default {
                            Some(d) => Some(lexer.word(&d).map_err(|m| step_err(ins, m))?),
                            None => self.global_args.get(&name).cloned().flatten(),
                        },
                    };
                    // As Docker: the value is not part of the step (a new value misses
                    // where it is first used, not here).
                    shown.push(name.clone());
                    if let Some(v) = value {
                        scope.args.insert(name, v);
                    }
                }
                let text = format!("ARG {}", shown.join(" "));
                self.config_step(state, scope, epoch, created, &text, |_| Ok(()))
            }
            "MAINTAINER" => {
                let who = lexer.word(&ins.args).map_err(|m| step_err(ins, m))?;
                let text = format!("MAINTAINER {who}");
                self.config_step(state, scope, epoch, created, &text, |c| {
                    c.author = Some(who.clone());
                    Ok(())
                })
            }
            "RUN" => self.run_step(ins, state, scope, epoch, created),
            "COPY" | "ADD" => self.copy_step(
                stages,
                stage_index,
                ins,
                state,
                scope,
                epoch,
                created,
                &lexer,
            ),
            "WORKDIR" => {
                let mut config = state.config.clone();
                let shell = config.config.shell.clone().unwrap_or_default();
                let text = apply_change_with(
                    &mut config.config,
                    &mut scope.change,
                    keyword,
                    &ins.args,
                    &shell,
                    &lexer,
                )
                .map_err(|e| step_err(ins, e))?;
                let dir = config.config.working_dir.clone().unwrap_or_default();
                let parts = self.parts(state, epoch, &text, Vec::new());
                if let Some(hit) = self.lookup(scope, &parts) {
                    return Ok((hit, Outcome::Cached));
                }
                self.explain(scope, &parts);
                let files = self.files(state)?;
                let exists = files.lookup_final(&dir).is_some();
                let layer = if exists || dir == "/" {
                    None
                } else {
                    let canonical = files.canonical_parent(&dir);
                    let mut plan = LayerPlan::new();
                    plan.add(
                        &canonical,
                        NewEntry {
                            kind: Kind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            mtime: epoch,
                            xattrs: Vec::new(),
                        },
                    );
                    plan.add_parents(
                        Some(&files),
                        DirDefaults {
                            uid: 0,
                            gid: 0,
                            mtime: epoch,
                        },
                    );
                    Some(layer::store_plan(self.images.store(), &plan)?)
                };
                let next = commit(config, layer, &text, created)?;
                self.record(parts, &next)?;
                Ok((next, Outcome::Done))
            }
            _ => {
                let shell = state.config.config.shell.clone().unwrap_or_default();
                let mut probe = state.config.clone();
                let mut change = scope.change.clone();
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
                    &lexer,
                )
                .map_err(|e| step_err(ins, e))?;
                scope.change = change;
                let result = probe.config;
                self.config_step(state, scope, epoch, created, &text, |c| {
                    c.config = result.clone();
                    Ok(())
                })
            }
        }
    }

    fn parts(&self, state: &State, epoch: i64, text: &str, files: Vec<FileKey>) -> KeyParts {
        KeyParts {
            parent: state.id,
            epoch,
            instruction: text.to_string(),
            files,
        }
    }

    /// A cache hit for `parts`, unless the cache is off or an earlier step missed.
    fn lookup(&mut self, scope: &mut Scope, parts: &KeyParts) -> Option<State> {
        if scope.missed {
            return None;
        }
        match self.cache.get(parts) {
            Some(e) => Some(State::new(e.config)),
            None => None,
        }
    }

    /// Marks the first miss (every later step runs) and explains it if asked.
    fn explain(&mut self, scope: &mut Scope, parts: &KeyParts) {
        if !scope.missed {
            scope.missed = true;
            if self.opts.explain {
                let why = self.cache.explain(parts);
                self.progress.note(&format!("cache miss: {why}"));
            }
        }
    }

    fn record(&self, parts: KeyParts, state: &State) -> Result<(), BuildError> {
        self.cache
            .put(&Entry {
                parts,
                config: state.config.clone(),
            })
            .map_err(|source| BuildError::Io {
                op: "write build cache entry",
                path: self.images.store().private_dir().join("build-cache"),
                source,
            })
    }

    /// A step that only changes the config (or records an ARG).
    fn config_step(
        &mut self,
        state: &State,
        scope: &mut Scope,
        epoch: i64,
        created: &str,
        text: &str,
        change: impl FnOnce(&mut ImageConfig) -> Result<(), BuildError>,
    ) -> Result<(State, Outcome), BuildError> {
        let parts = self.parts(state, epoch, text, Vec::new());
        if let Some(hit) = self.lookup(scope, &parts) {
            return Ok((hit, Outcome::Cached));
        }
        self.explain(scope, &parts);
        let mut config = state.config.clone();
        change(&mut config)?;
        let next = commit(config, None, text, created)?;
        self.record(parts, &next)?;
        Ok((next, Outcome::Done))
    }

    fn run_step(
        &mut self,
        ins: &Instruction,
        state: &State,
        scope: &mut Scope,
        epoch: i64,
        created: &str,
    ) -> Result<(State, Outcome), BuildError> {
        if ins.flags.iter().any(|f| f.name == "security") {
            return Err(step_err(ins, "RUN --security is not supported"));
        }
        let no_network = match ins.flag("network") {
            None | Some("default") | Some("host") => false,
            Some("none") => true,
            Some(other) => {
                return Err(step_err(
                    ins,
                    format!("RUN --network={other} is not supported (use default, host or none)"),
                ))
            }
        };
        let shell = state.config.config.shell.clone().unwrap_or_default();
        let form = CommandForm::parse(&ins.args);
        let argv = form.to_argv(&shell);
        let mut env = state.config.config.env.clone().unwrap_or_default();
        let mut arg_env = Vec::new();
        for (k, v) in &scope.args {
            if env_value(&state.config.config, k).is_none() {
                arg_env.push(format!("{k}={v}"));
                set_env(&mut env, k, v);
            }
        }
        let mut text = String::from("RUN ");
        if no_network {
            text.push_str("--network=none ");
        }
        if !arg_env.is_empty() {
            text.push_str(&format!("|{} {} ", arg_env.len(), arg_env.join(" ")));
        }
        text.push_str(&argv.join(" "));
        let parts = self.parts(state, epoch, &text, Vec::new());
        if let Some(hit) = self.lookup(scope, &parts) {
            return Ok((hit, Outcome::Cached));
        }
        self.explain(scope, &parts);
        let req = RunRequest {
            shown: argv.join(" "),
            argv,
            env,
            cwd: state
                .config
                .config
                .working_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: state.config.config.user.clone().unwrap_or_default(),
            epoch,
            no_network,
        };
        let layer = match self.runner.run(self.images, &state.config, &req) {
            Ok(l) => l,
            Err(e @ (BuildError::RunFailed { .. } | BuildError::Interrupted(_))) => return Err(e),
            Err(e) => return Err(step_err(ins, e)),
        };
        let next = commit(state.config.clone(), layer, &text, created)?;
        self.record(parts, &next)?;
        Ok((next, Outcome::Done))
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &mut self,
        stages: &[Stage],
        stage_index: usize,
        ins: &Instruction,
        state: &State,
        scope: &mut Scope,
        epoch: i64,
        created: &str,
        lexer: &Lexer<'_>,
    ) -> Result<(State, Outcome), BuildError> {
        let add = ins.keyword == "ADD";
        let raw = dockerfile::parse_copy(ins, self.escape)?;
        let word = |w: &str| lexer.word(w).map_err(|m| step_err(ins, m));
        let mut sources = Vec::new();
        for s in &raw.sources {
            sources.push(word(s)?);
        }
        let dest = word(&raw.dest)?;
        let chown = ins.flag("chown").map(word).transpose()?;
        let chmod = match ins.flag("chmod").map(word).transpose()? {
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| step_err(ins, format!("invalid --chmod={m}")))?,
            ),
            None => None,
        };
        let from = ins.flag("from").map(word).transpose()?;
        for f in ["exclude", "parents", "keep-git-dir"] {
            if ins.flag(f).is_some() || ins.flags.iter().any(|x| x.name == f) {
                return Err(step_err(ins, format!("--{f} is not supported")));
            }
        }
        // The state files are read from, when not the context.
        let from_state: Option<State> = match &from {
            None => None,
            Some(name) => Some(match self.stage_index(stages, name, stage_index) {
                Some(j) => self
                    .stage_states
                    .get(&j)
                    .cloned()
                    .ok_or_else(|| step_err(ins, format!("stage {name} was not built")))?,
                None => {
                    let img = self.named_image(name).map_err(|e| step_err(ins, e))?;
                    self.images.ensure_layers(&img)?;
                    State::new(img.config)
                }
            }),
        };
        let mut flags = String::new();
        if let Some(c) = &chown {
            flags.push_str(&format!("--chown={c} "));
        }
        if let Some(m) = &chmod {
            flags.push_str(&format!("--chmod={m:o} "));
        }
        let from_flag = match &from {
            Some(f) => format!("--from={f} "),
            None => String::new(),
        };
        let shown_text = format!(
            "{} {from_flag}{flags}{} {dest}",
            ins.keyword,
            sources.join(" ")
        );
        let mut key_text = shown_text.clone();
        let mut file_keys = Vec::new();
        // Downloads live until the layer is written.
        let mut downloads: Vec<tempfile_path::Download> = Vec::new();
        match &from_state {
            Some(fs) => key_text.push_str(&format!(" # from {}", fs.id)),
            None => {
                for s in &sources {
                    if fetch::is_url(s) {
                        if !add {
                            return Err(step_err(ins, "COPY cannot take a URL (use ADD)"));
                        }
                        let d = tempfile_path::Download::fetch(self.images, s)
                            .map_err(|m| step_err(ins, m))?;
                        file_keys.push(FileKey {
                            path: s.clone(),
                            mode: 0o600,
                            content: d.digest.to_string(),
                        });
                        downloads.push(d);
                        continue;
                    }
                    for m in self.context.resolve(s).map_err(|e| step_err(ins, e))? {
                        let mut entries = vec![m.entry.clone()];
                        if m.entry.kind == HostKind::Dir {
                            entries.extend(self.context.walk(&m.entry.rel)?);
                        }
                        for e in entries {
                            let content = match &e.kind {
                                HostKind::Dir => "dir".to_string(),
                                HostKind::Symlink(t) => {
                                    format!("symlink:{}", String::from_utf8_lossy(t))
                                }
                                HostKind::File(_) => self
                                    .context
                                    .hash(&e.rel)
                                    .map_err(|er| step_err(ins, er))?
                                    .to_string(),
                            };
                            file_keys.push(FileKey {
                                path: e.rel.clone(),
                                mode: e.mode,
                                content,
                            });
                        }
                    }
                }
                file_keys.sort_by(|a, b| a.path.cmp(&b.path));
                file_keys.dedup();
            }
        }
        let parts = self.parts(state, epoch, &key_text, file_keys);
        if let Some(hit) = self.lookup(scope, &parts) {
            return Ok((hit, Outcome::Cached));
        }
        self.explain(scope, &parts);

        // Plan the layer.
        let lower = self.files(state)?;
        let owner = match &chown {
            Some(c) => Some(layer::resolve_owner(Some(&lower), c).map_err(|m| step_err(ins, m))?),
            None => None,
        };
        let (uid, gid) = owner.unwrap_or((0, 0));
        let workdir = state.config.config.working_dir.clone();
        let dest_abs = if dest.starts_with('/') {
            join_workdir(None, &dest)
        } else {
            join_workdir(workdir.as_deref(), &dest)
        };
        let dest_says_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
        let mut plan = LayerPlan::new();
        let target_in =
            |dir: &str, name: &str| -> String { format!("{}/{}", dir.trim_end_matches('/'), name) };
        let dir_entry = |mode: u32| NewEntry {
            kind: Kind::Dir,
            mode,
            uid,
            gid,
            mtime: epoch,
            xattrs: Vec::new(),
        };
        let dest_is_dir_in_image = lower.is_dir(&dest_abs);
        // Archives being added live until the layer is written.
        let mut extracted: Vec<tempfile_path::Unpacked> = Vec::new();

        match &from_state {
            Some(fs) => {
                let src_files = self.files(fs)?;
                let mut matched: Vec<(String, u64)> = Vec::new();
                for s in &sources {
                    let found = image_glob(&src_files, s);
                    if found.is_empty() {
                        return Err(step_err(
                            ins,
                            format!("{s}: not found in {}", from.as_deref().unwrap_or("")),
                        ));
                    }
                    matched.extend(found);
                }
                let many = matched.len() > 1 || sources.iter().any(|s| has_glob(s));
                let as_dir = dest_says_dir || dest_is_dir_in_image;
                if many && !as_dir {
                    return Err(step_err(ins, "When using COPY with more than one source file, the destination must be a directory and end with a /"));
                }
                for (path, ino) in matched {
                    let Some(mut e) = src_files.entry(ino) else {
                        continue;
                    };
                    if e.kind == Kind::Dir {
                        if !lower.is_dir(&dest_abs) {
                            plan.add(&lower.canonical_parent(&dest_abs), dir_entry(0o755));
                        }
                        for (rel, child) in src_files.below(ino) {
                            if let Some(mut ce) = src_files.entry(child) {
                                adjust(&mut ce, owner, chmod);
                                plan.add(&lower.canonical_parent(&target_in(&dest_abs, &rel)), ce);
                            }
                        }
                        continue;
                    }
                    adjust(&mut e, owner, chmod);
                    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                    let t = if as_dir {
                        target_in(&dest_abs, &name)
                    } else {
                        dest_abs.clone()
                    };
                    plan.add(&lower.canonical_parent(&t), e);
                }
            }
            None => {
                let mut matched = Vec::new();
                let mut wildcard = false;
                for s in &sources {
                    if fetch::is_url(s) {
                        continue;
                    }
                    for m in self.context.resolve(s).map_err(|e| step_err(ins, e))? {
                        wildcard |= m.wildcard;
                        matched.push(m.entry);
                    }
                }
                let count = matched.len() + downloads.len();
                let as_dir = dest_says_dir || dest_is_dir_in_image;
                if (count > 1 || wildcard) && !as_dir {
                    return Err(step_err(ins, "When using COPY with more than one source file, the destination must be a directory and end with a /"));
                }
                for d in &downloads {
                    let name = fetch::file_name(&d.url).ok_or_else(|| {
                        step_err(
                            ins,
                            format!(
                                "cannot tell a file name from {}: end the destination with /",
                                d.url
                            ),
                        )
                    })?;
                    let t = if as_dir {
                        target_in(&dest_abs, &name)
                    } else {
                        dest_abs.clone()
                    };
                    plan.add(
                        &lower.canonical_parent(&t),
                        NewEntry {
                            kind: Kind::File {
                                source: Source::Host(d.path.clone()),
                                size: d.size,
                            },
                            mode: chmod.unwrap_or(0o600),
                            uid,
                            gid,
                            mtime: epoch,
                            xattrs: Vec::new(),
                        },
                    );
                }
                for e in matched {
                    let host = self.context.host_path(&e.rel);
                    match &e.kind {
                        HostKind::Dir => {
                            if !lower.is_dir(&dest_abs) {
                                plan.add(&lower.canonical_parent(&dest_abs), dir_entry(0o755));
                            }
                            let base = e.rel.clone();
                            for c in self.context.walk(&base)? {
                                let rel = if base.is_empty() {
                                    c.rel.clone()
                                } else {
                                    c.rel[base.len() + 1..].to_string()
                                };
                                let t = target_in(&dest_abs, &rel);
                                plan.add(
                                    &lower.canonical_parent(&t),
                                    host_entry(&self.context, &c, owner, chmod, epoch),
                                );
                            }
                        }
                        _ => {
                            if add && matches!(e.kind, HostKind::File(_)) {
                                if let Some(comp) = layer::sniff_archive(&host)
                                    .map_err(|er| step_err(ins, format!("{}: {er}", e.rel)))?
                                {
                                    let u = tempfile_path::Unpacked::open(self.images, &host, comp)
                                        .map_err(|m| step_err(ins, format!("{}: {m}", e.rel)))?;
                                    for (rel, mut ne) in u.entries.clone() {
                                        adjust(&mut ne, owner, chmod);
                                        plan.add(
                                            &lower.canonical_parent(&target_in(&dest_abs, &rel)),
                                            ne,
                                        );
                                    }
                                    extracted.push(u);
                                    continue;
                                }
                            }
                            let t = if as_dir {
                                target_in(&dest_abs, e.name())
                            } else {
                                dest_abs.clone()
                            };
                            plan.add(
                                &lower.canonical_parent(&t),
                                host_entry(&self.context, &e, owner, chmod, epoch),
                            );
                        }
                    }
                }
            }
        }
        plan.add_parents(
            Some(&lower),
            DirDefaults {
                uid,
                gid,
                mtime: epoch,
            },
        );
        let digest = layer::store_plan(self.images.store(), &plan)?;
        let next = commit(state.config.clone(), Some(digest), &shown_text, created)?;
        self.record(parts, &next)?;
        Ok((next, Outcome::Done))
    }
}

/// Per-stage variable and instruction state.
struct Scope {
    /// ARGs declared in the stage that have a value.
    args: BTreeMap<String, String>,
    change: ChangeState,
    /// A step of this stage missed the cache (or the cache is off): every later step runs.
    missed: bool,
}

fn env_value(config: &crate::image::RunConfig, name: &str) -> Option<String> {
    config.env.as_ref()?.iter().rev().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
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

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn adjust(e: &mut NewEntry, owner: Option<(u32, u32)>, chmod: Option<u32>) {
    if let Some((u, g)) = owner {
        e.uid = u;
        e.gid = g;
    }
    if let Some(m) = chmod {
        if !matches!(e.kind, Kind::Symlink(_)) {
            e.mode = m;
        }
    }
}

fn host_entry(
    ctx: &Context,
    e: &super::context::HostEntry,
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
    epoch: i64,
) -> NewEntry {
    let (uid, gid) = owner.unwrap_or((0, 0));
    let kind = match &e.kind {
        HostKind::Dir => Kind::Dir,
        HostKind::Symlink(t) => Kind::Symlink(t.clone()),
        HostKind::File(size) => Kind::File {
            source: Source::Context {
                root: ctx.root().to_path_buf(),
                rel: PathBuf::from(&e.rel),
            },
            size: *size,
        },
    };
    let mode = match (&e.kind, chmod) {
        (HostKind::Symlink(_), _) => 0o777,
        (_, Some(m)) => m,
        (_, None) => e.mode,
    };
    NewEntry {
        kind,
        mode,
        uid,
        gid,
        mtime: epoch,
        xattrs: Vec::new(),
    }
}

/// Paths in an image matching a COPY --from source (exact, or globs per component).
fn image_glob(files: &ImageFiles, pattern: &str) -> Vec<(String, u64)> {
    let Some(clean) = clean_rel(pattern) else {
        return Vec::new();
    };
    if !has_glob(&clean) {
        return files
            .lookup_final(&clean)
            .map(|i| vec![(clean.clone(), i)])
            .unwrap_or_default();
    }
    let mut current: Vec<(String, u64)> = vec![(String::new(), rimg_fs::union::ROOT_INO)];
    for comp in clean.split('/') {
        let mut next = Vec::new();
        for (path, ino) in &current {
            let Some(n) = files.tree.node(*ino) else {
                continue;
            };
            for (name, child) in &n.children {
                let name = String::from_utf8_lossy(name);
                if super::ignore::go_match(comp, &name) {
                    let p = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}/{name}")
                    };
                    next.push((p, *child));
                }
            }
        }
        current = next;
    }
    current
}

/// Files a step downloads or decompresses, kept in the store's temp directory until the
/// layer is written.
mod tempfile_path {
    use std::fs::File;
    use std::io::{self, BufReader, Seek, SeekFrom};
    use std::path::{Path, PathBuf};

    use rimg_fs::digest::HashingWriter;
    use rimg_fs::tar_stream::{EntryType, TarStream};
    use rimg_fs::Digest;

    use super::super::fetch;
    use super::super::layer::{Kind, NewEntry, Source};
    use crate::image::{Compression, Images};

    /// A downloaded URL.
    pub struct Download {
        pub url: String,
        pub path: PathBuf,
        pub size: u64,
        pub digest: Digest,
        _tmp: rimg_fs::store::TempFile,
    }

    impl Download {
        pub fn fetch(images: &Images, url: &str) -> Result<Self, String> {
            let mut tmp = images.store().temp_file().map_err(|e| e.to_string())?;
            let path = tmp.path.clone();
            let mut w = HashingWriter::new(&mut tmp.file);
            let size = fetch::fetch(url, &mut w)?;
            let (digest, _, _) = w.finish();
            Ok(Download {
                url: url.to_string(),
                path,
                size,
                digest,
                _tmp: tmp,
            })
        }
    }

    /// A local archive ADD extracts: its entries, reading data from the archive (or from a
    /// decompressed copy).
    pub struct Unpacked {
        pub entries: Vec<(String, NewEntry)>,
        _tmp: Option<rimg_fs::store::TempFile>,
    }

    impl Unpacked {
        pub fn open(images: &Images, archive: &Path, comp: Compression) -> Result<Self, String> {
            let (path, tmp) = if comp == Compression::None {
                (archive.to_path_buf(), None)
            } else {
                let mut tmp = images.store().temp_file().map_err(|e| e.to_string())?;
                let f = File::open(archive).map_err(|e| e.to_string())?;
                let mut dec = comp.decoder(BufReader::new(f)).map_err(|e| e.to_string())?;
                io::copy(&mut dec, &mut tmp.file).map_err(|e| format!("decompressing: {e}"))?;
                tmp.file
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| e.to_string())?;
                (tmp.path.clone(), Some(tmp))
            };
            let f = File::open(&path).map_err(|e| e.to_string())?;
            let mut s = TarStream::new(BufReader::with_capacity(1 << 16, f));
            let mut entries: Vec<(String, NewEntry)> = Vec::new();
            while let Some(e) = s
                .next_entry()
                .map_err(|e| format!("reading archive: {e}"))?
            {
                let rel = String::from_utf8_lossy(&e.path).into_owned();
                if rel.is_empty() {
                    continue;
                }
                // What the layer cannot hold as the archive means it is an error naming the
                // member, never a whiteout of the image's files nor a silent drop.
                let refuse = |why: &str| format!("archive member {rel}: {why}");
                if rel.split('/').any(|c| c.starts_with(".wh.")) {
                    return Err(refuse(
                        "a name starting with .wh. would be a whiteout in the layer",
                    ));
                }
                let kind = match e.kind {
                    EntryType::Directory => Kind::Dir,
                    EntryType::Regular => Kind::File {
                        source: Source::Range {
                            file: path.clone(),
                            offset: e.data_offset,
                        },
                        size: e.size,
                    },
                    EntryType::Symlink => Kind::Symlink(e.link.clone()),
                    EntryType::Hardlink => {
                        let target = String::from_utf8_lossy(&e.link)
                            .trim_start_matches("./")
                            .trim_start_matches('/')
                            .to_string();
                        match entries.iter().rev().find(|(p, _)| *p == target) {
                            Some((_, t)) if t.kind != Kind::Dir => t.kind.clone(),
                            _ => {
                                return Err(refuse(&format!(
                                    "a hard link to {target:?}, which is not an earlier file of the archive"
                                )))
                            }
                        }
                    }
                    EntryType::CharDevice if (e.dev_major, e.dev_minor) == (0, 0) => {
                        return Err(refuse(
                            "a 0:0 character device would be a whiteout in the layer",
                        ))
                    }
                    other => {
                        return Err(refuse(&format!(
                            "ADD does not add {} (only files, directories and links)",
                            match other {
                                EntryType::CharDevice => "character devices",
                                EntryType::BlockDevice => "block devices",
                                _ => "FIFOs",
                            }
                        )))
                    }
                };
                entries.push((
                    rel,
                    NewEntry {
                        kind,
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                        mtime: e.mtime,
                        xattrs: e.xattrs.clone(),
                    },
                ));
            }
            Ok(Unpacked { entries, _tmp: tmp })
        }
    }
}
