//! The benchmark's layer stack: a base image (Debian if there is one, else busybox), a layer of
//! generated files (one big, some medium, many small) and a top layer with overrides, whiteouts
//! and an opaque directory. It is stored as an image in a private rimg store (for rimgfs), each
//! layer is extracted by GNU tar with whiteouts in overlayfs format (for kernel overlayfs and
//! fuse-overlayfs), and the merged tree is copied out once (the native variant). Everything is
//! kept in the work dir and reused while the base and the sizes stay the same.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rimg::image::{History, ImageConfig, Images, Reference};
use rimg_fs::digest::Digest;

use crate::content::{self, Content};
use crate::sys;

/// How big the generated layer is.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// The one big file.
    pub big: u64,
    /// Each medium file.
    pub medium: u64,
    /// How many medium files.
    pub medium_count: usize,
    /// How many small files.
    pub small_count: usize,
    /// Spread over this many directories.
    pub small_dirs: usize,
    /// Small files are 1..=this many bytes.
    pub small_max: u64,
}

impl Sizes {
    /// The full data set: 1 GiB, 64 × 8 MiB, 20,000 small files.
    pub const FULL: Sizes = Sizes {
        big: 1 << 30,
        medium: 8 << 20,
        medium_count: 64,
        small_count: 20_000,
        small_dirs: 100,
        small_max: 8192,
    };
    /// The `--quick` data set.
    pub const QUICK: Sizes = Sizes {
        big: 32 << 20,
        medium: 1 << 20,
        medium_count: 8,
        small_count: 1_000,
        small_dirs: 20,
        small_max: 8192,
    };

    fn per_dir(&self) -> usize {
        self.small_count.div_ceil(self.small_dirs)
    }
}

/// The big file, read sequentially and at random, and copied up.
pub const BIG: &str = "bench/big";
/// A medium lower file that is copied up.
pub const MEDIUM_COPY_UP: &str = "bench/medium/m05";
/// The directory of the small files.
pub const SMALL_DIR: &str = "bench/small";

/// One regular file of the generated layers.
#[derive(Clone, Debug)]
pub struct FileSpec {
    /// Path relative to the root, no leading slash.
    pub path: String,
    /// Its bytes.
    pub content: Content,
}

impl FileSpec {
    fn new(path: String, salt: &str, len: u64) -> Self {
        let seed = content::seed_of(&format!("{path}{salt}"));
        FileSpec {
            path,
            content: Content { seed, len },
        }
    }
}

/// An entry of a generated layer.
enum Entry {
    Dir(String),
    File(FileSpec),
    Whiteout(String),
    Opaque(String),
}

fn medium_name(i: usize) -> String {
    format!("bench/medium/m{i:02}")
}

fn small_dir(d: usize) -> String {
    format!("{SMALL_DIR}/d{d:03}")
}

/// The directory the top layer makes opaque, and the one it deletes.
const OPAQUE_DIR: usize = 3;
const DELETED_DIR: usize = 4;

fn small_file(s: &Sizes, i: usize, salt: &str) -> FileSpec {
    let path = format!("{}/f{i:05}", small_dir(i / s.per_dir()));
    let len = content::small(content::seed_of(&format!("{path}{salt}#size")), s.small_max);
    FileSpec::new(path, salt, len)
}

fn opaque_children() -> impl Iterator<Item = FileSpec> {
    (0..10).map(|k| FileSpec::new(format!("{}/n{k}", small_dir(OPAQUE_DIR)), "#top", 2048 + k))
}

/// The generated middle layer.
fn bench_layer(s: &Sizes) -> Vec<Entry> {
    let mut e = vec![
        Entry::Dir("bench".into()),
        Entry::File(FileSpec::new(BIG.into(), "", s.big)),
        Entry::Dir("bench/medium".into()),
    ];
    for i in 0..s.medium_count {
        e.push(Entry::File(FileSpec::new(medium_name(i), "", s.medium)));
    }
    e.push(Entry::Dir(SMALL_DIR.into()));
    for i in 0..s.small_count {
        if i % s.per_dir() == 0 {
            e.push(Entry::Dir(small_dir(i / s.per_dir())));
        }
        e.push(Entry::File(small_file(s, i, "")));
    }
    e
}

