//! The step loop without root: a fake [`Runner`] writes RUN's layers itself, a fake
//! [`BaseImages`] stores base images, and the store is a temp directory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;

use rimg_fs::Digest;

use super::*;
use crate::builder::layer::{self, DirDefaults, Kind, LayerPlan, NewEntry, Source};
use crate::builder::run::{BuildLease, RunRequest, Runner};
use crate::image::{ImageConfig, Images, Reference};

/// Records every RUN. `write PATH TEXT` makes a layer with the file PATH holding TEXT;
/// `fail` exits 1; anything else changes nothing.
#[derive(Default)]
struct FakeRunner {
    runs: RefCell<Vec<RunRequest>>,
}

impl FakeRunner {
    /// The commands run so far (the shell form's script).
    fn commands(&self) -> Vec<String> {
        let runs = self.runs.borrow();
        runs.iter()
            .map(|r| r.argv.last().cloned().unwrap_or_default())
            .collect()
    }
}

impl Runner for FakeRunner {
    fn run(
        &self,
        images: &Images,
        _parent: &ImageConfig,
        req: &RunRequest,
        _lease: &mut BuildLease<'_>,
    ) -> Result<Option<Digest>, BuildError> {
        self.runs.borrow_mut().push(req.clone());
        let script = req.argv.last().cloned().unwrap_or_default();
        let words: Vec<&str> = script.splitn(3, ' ').collect();
        match words.as_slice() {
            ["write", path, text] => Ok(Some(file_layer(images, path, text, req.epoch))),
            ["fail"] => Err(BuildError::RunFailed {
                command: req.shown.clone(),
                code: 1,
            }),
            _ => Ok(None),
        }
    }
}

/// A layer holding one file (and its parent directories).
fn file_layer(images: &Images, path: &str, text: &str, mtime: i64) -> Digest {
    let mut plan = LayerPlan::new();
    let entry = NewEntry {
        kind: Kind::File {
            source: Source::Bytes(text.as_bytes().to_vec()),
            size: text.len() as u64,
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime,
        xattrs: Vec::new(),
    };
    plan.add(path.trim_start_matches('/'), entry);
    let defaults = DirDefaults {
        uid: 0,
        gid: 0,
        mtime,
    };
    plan.add_parents(None, defaults);
    layer::store_plan(images.store(), &plan).unwrap()
}

/// Stores a base image (one file `/etc/base`, `Env` without PATH) under the name asked for.
struct FakeBases<'a> {
    images: &'a Images,
    fetched: RefCell<Vec<String>>,
}

impl<'a> FakeBases<'a> {
    fn new(images: &'a Images) -> Self {
        FakeBases {
            images,
            fetched: RefCell::new(Vec::new()),
        }
    }
}

impl BaseImages for FakeBases<'_> {
    fn fetch(&self, name: &str) -> Result<(), String> {
        self.fetched.borrow_mut().push(name.to_string());
        if name.starts_with("missing") {
            return Err(format!("{name}: not in the registry"));
        }
        let layer = file_layer(self.images, "/etc/base", name, 0);
        let mut config = ImageConfig::new_for_host();
        config.config.env = Some(vec!["FROM_BASE=1".into()]);
        let tag = Reference::parse(name).map_err(|e| e.to_string())?;
        self.images
            .create(&[layer], config, &[tag])
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Records progress: each step's text and outcome, and the notes.
#[derive(Default)]
struct Recorder {
    steps: Vec<String>,
    outcomes: BTreeMap<usize, Outcome>,
    notes: Vec<String>,
}

impl Progress for Recorder {
    fn step(&mut self, _n: usize, _total: usize, text: &str) {
        self.steps.push(text.to_string());
    }
    fn done(&mut self, n: usize, outcome: Outcome, _elapsed: Duration) {
        self.outcomes.insert(n, outcome);
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }
}

impl Recorder {
    /// The outcomes of the steps after FROM lines, in order.
    fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes
            .iter()
            .filter(|(n, _)| !self.steps[*n - 1].starts_with("FROM "))
            .map(|(_, o)| *o)
            .collect()
    }
}

