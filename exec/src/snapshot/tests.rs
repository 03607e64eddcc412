//! Tests of the snapshotter: what counts as a change, deletions, exclusions.

use super::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Instant;

fn changed(changes: &Changes) -> Vec<&Path> {
    changes.changed().collect()
}

fn deleted(changes: &Changes) -> Vec<&Path> {
    changes.deleted().collect()
}

fn tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/conf.d/a"), "a").unwrap();
    fs::write(root.join("etc/conf.d/b"), "b").unwrap();
    fs::create_dir_all(root.join("var/cache/apt")).unwrap();
    fs::write(root.join("var/cache/apt/pkg"), "pkg").unwrap();
    fs::write(root.join("bin"), "binary").unwrap();
    tmp
}

fn scan(root: &Path) -> Snapshot {
    Snapshot::scan(root, &[]).unwrap()
}

#[test]
fn an_untouched_tree_has_no_changes() {
    let tmp = tree();
    let before = scan(tmp.path());
    let after = scan(tmp.path());
    assert!(before.diff(&after).is_empty());
    assert_eq!(before.len(), 10);
}

#[test]
fn added_file_is_changed() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::write(tmp.path().join("etc/new"), "n").unwrap();
    let diff = before.diff(&scan(tmp.path()));
    // The parent's mtime and ctime moved too.
    assert_eq!(changed(&diff), vec![Path::new("etc"), Path::new("etc/new")]);
    assert!(deleted(&diff).is_empty());
}

#[test]
fn rewrite_with_same_size_and_restored_mtime_is_caught_by_ctime() {
    let tmp = tree();
    let path = tmp.path().join("etc/hosts");
    let original = fs::symlink_metadata(&path).unwrap();
    let before = scan(tmp.path());
    fs::write(&path, "127.0.0.1 localhosx\n").unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: std::os::unix::fs::MetadataExt::atime(&original),
            tv_nsec: std::os::unix::fs::MetadataExt::atime_nsec(&original),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: std::os::unix::fs::MetadataExt::mtime(&original),
            tv_nsec: std::os::unix::fs::MetadataExt::mtime_nsec(&original),
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::empty()).unwrap();
    let now = fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (std::os::unix::fs::MetadataExt::mtime_nsec(&now), now.len()),
        (
            std::os::unix::fs::MetadataExt::mtime_nsec(&original),
            original.len()
        )
    );
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(changed(&diff), vec![Path::new("etc/hosts")]);
}

#[test]
fn chmod_and_chown_are_changes() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::set_permissions(tmp.path().join("bin"), fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::lchown(tmp.path().join("etc/conf.d/a"), Some(1234), Some(1234)).unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(
        changed(&diff),
        vec![Path::new("bin"), Path::new("etc/conf.d/a")]
    );
}

#[test]
fn deleted_file_and_directory_report_only_the_topmost_path() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::remove_file(tmp.path().join("etc/hosts")).unwrap();
    fs::remove_dir_all(tmp.path().join("var/cache")).unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(
        deleted(&diff),
        vec![Path::new("etc/hosts"), Path::new("var/cache")]
    );
    assert_eq!(changed(&diff), vec![Path::new("etc"), Path::new("var")]);
}

#[test]
fn file_replaced_by_a_symlink_is_changed() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::remove_file(tmp.path().join("bin")).unwrap();
    symlink("usr/bin", tmp.path().join("bin")).unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(changed(&diff), vec![Path::new("bin")]);
    assert!(deleted(&diff).is_empty());
}

#[test]
fn retargeted_symlink_is_changed() {
    let tmp = tree();
    symlink("a", tmp.path().join("link")).unwrap();
    let before = scan(tmp.path());
    fs::remove_file(tmp.path().join("link")).unwrap();
    symlink("b", tmp.path().join("link")).unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(changed(&diff), vec![Path::new("link")]);
}

#[test]
fn new_directory_marks_its_whole_subtree_changed() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::create_dir_all(tmp.path().join("opt/app/lib")).unwrap();
    fs::write(tmp.path().join("opt/app/lib/x.so"), "x").unwrap();
    fs::write(tmp.path().join("opt/app/run"), "r").unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(
        changed(&diff),
        vec![
            Path::new("opt"),
            Path::new("opt/app"),
            Path::new("opt/app/lib"),
            Path::new("opt/app/lib/x.so"),
            Path::new("opt/app/run"),
        ]
    );
}

