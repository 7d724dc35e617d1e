//! The measured operations, and the checks that what they read is the source's bytes. Timed
//! passes only read (so that hashing cost does not cap every variant alike); each variant's
//! bytes are then checked by an untimed pass over the same files.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::content;
use crate::dataset::FileSpec;

const BUF: usize = 1 << 20;
/// The random-read block size.
pub const BLOCK: u64 = 4096;

/// Reads `path` from start to end in 1 MiB reads, handing each chunk to `visit`; returns the
/// bytes read.
fn read_through(path: &Path, mut visit: impl FnMut(&[u8])) -> Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            return Ok(n);
        }
        visit(&buf[..k]);
        n += k as u64;
    }
}

/// Reads `path` from start to end; returns the bytes read and the seconds it took.
pub fn seq_read(path: &Path) -> Result<(u64, f64)> {
    let t = Instant::now();
    let n = read_through(path, |_| {})?;
    Ok((n, t.elapsed().as_secs_f64()))
}

fn sha256_file(path: &Path) -> Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let n = read_through(path, |b| h.update(b))?;
    Ok((h.finalize().into(), n))
}

/// Checks that the file at `root/spec.path` holds exactly the source bytes (sha256).
pub fn check_file(root: &Path, spec: &FileSpec) -> Result<()> {
    let (got, len) = sha256_file(&root.join(&spec.path))?;
    if len != spec.content.len || got != spec.content.sha256() {
        bail!(
            "{}: read {len} bytes whose sha256 differs from the source's ({} bytes)",
            spec.path,
            spec.content.len
        );
    }
    Ok(())
}

/// Checks every small file's bytes (sha256 of each against its source).
pub fn check_files(root: &Path, files: &[FileSpec]) -> Result<()> {
    for f in files {
        check_file(root, f)?;
    }
    Ok(())
}

/// Opens and reads every file in `files`; returns the seconds it took.
pub fn read_files(root: &Path, files: &[FileSpec]) -> Result<f64> {
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(&f.path)).collect();
    let mut buf = vec![0u8; 64 << 10];
    let t = Instant::now();
    for p in &paths {
        let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        while f
            .read(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?
            != 0
        {}
    }
    Ok(t.elapsed().as_secs_f64())
}

fn block_offset(seed: u64, k: u64, blocks: u64) -> u64 {
    content::small(seed ^ k.wrapping_mul(0x9E37_79B9), blocks).saturating_sub(1) * BLOCK
}

/// Random 4 KiB reads of `path` from `threads` threads for `secs` seconds (built-in reader,
/// pread); returns reads per second.
pub fn rand_builtin(path: &Path, threads: usize, secs: f64) -> Result<f64> {
    let len = fs::metadata(path)?.len();
    let blocks = (len / BLOCK).max(1);
    let deadline = Duration::from_secs_f64(secs);
    let t = Instant::now();
    let counts: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || -> Result<u64> {
                    let f = File::open(path)?;
                    let mut buf = vec![0u8; BLOCK as usize];
                    let seed = content::seed_of(&format!("rand-thread-{i}"));
                    let mut n = 0u64;
                    loop {
                        for _ in 0..256 {
                            f.read_exact_at(&mut buf, block_offset(seed, n, blocks))?;
                            n += 1;
                        }
                        if t.elapsed() >= deadline {
                            return Ok(n);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("reader thread panicked")))
            })
            .collect()
    });
    let elapsed = t.elapsed().as_secs_f64();
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok(total as f64 / elapsed)
}

/// Random 4 KiB reads with fio (psync, page cache kept: `--invalidate=0`); reads per second.
pub fn rand_fio(path: &Path, threads: usize, secs: f64) -> Result<f64> {
    let len = fs::metadata(path)?.len();
    let out = crate::sys::run(
        Command::new("fio")
            .args([
                "--name=rand4k",
                "--rw=randread",
                "--bs=4k",
                "--ioengine=psync",
                "--invalidate=0",
                "--readonly",
                "--thread",
                "--group_reporting",
                "--time_based",
                "--output-format=json",
            ])
            .arg(format!("--filename={}", path.display()))
            .arg(format!("--size={len}"))
            .arg(format!("--numjobs={threads}"))
            .arg(format!("--runtime={}ms", (secs * 1000.0) as u64)),
    )?;
    let json = out.find('{').map_or("", |i| &out[i..]);
    let v: serde_json::Value = serde_json::from_str(json).context("parsing fio's JSON output")?;
    v["jobs"][0]["read"]["iops"]
        .as_f64()
        .context("fio's output has no jobs[0].read.iops")
}

