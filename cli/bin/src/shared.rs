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
    /// Parses the process's arguments for the binary `name`, which `about` describes;
    /// exits with clap's message and code when they do not parse.
    pub fn parse_as(name: &'static str, about: &'static str) -> Self {
        let matches = Self::command()
            .name(name)
            .about(about)
            .long_about(None::<&str>)
            .get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