/// The top layer: every 50th small file replaced, the next one deleted, a medium file replaced
/// and one deleted, one small-file directory made opaque (with new children), one deleted.
fn top_layer(s: &Sizes) -> Vec<Entry> {
    let mut e = vec![
        Entry::Dir("bench".into()),
        Entry::File(FileSpec::new("bench/top-only".into(), "#top", 12_345)),
        Entry::Dir("bench/medium".into()),
        Entry::File(FileSpec::new(medium_name(1), "#top", s.medium / 2 + 7)),
        Entry::Whiteout(medium_name(2)),
        Entry::Dir(SMALL_DIR.into()),
        Entry::Dir(small_dir(OPAQUE_DIR)),
        Entry::Opaque(small_dir(OPAQUE_DIR)),
        Entry::Whiteout(small_dir(DELETED_DIR)),
    ];
    e.extend(opaque_children().map(Entry::File));
    let mut dir = usize::MAX;
    for i in 0..s.small_count {
        let d = i / s.per_dir();
        if d == OPAQUE_DIR || d == DELETED_DIR || !matches!(i % 50, 1 | 2) {
            continue;
        }
        if d != dir {
            e.push(Entry::Dir(small_dir(d)));
            dir = d;
        }
        if i % 50 == 1 {
            e.push(Entry::File(small_file(s, i, "#top")));
        } else {
            e.push(Entry::Whiteout(small_file(s, i, "").path));
        }
    }
    e
}

/// The regular files under `bench/` as the merged stack shows them, sorted by path.
pub fn merged_files(s: &Sizes) -> Vec<FileSpec> {
    let mut out = vec![
        FileSpec::new(BIG.into(), "", s.big),
        FileSpec::new("bench/top-only".into(), "#top", 12_345),
    ];
    for i in 0..s.medium_count {
        match i {
            1 => out.push(FileSpec::new(medium_name(1), "#top", s.medium / 2 + 7)),
            2 => {}
            _ => out.push(FileSpec::new(medium_name(i), "", s.medium)),
        }
    }
    for i in 0..s.small_count {
        let d = i / s.per_dir();
        if d == OPAQUE_DIR || d == DELETED_DIR {
            continue;
        }
        match i % 50 {
            1 => out.push(small_file(s, i, "#top")),
            2 => {}
            _ => out.push(small_file(s, i, "")),
        }
    }
    out.extend(opaque_children());
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The small files of the merged stack (the "read every small file" workload).
pub fn small_files(s: &Sizes) -> Vec<FileSpec> {
    merged_files(s)
        .into_iter()
        .filter(|f| f.path.starts_with(SMALL_DIR))
        .collect()
}

/// The file at `path` in the merged stack.
pub fn merged_file(s: &Sizes, path: &str) -> Option<FileSpec> {
    merged_files(s).into_iter().find(|f| f.path == path)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn write_layer<W: Write>(entries: Vec<Entry>, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    for e in entries {
        match e {
            Entry::Dir(p) => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, format!("{p}/"), io::empty())?;
            }
            Entry::File(f) => {
                let mut h = header(tar::EntryType::Regular, 0o644, f.content.len);
                b.append_data(&mut h, &f.path, f.content.reader())?;
            }
            Entry::Whiteout(p) => {
                let name = match p.rsplit_once('/') {
                    Some((dir, name)) => format!("{dir}/.wh.{name}"),
                    None => format!(".wh.{p}"),
                };
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                b.append_data(&mut h, name, io::empty())?;
            }
            Entry::Opaque(d) => {
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                b.append_data(&mut h, format!("{d}/.wh..wh..opq"), io::empty())?;
            }
        }
    }
    b.into_inner()
}

/// Where the base layers come from.
#[derive(Clone, Debug)]
pub enum Base {
    /// Uncompressed layer tars, bottom first (a store's blobs, or the Debian rootfs tar).
    Tars(Vec<PathBuf>),
    /// A busybox rootfs made from the host's /bin/busybox.
    Busybox(PathBuf),
}

