//! The hostile-layer corpus: tars written byte by byte to do what a malicious image would
//! (traversal, links out of the root, parser desynchronisation, malformed headers). Each is
//! applied to a root that has a sentinel tree next to it; the sentinel, the host's
//! `/etc/shadow` and the root's parent must be untouched, and refusals must name the layer and
//! the entry.

use super::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LAYER: &str = "sha256:hostile";

/// What a case must do. Containment is checked for every case whatever it expects.
enum Expect {
    /// Applied without error.
    Applied,
    /// Refused, the error containing each of these (the layer name is always checked).
    Refused(&'static [&'static str]),
    /// Refused or applied, as long as nothing escapes (malformed input with no single right
    /// interpretation).
    Contained,
}

/// A root with a sentinel directory next to it, as a host would have its own files there.
struct Guarded {
    sandbox: Sandbox,
}

/// Everything observable about a tree: type, mode, owner, size, times, link count, content.
type Fingerprint = BTreeMap<PathBuf, (u32, u32, u32, u64, i64, u64, Vec<u8>)>;

impl Guarded {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        let sentinel = sandbox.base.path().join("sentinel");
        fs::create_dir_all(sentinel.join("etc")).unwrap();
        fs::create_dir_all(sentinel.join("dir/inner")).unwrap();
        fs::write(sentinel.join("file"), b"precious").unwrap();
        fs::write(sentinel.join("etc/shadow"), b"root:secret").unwrap();
        fs::write(sentinel.join("dir/inner/deep"), b"deep").unwrap();
        std::os::unix::fs::symlink("../file", sentinel.join("dir/link")).unwrap();
        Self { sandbox }
    }

    fn fingerprint(&self) -> Fingerprint {
        let mut out = BTreeMap::new();
        fingerprint_into(&self.sandbox.base.path().join("sentinel"), &mut out);
        out
    }
}

fn fingerprint_into(path: &Path, out: &mut Fingerprint) {
    let meta = fs::symlink_metadata(path).unwrap();
    let content = if meta.file_type().is_file() {
        fs::read(path).unwrap()
    } else if meta.file_type().is_symlink() {
        fs::read_link(path).unwrap().into_os_string().into_vec()
    } else {
        Vec::new()
    };
    out.insert(
        path.to_path_buf(),
        (
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.size(),
            meta.mtime(),
            meta.nlink(),
            content,
        ),
    );
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            fingerprint_into(&entry.unwrap().path(), out);
        }
    }
}

use std::os::unix::ffi::OsStringExt;

/// The host file a "hardlink to /etc/shadow" aims at, with what would show a link to it.
fn host_shadow() -> Option<(u64, u64, i64)> {
    fs::symlink_metadata("/etc/shadow")
        .ok()
        .map(|m| (m.ino(), m.nlink(), m.ctime()))
}

/// A ustar header block for `name` with `size`, checksummed: what a desynchronised parser
/// would read out of file data.
fn header_block(name: &str, kind: EntryType, size: u64) -> Vec<u8> {
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(1);
    header.set_cksum();
    header.as_bytes().to_vec()
}

