//! Base-layer extraction is exact: a multi-layer image exercising every kind of entry and
//! every whiteout rule is pushed to the registry, unpacked by umoci (the reference), and built
//! `FROM` by kiln with a `RUN` that lists the tree from inside the build. The two listings
//! (names, types, modes, owners, sizes, mtimes, link counts, device numbers, link targets,
//! content hashes) must be identical, and so must the extended attributes kiln's extractor
//! writes.

pub(crate) mod image;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_exec::RootFs;
use kiln_exec::compression::{Compression, decompress};
use kiln_exec::unpack::apply_layer;
use tar::EntryType;

use crate::support::base::copy_to_registry;
use crate::support::tools::{require, run, unpack};
use crate::support::{Kiln, Project, Registry};
use image::{Layer, Meta};

/// `security.capability` for `cap_net_raw+ep` (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Lists `t/` below the current directory, one line per path plus its link target or content
/// hash. Run by busybox both inside kiln's RUN and on the host over umoci's tree, so both
/// sides format identically.
const LIST: &str = r#"find t | sort | while IFS= read -r f; do
  stat -c '%n|%F|%a|%u|%g|%s|%Y|%h|%t:%T' "$f"
  if [ -L "$f" ]; then echo "  -> $(readlink "$f")"
  elif [ -f "$f" ]; then echo "  $(sha256sum < "$f")"; fi
done
"#;

/// 4 MiB of zeros between two pieces of data, as a layer stores a sparse file.
fn sparse_content() -> Vec<u8> {
    let mut content = vec![b'A'; 512];
    content.resize(4 << 20, 0);
    content.extend_from_slice(b"0123456789");
    content
}

/// The first layer: everything lower layers can hold.
fn lower() -> Layer {
    let mut layer = image::busybox();
    layer
        .dir("t/", Meta::mode(0o755))
        .dir("t/a/", Meta::mode(0o755))
        .file("t/a/x", Meta::default(), b"x")
        .file("t/a/y", Meta::default(), b"y")
        .dir("t/opq/", Meta::mode(0o755))
        .file("t/opq/old", Meta::default(), b"old")
        .dir("t/opq/sub/", Meta::mode(0o700))
        .file("t/opq/sub/old2", Meta::default(), b"old2")
        .dir("t/d2f/", Meta::mode(0o755))
        .file("t/d2f/child", Meta::default(), b"child")
        .file("t/f2d", Meta::default(), b"a file first")
        .file("t/gone", Meta::default(), b"gone")
        .dir("t/gonedir/", Meta::mode(0o755))
        .file("t/gonedir/f", Meta::default(), b"f")
        .symlink("t/link", "a")
        .file("t/hard1", Meta::mode(0o640).owned(7, 8), b"shared")
        .file(
            "t/suid",
            Meta::mode(0o4755).owned(1000, 1000),
            b"#!/bin/sh\n",
        )
        .file("t/sgid", Meta::mode(0o2711).owned(5, 6), b"sgid")
        .dir("t/sgiddir/", Meta::mode(0o2775).owned(1000, 50))
        .dir("t/sticky/", Meta::mode(0o1777))
        .file(
            "t/ping",
            Meta::mode(0o4755)
                .xattr("security.capability", &CAP_NET_RAW)
                .xattr("user.note", b"hello"),
            b"ping binary",
        )
        .file(
            "t/trusted",
            Meta::default().xattr("trusted.kiln", b"t"),
            b"trusted",
        )
        .dir("t/dev/", Meta::mode(0o755))
        .node("t/dev/null", EntryType::Char, (1, 3), Meta::mode(0o666))
        .node(
            "t/dev/loop9",
            EntryType::Block,
            (7, 9),
            Meta::mode(0o660).owned(0, 6),
        )
        .node("t/fifo", EntryType::Fifo, (0, 0), Meta::mode(0o620))
        // umoci refuses GNU sparse entries (typeflag 'S'), and Go's tar writer never emits
        // them; the holes real layers carry are runs of zeros, which kiln writes as holes.
        .file("t/sparse", Meta::default(), &sparse_content())
        .file("t/old-mtime", Meta::default().mtime(1_234_567_890), b"old")
        .dir("t/olddir/", Meta::mode(0o755).mtime(1_000_000_000))
        .file("t/olddir/child", Meta::default(), b"c")
        .dir("t/long/", Meta::mode(0o755))
        .file(
            &format!("t/long/{}", "n".repeat(150)),
            Meta::mode(0o600).owned(65534, 65534),
            b"long name",
        )
        .file("t/\u{fc}n\u{ef}code", Meta::default(), b"utf-8 name");
    layer
}

