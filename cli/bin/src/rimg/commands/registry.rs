//! `rimg pull`, `push`, `login`, `logout`: images to and from registries.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Read, Write};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rimg::image::{Compression, Images, Reference};
use rimg::registry::auth::{self, Credentials};
use rimg::registry::client::{Client, ClientOptions};
use rimg::registry::pull::{pull as pull_image, PullOptions};
use rimg::registry::push::{push as push_image, ManifestFormat, PushOptions};
use rimg::registry::{BlobEvent, Location, Platform, Progress};
use rimg_fs::Digest;

use super::{outln, Ctx};

/// Flags of `rimg pull`.
#[derive(Args)]
pub struct PullArgs {
    /// Require HTTPS and verify certificates (`--tls-verify=false` allows plain HTTP and
    /// self-signed certificates; localhost is always allowed both, as Docker does).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// The platform to pick from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the image name.
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull every tag of the repository.
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// The image: `registry/repository[:tag]` or `registry/repository@sha256:…`.
    pub image: String,
}

/// Layer compressions `rimg push` can write.
#[derive(Clone, Copy, ValueEnum)]
pub enum CompressArg {
    /// gzip (the default; every registry and runtime reads it).
    Gzip,
    /// zstd (smaller and faster; needs a recent runtime to pull).
    Zstd,
    /// No compression.
    None,
}

/// Manifest formats `rimg push` can write (podman's names).
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// OCI image manifest.
    Oci,
    /// Docker v2 schema 2 manifest.
    V2s2,
}

/// Flags of `rimg push`.
#[derive(Args)]
pub struct PushArgs {
    /// Require HTTPS and verify certificates (see `pull`).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// How layers are compressed on the way out.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compress: CompressArg,
    /// The manifest format: OCI, or Docker v2 schema 2 for registries and tools that predate
    /// OCI (what `docker push` writes).
    #[arg(long, value_enum, default_value = "oci")]
    pub format: FormatArg,
    /// Print only the pushed digest line.
    #[arg(short, long)]
    pub quiet: bool,
    /// The local image.
    pub image: String,
    /// Where to push it (default: the image name, which must then name a registry).
    pub destination: Option<String>,
}

/// Flags of `rimg login`.
#[derive(Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine; prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Require HTTPS and verify certificates (see `pull`).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// The registry (`host[:port]`; default docker.io).
    pub registry: Option<String>,
}

/// Flags of `rimg logout`.
#[derive(Args)]
pub struct LogoutArgs {
    /// The registry (`host[:port]`; default docker.io).
    pub registry: Option<String>,
}

/// Where a pull's messages go: stdout for `rimg pull`; beside the container's output (stderr)
/// for `run`, as Docker does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Out {
    fn println(self, text: &str) {
        match self {
            Out::Stdout => {
                let _ = outln(text);
            }
            Out::Stderr => eprintln!("{text}"),
        }
    }

    fn is_terminal(self) -> bool {
        match self {
            Out::Stdout => io::stdout().is_terminal(),
            Out::Stderr => io::stderr().is_terminal(),
        }
    }
}

/// How progress is shown: a bar per blob on a terminal, one line per finished blob otherwise.
struct Shown {
    pull: bool,
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
    quiet: bool,
    out: Out,
}

impl Shown {
    fn new(pull: bool, quiet: bool, out: Out, bars: bool) -> Self {
        let bars = (bars && !quiet && out.is_terminal()).then(|| {
            let target = match out {
                Out::Stdout => ProgressDrawTarget::stdout(),
                Out::Stderr => ProgressDrawTarget::stderr(),
            };
            (
                MultiProgress::with_draw_target(target),
                Mutex::new(HashMap::new()),
            )
        });
        Shown {
            pull,
            bars,
            quiet,
            out,
        }
    }

    fn line(&self, blob: &Digest, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((multi, bars)) => {
                // The finished line goes above the bars for good; the bar goes away.
                let _ = multi.println(format!("{}: {text}", blob.short()));
                if let Some(b) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(blob) {
                    b.finish_and_clear();
                }
            }
            None => self.out.println(&format!("{}: {text}", blob.short())),
        }
    }
}

