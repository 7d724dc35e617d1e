//! `rimg build` (and `rimg image build`): a Dockerfile and a context directory into an image.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use console::style;
use rimg::builder::cache_io;
use rimg::builder::mounts::SecretSource;
use rimg::builder::output::Output;
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
    /// No progress (as `-q`, but the result lines are printed).
    Quiet,
    /// One JSON object a line: `{"step":N,"total":T,"text":…}`, `{"step":N,"outcome":…}`,
    /// `{"note":…}`.
    Rawjson,
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
    /// A secret for `RUN --mount=type=secret`: id=ID,src=FILE or id=ID,env=VAR (a bare ID
    /// takes the variable of that name).
    #[arg(long = "secret", value_name = "id=ID,src=PATH|env=VAR")]
    pub secrets: Vec<String>,
    /// An SSH agent socket for `RUN --mount=type=ssh`: default, or ID=SOCKET.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// A label for the image, KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// The target platform: only the host's (linux/ARCH) is supported.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Export the final stage's files instead of an image: type=local,dest=DIR or
    /// type=tar,dest=FILE (a bare DIR is local; `-` a tar on stdout).
    #[arg(short = 'o', long = "output", value_name = "type=local|tar,dest=PATH")]
    pub output: Option<String>,
    /// Export this build's cached steps: type=local,dest=DIR.
    #[arg(long = "cache-to", value_name = "type=local,dest=DIR")]
    pub cache_to: Option<String>,
    /// Import cached steps exported by --cache-to: type=local,src=DIR; repeatable.
    #[arg(long = "cache-from", value_name = "type=local,src=DIR")]
    pub cache_from: Vec<String>,
    /// Add a line to RUN steps' /etc/hosts: HOST:IP (or HOST=IP); repeatable.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// The network of RUN steps: default (a bridge), host or none.
    #[arg(long, default_value = "default")]
    pub network: String,
}

/// Parses `--add-host HOST:IP` (an IPv6 address keeps its colons; `HOST=IP` also works).
fn parse_add_host(spec: &str) -> Result<(String, String)> {
    let (host, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .filter(|(h, i)| !h.is_empty() && !i.is_empty())
        .ok_or_else(|| anyhow::anyhow!("invalid --add-host {spec:?}: use HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    // RUN steps share the host's network, where the host is the loopback address.
    let ip = if ip == "host-gateway" {
        "127.0.0.1"
    } else {
        ip
    };
    if ip.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid --add-host {spec:?}: {ip:?} is not an IP address");
    }
    Ok((host.to_string(), ip.to_string()))
}

/// Checks `--platform` against the host's: rimg runs RUN steps natively, so it builds for
/// the host only.
fn check_platform(p: &str) -> Result<()> {
    let host = rimg::image::config::host_arch();
    let want = p.trim().to_ascii_lowercase();
    let arch = want.strip_prefix("linux/").unwrap_or(&want);
    let arch = arch.split('/').next().unwrap_or(arch);
    let same = arch == host
        || (arch == "x86_64" && host == "amd64")
        || (arch == "aarch64" && host == "arm64");
    if !same {
        bail!("--platform {p}: rimg builds for the host's platform only (linux/{host}); it cannot emulate another");
    }
    Ok(())
}

/// Parses `--secret id=ID,src=PATH|env=VAR` (also `type=file|env`, `source=`, and a bare ID
/// meaning an environment variable of that name, as buildx).
fn parse_secret(spec: &str) -> Result<(String, SecretSource)> {
    let (mut id, mut src, mut env, mut ty) = (None, None, None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", v)) => ty = Some(v.to_string()),
            None if !spec.contains('=') => id = Some(field.to_string()),
            _ => bail!("invalid --secret {spec:?}: use id=ID,src=PATH or id=ID,env=VAR"),
        }
    }
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        bail!("invalid --secret {spec:?}: it needs an id");
    };
    let source = match (src, env, ty.as_deref()) {
        (Some(p), None, None | Some("file")) => {
            fs::metadata(&p).with_context(|| format!("secret {id}: {}", p.display()))?;
            SecretSource::File(p)
        }
        (None, Some(e), None | Some("env")) => SecretSource::Env(e),
        (None, None, _) => {
            let p = PathBuf::from(&id);
            if ty.as_deref() != Some("env") && p.is_file() {
                SecretSource::File(p)
            } else {
                SecretSource::Env(id.clone())
            }
        }
        _ => bail!("invalid --secret {spec:?}: give src= or env=, not both"),
    };
    Ok((id, source))
}

