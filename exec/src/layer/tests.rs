//! Tests of the layer writer: entry order, metadata, determinism, round trips.

use super::*;
use crate::compression::decompress;
use crate::snapshot::Snapshot;
use crate::unpack::apply_layer;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn changes(changed: &[&str], deleted: &[&str]) -> Changes {
    let mut changes = Changes::new();
    for path in changed {
        changes.add_changed(*path);
    }
    for path in deleted {
        changes.add_deleted(*path);
    }
    changes
}

fn write(
    root: &Path,
    changes: &Changes,
    options: LayerOptions,
) -> (Vec<u8>, WrittenLayer<Vec<u8>>) {
    let fs_root = RootFs::open(root).unwrap();
    let written = write_layer(&fs_root, changes, &options, Vec::new()).unwrap();
    let mut tar = Vec::new();
    decompress(options.compression, written.sink.as_slice())
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    (tar, written)
}

/// One entry read back with the tar crate.
#[derive(Debug)]
struct ReadEntry {
    name: String,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    content: Vec<u8>,
    uname: Vec<u8>,
    xattr: Option<Vec<u8>>,
}

fn read_back(tar: &[u8]) -> Vec<ReadEntry> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let xattr = entry
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|r| r.unwrap())
                .find(|r| r.key_bytes() == b"SCHILY.xattr.security.capability")
                .map(|r| r.value_bytes().to_vec());
            let header = entry.header().clone();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            ReadEntry {
                name,
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                link,
                content,
                uname: header.username_bytes().unwrap_or_default().to_vec(),
                xattr,
            }
        })
        .collect()
}

fn names(entries: &[ReadEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn sample_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    // chown clears setuid, so it comes first.
    std::os::unix::fs::lchown(root.join("usr/bin/tool"), Some(1000), Some(50)).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/alias")).unwrap();
    symlink("tool", root.join("usr/bin/link")).unwrap();
    fs::write(root.join("etc/motd"), "hello").unwrap();
    tmp
}

#[test]
fn entries_are_sorted_with_parents_first_and_whiteouts_in_place() {
    let tmp = sample_tree();
    let changes = changes(
        &["usr/bin/tool", "usr/bin/alias", "usr/bin/link", "etc/motd"],
        &["etc/old", "usr/bin/gone", "var/lib/x"],
    );
    let (tar, _) = write(tmp.path(), &changes, LayerOptions::default());
    let entries = read_back(&tar);
    assert_eq!(
        names(&entries),
        vec![
            "etc/",
            "etc/.wh.old",
            "etc/motd",
            "usr/",
            "usr/bin/",
            "usr/bin/.wh.gone",
            "usr/bin/alias",
            "usr/bin/link",
            "usr/bin/tool",
        ],
        "var/lib/x has no parent directory any more: no whiteout"
    );
    let by_name: BTreeMap<&str, &ReadEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let whiteout = by_name["etc/.wh.old"];
    assert_eq!(
        (whiteout.kind, whiteout.content.len()),
        (EntryType::Regular, 0)
    );

    // `alias` sorts first, so it carries the content and `tool` links to it.
    let alias = by_name["usr/bin/alias"];
    assert_eq!(alias.kind, EntryType::Regular);
    assert_eq!(alias.content, b"#!/bin/sh\necho hi\n");
    assert_eq!(alias.mode, 0o4755);
    assert_eq!((alias.uid, alias.gid), (1000, 50));
    assert!(alias.uname.is_empty());
    let tool = by_name["usr/bin/tool"];
    assert_eq!(tool.kind, EntryType::Link);
    assert_eq!(tool.link.as_deref(), Some("usr/bin/alias"));
    assert!(tool.content.is_empty());

    let link = by_name["usr/bin/link"];
    assert_eq!(
        (link.kind, link.link.as_deref()),
        (EntryType::Symlink, Some("tool"))
    );
    let etc = by_name["etc/"];
    assert_eq!(etc.kind, EntryType::Directory);
    let mtime = fs::metadata(tmp.path().join("etc/motd")).unwrap().mtime();
    assert_eq!(by_name["etc/motd"].mtime, mtime as u64);
}

#[test]
fn whiteouts_under_deleted_or_changed_paths_are_skipped() {
    let tmp = sample_tree();
    let changes = changes(&["etc/motd"], &["opt", "opt/sub", "opt/sub/file"]);
    let (tar, _) = write(tmp.path(), &changes, LayerOptions::default());
    assert_eq!(names(&read_back(&tar)), vec![".wh.opt", "etc/", "etc/motd"]);
}

#[test]
fn same_tree_and_changes_give_byte_identical_blobs() {
    let tmp = sample_tree();
    let changes = changes(&["usr/bin/tool", "usr/bin/link", "etc/motd"], &["etc/old"]);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let options = LayerOptions {
            compression,
            level: None,
            ..LayerOptions::default()
        };
        let (_, first) = write(tmp.path(), &changes, options);
        let (_, second) = write(tmp.path(), &changes, options);
        assert_eq!(first.sink, second.sink, "{compression:?}");
        assert_eq!(first.diff_id, second.diff_id);
    }
}

