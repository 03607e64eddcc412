//! The ignore list against real directory trees: what a reset and a layer's whiteouts spare.

use super::*;
use std::fs;

fn tree(root: &Path, files: &[&str]) {
    for file in files {
        let path = root.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, file).unwrap();
    }
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
                out.push(format!("{rel}/"));
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn matching_is_by_whole_components_and_the_root_is_never_listed() {
    let list = IgnoreList::new(["/var/run", "kaniko/", "/", "/a/../proc"]);
    assert_eq!(
        list.paths(),
        [
            PathBuf::from("kaniko"),
            PathBuf::from("proc"),
            PathBuf::from("var/run")
        ]
    );
    assert!(list.ignores(Path::new("/var/run")));
    assert!(list.ignores(Path::new("var/run/docker.sock")));
    assert!(!list.ignores(Path::new("/var/runner")));
    assert!(!list.ignores(Path::new("/var")));
    assert!(list.holds_ignored(Path::new("/var")));
    assert!(list.holds_ignored(Path::new("/")));
    assert!(!list.holds_ignored(Path::new("/var/run")));
    assert!(!list.holds_ignored(Path::new("/etc")));
}

#[test]
fn reset_deletes_everything_but_ignored_paths_and_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            "etc/passwd",
            "usr/bin/sh",
            "kaniko/executor",
            "kaniko/.docker/config.json",
            "var/run/secrets/token",
            "var/lib/apt/lists",
            "workspace/Dockerfile",
        ],
    );
    std::os::unix::fs::symlink("/kaniko", dir.path().join("link")).unwrap();
    let list = IgnoreList::new(["/kaniko", "/var/run", "/workspace"]);
    list.reset(&RootFs::open(dir.path()).unwrap()).unwrap();
    assert_eq!(
        listing(dir.path()),
        [
            "kaniko/",
            "kaniko/.docker/",
            "kaniko/.docker/config.json",
            "kaniko/executor",
            "var/",
            "var/run/",
            "var/run/secrets/",
            "var/run/secrets/token",
            "workspace/",
            "workspace/Dockerfile",
        ]
    );
}

#[test]
fn a_symlink_where_an_ignored_paths_parent_was_is_removed_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    tree(outside.path(), &["run/keep"]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("var")).unwrap();
    let list = IgnoreList::new(["/var/run"]);
    list.reset(&RootFs::open(dir.path()).unwrap()).unwrap();
    assert!(listing(dir.path()).is_empty());
    assert_eq!(listing(outside.path()), ["run/", "run/keep"]);
}

#[test]
fn mount_points_are_field_five_decoded_without_the_root() {
    let mountinfo = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
22 27 0:21 / /proc rw - proc proc rw
92 27 254:0 /secrets/x /etc/my\\040secret ro - ext4 /dev/vda rw
93 27 0:40 / /back\\134slash rw - tmpfs tmpfs rw
";
    assert_eq!(
        mount_points(mountinfo),
        [
            PathBuf::from("/proc"),
            PathBuf::from("/etc/my secret"),
            PathBuf::from("/back\\slash"),
        ]
    );
}

#[test]
fn layers_extracted_over_an_ignore_list_leave_it_alone() {
    use crate::unpack::apply_layer_except;
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            "kaniko/executor",
            "var/run/secret",
            "var/cache/old",
            "opt/old",
        ],
    );
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("kaniko/executor", b"evil");
    add("var/run/secret", b"evil");
    add("var/.wh.run", b"");
    add(".wh.var", b"");
    add("opt/.wh..wh..opq", b"");
    add("opt/new", b"new");
    add("etc/os-release", b"base");
    let tar = builder.into_inner().unwrap();
    let list = IgnoreList::new(["/kaniko", "/var/run"]);
    let root = RootFs::open(dir.path()).unwrap();
    apply_layer_except(&root, tar.as_slice(), "sha256:test", &list).unwrap();
    assert_eq!(
        listing(dir.path()),
        [
            "etc/",
            "etc/os-release",
            "kaniko/",
            "kaniko/executor",
            "opt/",
            "opt/new",
            "var/",
            "var/run/",
            "var/run/secret",
        ]
    );
    assert_eq!(
        fs::read(dir.path().join("kaniko/executor")).unwrap(),
        b"kaniko/executor"
    );
    assert_eq!(
        fs::read(dir.path().join("var/run/secret")).unwrap(),
        b"var/run/secret"
    );
}
