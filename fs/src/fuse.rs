//! The FUSE adapter: serves a [`UnionTree`] read-only, file data straight from the mapped
//! layer tars. The only module that knows FUSE.
//!
//! Every method looks the inode up in the tree, takes bytes from the mapped tar, and replies
//! once. Layers are immutable, so entries and attributes are cached by the kernel "forever",
//! and the kernel is told not to send `open`/`opendir` at all (no-open mode: `open` answers
//! `ENOSYS` once, the kernel then keeps the page cache across opens).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
    Session, SessionACL,
};

use crate::mapped::MappedLayer;
use crate::union::{Node, NodeKind, UnionTree};

/// How long the kernel may cache entries and attributes: the tree never changes.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The largest read the kernel is allowed to send (1 MiB, the kernel's `max_pages` limit).
pub const MAX_READ: u32 = 1 << 20;
/// Longest name a lookup accepts.
const NAME_MAX: usize = 255;
/// The xattr namespace kernel overlayfs uses for its own metadata. Values from image layers
/// in it would change what the overlay above us means, so they are never served.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Counters of the requests served, for profiling (`rimgfs` can report them).
#[derive(Debug, Default)]
pub struct Counters {
    /// `lookup` requests.
    pub lookups: AtomicU64,
    /// `getattr` requests.
    pub getattrs: AtomicU64,
    /// `read` requests.
    pub reads: AtomicU64,
    /// Bytes returned by `read`.
    pub read_bytes: AtomicU64,
    /// `readdir` and `readdirplus` requests.
    pub readdirs: AtomicU64,
    /// `open` and `opendir` requests (ideally one each: no-open mode).
    pub opens: AtomicU64,
}

/// How the FUSE layer is mounted.
#[derive(Clone, Debug, Default)]
pub struct FuseOptions {
    /// Let users other than the mounting one in (`allow_other`).
    pub allow_other: bool,
    /// Honour setuid/setgid bits.
    pub suid: bool,
    /// Allow device nodes to be opened.
    pub dev: bool,
    /// Worker threads (each with its own cloned `/dev/fuse` fd). 0 means one per CPU, at most 4.
    pub threads: usize,
    /// The name shown as the mount's source in `/proc/mounts`.
    pub fsname: String,
    /// Knobs for measuring what each setting is worth (the defaults are the fast ones).
    pub tuning: Tuning,
}

/// The settings the benchmarks switch off one at a time to measure what each is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Entry and attribute TTL in seconds (default: a year).
    pub ttl_secs: u64,
    /// Answer `open` with `ENOSYS` so the kernel stops sending it (default: on). Off: every
    /// open reaches the daemon and is answered with `FOPEN_KEEP_CACHE`.
    pub no_open: bool,
    /// The mount's `read_ahead_kb` (default 1024; the kernel's own is 128).
    pub read_ahead_kb: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            ttl_secs: TTL.as_secs(),
            no_open: true,
            read_ahead_kb: MAX_READ / 1024,
        }
    }
}

impl Tuning {
    /// Parses `key=value[,key=value]` (`ttl`, `no_open`, `read_ahead_kb`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut t = Tuning::default();
        for kv in spec.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("tuning {kv:?} is not key=value"))?;
            let bad = || format!("tuning {k}: bad value {v:?}");
            match k {
                "ttl" => t.ttl_secs = v.parse().map_err(|_| bad())?,
                "no_open" => t.no_open = matches!(v, "1" | "true" | "on"),
                "read_ahead_kb" => t.read_ahead_kb = v.parse().map_err(|_| bad())?,
                _ => {
                    return Err(format!(
                        "unknown tuning {k:?} (ttl, no_open, read_ahead_kb)"
                    ))
                }
            }
        }
        Ok(t)
    }
}

/// The read-only union filesystem of one image.
#[derive(Debug)]
pub struct LayerFs {
    tree: UnionTree,
    ttl: Duration,
    no_open: bool,
    layers: Vec<MappedLayer>,
    counters: std::sync::Arc<Counters>,
    total_blocks: u64,
}

impl LayerFs {
    /// A filesystem over `tree`, whose layer `i` is mapped as `layers[i]`.
    pub fn new(tree: UnionTree, layers: Vec<MappedLayer>, tuning: Tuning) -> Self {
        let total: u64 = layers.iter().map(|l| l.bytes().len() as u64).sum();
        LayerFs {
            tree,
            ttl: Duration::from_secs(tuning.ttl_secs),
            no_open: tuning.no_open,
            layers,
            counters: std::sync::Arc::default(),
            total_blocks: total.div_ceil(4096),
        }
    }