/// Reads `n` random 4 KiB blocks and compares each with the source.
pub fn check_random_blocks(path: &Path, spec: &FileSpec, n: u64) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let blocks = (spec.content.len / BLOCK).max(1);
    let seed = content::seed_of("rand-check");
    let mut got = vec![0u8; BLOCK as usize];
    let mut want = vec![0u8; BLOCK as usize];
    for k in 0..n {
        let off = block_offset(seed, k, blocks);
        f.read_exact_at(&mut got, off)?;
        content::fill(spec.content.seed, off, &mut want);
        if got != want {
            bail!(
                "{}: the 4 KiB block at offset {off} differs from the source",
                spec.path
            );
        }
    }
    Ok(())
}

/// One entry of a metadata walk.
pub struct Stat {
    rel: PathBuf,
    meta: fs::Metadata,
}

/// Walks the tree under `root` (readdir, then lstat of every entry, as `find -printf` with a
/// stat field does); returns the entries and the seconds it took.
pub fn walk(root: &Path) -> Result<(Vec<Stat>, f64)> {
    let t = Instant::now();
    let mut out = Vec::with_capacity(64 << 10);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let meta = e.metadata()?;
            let child = rel.join(e.file_name());
            if meta.is_dir() {
                stack.push(child.clone());
            }
            out.push(Stat { rel: child, meta });
        }
    }
    Ok((out, t.elapsed().as_secs_f64()))
}

/// The walk as sorted lines (path, kind, mode, owner, size of non-directories, device
/// numbers), to compare variants.
pub fn listing(stats: &[Stat], skip_top: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = stats
        .iter()
        .filter(|s| {
            !skip_top.iter().any(|t| {
                s.rel
                    .components()
                    .next()
                    .is_some_and(|c| c.as_os_str() == *t)
            })
        })
        .map(|s| {
            let m = &s.meta;
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "d".to_string()
            } else if ft.is_symlink() {
                format!("l {}", m.len())
            } else if ft.is_file() {
                format!("f {}", m.len())
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("dev {:x}", m.rdev())
            } else {
                "other".to_string()
            };
            format!(
                "{} {kind} {:o} {}:{}",
                s.rel.display(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            )
        })
        .collect();
    lines.sort();
    lines
}

/// The first difference between two listings, or None.
pub fn first_difference(want: &[String], got: &[String]) -> Option<String> {
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < got.len() {
        match (want.get(i), got.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => return Some(format!("missing or different: {a}")),
            (Some(_), Some(b)) => return Some(format!("unexpected: {b}")),
            (Some(a), None) => return Some(format!("missing: {a}")),
            (None, Some(b)) => return Some(format!("unexpected: {b}")),
            (None, None) => break,
        }
    }
    None
}

/// Appends one byte to `root/spec.path` (open for append, write, close): for the overlay
/// variants this copies the whole lower file up. Returns the seconds it took.
pub fn append_byte(root: &Path, spec: &FileSpec) -> Result<f64> {
    let p = root.join(&spec.path);
    let t = Instant::now();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {} to append", p.display()))?;
    f.write_all(b"!")
        .with_context(|| format!("appending to {}", p.display()))?;
    drop(f);
    Ok(t.elapsed().as_secs_f64())
}

/// Checks that `root/spec.path` holds the source bytes followed by one `!`.
pub fn check_appended(root: &Path, spec: &FileSpec) -> Result<()> {
    let (got, len) = sha256_file(&root.join(&spec.path))?;
    let mut h = Sha256::new();
    let mut r = spec.content.reader();
    let mut buf = vec![0u8; BUF];
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    h.update(b"!");
    if len != spec.content.len + 1 || got != <[u8; 32]>::from(h.finalize()) {
        bail!(
            "{}: after the append, its bytes are not the source's plus one byte",
            spec.path
        );
    }
    Ok(())
}

/// Creates `n` files of 4 KiB in a new directory `dir`; returns the seconds it took.
pub fn create_files(dir: &Path, n: usize) -> Result<f64> {
    let mut data = vec![0u8; BLOCK as usize];
    content::fill(content::seed_of("create"), 0, &mut data);
    let t = Instant::now();
    fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    for i in 0..n {
        let p = dir.join(format!("new{i:05}"));
        let mut f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        f.write_all(&data)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Checks that `dir` holds `n` files of 4 KiB with the data written.
pub fn check_created(dir: &Path, n: usize) -> Result<()> {
    let mut data = vec![0u8; BLOCK as usize];
    content::fill(content::seed_of("create"), 0, &mut data);
    let mut count = 0;
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if fs::read(&p)? != data {
            bail!("{}: not the 4 KiB written", p.display());
        }
        count += 1;
    }
    if count != n {
        bail!("{}: {count} files, {n} were created", dir.display());
    }
    Ok(())
}
