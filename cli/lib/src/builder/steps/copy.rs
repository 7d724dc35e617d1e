//! COPY and ADD: files from the context, from URLs (ADD), from local archives (ADD
//! extracts them) or from another stage or image (`--from`), written as the step's layer.

use std::rc::Rc;

use super::super::cache::FileKey;
use super::super::context::{clean_rel, Context, HostEntry, HostKind};
use super::super::dockerfile::{self, Instruction};
use super::super::fetch;
use super::super::heredoc;
use super::super::ignore::Ignore;
use super::super::layer::{self, DirDefaults, ImageFiles, Kind, LayerPlan, NewEntry, Source};
use super::super::stages::{stage_index, step_err, Builder, Outcome};
use super::super::BuildError;
use super::sources::{Download, Unpacked};
use super::{StageContext, State};
use crate::image::change::{join_workdir, Lexer};

/// Docker's error for several sources into something that is not a directory.
const NOT_A_DIR: &str = "When using COPY with more than one source file, the destination must be a directory and end with a /";

/// A COPY or ADD with its words expanded.
struct CopyArgs {
    add: bool,
    sources: Vec<String>,
    dest: String,
    chown: Option<String>,
    chmod: Option<u32>,
    from: Option<String>,
    /// Heredoc sources: (file name, contents), variables substituted unless quoted.
    inline: Vec<(String, String)>,
    /// `ADD --checksum=sha256:…`: the digest a URL's download must have.
    checksum: Option<String>,
    /// `--exclude` patterns (`.dockerignore` syntax), matched against a context path and
    /// against its path inside the source directory being copied.
    exclude: Option<Ignore>,
    /// `--parents`: keep each source's parent directories (below a `/./` pivot) in the
    /// destination.
    parents: bool,
}

impl CopyArgs {
    fn parse(
        ins: &Instruction,
        escape: char,
        lexer: &Lexer<'_>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, BuildError> {
        let raw = dockerfile::parse_copy(ins, escape)?;
        let inline = raw
            .inline
            .iter()
            .map(|d| {
                let data = d.data();
                let data = if d.expand {
                    heredoc::expand(&data, lookup)
                } else {
                    data
                };
                (d.name.clone(), data)
            })
            .collect();
        let word = |w: &str| lexer.word(w).map_err(|m| step_err(ins, m));
        let mut sources = Vec::new();
        for s in &raw.sources {
            sources.push(word(s)?);
        }
        let dest = word(&raw.dest)?;
        let chown = ins.flag("chown").map(word).transpose()?;
        let chmod = match ins.flag("chmod").map(word).transpose()? {
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| step_err(ins, format!("invalid --chmod={m}")))?,
            ),
            None => None,
        };
        let from = ins.flag("from").map(word).transpose()?;
        let checksum = ins.flag("checksum").map(word).transpose()?;
        if let Some(c) = &checksum {
            let valid = c
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.chars().all(|x| x.is_ascii_hexdigit()));
            if !valid {
                return Err(step_err(
                    ins,
                    format!("invalid --checksum={c}: use sha256:<64 hex digits>"),
                ));
            }
            if sources.len() != 1 || !fetch::is_url(&sources[0]) {
                return Err(step_err(ins, "--checksum needs exactly one http(s) source"));
            }
        }
        if ins.flags.iter().any(|x| x.name == "keep-git-dir") {
            return Err(step_err(ins, "--keep-git-dir is not supported"));
        }
        let mut patterns = Vec::new();
        for f in ins.flags.iter().filter(|f| f.name == "exclude") {
            patterns.push(word(f.value.as_deref().unwrap_or(""))?);
        }
        let exclude = (!patterns.is_empty()).then(|| Ignore::parse(&patterns.join("\n")));
        let parents = match ins.flags.iter().rev().find(|f| f.name == "parents") {
            None => false,
            Some(f) => match f.value.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(step_err(ins, format!("invalid --parents={v}"))),
            },
        };
        Ok(CopyArgs {
            add: ins.keyword == "ADD",
            sources,
            dest,
            chown,
            chmod,
            from,
            inline,
            checksum,
            exclude,
            parents,
        })
    }

    /// The step as shown and recorded in the history (`COPY --chown=1:1 a b /dst/`).
    fn text(&self, keyword: &str) -> String {
        let mut flags = String::new();
        if let Some(f) = &self.from {
            flags.push_str(&format!("--from={f} "));
        }
        if let Some(c) = &self.chown {
            flags.push_str(&format!("--chown={c} "));
        }
        if let Some(m) = &self.chmod {
            flags.push_str(&format!("--chmod={m:o} "));
        }
        if self.parents {
            flags.push_str("--parents ");
        }
        let mut sources = self.sources.clone();
        sources.extend(self.inline.iter().map(|(n, _)| format!("<<{n}")));
        format!("{keyword} {flags}{} {}", sources.join(" "), self.dest)
    }
}

