//! Times the upper-dir library the way `rimg diff CONTAINER` and `rimg commit CONTAINER` use
//! it, on any overlayfs upper dir (for the benchmark, the upper dir of a podman container
//! made from the same busybox tar):
//!
//!     upper-bench STORE diff IMAGE UPPER          prints the change list
//!     upper-bench STORE commit IMAGE UPPER TAG    stores the upper as a layer, prints the id
//!
//! `UPPER_BENCH_IGNORE=/etc/mtab:/run` adds paths a runtime injected (podman's) to the ignored
//! ones. Each run opens the store, resolves the image and builds its union tree from the persisted
//! layer indexes, as the commands do; scripts/bench-diff-commit.sh times it against podman.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rimg::image::commit::{commit_upper, image_tree};
use rimg::image::{History, Images, Reference};
use rimg_fs::upper::{upper_changes, LayerOptions};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (root, verb, image, upper) = match &args[..] {
        [root, verb, image, upper, ..] => (root, verb, image, Path::new(upper)),
        _ => bail!("usage: upper-bench STORE diff|commit IMAGE UPPER [TAG]"),
    };
    let images = Images::open(Path::new(root)).context("opening the store")?;
    let base = images.resolve(image)?;
    let mut opts = LayerOptions::for_container();
    if let Ok(extra) = std::env::var("UPPER_BENCH_IGNORE") {
        opts.ignore.extend(extra.split(':').map(String::from));
    }
    match (verb.as_str(), args.get(4)) {
        ("diff", None) => {
            let tree = image_tree(&images, &base)?;
            let changes = upper_changes(upper, &tree, &opts)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for c in &changes {
                writeln!(out, "{c}")?;
            }
        }
        ("commit", Some(tag)) => {
            let history = History {
                created_by: Some("upper-bench".into()),
                ..Default::default()
            };
            let tags = [Reference::parse(tag)?];
            let img = commit_upper(&images, &base, upper, &opts, history, &[], &tags)?;
            println!("{}", img.id);
        }
        _ => bail!("usage: upper-bench STORE diff|commit IMAGE UPPER [TAG]"),
    }
    Ok(())
}