fn with_pax<'a>(mut spec: Spec<'a>, pax: Vec<(&'a str, Vec<u8>)>) -> Spec<'a> {
    spec.pax = pax;
    spec
}

fn file_spec<'a>(name: &'a str, content: &'a [u8]) -> Spec<'a> {
    let mut spec = Spec::new(name, EntryType::Regular);
    spec.content = content;
    spec
}

fn device<'a>(name: &'a str, kind: EntryType, major: u32, minor: u32) -> Spec<'a> {
    let mut spec = Spec::new(name, kind);
    spec.device = (major, minor);
    spec
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let deep_name = format!("{}f", "a/".repeat(10_000));
    let deep_dirs = {
        let mut tar = TarBuf::default();
        let mut name = String::new();
        for _ in 0..1500 {
            name.push_str("d/");
            tar.add(with_pax(
                Spec::new("placeholder/", EntryType::Directory),
                vec![("path", name.clone().into_bytes())],
            ));
        }
        tar.finish()
    };
    let mut smuggled = header_block("../sentinel/smuggled", EntryType::Regular, 0);
    smuggled.extend([0u8; 512]);
    vec![
        (
            "path traversal ../sentinel/file",
            TarBuf::default()
                .file("../sentinel/file", b"pwned")
                .finish(),
            Refused(&["../sentinel/file", "climbs above the root"]),
        ),
        (
            "path traversal after a directory a/../../sentinel/new",
            TarBuf::default()
                .file("a/../../sentinel/new", b"pwned")
                .finish(),
            Refused(&["a/../../sentinel/new"]),
        ),
        (
            "traversal to the host ../../../../../../etc/x",
            TarBuf::default()
                .file("../../../../../../etc/kiln-hostile", b"pwned")
                .finish(),
            Refused(&["etc/kiln-hostile"]),
        ),
        (
            "absolute name /sentinel/file is rooted",
            TarBuf::default().file("/sentinel/file", b"inside").finish(),
            Applied,
        ),
        (
            "absolute symlink to / then a write through it",
            TarBuf::default()
                .symlink("evil", "/")
                .file("evil/sentinel/file", b"inside")
                .finish(),
            Applied,
        ),
        (
            "absolute symlink to /.. then a write through it",
            TarBuf::default()
                .symlink("evil", "/..")
                .file("evil/sentinel/file", b"inside")
                .dir("evil/sentinel/dir/")
                .finish(),
            Applied,
        ),
        (
            "relative symlink climbing out",
            TarBuf::default()
                .symlink("evil", "../sentinel")
                .file("evil/file", b"pwned")
                .finish(),
            Refused(&["evil", "../sentinel", "climbs above the root"]),
        ),
        (
            "symlink chain that passes the lexical check, then a write through it",
            TarBuf::default()
                .dir("d/")
                .symlink("d/up", "..")
                .symlink("d/up/up2", "..")
                .file("up2/sentinel/file", b"inside")
                .finish(),
            Applied,
        ),
        (
            "hardlink to the host's /etc/shadow",
            TarBuf::default().hardlink("pw", "/etc/shadow").finish(),
            Refused(&["pw", "/etc/shadow", "inside the root"]),
        ),
        (
            "hardlink climbing to the host's /etc/shadow",
            TarBuf::default()
                .hardlink("pw", "../../../../../../../etc/shadow")
                .finish(),
            Refused(&["pw", "climbs above the root"]),
        ),
        (
            "hardlink to the sentinel",
            TarBuf::default()
                .hardlink("pw", "../sentinel/etc/shadow")
                .finish(),
            Refused(&["pw", "../sentinel/etc/shadow"]),
        ),
        (
            "hardlink through an absolute symlink to /..",
            TarBuf::default()
                .symlink("evil", "/..")
                .hardlink("pw", "evil/sentinel/etc/shadow")
                .finish(),
            Refused(&["pw", "inside the root"]),
        ),
        (
            "hardlink to a symlink leading outside, then a write to both names",
            TarBuf::default()
                .symlink("s", "/../sentinel/file")
                .hardlink("h", "s")
                .file("h", b"replaces the link, not its target")
                .file("s", b"same")
                .finish(),
            Applied,
        ),
        (
            "dot-dot in a symlink target deep in the tree",
            TarBuf::default()
                .symlink("usr/lib/x", "../../../sentinel/file")
                .finish(),
            Refused(&["usr/lib/x", "../../../sentinel/file"]),
        ),
        (
            "symlink loop then a write through it",
            TarBuf::default()
                .symlink("loop", "loop")
                .file("loop/x", b"x")
                .finish(),
            Refused(&["loop/x"]),
        ),
        (
            "two-symlink cycle then a write through it",
            TarBuf::default()
                .symlink("a", "b")
                .symlink("b", "a")
                .file("a/x", b"x")
                .finish(),
            Refused(&["a/x"]),
        ),
        (
            "device nodes inside the root",
            TarBuf::default()
                .add(device("dev/null", EntryType::Char, 1, 3))
                .add(device("dev/sda", EntryType::Block, 8, 0))
                .finish(),
            Applied,
        ),
        (
            "device node named outside the root",
            TarBuf::default()
                .add(device("../sentinel/null", EntryType::Char, 1, 3))
                .finish(),
            Refused(&["../sentinel/null"]),
        ),
        (
            "10k-deep path",
            TarBuf::default()
                .add(with_pax(
                    file_spec("placeholder", b"deep"),
                    vec![("path", deep_name.clone().into_bytes())],
                ))
                .finish(),
            Contained,
        ),
        ("1500 nested directory entries", deep_dirs, Contained),
        (
            "PAX size larger than the data",
            TarBuf::default()
                .add(with_pax(
                    file_spec("lie", b"0123456789"),
                    vec![("size", b"100000".to_vec())],
                ))
                .finish(),
            Refused(&["lie"]),
        ),
        (
            "PAX size smaller than the data, smuggling a traversal header",
            TarBuf::default()
                .add(with_pax(
                    file_spec("carrier", &smuggled),
                    vec![("size", b"0".to_vec())],
                ))
                .finish(),
            Refused(&["../sentinel/smuggled"]),
        ),
        (
            "ustar size larger than the archive",
            {
                let mut tar = TarBuf::default().file("big", b"short").finish();
                let mut header = Header::new_old();
                header.as_mut_bytes().copy_from_slice(&tar[..512]);
                header.set_size(1 << 30);
                header.set_cksum();
                tar[..512].copy_from_slice(header.as_bytes());
                tar
            },
            Refused(&["big"]),
        ),
        (
            "duplicate entries: the last one wins",
            TarBuf::default()
                .file("f", b"one")
                .file("f", b"two")
                .dir("d/")
                .file("d", b"file now")
                .file("e", b"file")
                .dir("e/")
                .finish(),
            Applied,
        ),
        (
            "whiteout of ..",
            TarBuf::default().file("a/.wh...", b"").finish(),
            Refused(&["a/.wh...", "whiteout"]),
        ),
        (
            "whiteout of .",
            TarBuf::default().file(".wh..", b"").finish(),
            Refused(&[".wh.."]),
        ),
        (
            "whiteout pointing outside",
            TarBuf::default().file("../.wh.sentinel", b"").finish(),
            Refused(&["../.wh.sentinel", "climbs above the root"]),
        ),
        (
            "whiteout inside the sentinel",
            TarBuf::default().file("../sentinel/.wh.file", b"").finish(),
            Refused(&["../sentinel/.wh.file"]),
        ),
        (
            "whiteout through an absolute symlink to /..",
            TarBuf::default()
                .symlink("evil", "/..")
                .file("evil/.wh.sentinel", b"")
                .finish(),
            Applied,
        ),
        (
            "opaque whiteout outside",
            TarBuf::default()
                .file("../sentinel/.wh..wh..opq", b"")
                .finish(),
            Refused(&["../sentinel/.wh..wh..opq"]),
        ),
        (
            "opaque whiteout through an absolute symlink to /..",
            TarBuf::default()
                .file("keep", b"k")
                .symlink("evil", "/..")
                .file("evil/.wh..wh..opq", b"")
                .finish(),
            Contained,
        ),
        (
            "corrupt header checksum",
            {
                let mut tar = TarBuf::default().file("a", b"a").file("b", b"b").finish();
                tar[1024] ^= 0x20;
                tar
            },
            Refused(&["after entry a"]),
        ),
        (
            "non-octal size field",
            {
                let mut tar = TarBuf::default().file("a", b"a").finish();
                let mut header = Header::new_old();
                header.as_mut_bytes().copy_from_slice(&tar[..512]);
                header.as_old_mut().size.copy_from_slice(b"zzzzzzzzzzz\0");
                header.set_cksum();
                tar[..512].copy_from_slice(header.as_bytes());
                tar
            },
            Refused(&[LAYER]),
        ),
        (
            "truncated header",
            TarBuf::default().file("a", b"a").finish()[..300].to_vec(),
            Contained,
        ),
        (
            "malformed PAX record",
            {
                let mut tar = TarBuf::default();
                tar.raw(&header_block("pax", EntryType::XHeader, 11))
                    .raw(b"garbage!!!\n")
                    .file("x", b"x");
                tar.finish()
            },
            Refused(&[LAYER]),
        ),
        (
            "GNU long name longer than the archive",
            {
                let mut tar = TarBuf::default();
                tar.raw(&header_block(
                    "././@LongLink",
                    EntryType::GNULongName,
                    1 << 40,
                ))
                .raw(b"../sentinel/file");
                tar.finish()
            },
            Refused(&[LAYER]),
        ),
    ]
}

