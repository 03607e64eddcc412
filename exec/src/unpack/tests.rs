//! Tests of layer extraction, hostile archives first.

use super::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use tar::Header;

/// Builds tars entry by entry with names and link targets written verbatim, including the
/// hostile ones (`..`, absolute) that `tar::Builder` refuses to produce.
#[derive(Default)]
struct TarBuf {
    data: Vec<u8>,
}

struct Spec<'a> {
    name: &'a str,
    kind: EntryType,
    content: &'a [u8],
    link: Option<&'a str>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    device: (u32, u32),
    pax: Vec<(&'a str, Vec<u8>)>,
}

impl<'a> Spec<'a> {
    fn new(name: &'a str, kind: EntryType) -> Self {
        Self {
            name,
            kind,
            content: b"",
            link: None,
            mode: if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            device: (0, 0),
            pax: Vec::new(),
        }
    }
}

impl TarBuf {
    fn add(&mut self, spec: Spec<'_>) -> &mut Self {
        if !spec.pax.is_empty() {
            let mut builder = tar::Builder::new(Vec::new());
            builder
                .append_pax_extensions(spec.pax.iter().map(|(k, v)| (*k, v.as_slice())))
                .unwrap();
            let mut bytes = builder.into_inner().unwrap();
            bytes.truncate(bytes.len() - 1024); // drop the end-of-archive blocks
            self.data.extend(bytes);
        }
        let mut header = Header::new_ustar();
        let name = spec.name.as_bytes();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = spec.link {
            header.set_link_name_literal(link).unwrap();
        }
        header.set_entry_type(spec.kind);
        header.set_mode(spec.mode);
        header.set_uid(spec.uid);
        header.set_gid(spec.gid);
        header.set_mtime(spec.mtime);
        header.set_size(spec.content.len() as u64);
        if matches!(spec.kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(spec.device.0).unwrap();
            header.set_device_minor(spec.device.1).unwrap();
        }
        header.set_cksum();
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(spec.content);
        let pad = (512 - spec.content.len() % 512) % 512;
        self.data.extend(std::iter::repeat_n(0, pad));
        self
    }

    fn file(&mut self, name: &str, content: &[u8]) -> &mut Self {
        let mut spec = Spec::new(name, EntryType::Regular);
        spec.content = content;
        self.add(spec)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.add(Spec::new(name, EntryType::Directory))
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut spec = Spec::new(name, EntryType::Symlink);
        spec.link = Some(target);
        self.add(spec)
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut spec = Spec::new(name, EntryType::Link);
        spec.link = Some(target);
        self.add(spec)
    }

    /// Appends bytes verbatim (smuggled headers, garbage), padded to a whole block.
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.data.extend_from_slice(bytes);
        let pad = (512 - bytes.len() % 512) % 512;
        self.data.extend(std::iter::repeat_n(0, pad));
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.data);
        data.extend([0; 1024]);
        data
    }
}

/// A root directory inside its own temporary parent, so escapes can be detected.
struct Sandbox {
    base: tempfile::TempDir,
    root: RootFs,
}

