//! `rimg build` (and `rimg image build`): a Dockerfile and a context directory into an image.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use console::style;
use rimg::builder::run::MountRunner;
use rimg::builder::{BaseImages, BuildError, BuildOptions, Builder, Outcome, Progress};
use rimg::image::{Images, Reference};
use rimg::units;

use super::registry::{pull_reference, Out, PullHow};
use super::{outln, Ctx, ExitStatus};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// `tty` when stdout is a terminal, else `plain`.
    Auto,
    /// One line per event.
    Plain,
    /// Each step's line rewritten in place with its outcome, in colour when stdout is a
    /// colour terminal (`NO_COLOR`, `CLICOLOR=0` and `CLICOLOR_FORCE` are honoured).
    Tty,
}

/// Flags of `rimg build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag for the image, NAME[:TAG]; repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build-time variable, KEY=VALUE (KEY alone takes it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// On a cache miss, say which part of the key changed.
    #[arg(long)]
    pub explain: bool,
    /// Pull every image the Dockerfile names, even those the store has (missing ones are
    /// always pulled).
    #[arg(long)]
    pub pull: bool,
    /// The build context directory.
    pub context: PathBuf,
    /// The network of RUN steps: default (a bridge), host or none.
    #[arg(long, default_value = "default")]
    pub network: String,
}

/// Prints progress lines.
struct Printer {
    tty: bool,
    quiet: bool,
    /// The step line printed without its outcome (tty mode).
    open: Option<String>,
    current: String,
}

impl Printer {
    fn write(&self, s: &str) {
        let mut o = io::stdout().lock();
        let _ = o.write_all(s.as_bytes());
        let _ = o.flush();
    }
}

impl Progress for Printer {
    fn step(&mut self, n: usize, total: usize, text: &str) {
        if self.quiet {
            return;
        }
        let line = format!("[{n}/{total}] {text}");
        self.current = format!("[{n}/{total}]");
        if self.tty {
            // RUN prints output under its line; other steps get their outcome on the same line.
            if text
                .split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("RUN"))
            {
                self.write(&format!("{}\n", style(&line).bold()));
                self.open = None;
            } else {
                self.write(&style(&line).bold().to_string());
                self.open = Some(line);
            }
        } else {
            self.write(&format!("{line}\n"));
        }
    }

    fn done(&mut self, _n: usize, outcome: Outcome, elapsed: Duration) {
        if self.quiet {
            return;
        }
        let status = match outcome {
            Outcome::Cached => "CACHED".to_string(),
            Outcome::Done => format!("DONE {:.2}s", elapsed.as_secs_f64()),
        };
        if self.tty {
            let status = match outcome {
                Outcome::Cached => style(status).cyan(),
                Outcome::Done => style(status).green(),
            };
            match self.open.take() {
                Some(line) => self.write(&format!("\r\x1b[K{line}  {status}\n")),
                None => self.write(&format!("{}  {status}\n", self.current)),
            }
        } else {
            self.write(&format!("{} {status}\n", self.current));
        }
    }

    fn note(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        if let Some(line) = self.open.take() {
            self.write(&format!("\r\x1b[K{line}\n"));
        }
        if text.starts_with("[Warning]") {
            eprintln!("{text}");
        } else {
            self.write(&format!("{} {text}\n", self.current));
        }
    }
}

/// Pulls the images a Dockerfile names from their registries, printing `docker pull`'s lines
/// among the build's.
struct Puller<'a> {
    images: &'a Images,
    quiet: bool,
}

impl BaseImages for Puller<'_> {
    fn fetch(&self, name: &str) -> std::result::Result<(), String> {
        let reference = Reference::parse(name).map_err(|e| e.to_string())?;
        let how = PullHow::implicit(Out::Stdout, self.quiet, false);
        pull_reference(self.images, &reference, &how).map_err(|e| rimg::error_line(e.as_ref()))
    }
}

/// Builds the image.
pub fn run(ctx: &Ctx, a: BuildArgs) -> Result<u8> {
    let mut tags = Vec::new();
    for t in &a.tags {
        let r = Reference::parse(t).with_context(|| format!("invalid tag {t:?}"))?;
        if r.digest.is_some() {
            bail!("invalid tag {t}: a tag cannot carry a digest");
        }
        tags.push(r);
    }
    let context = a.context.clone();
    if !context.is_dir() {
        bail!(
            "unable to prepare context: path {:?} not found or not a directory",
            context.display().to_string()
        );
    }
    let dockerfile = match &a.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from standard input")?;
            s
        }
        Some(p) => {
            fs::read_to_string(p).with_context(|| format!("reading Dockerfile {}", p.display()))?
        }
        None => {
            let p = context.join("Dockerfile");
            fs::read_to_string(&p).with_context(|| format!("reading Dockerfile {}", p.display()))?
        }
    };
    let build_args = a
        .build_args
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (kv.clone(), None),
        })
        .collect();
    let opts = BuildOptions {
        dockerfile,
        context,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        explain: a.explain,
        tags: tags.clone(),
        source_date_epoch: units::source_date_epoch(),
        pull_always: a.pull,
    };
    let tty = match a.progress {
        ProgressMode::Auto => io::stdout().is_terminal(),
        ProgressMode::Plain => false,
        ProgressMode::Tty => true,
    };
    let mut printer = Printer {
        tty,
        quiet: a.quiet,
        open: None,
        current: String::new(),
    };
    let images = ctx.images()?;
    let network: rimg::builder::run::BuildNetwork = a.network.parse().map_err(|e: String| {
        anyhow::Error::new(super::ExitStatus {
            code: 125,
            message: e,
        })
    })?;
    let runner = MountRunner::new(a.quiet).with_network(network);
    let puller = Puller {
        images: &images,
        quiet: a.quiet,
    };
    let built = match Builder::new(&images, &runner, &mut printer, opts)
        .and_then(|b| b.fetch_with(&puller).build())
    {
        Ok(b) => b,
        Err(e @ (BuildError::RunFailed { .. } | BuildError::Interrupted(_))) => {
            let code = e.exit_code().clamp(1, 255) as u8;
            return Err(ExitStatus {
                code,
                message: e.to_string(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    if a.quiet {
        outln(&built.image.id.to_string())?;
        return Ok(0);
    }
    outln(&format!("Successfully built {}", built.image.id.short()))?;
    for t in &tags {
        outln(&format!(
            "Successfully tagged {}:{}",
            t.repository(),
            t.tag_or_latest()
        ))?;
    }
    Ok(0)
}