    /// The request counters, shared with the caller.
    pub fn counters(&self) -> std::sync::Arc<Counters> {
        self.counters.clone()
    }

    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        self.tree.node(ino.0).ok_or(Errno::ENOENT)
    }

    fn attr(&self, ino: u64, n: &Node) -> FileAttr {
        let mtime = system_time(n.mtime, n.mtime_nsec);
        let size = match n.kind {
            NodeKind::Dir => 4096,
            _ => n.size,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: file_type(n.kind),
            perm: (n.mode & 0o7777) as u16,
            nlink: n.nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: encode_dev(n.dev_major, n.dev_minor),
            blksize: 4096,
            flags: 0,
        }
    }

    fn lookup_inner(&self, parent: INodeNo, name: &OsStr) -> Result<(u64, FileAttr), Errno> {
        let name = name.as_bytes();
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let dir = self.node(parent)?;
        if dir.kind != NodeKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        let ino = self.tree.lookup(parent.0, name).ok_or(Errno::ENOENT)?;
        let n = self.node(INodeNo(ino))?;
        Ok((ino, self.attr(ino, n)))
    }

    fn read_inner(&self, ino: INodeNo, offset: u64, size: u32) -> Result<&[u8], Errno> {
        let n = self.node(ino)?;
        match n.kind {
            NodeKind::File => {}
            NodeKind::Dir => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let Some(data) = n.data else {
            return Ok(&[]);
        };
        if offset >= n.size {
            return Ok(&[]);
        }
        let len = u64::from(size).min(n.size - offset);
        let layer = self.layers.get(data.layer as usize).ok_or(Errno::EIO)?;
        let bytes = layer.slice(data.offset.saturating_add(offset), len);
        if (bytes.len() as u64) < len {
            // The index promised more than the tar holds: the blob is damaged.
            return Err(Errno::EIO);
        }
        Ok(bytes)
    }

    /// Directory entries from `offset` on: `.`, `..`, then the children in name order.
    /// Each entry's offset is that of the next one.
    fn dir_entries(&self, ino: INodeNo, offset: u64) -> Result<DirIter<'_>, Errno> {
        let n = self.node(ino)?;
        if n.kind != NodeKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(DirIter {
            node: n,
            ino: ino.0,
            next: offset,
        })
    }

    fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(value.len() as u32);
        } else if value.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(value);
        }
    }
}

struct DirIter<'a> {
    node: &'a Node,
    ino: u64,
    next: u64,
}

impl<'a> Iterator for DirIter<'a> {
    /// (inode, offset of the next entry, name)
    type Item = (u64, u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        self.next += 1;
        match i {
            0 => Some((self.ino, 1, b".")),
            1 => Some((self.node.parent, 2, b"..")),
            _ => {
                let (name, child) = self.node.children.get(usize::try_from(i - 2).ok()?)?;
                Some((*child, i + 1, name.as_slice()))
            }
        }
    }
}