/// The second layer: whiteouts, opaque directories, replacements, cross-layer hardlinks.
fn middle() -> Layer {
    let mut layer = Layer::new();
    layer
        .dir("t/", Meta::mode(0o755))
        .whiteout("t/.wh.gone")
        .whiteout("t/.wh.gonedir")
        .dir("t/a/", Meta::mode(0o755))
        .whiteout("t/a/.wh.x")
        .file("t/a/y", Meta::mode(0o600).owned(1, 1), b"y2")
        // The opaque marker before the layer's own entries, as overlayfs-based writers emit it.
        .dir("t/opq/", Meta::mode(0o750))
        .whiteout("t/opq/.wh..wh..opq")
        .file("t/opq/new", Meta::default(), b"new")
        .file("t/d2f", Meta::default(), b"now a file")
        .dir("t/f2d/", Meta::mode(0o755))
        .file("t/f2d/inner", Meta::default(), b"inner")
        .symlink("t/link", "opq")
        .hardlink("t/hard2", "t/hard1")
        .dir("t/sticky/", Meta::mode(0o1770))
        .symlink("t/newsym", "/t/a/y")
        .dir("t/hl/", Meta::mode(0o755))
        .file("t/hl/one", Meta::default(), b"h")
        .hardlink("t/hl/two", "t/hl/one");
    layer
}

/// The third layer: a hardlinked name replaced, an opaque directory with nothing new in it, a
/// whiteout inside a directory that changed type one layer earlier.
fn upper() -> Layer {
    let mut layer = Layer::new();
    layer
        .dir("t/", Meta::mode(0o755))
        .file("t/hard1", Meta::default(), b"changed")
        .dir("t/a/", Meta::mode(0o755))
        .whiteout("t/a/.wh..wh..opq")
        .dir("t/f2d/", Meta::mode(0o755))
        .whiteout("t/f2d/.wh.inner")
        .dir("t/olddir/", Meta::mode(0o755).mtime(1_000_000_000))
        .file("t/olddir/child", Meta::default(), b"c2");
    layer
}

/// `LIST` run by the host's busybox in `dir`.
fn list_on_host(dir: &Path) -> String {
    let output = run(Command::new(require("busybox", "busybox-static"))
        .args(["sh", "-c", LIST])
        .current_dir(dir));
    String::from_utf8(output.stdout).unwrap()
}

fn assert_same_listing(kiln: &str, umoci: &str, what: &str) {
    let kiln: Vec<&str> = kiln.lines().collect();
    let umoci: Vec<&str> = umoci.lines().collect();
    let only_kiln: Vec<_> = kiln.iter().filter(|l| !umoci.contains(l)).collect();
    let only_umoci: Vec<_> = umoci.iter().filter(|l| !kiln.contains(l)).collect();
    assert!(
        only_kiln.is_empty() && only_umoci.is_empty(),
        "{what} differs from umoci's tree:\nonly in kiln's: {only_kiln:#?}\nonly in umoci's: {only_umoci:#?}"
    );
    assert_eq!(kiln, umoci, "{what}: same lines, different order");
}

/// Every extended attribute of every path under `root/t`, by relative path.
fn xattrs(root: &Path) -> BTreeMap<PathBuf, BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join("t")];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        let mut names = vec![0u8; 4096];
        let len = rustix::fs::llistxattr(&path, &mut names[..]).unwrap();
        let mut attrs = BTreeMap::new();
        for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = std::str::from_utf8(name).unwrap().to_owned();
            let mut value = vec![0u8; 4096];
            let n = rustix::fs::lgetxattr(&path, name.as_str(), &mut value[..]).unwrap();
            value.truncate(n);
            attrs.insert(name, value);
        }
        out.insert(path.strip_prefix(root).unwrap().to_path_buf(), attrs);
    }
    out
}