impl Progress for Shown {
    fn start(&self, blobs: &[(Digest, u64)]) {
        let Some((multi, bars)) = &self.bars else {
            return;
        };
        let style = ProgressStyle::with_template(
            "{prefix}: {msg:12} [{bar:30}] {binary_bytes}/{binary_total_bytes}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut bars = bars.lock().unwrap_or_else(|p| p.into_inner());
        for (d, size) in blobs {
            if bars.contains_key(d) {
                continue;
            }
            let b = multi.add(ProgressBar::new(*size));
            b.set_style(style.clone());
            b.set_prefix(d.short());
            b.set_message("Waiting");
            bars.insert(*d, b);
        }
    }

    fn event(&self, blob: &Digest, event: BlobEvent) {
        match event {
            BlobEvent::AlreadyExists => self.line(
                blob,
                if self.pull {
                    "Already exists"
                } else {
                    "Layer already exists"
                },
            ),
            BlobEvent::Progress { done } => {
                if let Some((_, bars)) = &self.bars {
                    if let Some(b) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(blob) {
                        b.set_message(if self.pull { "Downloading" } else { "Pushing" });
                        b.set_position(done);
                    }
                }
            }
            BlobEvent::Done => self.line(blob, if self.pull { "Pull complete" } else { "Pushed" }),
            BlobEvent::Mounted { from } => self.line(blob, &format!("Mounted from {from}")),
            BlobEvent::Retrying { in_secs, reason } => {
                let plural = if in_secs == 1 { "" } else { "s" };
                let text = format!("Retrying in {in_secs} second{plural}");
                match &self.bars {
                    Some((_, bars)) => {
                        if let Some(b) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(blob) {
                            b.set_message(text);
                        }
                    }
                    None if !self.quiet => {
                        self.out
                            .println(&format!("{}: {text} ({reason})", blob.short()));
                    }
                    None => {}
                }
            }
        }
    }
}

/// Strips a scheme and path from a registry given as a URL (`https://host:5000/v2/`).
fn registry_name(arg: Option<&str>) -> String {
    let r = arg.unwrap_or(rimg::registry::DEFAULT_REGISTRY);
    let r = r
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    r.split('/').next().unwrap_or(r).to_string()
}

fn connect(registry: &str, tls_verify: bool) -> Result<Client> {
    let creds = auth::lookup(registry)?;
    Ok(Client::connect(
        registry,
        &ClientOptions { tls_verify },
        creds,
    )?)
}

/// How [`pull_reference`] pulls and reports.
pub struct PullHow {
    /// Require HTTPS and verified certificates (localhost excepted).
    pub tls_verify: bool,
    /// The platform to pick from a multi-platform image.
    pub platform: Platform,
    /// Print nothing.
    pub quiet: bool,
    /// Where the lines go.
    pub out: Out,
    /// Progress bars when `out` is a terminal.
    pub bars: bool,
}

impl PullHow {
    /// The pull `run` and `build` start for an image they name: this machine's platform,
    /// certificates verified.
    pub fn implicit(out: Out, quiet: bool, bars: bool) -> Self {
        PullHow {
            tls_verify: true,
            platform: Platform::host(),
            quiet,
            out,
            bars,
        }
    }
}

/// Pulls `reference` into `images` and prints `docker pull`'s lines (`Pulling from`, one per
/// layer, `Digest:`, `Status:`) to `how.out`.
pub fn pull_reference(images: &Images, reference: &Reference, how: &PullHow) -> Result<()> {
    let loc = Location::of(reference);
    let shown_ref = reference.to_string();
    let client =
        connect(&loc.registry, how.tls_verify).with_context(|| format!("pulling {shown_ref}"))?;
    if !how.quiet {
        let what = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, t) => t.clone().unwrap_or_else(|| "latest".into()),
        };
        how.out
            .println(&format!("{what}: Pulling from {}", loc.repository));
    }
    let shown = Shown::new(true, how.quiet, how.out, how.bars);
    let pulled = pull_image(
        images,
        &client,
        reference,
        &PullOptions {
            platform: how.platform.clone(),
        },
        &shown,
    )
    .with_context(|| format!("pulling {shown_ref}"))?;
    if !how.quiet {
        how.out.println(&format!("Digest: {}", pulled.digest));
        how.out.println(&if pulled.changed {
            format!("Status: Downloaded newer image for {shown_ref}")
        } else {
            format!("Status: Image is up to date for {shown_ref}")
        });
    }
    Ok(())
}