/// Runs a COPY or ADD step (or takes its cache hit). Its key is the step's text and either
/// the `--from` state's id or every context file and download it reads, with their hashes.
pub(in crate::builder) fn copy(
    b: &mut Builder<'_>,
    cx: &mut StageContext<'_>,
    ins: &Instruction,
    lexer: &Lexer<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, BuildError> {
    let args = CopyArgs::parse(ins, b.escape, lexer, lookup)?;
    if args.from.is_some() && !args.inline.is_empty() {
        return Err(step_err(
            ins,
            "heredoc sources cannot be combined with --from",
        ));
    }
    let from_state = source_state(b, cx, ins, args.from.as_deref())?;
    let text = args.text(&ins.keyword);
    // Downloads live until the layer is written.
    let (key_text, file_keys, downloads) = match &from_state {
        Some(fs) => (format!("{text} # from {}", fs.id), Vec::new(), Vec::new()),
        None => {
            let (keys, downloads) = context_keys(b, ins, &args)?;
            (text.clone(), keys, downloads)
        }
    };
    let parts = cx.key(&key_text, file_keys);
    if b.cache_hit(cx, &parts) {
        return Ok(Outcome::Cached);
    }
    let mut p = Placement::new(b.files(&cx.state)?, cx, ins, &args)?;
    // Archives being added live until the layer is written.
    let mut extracted = Vec::new();
    match &from_state {
        Some(fs) => plan_from_image(b, ins, &args, fs, &mut p)?,
        None => plan_from_context(b, ins, &args, &downloads, &mut extracted, &mut p)?,
    }
    let (uid, gid) = p.owner.unwrap_or((0, 0));
    let defaults = DirDefaults {
        uid,
        gid,
        mtime: p.epoch,
    };
    p.plan.add_parents(Some(&p.lower), defaults);
    let digest = layer::store_plan(b.images.store(), &p.plan)?;
    let config = cx.state.config.clone();
    b.commit_step(cx, parts, config, Some(digest), &text)
}

/// The state `--from` names: an earlier stage's final state, or an image (fetched if
/// missing). `None` reads the context.
pub(in crate::builder) fn source_state(
    b: &mut Builder<'_>,
    cx: &StageContext<'_>,
    ins: &Instruction,
    from: Option<&str>,
) -> Result<Option<State>, BuildError> {
    let Some(name) = from else {
        return Ok(None);
    };
    Ok(Some(match stage_index(cx.stages, name, cx.index) {
        Some(j) => b
            .stage_states
            .get(&j)
            .cloned()
            .ok_or_else(|| step_err(ins, format!("stage {name} was not built")))?,
        None => {
            let img = b.named_image(name).map_err(|e| step_err(ins, e))?;
            b.images.ensure_layers(&img)?;
            State::new(img.config)
        }
    }))
}

/// The cache key's files for sources in the context: every file a source names or holds
/// (path, mode, content hash), and each URL's download (which happens here, to hash it).
fn context_keys(
    b: &Builder<'_>,
    ins: &Instruction,
    args: &CopyArgs,
) -> Result<(Vec<FileKey>, Vec<Download>), BuildError> {
    let mut keys = Vec::new();
    let mut downloads = Vec::new();
    for s in &args.sources {
        if fetch::is_url(s) {
            if !args.add {
                return Err(step_err(ins, "COPY cannot take a URL (use ADD)"));
            }
            let d = Download::fetch(b.images, s).map_err(|m| step_err(ins, m))?;
            if let Some(want) = &args.checksum {
                if d.digest.to_string() != want.to_ascii_lowercase() {
                    return Err(step_err(
                        ins,
                        format!(
                            "checksum mismatch for {s}: expected {want}, got {}",
                            d.digest
                        ),
                    ));
                }
            }
            keys.push(FileKey {
                path: s.clone(),
                mode: 0o600,
                content: d.digest.to_string(),
            });
            downloads.push(d);
            continue;
        }
        keys.extend(source_keys(b, ins, s, args.exclude.as_ref())?);
    }
    for (name, data) in &args.inline {
        keys.push(FileKey {
            path: format!("<<{name}"),
            mode: 0o644,
            content: rimg_fs::Digest::of(data.as_bytes()).to_string(),
        });
    }
    keys.sort_by(|a, b| a.path.cmp(&b.path));
    keys.dedup();
    Ok((keys, downloads))
}

/// The cache key's files for one context source (a path or pattern): every entry it names
/// or holds, with its mode and content hash. `RUN --mount=type=bind` keys on them too.
pub(in crate::builder) fn source_keys(
    b: &Builder<'_>,
    ins: &Instruction,
    source: &str,
    exclude: Option<&Ignore>,
) -> Result<Vec<FileKey>, BuildError> {
    let mut keys = Vec::new();
    for e in source_entries(b, ins, source, exclude)? {
        let content = match &e.kind {
            HostKind::Dir => "dir".to_string(),
            HostKind::Symlink(t) => format!("symlink:{}", String::from_utf8_lossy(t)),
            HostKind::File(_) => b
                .context
                .hash(&e.rel)
                .map_err(|er| step_err(ins, crate::error_line(&er)))?
                .to_string(),
        };
        keys.push(FileKey {
            path: e.rel,
            mode: e.mode,
            content,
        });
    }
    Ok(keys)
}

/// Every context entry a source names, directories' contents included.
pub(in crate::builder) fn source_entries(
    b: &Builder<'_>,
    ins: &Instruction,
    source: &str,
    exclude: Option<&Ignore>,
) -> Result<Vec<HostEntry>, BuildError> {
    let mut out = Vec::new();
    for m in b
        .context
        .resolve(source)
        .map_err(|e| step_err(ins, crate::error_line(&e)))?
    {
        if excluded(exclude, "", &m.entry.rel) {
            continue;
        }
        let dir = m.entry.kind == HostKind::Dir;
        let rel = m.entry.rel.clone();
        out.push(m.entry);
        if dir {
            let below = b.context.walk(&rel)?;
            out.extend(
                below
                    .into_iter()
                    .filter(|c| !excluded(exclude, &rel, &c.rel)),
            );
        }
    }
    Ok(out)
}

/// Whether `--exclude` leaves out the context path `rel` (copied from directory `base`):
/// a pattern may match the path from the context root or from inside `base`.
fn excluded(exclude: Option<&Ignore>, base: &str, rel: &str) -> bool {
    let Some(ex) = exclude else {
        return false;
    };
    if ex.excluded(rel) {
        return true;
    }
    let inside = if base.is_empty() {
        None
    } else {
        rel.strip_prefix(base).and_then(|r| r.strip_prefix('/'))
    };
    inside.is_some_and(|r| ex.excluded(r))
}

/// Where a COPY writes and how: the state's files below, the destination, the owner and
/// mode the entries get, and the layer being planned.
struct Placement {
    lower: Rc<ImageFiles>,
    /// The absolute destination.
    dest: String,
    /// The destination is a directory (it says so, or the state has one there).
    as_dir: bool,
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
    epoch: i64,
    plan: LayerPlan,
}

impl Placement {
    fn new(
        lower: Rc<ImageFiles>,
        cx: &StageContext<'_>,
        ins: &Instruction,
        args: &CopyArgs,
    ) -> Result<Self, BuildError> {
        let owner = match &args.chown {
            Some(c) => Some(layer::resolve_owner(Some(&lower), c).map_err(|m| step_err(ins, m))?),
            None => None,
        };
        let dest = &args.dest;
        let workdir = cx.state.config.config.working_dir.as_deref();
        let dest_abs = if dest.starts_with('/') {
            join_workdir(None, dest)
        } else {
            join_workdir(workdir, dest)
        };
        let dest_says_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
        Ok(Placement {
            as_dir: dest_says_dir || lower.is_dir(&dest_abs),
            lower,
            dest: dest_abs,
            owner,
            chmod: args.chmod,
            epoch: cx.epoch,
            plan: LayerPlan::new(),
        })
    }

    /// `name` inside the destination directory.
    fn target_in(&self, name: &str) -> String {
        format!("{}/{}", self.dest.trim_end_matches('/'), name)
    }

    /// Where a single source called `name` goes: into the destination directory, or to
    /// the destination itself.
    fn target_for(&self, name: &str) -> String {
        if self.as_dir {
            self.target_in(name)
        } else {
            self.dest.clone()
        }
    }

    /// Plans `entry` at `path` (its parents resolved through the state's symlinks).
    fn add(&mut self, path: &str, entry: NewEntry) {
        self.plan.add(&self.lower.canonical_parent(path), entry);
    }

    /// Plans the destination directory, unless the state has it.
    fn add_dest_dir(&mut self) {
        if !self.lower.is_dir(&self.dest) {
            let (uid, gid) = self.owner.unwrap_or((0, 0));
            let dir = NewEntry {
                kind: Kind::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: self.epoch,
                xattrs: Vec::new(),
            };
            self.add(&self.dest.clone(), dir);
        }
    }

    /// Applies `--chown` and `--chmod` (which leaves symlinks alone) to an entry.
    fn adjust(&self, e: &mut NewEntry) {
        if let Some((u, g)) = self.owner {
            e.uid = u;
            e.gid = g;
        }
        if let Some(m) = self.chmod {
            if !matches!(e.kind, Kind::Symlink(_)) {
                e.mode = m;
            }
        }
    }

    /// The entry a context file, directory or symlink becomes.
    fn host_entry(&self, ctx: &Context, e: &HostEntry) -> NewEntry {
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        let kind = match &e.kind {
            HostKind::Dir => Kind::Dir,
            HostKind::Symlink(t) => Kind::Symlink(t.clone()),
            HostKind::File(size) => Kind::File {
                source: Source::Context {
                    root: ctx.root().to_path_buf(),
                    rel: std::path::PathBuf::from(&e.rel),
                },
                size: *size,
            },
        };
        let mode = match (&e.kind, self.chmod) {
            (HostKind::Symlink(_), _) => 0o777,
            (_, Some(m)) => m,
            (_, None) => e.mode,
        };
        NewEntry {
            kind,
            mode,
            uid,
            gid,
            mtime: self.epoch,
            xattrs: Vec::new(),
        }
    }
}

/// Plans `COPY --from`: the paths (or globs) in the source state; a directory's contents
/// go into the destination.
fn plan_from_image(
    b: &mut Builder<'_>,
    ins: &Instruction,
    args: &CopyArgs,
    from: &State,
    p: &mut Placement,
) -> Result<(), BuildError> {
    let src_files = b.files(from)?;
    let mut matched: Vec<(String, u64)> = Vec::new();
    for s in &args.sources {
        let found = image_glob(&src_files, s);
        if found.is_empty() {
            let name = args.from.as_deref().unwrap_or("");
            return Err(step_err(ins, format!("{s}: not found in {name}")));
        }
        matched.extend(found);
    }
    let many = matched.len() > 1 || args.sources.iter().any(|s| has_glob(s));
    if many && !p.as_dir {
        return Err(step_err(ins, NOT_A_DIR));
    }
    for (path, ino) in matched {
        let Some(mut e) = src_files.entry(ino) else {
            continue;
        };
        if e.kind == Kind::Dir {
            p.add_dest_dir();
            for (rel, child) in src_files.below(ino) {
                if let Some(mut ce) = src_files.entry(child) {
                    p.adjust(&mut ce);
                    p.add(&p.target_in(&rel), ce);
                }
            }
            continue;
        }
        p.adjust(&mut e);
        let name = path.rsplit('/').next().unwrap_or(&path);
        p.add(&p.target_for(name), e);
    }
    Ok(())
}

/// Plans COPY or ADD from the context: the downloads, then each matched entry (ADD
/// extracts a local archive into the destination).
fn plan_from_context(
    b: &Builder<'_>,
    ins: &Instruction,
    args: &CopyArgs,
    downloads: &[Download],
    extracted: &mut Vec<Unpacked>,
    p: &mut Placement,
) -> Result<(), BuildError> {
    // Each matched entry with the part of its path `--parents` keeps.
    let mut matched: Vec<(HostEntry, Option<String>)> = Vec::new();
    let mut wildcard = false;
    for s in &args.sources {
        if fetch::is_url(s) {
            continue;
        }
        let pivot = s
            .split_once("/./")
            .and_then(|(before, _)| clean_rel(before))
            .unwrap_or_default();
        for m in b
            .context
            .resolve(s)
            .map_err(|e| step_err(ins, crate::error_line(&e)))?
        {
            if excluded(args.exclude.as_ref(), "", &m.entry.rel) {
                continue;
            }
            wildcard |= m.wildcard;
            let kept = args.parents.then(|| {
                let r = &m.entry.rel;
                match r.strip_prefix(&pivot) {
                    Some(rest) if !pivot.is_empty() => rest.trim_start_matches('/').to_string(),
                    _ => r.clone(),
                }
            });
            matched.push((m.entry, kept));
        }
    }
    if args.parents {
        p.as_dir = true;
    }
    let count = matched.len() + downloads.len() + args.inline.len();
    if (count > 1 || wildcard) && !p.as_dir {
        return Err(step_err(ins, NOT_A_DIR));
    }
    for d in downloads {
        plan_download(ins, d, p)?;
    }
    for (name, data) in &args.inline {
        let (uid, gid) = p.owner.unwrap_or((0, 0));
        let entry = NewEntry {
            kind: Kind::File {
                source: Source::Bytes(data.as_bytes().to_vec()),
                size: data.len() as u64,
            },
            mode: p.chmod.unwrap_or(0o644),
            uid,
            gid,
            mtime: p.epoch,
            xattrs: Vec::new(),
        };
        p.add(&p.target_for(name), entry);
    }
    for (e, kept) in matched {
        if e.kind == HostKind::Dir {
            plan_context_dir(&b.context, &e, kept.as_deref(), args.exclude.as_ref(), p)?;
            continue;
        }
        if let Some(k) = &kept {
            let entry = p.host_entry(&b.context, &e);
            p.add(&p.target_in(k), entry);
            continue;
        }
        if args.add && matches!(e.kind, HostKind::File(_)) {
            if let Some(u) = unpack(b, ins, &e)? {
                for (rel, mut ne) in u.entries.clone() {
                    p.adjust(&mut ne);
                    p.add(&p.target_in(&rel), ne);
                }
                extracted.push(u);
                continue;
            }
        }
        let entry = p.host_entry(&b.context, &e);
        p.add(&p.target_for(e.name()), entry);
    }
    Ok(())
}

/// Plans an ADD of a URL: a file named after the URL (mode 0600 unless `--chmod`).
fn plan_download(ins: &Instruction, d: &Download, p: &mut Placement) -> Result<(), BuildError> {
    let name = fetch::file_name(&d.url).ok_or_else(|| {
        let url = &d.url;
        step_err(
            ins,
            format!("cannot tell a file name from {url}: end the destination with /"),
        )
    })?;
    let (uid, gid) = p.owner.unwrap_or((0, 0));
    let entry = NewEntry {
        kind: Kind::File {
            source: Source::Host(d.path.clone()),
            size: d.size,
        },
        mode: p.chmod.unwrap_or(0o600),
        uid,
        gid,
        mtime: d.modified.unwrap_or(p.epoch),
        xattrs: Vec::new(),
    };
    p.add(&p.target_for(&name), entry);
    Ok(())
}

/// Plans a context directory: its contents go into the destination directory.
fn plan_context_dir(
    ctx: &Context,
    e: &HostEntry,
    kept: Option<&str>,
    exclude: Option<&Ignore>,
    p: &mut Placement,
) -> Result<(), BuildError> {
    p.add_dest_dir();
    // `--parents`: the directory itself goes in at its kept path, its contents below it.
    let prefix = kept.filter(|k| !k.is_empty()).map(|k| {
        let entry = p.host_entry(ctx, e);
        p.add(&p.target_in(k), entry);
        format!("{k}/")
    });
    let base = &e.rel;
    for c in ctx.walk(base)? {
        if excluded(exclude, base, &c.rel) {
            continue;
        }
        let rel = if base.is_empty() {
            c.rel.clone()
        } else {
            c.rel[base.len() + 1..].to_string()
        };
        let entry = p.host_entry(ctx, &c);
        let at = format!("{}{rel}", prefix.as_deref().unwrap_or(""));
        p.add(&p.target_in(&at), entry);
    }
    Ok(())
}

/// The entries of a context file ADD extracts, if it is an archive.
fn unpack(
    b: &Builder<'_>,
    ins: &Instruction,
    e: &HostEntry,
) -> Result<Option<Unpacked>, BuildError> {
    let host = b.context.host_path(&e.rel);
    let Some(comp) =
        layer::sniff_archive(&host).map_err(|er| step_err(ins, format!("{}: {er}", e.rel)))?
    else {
        return Ok(None);
    };
    let u = Unpacked::open(b.images, &host, comp)
        .map_err(|m| step_err(ins, format!("{}: {m}", e.rel)))?;
    Ok(Some(u))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Paths in an image matching a COPY --from source (exact, or globs per component).
fn image_glob(files: &ImageFiles, pattern: &str) -> Vec<(String, u64)> {
    let Some(clean) = clean_rel(pattern) else {
        return Vec::new();
    };
    if !has_glob(&clean) {
        return files
            .lookup_final(&clean)
            .map(|i| vec![(clean.clone(), i)])
            .unwrap_or_default();
    }
    let mut current: Vec<(String, u64)> = vec![(String::new(), rimg_fs::union::ROOT_INO)];
    for comp in clean.split('/') {
        let mut next = Vec::new();
        for (path, ino) in &current {
            let Some(n) = files.tree.node(*ino) else {
                continue;
            };
            for (name, child) in &n.children {
                let name = String::from_utf8_lossy(name);
                if super::super::ignore::go_match(comp, &name) {
                    let p = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}/{name}")
                    };
                    next.push((p, *child));
                }
            }
        }
        current = next;
    }
    current
}