#[test]
fn diff_id_is_the_sha256_of_the_decompressed_tar_for_each_compression() {
    let tmp = sample_tree();
    let changes = changes(&["usr/bin/tool", "etc/motd"], &[]);
    let mut diff_ids = Vec::new();
    for (compression, magic) in [
        (Compression::Gzip, &[0x1f, 0x8b][..]),
        (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd][..]),
        (Compression::None, &b"etc/"[..]),
    ] {
        let options = LayerOptions {
            compression,
            level: Some(1),
            ..LayerOptions::default()
        };
        let (tar, written) = write(tmp.path(), &changes, options);
        assert!(written.sink.starts_with(magic), "{compression:?}");
        assert_eq!(written.diff_id, format!("sha256:{}", sha256_hex(&tar)));
        assert_eq!(written.uncompressed_size, tar.len() as u64);
        assert_eq!(tar.len() % 512, 0);
        diff_ids.push(written.diff_id);
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:?}");
}

#[test]
fn gzip_header_has_no_mtime_or_file_name() {
    let tmp = sample_tree();
    let (_, written) = write(
        tmp.path(),
        &changes(&["etc/motd"], &[]),
        LayerOptions::default(),
    );
    let header = &written.sink[..10];
    assert_eq!(&header[4..8], &[0, 0, 0, 0], "mtime");
    assert_eq!(header[3] & 0x08, 0, "FNAME flag");
}

#[test]
fn invalid_compression_levels_are_refused() {
    let tmp = sample_tree();
    let root = RootFs::open(tmp.path()).unwrap();
    for (compression, level) in [
        (Compression::Gzip, 10),
        (Compression::Gzip, -2),
        (Compression::Zstd, 99),
    ] {
        let options = LayerOptions {
            compression,
            level: Some(level),
            ..LayerOptions::default()
        };
        let err = write_layer(&root, &Changes::new(), &options, Vec::new()).unwrap_err();
        assert!(matches!(err, LayerError::InvalidLevel { .. }), "{err}");
    }
}

#[test]
fn long_names_links_big_ids_and_capabilities_use_pax_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let split_dir = "d".repeat(120);
    let long_dir = "l".repeat(200);
    fs::create_dir_all(root.join(&split_dir)).unwrap();
    fs::create_dir_all(root.join(&long_dir)).unwrap();
    let split_file = format!("{split_dir}/file");
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    fs::write(root.join(&split_file), "s").unwrap();
    fs::write(root.join(&long_file), "l").unwrap();
    let target = "t".repeat(150);
    symlink(&target, root.join("longlink")).unwrap();
    std::os::unix::fs::lchown(root.join(&split_file), Some(3_000_000), Some(4_000_000)).unwrap();
    let cap: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    rustix::fs::setxattr(
        root.join(&long_file),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    let changes = changes(&[&split_file, &long_file, "longlink"], &[]);
    let (tar, _) = write(root, &changes, LayerOptions::default());
    let entries = read_back(&tar);
    let by_name: BTreeMap<&str, &ReadEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    assert!(by_name.contains_key(format!("{split_dir}/").as_str()));
    assert!(by_name.contains_key(format!("{long_dir}/").as_str()));
    let split = by_name[split_file.as_str()];
    assert_eq!((split.uid, split.gid), (3_000_000, 4_000_000));
    let long = by_name[long_file.as_str()];
    assert_eq!(long.content, b"l");
    assert_eq!(long.xattr.as_deref(), Some(&cap[..]));
    assert_eq!(by_name["longlink"].link.as_deref(), Some(target.as_str()));
}

#[test]
fn devices_and_fifos_are_written_and_sockets_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let (tar, _) = write(
        root,
        &changes(&["null", "fifo", "sock"], &[]),
        LayerOptions::default(),
    );
    let mut archive = tar::Archive::new(tar.as_slice());
    let entries: Vec<(String, EntryType, Option<u32>, Option<u32>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.entry_type(),
                h.device_major().unwrap(),
                h.device_minor().unwrap(),
            )
        })
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].0, "fifo");
    assert_eq!(entries[0].1, EntryType::Fifo);
    assert_eq!(
        entries[1],
        ("null".to_owned(), EntryType::Char, Some(1), Some(3))
    );
}

