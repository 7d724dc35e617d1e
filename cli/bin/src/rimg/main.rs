//! `rimg`: the Docker-style command line over rimg's store, mounts and runtime.
//!
//! This binary parses flags, calls the `rimg` library and prints; errors are printed as one
//! line (`Error: …`) with a non-zero exit code.

mod argv;
mod commands;
#[path = "../shared.rs"]
mod shared;

use std::process::ExitCode;

use clap::Subcommand;

use commands::Ctx;

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<commands::build::BuildArgs>),
    /// Create an image from a rootfs tarball.
    Import(commands::import::ImportArgs),
    /// List images.
    Images(commands::images::ImagesArgs),
    /// Show the history of an image.
    History(commands::images::HistoryArgs),
    /// Show a container's or an image's details as JSON.
    Inspect(commands::inspect::InspectArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(commands::images::TagArgs),
    /// Remove images.
    Rmi(commands::images::RmiArgs),
    /// Load images from an OCI archive or docker-archive.
    Load(commands::archive::LoadArgs),
    /// Save images to an archive (docker-archive or oci-archive).
    Save(commands::archive::SaveArgs),
    /// Create a new image from a container's changes.
    Commit(commands::commit::CommitArgs),
    /// Show changed files: of a container, of an image's top layer, or between two images.
    Diff(commands::diff::DiffArgs),
    /// Create and run a container from an image.
    Run(commands::containers::RunArgs),
    /// Create a container without starting it.
    Create(commands::containers::CreateArgs),
    /// Start stopped or created containers.
    Start(commands::containers::StartArgs),
    /// Attach to a running container's output and input.
    Attach(commands::attach::AttachArgs),
    /// List containers.
    Ps(commands::containers::PsArgs),
    /// Show a container's output.
    Logs(commands::containers::LogsArgs),
    /// Stop running containers (stop signal, then SIGKILL).
    Stop(commands::containers::StopArgs),
    /// Send a signal to running containers.
    Kill(commands::containers::KillArgs),
    /// Remove containers.
    Rm(commands::containers::RmArgs),
    /// Run a command in a running container.
    Exec(commands::containers::ExecArgs),
    /// Rename a container.
    Rename(commands::container_verbs::RenameArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(commands::container_verbs::WaitArgs),
    /// Restart containers (stop, then start detached).
    Restart(commands::containers::StopArgs),
    /// Copy files between a container and the host.
    Cp(commands::container_verbs::CpArgs),
    /// Export a container's filesystem as a tar archive.
    Export(commands::container_verbs::ExportArgs),
    /// Show a container's processes.
    Top(commands::container_verbs::TopArgs),
    /// The monitor of a detached container (internal).
    #[command(name = "__monitor", hide = true)]
    Monitor(commands::containers::MonitorArgs),
    /// Pull an image from a registry.
    Pull(commands::registry::PullArgs),
    /// Push an image to a registry.
    Push(commands::registry::PushArgs),
    /// Log in to a registry.
    Login(commands::registry::LoginArgs),
    /// Log out from a registry.
    Logout(commands::registry::LogoutArgs),
    /// Show rimg's version.
    Version(commands::info::FormatArgs),
    /// Show system-wide information: containers, images, kernel, cgroups, the store.
    Info(commands::info::FormatArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage the store.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(commands::volumes::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// List a container's published ports.
    Port(commands::network::PortArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderCommand),
}

#[derive(Subcommand)]
enum BuilderCommand {
    /// Remove the build cache: cache mounts, and the steps of images no longer listed
    /// (`-a`: every step).
    Prune(commands::builder::BuilderPruneArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build an image from a Dockerfile.
    Build(Box<commands::build::BuildArgs>),
    /// List images.
    #[command(alias = "list")]
    Ls(commands::images::ImagesArgs),
    /// Import a rootfs tarball.
    Import(commands::import::ImportArgs),
    /// Show the history of an image.
    History(commands::images::HistoryArgs),
    /// Show an image's details as JSON.
    Inspect(commands::images::InspectArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(commands::images::TagArgs),
    /// Remove images.
    Rm(commands::images::RmiArgs),
    /// Remove unused images.
    Prune(commands::images::PruneArgs),
    /// Load images from an OCI archive or docker-archive.
    Load(commands::archive::LoadArgs),
    /// Save images to an archive (docker-archive or oci-archive).
    Save(commands::archive::SaveArgs),
    /// Pull an image from a registry.
    Pull(commands::registry::PullArgs),
    /// Push an image to a registry.
    Push(commands::registry::PushArgs),
}

/// `rimg container VERB`: the container verbs under Docker's `container` group.
#[derive(Subcommand)]
enum ContainerCommand {
    /// Create and run a container from an image.
    Run(commands::containers::RunArgs),
    /// Create a container without starting it.
    Create(commands::containers::CreateArgs),
    /// Start stopped or created containers.
    Start(commands::containers::StartArgs),
    /// Attach to a running container's output and input.
    Attach(commands::attach::AttachArgs),
    /// List containers.
    #[command(visible_aliases = ["ps", "list"])]
    Ls(commands::containers::PsArgs),
    /// Show a container's output.
    Logs(commands::containers::LogsArgs),
    /// Stop running containers (stop signal, then SIGKILL).
    Stop(commands::containers::StopArgs),
    /// Send a signal to running containers.
    Kill(commands::containers::KillArgs),
    /// Remove containers.
    Rm(commands::containers::RmArgs),
    /// Run a command in a running container.
    Exec(commands::containers::ExecArgs),
    /// Show a container's details as JSON.
    Inspect(commands::inspect::ContainerInspectArgs),
    /// Show a container's changed files.
    Diff(commands::diff::DiffArgs),
    /// Create a new image from a container's changes.
    Commit(commands::commit::CommitArgs),
    /// Rename a container.
    Rename(commands::container_verbs::RenameArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(commands::container_verbs::WaitArgs),
    /// Restart containers (stop, then start detached).
    Restart(commands::containers::StopArgs),
    /// Remove all stopped containers.
    Prune(commands::container_verbs::ContainerPruneArgs),
    /// Copy files between a container and the host.
    Cp(commands::container_verbs::CpArgs),
    /// Export a container's filesystem as a tar archive.
    Export(commands::container_verbs::ExportArgs),
    /// Show a container's processes.
    Top(commands::container_verbs::TopArgs),
    /// List a container's published ports.
    Port(commands::network::PortArgs),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show disk usage.
    Df(commands::system::DfArgs),
    /// Verify every blob, layer index and reference; --repair removes what is broken.
    Check(commands::system::CheckArgs),
    /// Show system-wide information.
    Info(commands::info::FormatArgs),
    /// Remove stopped containers, unused images and build cache.
    Prune(commands::container_verbs::SystemPruneArgs),
}

type Cli = shared::Cli<Command>;

fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Ctx::new(cli.store.dir());
    match cli.command {
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => {
            commands::build::run(&ctx, *a)
        }
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => {
            commands::import::run(&ctx, a)
        }
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => {
            commands::images::images(&ctx, a)
        }
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            commands::images::history(&ctx, a)
        }
        Command::Inspect(a) => commands::inspect::inspect(&ctx, a),
        Command::Image(ImageCommand::Inspect(a)) => commands::images::inspect(&ctx, a),
        Command::Container(ContainerCommand::Inspect(a)) => {
            commands::inspect::container_inspect(&ctx, a)
        }
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => commands::images::tag(&ctx, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => commands::images::rmi(&ctx, a),
        Command::Image(ImageCommand::Prune(a)) => commands::images::prune(&ctx, a),
        Command::Builder(BuilderCommand::Prune(a)) => commands::builder::prune(&ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => {
            commands::archive::load(&ctx, a)
        }
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => {
            commands::archive::save(&ctx, a)
        }
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => {
            commands::registry::pull(&ctx, a)
        }
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => {
            commands::registry::push(&ctx, a)
        }
        Command::Login(a) => commands::registry::login(&ctx, a),
        Command::Logout(a) => commands::registry::logout(&ctx, a),
        Command::System(SystemCommand::Df(a)) => commands::system::df(&ctx, a),
        Command::System(SystemCommand::Check(a)) => commands::system::check(&ctx, a),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => commands::info::info(&ctx, a),
        Command::Version(a) => commands::info::version(&ctx, a),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => {
            commands::diff::diff(&ctx, a)
        }
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            commands::commit::commit(&ctx, a)
        }
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            commands::containers::run(&ctx, a)
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            commands::containers::create(&ctx, a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            commands::containers::start(&ctx, a)
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => {
            commands::containers::ps(&ctx, a)
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            commands::containers::logs(&ctx, a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            commands::containers::stop(&ctx, a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            commands::containers::kill(&ctx, a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => {
            commands::containers::rm(&ctx, a)
        }
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            commands::containers::exec(&ctx, a)
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            commands::attach::attach(&ctx, a)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            commands::container_verbs::rename(&ctx, a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            commands::container_verbs::wait(&ctx, a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            commands::container_verbs::restart(&ctx, a)
        }
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => {
            commands::container_verbs::cp(&ctx, a)
        }
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            commands::container_verbs::export(&ctx, a)
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => {
            commands::container_verbs::top(&ctx, a)
        }
        Command::Container(ContainerCommand::Prune(a)) => {
            commands::container_verbs::container_prune(&ctx, a)
        }
        Command::System(SystemCommand::Prune(a)) => {
            commands::container_verbs::system_prune_cmd(&ctx, a)
        }
        Command::Monitor(a) => commands::containers::monitor(&ctx, a),
        Command::Volume(v) => commands::volumes::run(&ctx, v),
        Command::Network(a) => commands::network::run(&ctx, a),
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => {
            commands::network::port(&ctx, a)
        }
    }
}

fn main() -> ExitCode {
    const ABOUT: &str = "Container images as filesystems, without unpacking them";
    let args = argv::end_flags_at_operand(
        &Cli::command_as("rimg", ABOUT),
        std::env::args_os().collect(),
    );
    // Docker exits 125 when its own command line is wrong; help and version are not errors.
    let cli = match Cli::parse_args_as("rimg", ABOUT, args, 125) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(u8::try_from(code).unwrap_or(125)),
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if commands::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            shared::print_error(&err);
            ExitCode::from(commands::exit_code_of(&err))
        }
    }
}