#[test]
fn hostile_layers_never_write_outside_the_root_and_refusals_name_layer_and_entry() {
    let shadow_before = host_shadow();
    for (label, tar, expect) in corpus() {
        let guarded = Guarded::new();
        let before = guarded.fingerprint();
        let started = Instant::now();
        let result = apply_layer(&guarded.sandbox.root, tar.as_slice(), LAYER);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{label}: took {:?}",
            started.elapsed()
        );
        match (&expect, &result) {
            (Expect::Applied, Err(err)) => panic!("{label}: refused: {err}"),
            (Expect::Refused(_), Ok(())) => panic!("{label}: applied, should be refused"),
            (Expect::Refused(needles), Err(err)) => {
                let text = err.to_string();
                assert!(text.contains(LAYER), "{label}: {text}");
                for needle in *needles {
                    assert!(text.contains(needle), "{label}: {text} lacks {needle:?}");
                }
            }
            _ => {}
        }
        assert_eq!(
            guarded.fingerprint(),
            before,
            "{label}: the sentinel changed"
        );
        assert_eq!(
            guarded.sandbox.parent_listing(),
            vec![OsString::from("root"), OsString::from("sentinel")],
            "{label}: something was created next to the root"
        );
        assert_eq!(host_shadow(), shadow_before, "{label}: /etc/shadow changed");
        assert!(!exists(Path::new("/etc/kiln-hostile")), "{label}");
    }
}