/// Parses `--ssh default` (the agent `SSH_AUTH_SOCK` names) or `--ssh ID=SOCKET`.
fn parse_ssh(spec: &str) -> Result<(String, PathBuf)> {
    let (id, sock) = match spec.split_once('=') {
        Some((id, path)) => (id.to_string(), PathBuf::from(path)),
        None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(s) => (spec.to_string(), PathBuf::from(s)),
            None => bail!("--ssh {spec}: SSH_AUTH_SOCK is not set (use --ssh {spec}=SOCKET)"),
        },
    };
    if !sock.exists() {
        bail!("--ssh {id}: {} does not exist", sock.display());
    }
    Ok((id, sock))
}

/// Prints progress lines.
struct Printer {
    tty: bool,
    quiet: bool,
    json: bool,
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
        if self.json {
            self.current = n.to_string();
            let line = serde_json::json!({"step": n, "total": total, "text": text});
            self.write(&format!("{line}\n"));
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

    fn done(&mut self, n: usize, outcome: Outcome, elapsed: Duration) {
        if self.quiet {
            return;
        }
        if self.json {
            let o = match outcome {
                Outcome::Cached => "cached",
                Outcome::Done => "done",
            };
            let line =
                serde_json::json!({"step": n, "outcome": o, "seconds": elapsed.as_secs_f64()});
            self.write(&format!("{line}\n"));
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
        if self.json {
            let line = serde_json::json!({"note": text});
            self.write(&format!("{line}\n"));
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
    if let Some(p) = &a.platform {
        check_platform(p)?;
    }
    // `rimg build -`: a context tar, or a Dockerfile, on standard input.
    let stdin_input = if a.context.as_os_str() == "-" {
        if a.file.as_deref().is_some_and(|f| f.as_os_str() == "-") {
            bail!("standard input cannot hold both the context and the Dockerfile");
        }
        let mut data = Vec::new();
        io::stdin()
            .read_to_end(&mut data)
            .context("reading the build context from standard input")?;
        Some(rimg::builder::input::from_stdin(&data)?)
    } else {
        None
    };
    let context = match &stdin_input {
        Some(i) => i.dir.path().to_path_buf(),
        None => a.context.clone(),
    };
    if !context.is_dir() {
        bail!(
            "unable to prepare context: path {:?} not found or not a directory",
            context.display().to_string()
        );
    }
    // BuildKit reads `<Dockerfile>.dockerignore` beside a named Dockerfile first.
    let ignore_text = match &a.file {
        Some(p) if p.as_os_str() != "-" => {
            let mut name = p.as_os_str().to_owned();
            name.push(".dockerignore");
            fs::read_to_string(PathBuf::from(name)).ok()
        }
        _ => None,
    };
    let dockerfile = match &a.file {
        None if stdin_input.as_ref().is_some_and(|i| i.dockerfile.is_some()) => stdin_input
            .as_ref()
            .and_then(|i| i.dockerfile.clone())
            .unwrap_or_default(),
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from standard input")?;
            s
        }
        // Resolved inside its directory (the context by default), like any source.
        Some(p) => rimg::builder::context::read_dockerfile(p)?,
        None => rimg::builder::context::read_dockerfile(&context.join("Dockerfile"))?,
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
        secrets: a
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<Result<_>>()?,
        ssh: a.ssh.iter().map(|s| parse_ssh(s)).collect::<Result<_>>()?,
        labels: a
            .labels
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect(),
        output: a
            .output
            .as_deref()
            .map(Output::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        cache_to: a
            .cache_to
            .as_deref()
            .map(|s| cache_io::parse_local(s, "dest"))
            .transpose()
            .map_err(anyhow::Error::msg)?,
        cache_from: a
            .cache_from
            .iter()
            .map(|s| cache_io::parse_local(s, "src"))
            .collect::<std::result::Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        ignore_text,
        add_hosts: a
            .add_hosts
            .iter()
            .map(|h| parse_add_host(h))
            .collect::<Result<_>>()?,
    };
    let exporting = opts.output.is_some();
    let tty = match a.progress {
        ProgressMode::Auto => io::stdout().is_terminal(),
        ProgressMode::Tty => true,
        _ => false,
    };
    // A tar on standard output leaves no room for progress there.
    let to_stdout = matches!(&opts.output, Some(Output::Tar(p)) if p.as_os_str() == "-");
    let mut printer = Printer {
        tty,
        quiet: a.quiet || to_stdout || a.progress == ProgressMode::Quiet,
        json: a.progress == ProgressMode::Rawjson,
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
    if let Some(p) = &a.iidfile {
        fs::write(p, built.image.id.to_string())
            .with_context(|| format!("writing the image id to {}", p.display()))?;
    }
    if exporting {
        return Ok(0);
    }
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