/// The base chosen, and why.
#[derive(Clone, Debug)]
pub struct BaseChoice {
    /// The layers.
    pub base: Base,
    /// What it is, for the report ("node:latest from /var/lib/rimg (1 layer)").
    pub describe: String,
    /// Set when the preferred Debian base was not found.
    pub fallback_note: Option<String>,
}

impl BaseChoice {
    fn cache_key(&self) -> Result<String> {
        let files = match &self.base {
            Base::Tars(t) => t.clone(),
            Base::Busybox(b) => vec![b.clone()],
        };
        let mut key = self.describe.clone();
        for f in files {
            let m = fs::metadata(&f).with_context(|| format!("stat {}", f.display()))?;
            key.push_str(&format!(" {}:{}:{}", f.display(), m.len(), m.mtime()));
        }
        Ok(key)
    }
}

/// Picks the base: `--base-tar`, else (not `--quick`) `node:latest` in the user's store, else
/// the Debian rootfs tar cached by scripts/make-debian-image.sh, else busybox.
pub fn choose_base(
    base_tar: Option<&Path>,
    base_image: &str,
    base_root: &Path,
    quick: bool,
) -> Result<BaseChoice> {
    if let Some(t) = base_tar {
        if !t.is_file() {
            bail!("--base-tar {}: no such file", t.display());
        }
        return Ok(BaseChoice {
            base: Base::Tars(vec![t.to_path_buf()]),
            describe: format!("{} (--base-tar)", t.display()),
            fallback_note: None,
        });
    }
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox is missing (apt-get install busybox-static, or scripts/setup.sh)");
    }
    if quick {
        return Ok(BaseChoice {
            base: Base::Busybox(busybox),
            describe: "busybox (--quick always uses the small base)".into(),
            fallback_note: None,
        });
    }
    if base_root.join("index.json").is_file() {
        if let Ok(images) = Images::open(base_root) {
            if let Ok(img) = images.resolve(base_image) {
                let tars: Vec<PathBuf> = img
                    .diff_ids()
                    .iter()
                    .map(|d| images.store().blob_path(d))
                    .collect();
                if tars.iter().all(|t| t.is_file()) {
                    return Ok(BaseChoice {
                        describe: format!(
                            "{base_image} from {} ({} layer{})",
                            base_root.display(),
                            tars.len(),
                            if tars.len() == 1 { "" } else { "s" }
                        ),
                        base: Base::Tars(tars),
                        fallback_note: None,
                    });
                }
            }
        }
    }
    let cache = std::env::var_os("RIMG_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rimg"));
    let tar = cache.join("debian-node.tar");
    if tar.is_file() {
        return Ok(BaseChoice {
            describe: format!("Debian 12 + nodejs rootfs {}", tar.display()),
            base: Base::Tars(vec![tar]),
            fallback_note: None,
        });
    }
    Ok(BaseChoice {
        base: Base::Busybox(busybox),
        describe: "busybox".into(),
        fallback_note: Some(format!(
            "{base_image} is not in {} and {} does not exist: using a busybox base \
             (scripts/make-debian-image.sh builds the Debian one)",
            base_root.display(),
            tar.display()
        )),
    })
}

/// A minimal busybox rootfs tar, as scripts/make-busybox-image.sh makes it.
fn busybox_tar(busybox: &Path) -> Result<Vec<u8>> {
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    let bin = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    dirs.sort();
    for d in &dirs {
        let mode = match d.as_str() {
            "tmp" => 0o1777,
            "root" => 0o700,
            _ => 0o755,
        };
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, format!("{d}/"), io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, bin.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bin[..])?;
    let passwd =
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let mut h = header(tar::EntryType::Regular, 0o644, passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", &passwd[..])?;
    let group = b"root:x:0:\nnogroup:x:65534:\n";
    let mut h = header(tar::EntryType::Regular, 0o644, group.len() as u64);
    b.append_data(&mut h, "etc/group", &group[..])?;
    for a in applets.lines().map(str::trim) {
        if a.is_empty()
            || a == "bin/busybox"
            || !dirs
                .iter()
                .any(|d| a.rsplit_once('/').is_some_and(|(p, _)| p == d))
        {
            continue;
        }
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, a, "/bin/busybox")?;
    }
    Ok(b.into_inner()?)
}