/// Applies the image's layers, read from the OCI layout skopeo made, with kiln's extractor.
fn extract_with_kiln(layout: &Path, into: &Path) {
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    std::fs::create_dir_all(into).unwrap();
    let root = RootFs::open(into).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let media_type = layer["mediaType"].as_str().unwrap();
        let file = std::fs::File::open(blob(digest)).unwrap();
        let tar = decompress(Compression::from_media_type(media_type).unwrap(), file).unwrap();
        apply_layer(&root, tar, digest).unwrap();
    }
}

#[test]
fn a_multi_layer_base_is_extracted_exactly_as_umoci_extracts_it() {
    let registry = Registry::start();
    let scratch = registry.scratch();
    let layout = scratch.join("exact-layout");
    image::write_layout(&layout, vec![lower(), middle(), upper()]);
    let base = registry.image("exact:latest");
    copy_to_registry(&layout, "latest", &base, false, None);

    // The reference: umoci's unpack of what the registry serves.
    let reference = unpack(&format!("docker://{base}"), &scratch.join("umoci-base"));
    let expected = list_on_host(&reference);
    assert!(expected.contains("t/opq/new|"), "{expected}");

    // kiln: a build FROM the image whose RUN lists the tree kiln extracted.
    let project = Project::new()
        .dockerfile(&format!(
            "FROM {base}\nCOPY list.sh /list.sh\nRUN cd / && sh /list.sh > /listing\n"
        ))
        .file("list.sh", LIST);
    let destination = registry.image("exact-listed:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .success();
    let built = unpack(
        &format!("docker://{destination}"),
        &scratch.join("umoci-built"),
    );
    let listed = std::fs::read_to_string(built.join("listing")).unwrap();
    assert_same_listing(&listed, &expected, "the tree kiln's RUN saw");

    // The same layers through kiln's extractor directly, for what a RUN cannot list: xattrs
    // and holes.
    let kiln_root = scratch.join("kiln-rootfs");
    extract_with_kiln(&scratch.join("umoci-base/unpack-layout"), &kiln_root);
    assert_same_listing(
        &list_on_host(&kiln_root),
        &expected,
        "kiln's extracted tree",
    );
    let kiln_xattrs = xattrs(&kiln_root);
    assert_eq!(kiln_xattrs, xattrs(&reference), "extended attributes");
    let ping = &kiln_xattrs[Path::new("t/ping")];
    assert_eq!(ping["security.capability"], CAP_NET_RAW);
    assert_eq!(ping["user.note"], b"hello");
    assert_eq!(kiln_xattrs[Path::new("t/trusted")]["trusted.kiln"], b"t");
    let sparse = std::fs::metadata(kiln_root.join("t/sparse")).unwrap();
    assert_eq!(sparse.len(), (4 << 20) + 10);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&sparse) * 512 < 1 << 20,
        "the 4 MiB sparse file should keep its hole, {} blocks allocated",
        std::os::unix::fs::MetadataExt::blocks(&sparse)
    );
}

#[test]
fn a_base_layer_climbing_out_of_the_root_fails_the_build_naming_layer_and_entry() {
    let registry = Registry::start();
    let scratch = registry.scratch();
    let layout = scratch.join("hostile-layout");
    let escape = format!("kiln-escape-{}", std::process::id());
    let name = format!("{}tmp/{escape}", "../".repeat(12));
    let mut hostile = Layer::new();
    hostile.verbatim_file(&name, b"pwned");
    let digests = image::write_layout(&layout, vec![image::busybox(), hostile]);
    let base = registry.image("hostile:latest");
    copy_to_registry(&layout, "latest", &base, false, None);

    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN true\n"));
    let destination = registry.image("never:1");
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains(&digests[1]), "the layer digest: {stderr}");
    assert!(stderr.contains(&name), "the entry: {stderr}");
    assert!(stderr.contains("climbs above the root"), "{stderr}");
    assert!(
        !Path::new("/tmp").join(&escape).exists(),
        "the hostile entry was written on the host"
    );
    assert!(!crate::support::tools::exists(&destination));
}