/// A store, a context directory and the fakes.
struct Lab {
    _dir: tempfile::TempDir,
    images: Images,
    context: std::path::PathBuf,
    runner: FakeRunner,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(&dir.path().join("store")).unwrap();
        let context = dir.path().join("ctx");
        fs::create_dir(&context).unwrap();
        Lab {
            _dir: dir,
            images,
            context,
            runner: FakeRunner::default(),
        }
    }

    fn file(&self, rel: &str, text: &str) {
        let p = self.context.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn opts(&self, dockerfile: &str) -> BuildOptions {
        BuildOptions {
            dockerfile: dockerfile.to_string(),
            context: self.context.clone(),
            ..Default::default()
        }
    }

    /// Builds with the fake runner and bases; the result and what progress saw.
    fn build_with(
        &self,
        opts: BuildOptions,
        bases: Option<&FakeBases>,
    ) -> (Result<Built, BuildError>, Recorder) {
        let mut rec = Recorder::default();
        let mut b = Builder::new(&self.images, &self.runner, &mut rec, opts).unwrap();
        if let Some(f) = bases {
            b = b.fetch_with(f);
        }
        let result = b.build();
        (result, rec)
    }

    /// The message of a build that must fail.
    fn error(&self, opts: BuildOptions, bases: Option<&FakeBases>) -> String {
        let (r, _) = self.build_with(opts, bases);
        r.map(|_| ()).unwrap_err().to_string()
    }

    fn build(&self, dockerfile: &str) -> (Built, Recorder) {
        let (r, rec) = self.build_with(self.opts(dockerfile), None);
        (r.unwrap(), rec)
    }

    /// The text of `path` in `image`.
    fn read(&self, image: &Image, path: &str) -> Option<String> {
        let files = ImageFiles::open(self.images.store(), image.diff_ids()).unwrap();
        files
            .read(path, 1 << 20)
            .map(|b| String::from_utf8(b).unwrap())
    }
}

fn history(image: &Image) -> Vec<(String, bool)> {
    image
        .config
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect()
}

fn env_of(req: &RunRequest, key: &str) -> Option<String> {
    crate::image::config::env_value(&req.env, key).map(str::to_string)
}

const STAGES: &str = "\
FROM scratch AS a
RUN write /a from-a
FROM scratch AS unused
RUN write /u from-unused
FROM a AS b
RUN write /b from-b
FROM scratch
COPY --from=b /a /b /out/
";

#[test]
fn target_builds_the_stage_and_only_the_stages_it_needs() {
    let lab = Lab::new();
    let (built, rec) = lab.build(STAGES);
    assert_eq!(
        lab.runner.commands(),
        ["write /a from-a", "write /b from-b"],
        "the unused stage does not run"
    );
    assert_eq!(rec.steps.len(), 6, "{:?}", rec.steps);
    assert_eq!(lab.read(&built.image, "out/a").as_deref(), Some("from-a"));
    assert_eq!(lab.read(&built.image, "out/b").as_deref(), Some("from-b"));

    let mut opts = lab.opts(STAGES);
    opts.target = Some("A".into());
    let (built, rec) = lab.build_with(opts, None);
    let built = built.unwrap();
    assert_eq!(rec.steps, ["FROM scratch AS a", "RUN write /a from-a"]);
    assert_eq!(lab.read(&built.image, "a").as_deref(), Some("from-a"));
    assert_eq!(lab.read(&built.image, "out/a"), None);

    let mut opts = lab.opts(STAGES);
    opts.target = Some("1".into());
    let (built, _) = lab.build_with(opts, None);
    assert_eq!(
        lab.read(&built.unwrap().image, "u").as_deref(),
        Some("from-unused")
    );

    let mut opts = lab.opts(STAGES);
    opts.target = Some("nope".into());
    assert_eq!(
        lab.error(opts, None),
        "target stage \"nope\" could not be found"
    );
}