#[test]
fn a_file_that_changes_size_while_read_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), "0123456789").unwrap();
    let mut out = TarOut {
        inner: HashingWriter {
            inner: Encoder::new(Vec::new(), &LayerOptions::default()).unwrap(),
            hasher: Sha256::new(),
            written: 0,
        },
    };
    let mut buf = vec![0; 4];
    let path = Path::new("f");
    let open = || File::open(tmp.path().join("f")).unwrap();
    let shrank = out.content(open(), 20, path, &mut buf).unwrap_err();
    assert!(matches!(shrank, LayerError::Changed { .. }), "{shrank}");
    let grew = out.content(open(), 5, path, &mut buf).unwrap_err();
    assert!(matches!(grew, LayerError::Changed { .. }), "{grew}");
    assert!(grew.to_string().contains('f'));
}

/// Everything about a tree that a layer round trip must preserve.
fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let detail = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.file_type().is_symlink() {
                format!("symlink {}", fs::read_link(&path).unwrap().display())
            } else {
                format!("file {:?} nlink {}", fs::read(&path).unwrap(), meta.nlink())
            };
            let mut cap = [0u8; 64];
            let cap = rustix::fs::lgetxattr(&path, "security.capability", &mut cap[..])
                .map(|n| cap[..n].to_vec())
                .ok();
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                format!(
                    "{detail} mode {:o} owner {}:{} mtime {} cap {cap:?}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.mtime()
                ),
            );
        }
    }
    out
}

