//! What the two binaries share: the shape of the command line (the store flag and a
//! command) and how an error ends the process.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A binary's command line: the store flag and one of its commands `C`.
#[derive(Parser)]
#[command(version)]
pub struct Cli<C: Subcommand> {
    /// Where the store is.
    #[command(flatten)]
    pub store: StoreArg,
    /// The command.
    #[command(subcommand)]
    pub command: C,
}

impl<C: Subcommand> Cli<C> {
    /// The command line of the binary `name`, which `about` describes.
    pub fn command_as(name: &'static str, about: &'static str) -> clap::Command {
        Self::command()
            .name(name)
            .about(about)
            .long_about(None::<&str>)
    }

    /// Parses the process's arguments for the binary `name`; exits with clap's message and
    /// code when they do not parse.
    #[allow(dead_code)] // each binary includes this file; `rimg` parses with parse_args_as
    pub fn parse_as(name: &'static str, about: &'static str) -> Self {
        Self::parse_args_as(name, about, std::env::args_os().collect(), 2)
            .unwrap_or_else(|code| std::process::exit(code))
    }

    /// Parses `args` (the program name first). When they do not parse, prints clap's
    /// message and returns the exit code: `usage_error` for a wrong command line, 0 for
    /// `--help` and `--version`.
    pub fn parse_args_as(
        name: &'static str,
        about: &'static str,
        args: Vec<std::ffi::OsString>,
        usage_error: i32,
    ) -> Result<Self, i32> {
        let parsed = Self::command_as(name, about)
            .try_get_matches_from(args)
            .and_then(|m| Self::from_arg_matches(&m));
        parsed.map_err(|e| {
            let _ = e.print();
            if e.use_stderr() {
                usage_error
            } else {
                0
            }
        })
    }
}

/// The store flag, `--root DIR` or `RIMG_ROOT`, of every command.
#[derive(clap::Args)]
pub struct StoreArg {
    /// The store: an OCI image layout (default /var/lib/rimg as root).
    #[arg(long, global = true, env = "RIMG_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
}

impl StoreArg {
    /// The store's directory: the flag's, else [`rimg::default_root`].
    pub fn dir(self) -> PathBuf {
        self.root.unwrap_or_else(rimg::default_root)
    }
}

/// Prints `err` as one line, `Error: outer: cause: …`, on stderr after what stdout holds.
pub fn print_error(err: &anyhow::Error) {
    let _ = io::stdout().flush();
    eprintln!("Error: {}", rimg::error_line(err.as_ref()));
}