#[test]
fn directory_replaced_by_a_file_drops_the_children_whiteouts() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::remove_dir_all(tmp.path().join("etc/conf.d")).unwrap();
    fs::write(tmp.path().join("etc/conf.d"), "now a file").unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(
        changed(&diff),
        vec![Path::new("etc"), Path::new("etc/conf.d")]
    );
    assert!(deleted(&diff).is_empty(), "{:?}", deleted(&diff));
}

#[test]
fn recreated_directory_reports_all_of_its_contents() {
    let tmp = tree();
    let before = scan(tmp.path());
    // Same name, new inode; the child is moved back in rather than rewritten.
    fs::rename(tmp.path().join("var/cache/apt"), tmp.path().join("apt.old")).unwrap();
    fs::create_dir(tmp.path().join("var/cache/apt")).unwrap();
    fs::rename(
        tmp.path().join("apt.old/pkg"),
        tmp.path().join("var/cache/apt/pkg"),
    )
    .unwrap();
    fs::remove_dir(tmp.path().join("apt.old")).unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert!(changed(&diff).contains(&Path::new("var/cache/apt")));
    assert!(changed(&diff).contains(&Path::new("var/cache/apt/pkg")));
}

#[test]
fn a_directory_emptied_and_recreated_is_opaque_without_child_whiteouts() {
    let tmp = tree();
    let before = scan(tmp.path());
    fs::remove_dir_all(tmp.path().join("etc/conf.d")).unwrap();
    fs::create_dir(tmp.path().join("etc/conf.d")).unwrap();
    fs::write(tmp.path().join("etc/conf.d/c"), "c").unwrap();
    let diff = before.diff(&scan(tmp.path()));
    assert_eq!(
        diff.opaque().collect::<Vec<_>>(),
        vec![Path::new("etc/conf.d")]
    );
    assert!(deleted(&diff).is_empty(), "{:?}", deleted(&diff));
    assert!(changed(&diff).contains(&Path::new("etc/conf.d/c")));
}

/// Rewrites `etc/hosts` with other bytes of the same size and puts its mtime back.
fn rewrite_keeping_size_and_mtime(root: &Path) {
    let path = root.join("etc/hosts");
    let original = fs::symlink_metadata(&path).unwrap();
    fs::write(&path, "127.0.0.1 localhosx\n").unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: std::os::unix::fs::MetadataExt::atime(&original),
            tv_nsec: std::os::unix::fs::MetadataExt::atime_nsec(&original),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: std::os::unix::fs::MetadataExt::mtime(&original),
            tv_nsec: std::os::unix::fs::MetadataExt::mtime_nsec(&original),
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::empty()).unwrap();
}

#[test]
fn full_mode_sees_a_content_change_that_hides_from_mtime_and_time_mode_does_not() {
    let tmp = tree();
    let full = Snapshot::scan_with(tmp.path(), ScanMode::Full, &[]).unwrap();
    let time = Snapshot::scan_with(tmp.path(), ScanMode::Time, &[]).unwrap();
    rewrite_keeping_size_and_mtime(tmp.path());
    let diff = full.diff(&Snapshot::scan_with(tmp.path(), ScanMode::Full, &[]).unwrap());
    assert_eq!(changed(&diff), vec![Path::new("etc/hosts")]);
    let diff = time.diff(&Snapshot::scan_with(tmp.path(), ScanMode::Time, &[]).unwrap());
    assert!(diff.is_empty(), "time mode is documented as blind to this");
}

#[test]
fn full_mode_ignores_a_rewrite_with_identical_bytes_and_metadata() {
    let tmp = tree();
    let before = Snapshot::scan_with(tmp.path(), ScanMode::Full, &[]).unwrap();
    let path = tmp.path().join("etc/hosts");
    let original = fs::symlink_metadata(&path).unwrap();
    fs::write(&path, "127.0.0.1 localhost\n").unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec::default(),
        last_modification: rustix::fs::Timespec {
            tv_sec: std::os::unix::fs::MetadataExt::mtime(&original),
            tv_nsec: std::os::unix::fs::MetadataExt::mtime_nsec(&original),
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::empty()).unwrap();
    let full = before.diff(&Snapshot::scan_with(tmp.path(), ScanMode::Full, &[]).unwrap());
    assert!(full.is_empty(), "{:?}", changed(&full));
}