#[test]
fn writes_through_hostile_symlinks_land_inside_the_root() {
    let guarded = Guarded::new();
    let tar = TarBuf::default()
        .file("/abs/b", b"rooted")
        .symlink("evil", "/..")
        .file("evil/sentinel/file", b"inside")
        .dir("d/")
        .symlink("d/up", "..")
        .symlink("d/up/up2", "..")
        .file("up2/c", b"chain")
        .symlink("s", "/../sentinel/file")
        .hardlink("h", "s")
        .finish();
    apply_layer(&guarded.sandbox.root, tar.as_slice(), LAYER).unwrap();
    let root = |p: &str| guarded.sandbox.path(p);
    assert_eq!(fs::read(root("abs/b")).unwrap(), b"rooted");
    assert_eq!(fs::read(root("sentinel/file")).unwrap(), b"inside");
    assert_eq!(fs::read(root("c")).unwrap(), b"chain");
    // Symlink targets are data, kept verbatim; a hardlink to a symlink is a second name for
    // the symlink itself.
    assert_eq!(fs::read_link(root("evil")).unwrap(), Path::new("/.."));
    assert_eq!(fs::read_link(root("up2")).unwrap(), Path::new(".."));
    assert_eq!(
        fs::read_link(root("h")).unwrap(),
        Path::new("/../sentinel/file")
    );
    assert_eq!(
        fs::symlink_metadata(root("h")).unwrap().ino(),
        fs::symlink_metadata(root("s")).unwrap().ino()
    );
}

#[test]
fn duplicate_entries_replace_each_other_in_tar_order() {
    let sandbox = Sandbox::new();
    let tar = TarBuf::default()
        .file("f", b"one")
        .file("f", b"two")
        .dir("d/")
        .file("d/child", b"c")
        .file("d", b"file now")
        .file("e", b"file")
        .dir("e/")
        .finish();
    sandbox.apply(&tar).unwrap();
    assert_eq!(fs::read(sandbox.path("f")).unwrap(), b"two");
    assert_eq!(fs::read(sandbox.path("d")).unwrap(), b"file now");
    assert!(fs::symlink_metadata(sandbox.path("e")).unwrap().is_dir());
}

/// Every single-byte corruption of a valid layer at a spread of offsets: an error or a
/// contained result, never a panic, never a write next to the root.
#[test]
fn corrupted_layers_never_panic_or_escape() {
    let mut base = TarBuf::default();
    base.dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .symlink("etc/link", "passwd")
        .hardlink("etc/hard", "etc/passwd")
        .add(with_pax(
            file_spec("etc/pax", b"pax content"),
            vec![("SCHILY.xattr.user.k", b"v".to_vec())],
        ))
        .file("etc/.wh.gone", b"")
        .add(device("dev/null", EntryType::Char, 1, 3));
    let tar = base.finish();
    let data_end = tar.len() - 1024;
    for (i, offset) in (0..data_end).step_by(37).enumerate() {
        for value in [0u8, b'.', b'/', 0xff, b'0' + (i % 8) as u8] {
            let mut corrupt = tar.clone();
            corrupt[offset] = value;
            let guarded = Guarded::new();
            let before = guarded.fingerprint();
            let _ = apply_layer(&guarded.sandbox.root, corrupt.as_slice(), LAYER);
            assert_eq!(guarded.fingerprint(), before, "byte {offset} = {value}");
            assert_eq!(
                guarded.sandbox.parent_listing(),
                vec![OsString::from("root"), OsString::from("sentinel")],
                "byte {offset} = {value}"
            );
        }
    }
}
