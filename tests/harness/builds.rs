//! Helpers of the `rimg build` tests (tests/build.rs, tests/dockerfile.rs): a context
//! directory, a build with plain progress, a step's outcome, an image's files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Store;

/// A context directory `name` in the store's temp dir holding `files` (path, content).
pub fn context(s: &Store, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = s.path(name);
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    dir
}

/// `rimg build --progress plain ARGS CTX`, which must succeed; its stdout.
pub fn build(s: &Store, ctx: &Path, args: &[&str]) -> String {
    s.rimg(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .ok()
}

/// The outcome the progress printed for step `n` (`CACHED` or `DONE …`).
pub fn outcome(out: &str, n: usize, total: usize) -> String {
    let prefix = format!("[{n}/{total}] ");
    out.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l[prefix.len()..].to_string())
        .find(|l| l == "CACHED" || l.starts_with("DONE"))
        .unwrap_or_else(|| panic!("no outcome for step {n} in:\n{out}"))
}

/// Reads a file of an image through its layers.
pub fn read_file(s: &Store, image: &str, path: &str) -> Option<Vec<u8>> {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let img = images.resolve(image).unwrap();
    let files = rimg::builder::layer::ImageFiles::open(images.store(), img.diff_ids()).unwrap();
    files.read(path, 1 << 20)
}

/// The paths of layer `n` (0 = bottom) of an image, sorted.
pub fn layer_paths(s: &Store, image: &str, n: usize) -> Vec<String> {
    let images = rimg::image::Images::open(&s.root()).unwrap();
    let img = images.resolve(image).unwrap();
    let index = images.store().layer_index(&img.diff_ids()[n]).unwrap();
    let mut paths: Vec<String> = index
        .entries()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    paths.sort();
    paths
}