/// Writes `contents` to `root/etc/hosts` and puts back `times`' mtime.
fn write_keeping_mtime(root: &Path, contents: &str, mtime: (i64, i64)) {
    let path = root.join("etc/hosts");
    fs::write(&path, contents).unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec::default(),
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::empty()).unwrap();
}

#[test]
fn redo_confirms_by_content_a_candidate_it_hashed_before() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tree();
    let root = tmp.path();
    let original = fs::metadata(root.join("etc/hosts")).unwrap();
    let mtime = (original.mtime(), original.mtime_nsec());
    let redo = |root: &Path| Snapshot::scan_with(root, ScanMode::Redo, &[]).unwrap();

    // A base file has no hash: its rewrite is reported (by ctime), and hashed.
    let first = redo(root);
    write_keeping_mtime(root, "127.0.0.1 localhosx\n", mtime);
    let mut second = redo(root);
    let diff = first.observe(&mut second, &[]).unwrap();
    assert_eq!(changed(&diff), vec![Path::new("etc/hosts")]);

    // The same bytes again, same size and mtime: the hash says nothing changed.
    write_keeping_mtime(root, "127.0.0.1 localhosx\n", mtime);
    let mut third = redo(root);
    let diff = second.observe(&mut third, &[]).unwrap();
    assert!(diff.is_empty(), "{:?}", changed(&diff));

    // Other bytes, same size and mtime: the (carried) hash says it changed.
    write_keeping_mtime(root, "127.0.0.1 localhosy\n", mtime);
    let mut fourth = redo(root);
    let diff = third.observe(&mut fourth, &[]).unwrap();
    assert_eq!(changed(&diff), vec![Path::new("etc/hosts")]);
}

#[test]
fn time_mode_sees_a_touched_file() {
    let tmp = tree();
    let before = Snapshot::scan_with(tmp.path(), ScanMode::Time, &[]).unwrap();
    fs::write(tmp.path().join("bin"), "binary2").unwrap();
    let diff = before.diff(&Snapshot::scan_with(tmp.path(), ScanMode::Time, &[]).unwrap());
    assert_eq!(changed(&diff), vec![Path::new("bin")]);
}

#[test]
fn excluded_paths_and_their_subtrees_are_skipped_on_both_sides() {
    let tmp = tree();
    let exclude = [PathBuf::from("/var/cache"), PathBuf::from("etc/hosts")];
    let before = Snapshot::scan(tmp.path(), &exclude).unwrap();
    assert_eq!(before.len(), 6);
    fs::write(tmp.path().join("var/cache/apt/pkg"), "changed").unwrap();
    fs::write(tmp.path().join("var/cache/new"), "new").unwrap();
    fs::remove_file(tmp.path().join("etc/hosts")).unwrap();
    let after = Snapshot::scan(tmp.path(), &exclude).unwrap();
    let diff = before.diff(&after);
    // Only etc's own metadata moved (an entry left it); nothing excluded is reported.
    assert_eq!(changed(&diff), vec![Path::new("etc")]);
    assert!(deleted(&diff).is_empty());
}

#[test]
fn symlinked_directories_are_recorded_not_followed() {
    let tmp = tree();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();
    symlink(outside.path(), tmp.path().join("out")).unwrap();
    let snap = scan(tmp.path());
    assert_eq!(snap.len(), 11);
    assert!(
        !snap
            .entries
            .iter()
            .any(|(p, _)| p.starts_with("out") && p != Path::new("out"))
    );
}

fn populate(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir(&dir).unwrap();
        }
        fs::write(dir.join(format!("f{i}")), b"x").unwrap();
    }
}

fn time_scan(files: usize) {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), files);
    let start = Instant::now();
    let snap = Snapshot::scan(tmp.path(), &[]).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(snap.len(), files + files.div_ceil(100));
    println!(
        "snapshot scan of {files} files: {elapsed:?} ({} threads)",
        rayon::current_num_threads()
    );
}

#[test]
fn scan_reports_its_time_for_a_small_tree() {
    time_scan(2_000);
}

/// Run with `cargo test -p kiln-exec --release -- --ignored --nocapture scan_of_100k`.
#[test]
#[ignore = "benchmark: creates 100k files"]
fn scan_of_100k_files() {
    time_scan(100_000);
}
