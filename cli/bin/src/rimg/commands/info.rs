//! `rimg version`, `rimg info` (`system info`): Docker's layout, `--format` templates over
//! Docker's field names.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use rimg::info::Info;

use super::inspect::parse_template;
use super::{outln, Ctx};

/// Flags of `rimg version` and `rimg info`.
#[derive(Args)]
pub struct FormatArgs {
    /// A Go template (`{{.Client.Version}}`, `{{.Containers}}`) or `json`.
    #[arg(short, long)]
    pub format: Option<String>,
}

/// `rimg version`.
pub fn version(_ctx: &Ctx, a: FormatArgs) -> Result<u8> {
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": "linux",
        "Arch": go_arch(std::env::consts::ARCH),
    });
    let v = json!({ "Client": client });
    match a.format.as_deref() {
        Some("json") => outln(&serde_json::to_string(&v)?)?,
        Some(fmt) => outln(&parse_template(fmt)?.execute(&v)?)?,
        None => {
            outln("Client:")?;
            outln(&format!(
                " Version:           {}",
                client["Version"].as_str().unwrap_or("")
            ))?;
            outln(&format!(
                " OS/Arch:           linux/{}",
                client["Arch"].as_str().unwrap_or("")
            ))?;
            outln(" Engine:            none (rimg runs containers without a daemon)")?;
        }
    }
    Ok(0)
}

/// `rimg info`.
pub fn info(ctx: &Ctx, a: FormatArgs) -> Result<u8> {
    let images = ctx.images()?;
    let info = Info::gather(&images)?;
    let v = serde_json::to_value(&info)?;
    match a.format.as_deref() {
        Some("json") => outln(&serde_json::to_string(&v)?)?,
        Some(fmt) => outln(&parse_template(fmt)?.execute(&v)?)?,
        None => {
            let lines = [
                format!(" Containers: {}", info.containers),
                format!("  Running: {}", info.containers_running),
                format!("  Paused: {}", info.containers_paused),
                format!("  Stopped: {}", info.containers_stopped),
                format!(" Images: {}", info.images),
                format!(" Server Version: {}", info.server_version),
                format!(" Storage Driver: {}", info.driver),
                format!(" Cgroup Version: {}", info.cgroup_version),
                format!(" Kernel Version: {}", info.kernel_version),
                format!(" Operating System: {}", info.operating_system),
                format!(" OSType: {}", info.os_type),
                format!(" Architecture: {}", info.architecture),
                format!(" CPUs: {}", info.ncpu),
                format!(
                    " Total Memory: {:.2}GiB",
                    info.mem_total as f64 / f64::from(1u32 << 30)
                ),
                format!(" Name: {}", info.name),
                format!(" Docker Root Dir: {}", info.docker_root_dir),
            ];
            outln("Server:")?;
            for l in lines {
                outln(&l)?;
            }
        }
    }
    Ok(0)
}

/// Go's name for an architecture (`amd64` for `x86_64`), as `docker version` prints it.
fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