impl Sandbox {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("root")).unwrap();
        let root = RootFs::open(&base.path().join("root")).unwrap();
        Self { base, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.base.path().join("root").join(rel)
    }

    fn apply(&self, tar: &[u8]) -> Result<(), UnpackError> {
        apply_layer(&self.root, tar, "sha256:test")
    }

    fn parent_listing(&self) -> Vec<OsString> {
        let mut names: Vec<_> = fs::read_dir(self.base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

mod bench;
mod hostile;

#[test]
fn hardlink_to_a_missing_target_is_refused_naming_layer_and_entry() {
    let sandbox = Sandbox::new();
    let tar = TarBuf::default()
        .hardlink("pw", "../../etc/passwd")
        .finish();
    let err = sandbox.apply(&tar).unwrap_err().to_string();
    assert!(err.contains("sha256:test"), "{err}");
    assert!(err.contains("pw"), "{err}");
    assert!(err.contains("etc/passwd"), "{err}");
}

#[test]
fn symlink_loop_in_a_parent_is_an_error() {
    let sandbox = Sandbox::new();
    let tar = TarBuf::default()
        .symlink("loop", "loop")
        .file("loop/x", b"x")
        .finish();
    let err = sandbox.apply(&tar).unwrap_err().to_string();
    assert!(err.contains("loop/x"), "{err}");
}

#[test]
fn whiteouts_delete_lower_layer_paths_without_following_symlinks() {
    let sandbox = Sandbox::new();
    let lower = TarBuf::default()
        .dir("a/")
        .file("a/keep", b"k")
        .file("a/gone", b"g")
        .dir("a/sub/")
        .file("a/sub/deep", b"d")
        .dir("b/")
        .file("b/x", b"x")
        .file("c", b"c")
        .symlink("link", "b")
        .finish();
    sandbox.apply(&lower).unwrap();
    let upper = TarBuf::default()
        .file("a/.wh.gone", b"")
        .file("a/.wh.sub", b"")
        .file(".wh.c", b"")
        .file(".wh.link", b"")
        .file(".wh.never-existed", b"")
        .finish();
    sandbox.apply(&upper).unwrap();
    assert!(exists(&sandbox.path("a/keep")));
    assert!(!exists(&sandbox.path("a/gone")));
    assert!(!exists(&sandbox.path("a/sub")));
    assert!(!exists(&sandbox.path("c")));
    assert!(!exists(&sandbox.path("link")));
    assert!(
        exists(&sandbox.path("b/x")),
        "whiteout of a symlink must not delete its target"
    );
    assert!(
        !exists(&sandbox.path("a/.wh.gone")),
        "whiteouts are not extracted as files"
    );
}

#[test]
fn opaque_whiteout_hides_lower_layers_but_keeps_its_own_layer_in_any_order() {
    let sandbox = Sandbox::new();
    let lower = TarBuf::default()
        .dir("b/")
        .file("b/x", b"x")
        .file("b/y", b"old")
        .dir("b/sub/")
        .file("b/sub/old", b"o")
        .dir("o/")
        .file("o/old", b"o")
        .finish();
    sandbox.apply(&lower).unwrap();
    let upper = TarBuf::default()
        // Marker after the layer's own entries...
        .dir("b/")
        .file("b/new", b"n")
        .file("b/y", b"new")
        .file("b/sub/z", b"z")
        .file("b/.wh..wh..opq", b"")
        // ...and before them.
        .file("o/.wh..wh..opq", b"")
        .file("o/n", b"n")
        .finish();
    sandbox.apply(&upper).unwrap();
    assert!(!exists(&sandbox.path("b/x")));
    assert!(
        !exists(&sandbox.path("b/sub/old")),
        "lower content of a kept subdirectory"
    );
    assert_eq!(fs::read(sandbox.path("b/y")).unwrap(), b"new");
    assert!(exists(&sandbox.path("b/new")));
    assert!(exists(&sandbox.path("b/sub/z")));
    assert!(!exists(&sandbox.path("o/old")));
    assert!(exists(&sandbox.path("o/n")));
    assert!(!exists(&sandbox.path("b/.wh..wh..opq")));
}

#[test]
fn directories_and_files_replace_each_other() {
    let sandbox = Sandbox::new();
    let lower = TarBuf::default()
        .dir("p/")
        .file("p/child", b"c")
        .file("q", b"q")
        .dir("r/")
        .file("r/keep", b"k")
        .symlink("s", "r")
        .finish();
    sandbox.apply(&lower).unwrap();
    let mut upper = TarBuf::default();
    upper
        .file("p", b"now a file")
        .dir("q/")
        .file("q/inner", b"i")
        .dir("s/");
    let mut r = Spec::new("r/", EntryType::Directory);
    r.mode = 0o700;
    upper.add(r);
    sandbox.apply(&upper.finish()).unwrap();
    assert_eq!(fs::read(sandbox.path("p")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(sandbox.path("q")).unwrap().is_dir());
    assert!(exists(&sandbox.path("q/inner")));
    assert!(
        exists(&sandbox.path("r/keep")),
        "a directory over a directory keeps its contents"
    );
    assert_eq!(
        fs::metadata(sandbox.path("r")).unwrap().mode() & 0o7777,
        0o700
    );
    let s = fs::symlink_metadata(sandbox.path("s")).unwrap();
    assert!(
        s.is_dir(),
        "a symlink where a directory comes is replaced, not followed"
    );
    assert!(!exists(&sandbox.path("r/r")));
}

#[test]
fn files_after_their_directory_was_replaced_in_the_same_layer_follow_the_new_path() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.path("elsewhere")).unwrap();
    let tar = TarBuf::default()
        .dir("d/")
        .file("d/one", b"1")
        .file("d/one", b"1 again")
        .symlink("d", "elsewhere")
        .file("d/two", b"2")
        .file("d/three", b"3")
        .dir("e/")
        .file("e/a", b"a")
        .file("e", b"e is a file now")
        .file("e/b", b"b")
        .finish();
    let err = sandbox.apply(&tar).unwrap_err().to_string();
    assert!(err.contains("e/b"), "{err}");
    assert_eq!(fs::read(sandbox.path("elsewhere/one")).ok(), None);
    assert_eq!(fs::read(sandbox.path("elsewhere/two")).unwrap(), b"2");
    assert_eq!(fs::read(sandbox.path("elsewhere/three")).unwrap(), b"3");
    assert_eq!(fs::read(sandbox.path("e")).unwrap(), b"e is a file now");
    assert_eq!(sandbox.parent_listing(), vec![OsString::from("root")]);
}

#[test]
fn ownership_special_modes_times_devices_and_hardlinks_are_restored() {
    let sandbox = Sandbox::new();
    let mut tar = TarBuf::default();
    let mut dir = Spec::new("d/", EntryType::Directory);
    dir.mode = 0o1777;
    dir.mtime = 1_111_111_111;
    tar.add(dir);
    let mut suid = Spec::new("d/suid", EntryType::Regular);
    suid.content = b"#!/bin/true\n";
    suid.mode = 0o4755;
    suid.uid = 1000;
    suid.gid = 2000;
    suid.mtime = 1_234_567_890;
    tar.add(suid);
    let mut sgid = Spec::new("d/sgid", EntryType::Regular);
    sgid.mode = 0o2711;
    sgid.uid = 5;
    sgid.gid = 6;
    tar.add(sgid);
    tar.hardlink("d/suid-link", "d/suid");
    let mut fifo = Spec::new("d/fifo", EntryType::Fifo);
    fifo.mode = 0o640;
    tar.add(fifo);
    let mut null = Spec::new("d/null", EntryType::Char);
    null.device = (1, 3);
    null.mode = 0o666;
    tar.add(null);
    let mut link = Spec::new("d/link", EntryType::Symlink);
    link.link = Some("suid");
    link.uid = 7;
    link.gid = 8;
    link.mtime = 1_500_000_000;
    tar.add(link);
    sandbox.apply(&tar.finish()).unwrap();

    let suid = fs::metadata(sandbox.path("d/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (1000, 2000));
    assert_eq!(suid.mtime(), 1_234_567_890);
    let sgid = fs::metadata(sandbox.path("d/sgid")).unwrap();
    assert_eq!(sgid.mode() & 0o7777, 0o2711);
    let hard = fs::metadata(sandbox.path("d/suid-link")).unwrap();
    assert_eq!(hard.ino(), suid.ino());
    assert_eq!(hard.nlink(), 2);
    let fifo = fs::symlink_metadata(sandbox.path("d/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o640);
    let null = fs::symlink_metadata(sandbox.path("d/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let link = fs::symlink_metadata(sandbox.path("d/link")).unwrap();
    assert_eq!((link.uid(), link.gid()), (7, 8));
    assert_eq!(link.mtime(), 1_500_000_000);
    let dir = fs::metadata(sandbox.path("d")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(
        dir.mtime(),
        1_111_111_111,
        "set after the directory's contents were written"
    );
}

/// `cap_net_raw+ep` as the kernel stores it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn capability_xattr_from_pax_survives_chown_and_setuid() {
    let sandbox = Sandbox::new();
    let mut spec = Spec::new("ping", EntryType::Regular);
    spec.content = b"binary";
    spec.mode = 0o4755;
    spec.uid = 0;
    spec.pax = vec![
        ("SCHILY.xattr.security.capability", CAP_NET_RAW.to_vec()),
        ("SCHILY.xattr.user.comment", b"hello".to_vec()),
        ("mtime", b"1700000000.5".to_vec()),
    ];
    let tar = TarBuf::default().add(spec).finish();
    sandbox.apply(&tar).unwrap();
    let path = sandbox.path("ping");
    let mut value = [0u8; 64];
    let len = rustix::fs::lgetxattr(&path, "security.capability", &mut value[..]).unwrap();
    assert_eq!(&value[..len], &CAP_NET_RAW);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_700_000_000, 500_000_000)
    );
}

#[test]
fn truncated_tar_is_an_error_not_a_partial_extract() {
    let sandbox = Sandbox::new();
    let content = vec![b'z'; 4000];
    let tar = TarBuf::default().file("big", &content).finish();
    // Cut in the middle of the content.
    let err = sandbox.apply(&tar[..512 + 1000]).unwrap_err().to_string();
    assert!(err.contains("big"), "{err}");
    // Cut in the middle of a header.
    let tar = TarBuf::default()
        .file("one", b"1")
        .file("two", b"2")
        .finish();
    assert!(Sandbox::new().apply(&tar[..1024 + 100]).is_err());
}

#[test]
fn corrupt_header_checksum_is_an_error() {
    let mut tar = TarBuf::default().file("f", b"data").finish();
    tar[0] = b'g';
    let err = Sandbox::new().apply(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::Read { .. }), "{err}");
}

#[test]
fn malformed_pax_size_is_refused() {
    let mut spec = Spec::new("f", EntryType::Regular);
    spec.content = b"data";
    spec.pax = vec![("size", b"12abc".to_vec())];
    let tar = TarBuf::default().add(spec).finish();
    let err = Sandbox::new().apply(&tar).unwrap_err().to_string();
    assert!(err.contains("size"), "{err}");
}

#[test]
fn pax_size_overrides_the_header_size() {
    let sandbox = Sandbox::new();
    let mut spec = Spec::new("f", EntryType::Regular);
    spec.content = b"0123456789";
    spec.pax = vec![("size", b"10".to_vec())];
    let mut tar = TarBuf::default().add(spec).finish();
    // Lie in the ustar size field (after the PAX header and its data block).
    let header = &mut tar[1024..1536];
    header[124..136].copy_from_slice(b"00000000003\0");
    let mut h = Header::new_old();
    h.as_mut_bytes().copy_from_slice(header);
    h.set_cksum();
    header.copy_from_slice(h.as_bytes());
    sandbox.apply(&tar).unwrap();
    assert_eq!(fs::read(sandbox.path("f")).unwrap(), b"0123456789");
}

#[test]
fn pax_times_parse_fractions_and_negatives() {
    let t = parse_pax_time(b"12.25").unwrap();
    assert_eq!((t.tv_sec, t.tv_nsec), (12, 250_000_000));
    let t = parse_pax_time(b"-1.25").unwrap();
    assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
    assert!(parse_pax_time(b"1e9").is_none());
    assert!(parse_pax_time(b"").is_none());
}

#[test]
fn missing_parents_are_created() {
    let sandbox = Sandbox::new();
    let tar = TarBuf::default().file("x/y/z", b"z").finish();
    sandbox.apply(&tar).unwrap();
    assert_eq!(fs::read(sandbox.path("x/y/z")).unwrap(), b"z");
    assert_eq!(
        fs::metadata(sandbox.path("x/y")).unwrap().mode() & 0o7777,
        0o755
    );
}

/// An old-GNU sparse entry (typeflag `S`): tar-rs expands the map, the unpacker leaves holes.
#[test]
fn gnu_sparse_files_keep_their_content_and_holes() {
    let sandbox = Sandbox::new();
    let size: u64 = (8 << 20) + 10;
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::GNUSparse);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1);
    header.set_size(512 + 10);
    let gnu = header.as_gnu_mut().unwrap();
    let octal = |value: u64| {
        let mut field = [0u8; 12];
        field.copy_from_slice(format!("{value:011o}\0").as_bytes());
        field
    };
    gnu.sparse[0].offset = octal(0);
    gnu.sparse[0].numbytes = octal(512);
    gnu.sparse[1].offset = octal(8 << 20);
    gnu.sparse[1].numbytes = octal(10);
    gnu.set_real_size(size);
    header.as_old_mut().name[..6].copy_from_slice(b"sparse");
    header.set_cksum();
    let mut tar = TarBuf::default();
    tar.raw(header.as_bytes());
    let mut data = vec![b'A'; 512];
    data.extend_from_slice(b"0123456789");
    tar.raw(&data);
    sandbox.apply(&tar.finish()).unwrap();

    let content = fs::read(sandbox.path("sparse")).unwrap();
    assert_eq!(content.len() as u64, size);
    assert!(content[..512].iter().all(|&b| b == b'A'));
    assert!(content[512..8 << 20].iter().all(|&b| b == 0));
    assert_eq!(&content[8 << 20..], b"0123456789");
    let blocks = fs::metadata(sandbox.path("sparse")).unwrap().blocks();
    assert!(blocks * 512 < 1 << 20, "{blocks} blocks for an 8 MiB hole");
}