/// Writes the busybox rootfs tar to `path` (the cli group's small image).
pub fn write_busybox_tar(path: &Path) -> Result<()> {
    let tar = busybox_tar(Path::new("/bin/busybox"))?;
    fs::write(path, tar).with_context(|| format!("writing {}", path.display()))
}

/// The prepared data set.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The sizes it was made with.
    pub sizes: Sizes,
    /// The private rimg store holding the image.
    pub store: PathBuf,
    /// The image's tag in that store.
    pub image: String,
    /// Extracted layers in overlayfs format, bottom first.
    pub layers: Vec<PathBuf>,
    /// The merged tree copied onto the native filesystem.
    pub native: PathBuf,
    /// The base, described.
    pub base: BaseChoice,
}

const FORMAT: &str = "rimg-bench dataset v1";

/// Makes the data set under `work` (or reuses the one there). Progress goes to stderr.
pub fn prepare(work: &Path, quick: bool, base: BaseChoice) -> Result<Dataset> {
    let sizes = if quick { Sizes::QUICK } else { Sizes::FULL };
    let dir = work.join(if quick { "quick" } else { "full" });
    let key = format!("{FORMAT}\n{:?}\n{}\n", sizes, base.cache_key()?);
    let image = format!("rimg-bench:{}", if quick { "quick" } else { "full" });
    let stamp = dir.join("dataset.key");
    let ds = Dataset {
        sizes,
        store: dir.join("store"),
        image: image.clone(),
        layers: Vec::new(),
        native: dir.join("native"),
        base,
    };
    if fs::read_to_string(&stamp).is_ok_and(|k| k == key) {
        let n: usize = fs::read_to_string(dir.join("layers.count"))
            .context("reading layers.count")?
            .trim()
            .parse()
            .context("layers.count")?;
        let layers = (0..n).map(|i| dir.join(format!("layers/{i}"))).collect();
        crate::progress(format_args!("data set: reusing {}", dir.display()));
        return Ok(Dataset { layers, ..ds });
    }
    if dir.exists() {
        crate::progress(format_args!("data set: rebuilding {}", dir.display()));
        sys::unmount_under(&dir)?;
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let images = Images::open(&ds.store).context("opening the bench store")?;
    let mut digests: Vec<Digest> = Vec::new();
    let t = std::time::Instant::now();
    match &ds.base.base {
        Base::Tars(tars) => {
            for tar in tars {
                crate::progress(format_args!(
                    "data set: storing base layer {}",
                    tar.display()
                ));
                let f =
                    fs::File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
                digests.push(
                    images
                        .store()
                        .ingest_layer(io::BufReader::with_capacity(1 << 20, f), None)?
                        .digest,
                );
            }
        }
        Base::Busybox(bb) => {
            crate::progress(format_args!("data set: storing a busybox base layer"));
            let tar = busybox_tar(bb)?;
            digests.push(images.store().ingest_layer(&tar[..], None)?.digest);
        }
    }
    crate::progress(format_args!(
        "data set: generating the bench layer ({} MiB big file, {} × {} MiB, {} small files)",
        sizes.big >> 20,
        sizes.medium_count,
        sizes.medium >> 20,
        sizes.small_count
    ));
    digests.push(ingest_generated(&images, bench_layer(&sizes))?);
    crate::progress(format_args!(
        "data set: generating the top layer (overrides, whiteouts)"
    ));
    digests.push(ingest_generated(&images, top_layer(&sizes))?);
    let mut config = ImageConfig::new_for_host();
    config.config.cmd = Some(vec!["sh".into()]);
    for i in 0..digests.len() {
        config.history.push(History {
            created: Some("2026-01-01T00:00:00Z".into()),
            created_by: Some(format!("rimg-bench layer {i}")),
            ..Default::default()
        });
    }
    let tag = Reference::parse(&image).context("image name")?;
    images
        .create(&digests, config, &[tag])
        .context("creating the bench image")?;

    let mut layers = Vec::new();
    for (i, d) in digests.iter().enumerate() {
        let out = dir.join(format!("layers/{i}"));
        fs::create_dir_all(&out)?;
        crate::progress(format_args!("data set: extracting layer {i} with GNU tar"));
        sys::run(
            Command::new("tar")
                .args([
                    "--xattrs",
                    "--xattrs-include=*",
                    "--numeric-owner",
                    "--same-owner",
                    "-xpf",
                ])
                .arg(images.store().blob_path(d))
                .arg("-C")
                .arg(&out),
        )?;
        convert_whiteouts(&out)?;
        layers.push(out);
    }
    crate::progress(format_args!(
        "data set: copying the merged stack to the native filesystem"
    ));
    let flat = dir.join("flatten");
    fs::create_dir_all(&flat)?;
    sys::mount_overlay(&layers, None, &flat)?;
    fs::create_dir_all(&ds.native)?;
    let copied = sys::run(
        Command::new("cp")
            .args(["-a", "--reflink=never"])
            .arg(flat.join("."))
            .arg(&ds.native),
    );
    sys::umount(&flat)?;
    copied?;
    fs::remove_dir(&flat)?;
    nix::unistd::sync();
    fs::write(dir.join("layers.count"), format!("{}\n", layers.len()))?;
    fs::write(&stamp, key)?;
    crate::progress(format_args!(
        "data set: ready in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(Dataset { layers, ..ds })
}

/// Streams a generated layer into the store: the tar is written by a thread into a pipe, so the
/// layer never exists twice on disk.
fn ingest_generated(images: &Images, entries: Vec<Entry>) -> Result<Digest> {
    let (reader, writer) = io::pipe().context("pipe")?;
    let producer = std::thread::spawn(move || {
        write_layer(entries, io::BufWriter::with_capacity(1 << 20, writer))
            .and_then(|mut w| w.flush())
    });
    let stored = images
        .store()
        .ingest_layer(io::BufReader::with_capacity(1 << 20, reader), None);
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the layer generator panicked"))?;
    produced.context("generating a layer")?;
    Ok(stored.context("storing a generated layer")?.digest)
}

/// Turns `.wh.NAME` files into overlayfs whiteouts (char 0:0) and `.wh..wh..opq` into the
/// `trusted.overlay.opaque` xattr, recursively (as tests/harness/tree.rs does).
fn convert_whiteouts(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".wh..wh..opq" {
            fs::remove_file(&p)?;
            xattr::set(dir, "trusted.overlay.opaque", b"y")
                .with_context(|| format!("setting trusted.overlay.opaque on {}", dir.display()))?;
        } else if let Some(target) = name.strip_prefix(".wh.") {
            fs::remove_file(&p)?;
            sys::whiteout(&dir.join(target))?;
        } else if e.file_type()?.is_dir() {
            convert_whiteouts(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_view_applies_the_top_layer() {
        let s = Sizes::QUICK;
        let m = merged_files(&s);
        let paths: Vec<&str> = m.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&BIG));
        assert!(paths.contains(&MEDIUM_COPY_UP));
        assert!(!paths.contains(&"bench/medium/m02"));
        assert!(!paths.iter().any(|p| p.starts_with("bench/small/d004/")));
        let opaque: Vec<_> = paths
            .iter()
            .filter(|p| p.starts_with("bench/small/d003/"))
            .collect();
        assert_eq!(opaque.len(), 10);
        // 1,000 files, two dirs of 50 gone, 1 in 50 of the rest deleted, 10 new.
        assert_eq!(small_files(&s).len(), 1000 - 100 - 18 + 10);
        assert_ne!(
            merged_file(&s, "bench/small/d000/f00001").map(|f| f.content),
            Some(small_file(&s, 1, "").content)
        );
    }
}