fn system_time(secs: i64, nsec: u32) -> SystemTime {
    let nsec = Duration::from_nanos(u64::from(nsec.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nsec
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nsec
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::Dir => FileType::Directory,
        NodeKind::File => FileType::RegularFile,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Fifo => FileType::NamedPipe,
    }
}

/// The kernel's `new_encode_dev`: what `fuse_attr.rdev` carries.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

impl Filesystem for LayerFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each capability is optional: take what this kernel offers.
        if self.no_open {
            let _ = config.add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT);
            let _ = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        }
        for cap in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_SPLICE_WRITE,
            InitFlags::FUSE_SPLICE_MOVE,
        ] {
            let _ = config.add_capabilities(cap);
        }
        // Capped at what the kernel offered (128 KiB); rimgfs raises the bdi's read_ahead_kb
        // after mounting for larger reads.
        let _ = config.set_max_readahead(MAX_READ).or_else(|max| {
            config
                .set_max_readahead(max)
                .map_err(|_| io::Error::other("max_readahead"))
        });
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        match self.lookup_inner(parent, name) {
            Ok((_, attr)) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.counters.getattrs.fetch_add(1, Ordering::Relaxed);
        match self.node(ino) {
            Ok(n) => reply.attr(&self.ttl, &self.attr(ino.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino) {
            Ok(n) if n.kind == NodeKind::Symlink => reply.data(&n.link),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // No-open mode: after this one ENOSYS the kernel stops asking and keeps page caches.
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        if self.no_open {
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        if self.no_open {
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        match self.read_inner(ino, offset, size) {
            Ok(bytes) => {
                self.counters
                    .read_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                // The slice points into the mapped tar; fuser writes it with writev, so the
                // bytes go from the page cache to the kernel without an intermediate copy.
                reply.data(bytes)
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.counters.readdirs.fetch_add(1, Ordering::Relaxed);
        let entries = match self.dir_entries(ino, offset) {
            Ok(it) => it,
            Err(e) => return reply.error(e),
        };
        for (child, next, name) in entries {
            let kind = match self.tree.node(child) {
                Some(n) => file_type(n.kind),
                None => continue,
            };
            if reply.add(INodeNo(child), next, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.counters.readdirs.fetch_add(1, Ordering::Relaxed);
        let entries = match self.dir_entries(ino, offset) {
            Ok(it) => it,
            Err(e) => return reply.error(e),
        };
        for (child, next, name) in entries {
            let Some(n) = self.tree.node(child) else {
                continue;
            };
            let attr = self.attr(child, n);
            if reply.add(
                INodeNo(child),
                next,
                OsStr::from_bytes(name),
                &self.ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(
            self.total_blocks,
            0,
            0,
            self.tree.len() as u64,
            0,
            4096,
            NAME_MAX as u32,
            4096,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let n = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let name = name.as_bytes();
        if name.starts_with(OVERLAY_XATTR_PREFIX) {
            return reply.error(Errno::ENODATA);
        }
        match n
            .xattrs
            .binary_search_by(|(k, _)| k.as_slice().cmp(name))
            .ok()
            .and_then(|i| n.xattrs.get(i))
        {
            Some((_, v)) => Self::xattr_reply(v, size, reply),
            None => reply.error(Errno::ENODATA),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let n = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mut list = Vec::new();
        for (k, _) in &n.xattrs {
            if k.starts_with(OVERLAY_XATTR_PREFIX) {
                continue;
            }
            list.extend_from_slice(k);
            list.push(0);
        }
        Self::xattr_reply(&list, size, reply);
    }
}

/// Mounts `fs` read-only at `mountpoint` and completes the FUSE handshake; the returned
/// session serves requests once [`run`] is called on it.
pub fn mount(fs: LayerFs, mountpoint: &Path, opts: &FuseOptions) -> io::Result<Session<LayerFs>> {
    let mut mount_options = vec![
        MountOption::RO,
        MountOption::DefaultPermissions,
        MountOption::FSName(if opts.fsname.is_empty() {
            "rimgfs".to_string()
        } else {
            opts.fsname.clone()
        }),
        MountOption::Subtype("rimgfs".to_string()),
        MountOption::CUSTOM(format!("max_read={MAX_READ}")),
        if opts.suid {
            MountOption::Suid
        } else {
            MountOption::NoSuid
        },
        if opts.dev {
            MountOption::Dev
        } else {
            MountOption::NoDev
        },
    ];
    mount_options.push(MountOption::NoAtime);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4)
    } else {
        opts.threads
    };
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(threads);
    config.clone_fd = threads > 1;
    Session::new(fs, mountpoint, &config)
}

/// Serves requests until the filesystem is unmounted.
pub fn run(session: Session<LayerFs>) -> io::Result<()> {
    session.run()
}

/// Raises the read-ahead of the FUSE mount at `mountpoint` to `kb` KiB, so sequential reads
/// reach the daemon in requests of up to [`MAX_READ`] (the FUSE handshake caps it at 128 KiB).
/// The device number comes from the mount table: a `stat` of the mount point would wait for
/// the daemon, which may be the caller.
pub fn raise_read_ahead(mountpoint: &Path, kb: u32) -> io::Result<()> {
    let dev = crate::mountinfo::read()?
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == mountpoint)
        .map(|m| m.device)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mount not in mountinfo"))?;
    std::fs::write(
        format!("/sys/class/bdi/{dev}/read_ahead_kb"),
        format!("{kb}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_encode_as_the_kernel_decodes() {
        // new_decode_dev: major = (dev & 0xfff00) >> 8, minor = (dev & 0xff) | ((dev >> 12) & 0xfff00)
        for (ma, mi) in [(1u32, 3u32), (7, 9), (259, 70000), (4095, 255)] {
            let d = encode_dev(ma, mi);
            assert_eq!((d & 0xfff00) >> 8, ma);
            assert_eq!((d & 0xff) | ((d >> 12) & 0xfff00), mi);
        }
    }

    #[test]
    fn tuning_knobs_parse_and_default_to_the_fast_settings() {
        let d = Tuning::default();
        assert!(d.no_open && d.read_ahead_kb == 1024 && d.ttl_secs > 1_000_000);
        let t = Tuning::parse("ttl=1,no_open=0,read_ahead_kb=128").unwrap();
        assert_eq!(
            t,
            Tuning {
                ttl_secs: 1,
                no_open: false,
                read_ahead_kb: 128
            }
        );
        assert!(Tuning::parse("speed=11").is_err());
        assert!(Tuning::parse("ttl=soon").is_err());
    }

    #[test]
    fn times_before_the_epoch_are_kept() {
        assert_eq!(
            system_time(-1, 500),
            UNIX_EPOCH - Duration::from_secs(1) + Duration::from_nanos(500)
        );
    }
}