#[test]
fn snapshot_diff_written_and_applied_onto_the_old_tree_gives_the_new_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let before_dir = tmp.path().join("before");
    let work = tmp.path().join("work");
    fs::create_dir_all(work.join("etc/conf.d")).unwrap();
    fs::create_dir_all(work.join("var/cache/apt")).unwrap();
    fs::create_dir_all(work.join("usr/bin")).unwrap();
    fs::write(work.join("etc/hosts"), "localhost").unwrap();
    fs::write(work.join("etc/conf.d/a"), "a").unwrap();
    fs::write(work.join("var/cache/apt/pkg"), "pkg").unwrap();
    fs::write(work.join("usr/bin/sh"), "shell").unwrap();
    fs::write(work.join("replace-me"), "file").unwrap();
    fs::create_dir(work.join("dir-to-file")).unwrap();
    fs::write(work.join("dir-to-file/child"), "c").unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&work)
        .arg(&before_dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(describe(&work), describe(&before_dir));

    let exclude = [PathBuf::from("/proc")];
    let before = Snapshot::scan(&work, &exclude).unwrap();
    // What a RUN step might do.
    fs::write(work.join("etc/hosts"), "localhosT").unwrap();
    fs::remove_file(work.join("etc/conf.d/a")).unwrap();
    fs::remove_dir_all(work.join("var/cache")).unwrap();
    fs::create_dir_all(work.join("opt/app/lib")).unwrap();
    fs::write(work.join("opt/app/lib/x.so"), "so").unwrap();
    fs::hard_link(work.join("opt/app/lib/x.so"), work.join("opt/app/x.so")).unwrap();
    std::os::unix::fs::lchown(work.join("usr/bin/sh"), Some(10), Some(20)).unwrap();
    fs::set_permissions(work.join("usr/bin/sh"), fs::Permissions::from_mode(0o4711)).unwrap();
    let cap: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    rustix::fs::setxattr(
        work.join("usr/bin/sh"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::remove_file(work.join("replace-me")).unwrap();
    symlink("/usr/bin/sh", work.join("replace-me")).unwrap();
    fs::remove_dir_all(work.join("dir-to-file")).unwrap();
    fs::write(work.join("dir-to-file"), "now a file").unwrap();
    let after = Snapshot::scan(&work, &exclude).unwrap();
    let changes = before.diff(&after);

    for compression in [Compression::Gzip, Compression::Zstd] {
        let copy = tmp.path().join(format!("copy-{compression:?}"));
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&before_dir)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        let options = LayerOptions {
            compression,
            level: None,
            ..LayerOptions::default()
        };
        let (tar, _) = write(&work, &changes, options);
        let copy_root = RootFs::open(&copy).unwrap();
        apply_layer(&copy_root, tar.as_slice(), "sha256:roundtrip").unwrap();
        let expected = describe(&work);
        let got = describe(&copy);
        for (path, want) in &expected {
            assert_eq!(
                got.get(path),
                Some(want),
                "{} ({compression:?})",
                path.display()
            );
        }
        assert_eq!(
            got.len(),
            expected.len(),
            "{:?}",
            got.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn mtimes_later_than_the_ceiling_are_clamped_and_earlier_ones_kept() {
    let tmp = sample_tree();
    let root = tmp.path();
    let old = rustix::fs::Timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        root.join("etc/motd"),
        &rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let ceiling = 2_000_000;
    let options = LayerOptions {
        mtime_ceiling: Some(ceiling),
        ..LayerOptions::default()
    };
    let (tar, _) = write(
        root,
        &changes(&["etc/motd", "usr/bin/tool", "usr/bin/link"], &["etc/old"]),
        options,
    );
    let entries = read_back(&tar);
    let by_name: BTreeMap<&str, &ReadEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    assert_eq!(
        by_name["etc/motd"].mtime, 1_000_000,
        "older than the ceiling"
    );
    for name in ["etc/", "usr/", "usr/bin/", "usr/bin/tool", "usr/bin/link"] {
        assert_eq!(by_name[name].mtime, ceiling as u64, "{name}");
    }
    assert_eq!(by_name["etc/.wh.old"].mtime, 0);
}

#[test]
fn blobs_do_not_depend_on_the_number_of_compression_threads() {
    let tmp = tempfile::tempdir().unwrap();
    // Several gzip chunks and zstd jobs: a few MiB of text that compresses, not zeros.
    let text: String = (0..400_000_u64)
        .map(|i| format!("{i} {}\n", i * 7919 % 104_729))
        .collect();
    fs::write(tmp.path().join("data"), &text).unwrap();
    let changes = changes(&["data"], &[]);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let blob = |threads: usize| {
            let options = LayerOptions {
                compression,
                threads: NonZeroUsize::new(threads).unwrap(),
                ..LayerOptions::default()
            };
            write(tmp.path(), &changes, options)
        };
        let (tar, one) = blob(1);
        let (_, three) = blob(3);
        assert_eq!(one.sink, three.sink, "{compression:?}");
        let entries = read_back(&tar);
        assert_eq!(entries[0].content, text.as_bytes());
    }
}

#[test]
fn sizes_beyond_the_ustar_field_use_a_pax_size_record() {
    let options = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    let mut out = TarOut {
        inner: HashingWriter {
            inner: Encoder::new(Vec::new(), &options).unwrap(),
            hasher: Sha256::new(),
            written: 0,
        },
    };
    let size = 10 * 1024 * 1024 * 1024_u64;
    let entry = EntryHeader {
        kind: EntryType::Regular,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size,
        link: None,
        device: None,
        capability: None,
    };
    out.entry(&entry, Path::new("big")).unwrap();
    let bytes = out.inner.inner.finish().unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap(), Path::new("big"));
    assert_eq!(entry.size(), size);
    assert_eq!(entry.header().as_ustar().unwrap().size, *b"00000000000\0");
}

#[test]
fn gnu_tar_reads_the_layer_as_written() {
    let tar_program = Path::new("/usr/bin/tar");
    assert!(
        tar_program.is_file(),
        "GNU tar is not installed: run `apt-get install tar`"
    );
    let tmp = sample_tree();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    fs::create_dir_all(tmp.path().join("d".repeat(120))).unwrap();
    fs::write(tmp.path().join(&long), "long").unwrap();
    let changes = changes(
        &["usr/bin/tool", "usr/bin/alias", "usr/bin/link", &long],
        &["etc/motd"],
    );
    let (tar, _) = write(tmp.path(), &changes, LayerOptions::default());
    let mut child = std::process::Command::new(tar_program)
        .args(["--numeric-owner", "-tvf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&tar).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let listing = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 9, "{listing}");
    assert!(lines[0].starts_with("drwx") && lines[0].ends_with(&format!(" {}/", "d".repeat(120))));
    assert!(lines[1].ends_with(&format!(" {long}")), "{listing}");
    assert!(lines[2].ends_with(" etc/"), "{listing}");
    assert!(
        lines[3].starts_with("-")
            && lines[3].contains(" 0/0 ")
            && lines[3].ends_with(" etc/.wh.motd")
    );
    assert!(lines[6].starts_with("-rwsr-xr-x 1000/50 ") && lines[6].ends_with(" usr/bin/alias"));
    assert!(lines[7].ends_with(" usr/bin/link -> tool"), "{listing}");
    assert!(
        lines[8].ends_with(" usr/bin/tool link to usr/bin/alias"),
        "{listing}"
    );
}