/// Pulls an image and prints what happened, as `docker pull` does.
pub fn pull(ctx: &Ctx, a: PullArgs) -> Result<u8> {
    let reference = Reference::parse(&a.image)?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let how = PullHow {
        tls_verify: a.tls_verify,
        platform,
        quiet: a.quiet,
        out: Out::Stdout,
        bars: true,
    };
    let images = ctx.images()?;
    if !a.all_tags {
        if !a.quiet && !a.image.contains('@') && reference_names_no_tag(&a.image) {
            outln("Using default tag: latest")?;
        }
        pull_reference(&images, &reference, &how)?;
        outln(&reference.full_name())?;
        return Ok(0);
    }
    if a.image.contains('@') || !reference_names_no_tag(&a.image) {
        bail!(
            "{}: a tag or digest cannot be used with --all-tags",
            a.image
        );
    }
    let loc = Location::of(&reference);
    let shown = reference.repository();
    let tags = connect(&loc.registry, a.tls_verify)
        .and_then(|c| Ok(c.list_tags(&loc.repository)?))
        .with_context(|| format!("pulling {shown}"))?;
    if tags.is_empty() {
        bail!("pulling {shown}: the repository has no tags");
    }
    for tag in tags {
        let mut r = reference.clone();
        r.tag = Some(tag);
        pull_reference(&images, &r, &how)?;
    }
    outln(&shown)?;
    Ok(0)
}

/// Whether the name the user typed has no `:tag` after its last `/`.
fn reference_names_no_tag(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|last| !last.contains(':'))
}

/// Pushes an image and prints its digest, as `docker push` does.
pub fn push(ctx: &Ctx, a: PushArgs) -> Result<u8> {
    let images = ctx.images()?;
    let image = ctx.resolve(&images, &a.image)?;
    let dest = Reference::parse(a.destination.as_deref().unwrap_or(&a.image))
        .context("invalid destination")?;
    let loc = Location::of(&dest);
    let compression = match a.compress {
        CompressArg::Gzip => Compression::Gzip,
        CompressArg::Zstd => Compression::Zstd,
        CompressArg::None => Compression::None,
    };
    let shown_ref = dest.repository();
    let client =
        connect(&loc.registry, a.tls_verify).with_context(|| format!("pushing to {shown_ref}"))?;
    if !a.quiet {
        outln(&format!("The push refers to repository [{shown_ref}]"))?;
    }
    let shown = Shown::new(false, a.quiet, Out::Stdout, true);
    let pushed = push_image(
        &images,
        &client,
        &image,
        &dest,
        PushOptions {
            compression,
            format: match a.format {
                FormatArg::Oci => ManifestFormat::Oci,
                FormatArg::V2s2 => ManifestFormat::DockerV2S2,
            },
        },
        &shown,
    )
    .with_context(|| format!("pushing to {shown_ref}"))?;
    outln(&format!(
        "{}: digest: {} size: {}",
        pushed.tag, pushed.digest, pushed.size
    ))?;
    Ok(0)
}

/// Reads one line from the terminal, optionally without echo.
fn prompt(question: &str, echo: bool) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = io::stdin();
    // Echo goes off before the question shows, so an answer typed at once is not echoed.
    let saved = if echo {
        None
    } else {
        let saved = tcgetattr(&stdin).context("reading terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning off echo")?;
        Some(saved)
    };
    eprint!("{question}");
    io::stderr().flush()?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Checks credentials against the registry and stores them.
pub fn login(_ctx: &Ctx, a: LoginArgs) -> Result<u8> {
    let registry = registry_name(a.registry.as_deref());
    let tty = io::stdin().is_terminal();
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let username = match a.username {
        Some(u) => u,
        None if tty && !a.password_stdin => prompt("Username: ", true)?,
        None => bail!("no user name given: use -u USERNAME"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if a.password_stdin {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if tty {
        prompt("Password: ", false)?
    } else {
        bail!("no password given: use --password-stdin (or -p PASSWORD)");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials { username, password };
    let client = Client::connect(
        &registry,
        &ClientOptions {
            tls_verify: a.tls_verify,
        },
        Some(creds.clone()),
    )
    .with_context(|| format!("logging in to {registry}"))?;
    client
        .check_login()
        .with_context(|| format!("logging in to {registry}"))?;
    auth::store(&registry, &creds).context("storing credentials")?;
    outln("Login Succeeded")?;
    Ok(0)
}

/// Removes stored credentials.
pub fn logout(_ctx: &Ctx, a: LogoutArgs) -> Result<u8> {
    let registry = registry_name(a.registry.as_deref());
    if auth::remove(&registry).context("removing credentials")? {
        outln(&format!("Removing login credentials for {registry}"))?;
    } else {
        outln(&format!("Not logged in to {registry}"))?;
    }
    Ok(0)
}