#[test]
fn args_and_env_keep_docker_scopes_across_from() {
    let lab = Lab::new();
    let dockerfile = "\
ARG G=global
ARG OVER=default
FROM scratch
RUN echo one
ARG G
ARG LOCAL=$G-local
ENV E=env-$LOCAL
RUN echo two
RUN write /f x
FROM scratch
COPY --from=0 /f /f
ARG OVER
RUN echo three
";
    let mut opts = lab.opts(dockerfile);
    opts.build_args = vec![
        ("OVER".into(), Some("given".into())),
        ("NOBODY".into(), Some("x".into())),
    ];
    let (built, rec) = lab.build_with(opts, None);
    let built = built.unwrap();
    let runs = lab.runner.runs.borrow();
    // A global ARG is not visible in a stage until the stage declares it.
    assert_eq!(env_of(&runs[0], "G"), None);
    assert_eq!(env_of(&runs[1], "G").as_deref(), Some("global"));
    assert_eq!(env_of(&runs[1], "LOCAL").as_deref(), Some("global-local"));
    assert_eq!(env_of(&runs[1], "E").as_deref(), Some("env-global-local"));
    // A stage's ARG and ENV end with it; --build-arg beats the default.
    assert_eq!(env_of(&runs[3], "G"), None);
    assert_eq!(env_of(&runs[3], "E"), None);
    assert_eq!(env_of(&runs[3], "OVER").as_deref(), Some("given"));
    // The ARGs a RUN sees are part of its text, as Docker records them.
    let h = history(&built.image);
    assert_eq!(h[2].0, "RUN |1 OVER=given /bin/sh -c echo three");
    assert_eq!(
        rec.notes,
        ["[Warning] One or more build-args [NOBODY] were not consumed"]
    );
}

#[test]
fn an_unchanged_rebuild_is_all_cache_hits_and_the_same_image() {
    let lab = Lab::new();
    lab.file("app.txt", "v1");
    let dockerfile = "\
FROM scratch
ENV A=1
WORKDIR /app
COPY app.txt .
RUN write /app/out done
";
    let (first, rec) = lab.build(dockerfile);
    assert_eq!((first.cached, first.ran), (0, 4));
    assert!(rec.outcomes().iter().all(|o| *o == Outcome::Done));
    let (second, rec) = lab.build(dockerfile);
    assert_eq!((second.cached, second.ran), (4, 0));
    assert!(rec.outcomes().iter().all(|o| *o == Outcome::Cached));
    assert_eq!(second.image.id, first.image.id);
    assert_eq!(
        lab.runner.runs.borrow().len(),
        1,
        "the cached RUN did not run"
    );

    let mut opts = lab.opts(dockerfile);
    opts.no_cache = true;
    let (third, _) = lab.build_with(opts, None);
    let third = third.unwrap();
    assert_eq!((third.cached, third.ran), (0, 4));
    assert_eq!(third.image.id, first.image.id, "builds are reproducible");
}

#[test]
fn a_changed_copy_source_reruns_that_step_and_every_later_one() {
    let lab = Lab::new();
    lab.file("app.txt", "v1");
    let dockerfile = "\
FROM scratch
RUN write /before 1
COPY app.txt /app.txt
RUN write /after 2
ENV DONE=1
";
    let (first, _) = lab.build(dockerfile);
    lab.file("app.txt", "v2");
    let mut opts = lab.opts(dockerfile);
    opts.explain = true;
    let (second, rec) = lab.build_with(opts, None);
    let second = second.unwrap();
    assert_eq!(
        rec.outcomes(),
        [Outcome::Cached, Outcome::Done, Outcome::Done, Outcome::Done]
    );
    assert_eq!(
        rec.notes,
        ["cache miss: source files changed: app.txt changed content"]
    );
    assert_eq!(
        lab.runner.commands(),
        ["write /before 1", "write /after 2", "write /after 2"]
    );
    assert_ne!(second.image.id, first.image.id);
    assert_eq!(lab.read(&second.image, "app.txt").as_deref(), Some("v2"));
}

#[test]
fn history_names_every_step_and_flags_the_ones_without_a_layer() {
    let lab = Lab::new();
    lab.file("src/a.txt", "a");
    let dockerfile = "\
FROM scratch
MAINTAINER me
ENV A=1
WORKDIR /app
WORKDIR /app
COPY --chmod=600 src /app/src/
RUN echo no changes
RUN write /app/x y
CMD [\"run\"]
";
    let before = crate::units::now_unix();
    let (built, _) = lab.build(dockerfile);
    let created = built.image.config.created.clone().unwrap();
    // No SOURCE_DATE_EPOCH: the image was created when it was built.
    assert!(
        crate::units::parse_rfc3339(&created) >= Some(before),
        "{created}"
    );
    assert_eq!(
        history(&built.image),
        [
            ("MAINTAINER me".to_string(), true),
            ("ENV A=1".to_string(), true),
            ("WORKDIR /app".to_string(), false),
            ("WORKDIR /app".to_string(), true),
            ("COPY --chmod=600 src /app/src/".to_string(), false),
            ("RUN /bin/sh -c echo no changes".to_string(), true),
            ("RUN /bin/sh -c write /app/x y".to_string(), false),
            ("CMD [\"run\"]".to_string(), true),
        ]
    );
    assert!(built
        .image
        .config
        .history
        .iter()
        .all(|h| h.created.as_deref() == Some(created.as_str())));
    assert_eq!(built.image.diff_ids().len(), 3);
    assert_eq!(built.image.config.author.as_deref(), Some("me"));
    assert_eq!(
        lab.read(&built.image, "app/src/a.txt").as_deref(),
        Some("a")
    );
    let runs = lab.runner.runs.borrow();
    assert_eq!(runs[0].cwd, "/app");
}

#[test]
fn copy_from_reads_an_earlier_stage_by_name_or_number_and_images_by_name() {
    let lab = Lab::new();
    let bases = FakeBases::new(&lab.images);
    let dockerfile = "\
FROM scratch AS build
RUN write /out/bin/tool built
FROM scratch
COPY --from=build /out/bin /usr/bin
COPY --from=0 /out/bin/tool /tool
COPY --from=base:1 /etc/base /from-image
";
    let (built, rec) = lab.build_with(lab.opts(dockerfile), Some(&bases));
    let built = built.unwrap();
    assert_eq!(
        lab.read(&built.image, "usr/bin/tool").as_deref(),
        Some("built")
    );
    assert_eq!(lab.read(&built.image, "tool").as_deref(), Some("built"));
    assert_eq!(
        lab.read(&built.image, "from-image").as_deref(),
        Some("base:1")
    );
    assert_eq!(*bases.fetched.borrow(), ["base:1"]);
    assert!(rec.notes.contains(&"pulling base:1".to_string()));
    let h = history(&built.image);
    assert_eq!(h[0].0, "COPY --from=build /out/bin /usr/bin");

    // A missing source names the stage it was looked for in.
    let opts = lab.opts("FROM scratch AS s\nFROM scratch\nCOPY --from=s /nope /\n");
    assert_eq!(
        lab.error(opts, None),
        "Dockerfile line 3: COPY --from=s /nope /: /nope: not found in s"
    );
}

#[test]
fn from_a_named_image_fetches_it_once_and_gives_it_a_path() {
    let lab = Lab::new();
    let bases = FakeBases::new(&lab.images);
    let dockerfile = "\
ARG BASE=base:2
FROM $BASE AS one
RUN echo in one
FROM ${BASE}
COPY --from=one /etc/base /copied
RUN echo in two
";
    let (built, rec) = lab.build_with(lab.opts(dockerfile), Some(&bases));
    let built = built.unwrap();
    assert_eq!(*bases.fetched.borrow(), ["base:2"]);
    assert_eq!(rec.steps[0], "FROM base:2 AS one");
    let runs = lab.runner.runs.borrow();
    assert_eq!(
        env_of(&runs[1], "PATH").as_deref(),
        Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    );
    assert_eq!(env_of(&runs[1], "FROM_BASE").as_deref(), Some("1"));
    assert_eq!(
        lab.read(&built.image, "etc/base").as_deref(),
        Some("base:2")
    );

    assert_eq!(
        lab.error(lab.opts("FROM missing:1\n"), Some(&bases)),
        "Dockerfile line 1: FROM missing:1: missing:1: not in the registry"
    );
}

#[test]
fn a_failed_run_ends_the_build_with_its_code() {
    let lab = Lab::new();
    let (err, rec) = lab.build_with(lab.opts("FROM scratch\nRUN fail\n"), None);
    let err = err.unwrap_err();
    assert_eq!(
        err.to_string(),
        "The command '/bin/sh -c fail' returned a non-zero code: 1"
    );
    assert_eq!(err.exit_code(), 1);
    assert_eq!(rec.steps, ["FROM scratch", "RUN fail"]);
}
