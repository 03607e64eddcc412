//! COPY behaviour, checked on real directories (as root: owners are asserted).

use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::time::{Duration, SystemTime};

use crate::users::resolve_chown;

/// A context and an image root side by side.
struct Fixture {
    tmp: tempfile::TempDir,
    src: RootFs,
    dest: RootFs,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("ctx")).unwrap();
        fs::create_dir_all(tmp.path().join("root")).unwrap();
        let src = RootFs::open(&tmp.path().join("ctx")).unwrap();
        let dest = RootFs::open(&tmp.path().join("root")).unwrap();
        Fixture { tmp, src, dest }
    }

    fn ctx(&self, rel: &str) -> PathBuf {
        self.tmp.path().join("ctx").join(rel)
    }

    fn root(&self, rel: &str) -> PathBuf {
        self.tmp.path().join("root").join(rel)
    }

    fn file(&self, rel: &str, content: &str, mode: u32) {
        let path = self.ctx(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn copy(&self, sources: &[&str], dest: &str, options: &CopyOptions<'_>) -> Changes {
        self.try_copy(sources, dest, options).unwrap()
    }

    fn try_copy(
        &self,
        sources: &[&str],
        dest: &str,
        options: &CopyOptions<'_>,
    ) -> Result<Changes, CopyError> {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        copy(&self.src, &sources, &self.dest, dest, options)
    }
}

fn changed(changes: &Changes) -> Vec<String> {
    changes
        .changed()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn file_to_file_keeps_mode_and_mtime_and_resets_owner() {
    let fx = Fixture::new();
    fx.file("a.txt", "alpha", 0o751);
    chown(fx.ctx("a.txt"), Some(1234), Some(5678)).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(fx.ctx("a.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let changes = fx.copy(&["a.txt"], "/b.txt", &CopyOptions::default());
    assert_eq!(changed(&changes), ["b.txt"]);
    let meta = fs::metadata(fx.root("b.txt")).unwrap();
    assert_eq!(fs::read_to_string(fx.root("b.txt")).unwrap(), "alpha");
    assert_eq!(meta.mode() & 0o7777, 0o751);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(meta.modified().unwrap(), mtime);
}

#[test]
fn a_trailing_slash_copies_into_a_new_directory_with_0755_parents() {
    let fx = Fixture::new();
    fx.file("a.txt", "a", 0o644);
    let changes = fx.copy(&["a.txt"], "/opt/app/", &CopyOptions::default());
    assert_eq!(changed(&changes), ["opt", "opt/app", "opt/app/a.txt"]);
    assert_eq!(
        fs::metadata(fx.root("opt/app")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(fx.root("opt/app/a.txt").is_file());
}

#[test]
fn a_file_onto_an_existing_directory_goes_inside_it() {
    let fx = Fixture::new();
    fx.file("a.txt", "a", 0o644);
    fs::create_dir(fx.root("existing")).unwrap();
    fx.copy(&["a.txt"], "/existing", &CopyOptions::default());
    assert!(fx.root("existing/a.txt").is_file());
}

#[test]
fn a_directory_source_copies_its_contents_and_keeps_existing_dirs() {
    let fx = Fixture::new();
    fx.file("src/one.rs", "1", 0o644);
    fx.file("src/sub/two.rs", "2", 0o600);
    fs::set_permissions(fx.ctx("src/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir(fx.root("app")).unwrap();
    fs::set_permissions(fx.root("app"), fs::Permissions::from_mode(0o700)).unwrap();
    let changes = fx.copy(&["src"], "/app", &CopyOptions::default());
    assert_eq!(
        changed(&changes),
        ["app/one.rs", "app/sub", "app/sub/two.rs"]
    );
    assert!(!fx.root("app/src").exists());
    assert_eq!(fs::read_to_string(fx.root("app/sub/two.rs")).unwrap(), "2");
    assert_eq!(
        fs::metadata(fx.root("app/sub")).unwrap().mode() & 0o7777,
        0o750
    );
    assert_eq!(
        fs::metadata(fx.root("app")).unwrap().mode() & 0o7777,
        0o700,
        "an existing destination directory keeps its metadata"
    );
}

#[test]
fn wildcards_copy_every_match_into_the_directory() {
    let fx = Fixture::new();
    fx.file("a.txt", "a", 0o644);
    fx.file("b.txt", "b", 0o644);
    fx.file("c.md", "c", 0o644);
    let changes = fx.copy(&["*.txt"], "/docs/", &CopyOptions::default());
    assert_eq!(changed(&changes), ["docs", "docs/a.txt", "docs/b.txt"]);
    assert!(!fx.root("docs/c.md").exists());
}

#[test]
fn several_sources_make_the_destination_a_directory() {
    let fx = Fixture::new();
    fx.file("a.txt", "a", 0o644);
    fx.file("c.md", "c", 0o644);
    fx.copy(&["a.txt", "c.md"], "/multi", &CopyOptions::default());
    assert!(fx.root("multi/a.txt").is_file());
    assert!(fx.root("multi/c.md").is_file());
}

#[test]
fn chown_by_name_uses_the_destination_roots_passwd_for_files_and_new_parents() {
    let fx = Fixture::new();
    fx.file("dir/f", "f", 0o644);
    fs::create_dir(fx.root("etc")).unwrap();
    fs::write(
        fx.root("etc/passwd"),
        "app:x:1500:1600::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(fx.root("etc/group"), "app:x:1600:\n").unwrap();
    let owner = resolve_chown(&fx.dest, "app:app").unwrap();
    assert_eq!(owner, (1500, 1600));
    let options = CopyOptions {
        chown: Some(owner),
        ..CopyOptions::default()
    };
    fx.copy(&["dir"], "/srv/data/", &options);
    for path in ["srv", "srv/data", "srv/data/f"] {
        let meta = fs::symlink_metadata(fx.root(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1500, 1600), "{path}");
    }
}

#[test]
fn chmod_applies_to_copied_files_and_directories_but_not_to_created_parents() {
    let fx = Fixture::new();
    fx.file("d/f", "f", 0o644);
    fx.file("d/sub/g", "g", 0o755);
    fs::set_permissions(fx.ctx("d"), fs::Permissions::from_mode(0o755)).unwrap();
    let options = CopyOptions {
        chmod: Some(Chmod::Set(0o750)),
        ..CopyOptions::default()
    };
    fx.copy(&["d"], "/out/d/", &options);
    let mode = |p: &str| fs::symlink_metadata(fx.root(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("out"), 0o755, "a parent created for the destination");
    assert_eq!(mode("out/d"), 0o750, "where the directory's contents land");
    assert_eq!(mode("out/d/sub"), 0o750);
    assert_eq!(mode("out/d/f"), 0o750);
    assert_eq!(mode("out/d/sub/g"), 0o750);

    // Symbolic modes are told whether the entry is a directory (`X`).
    let change = |mode: u32, dir: bool| {
        if dir || mode & 0o111 != 0 {
            mode | 0o111
        } else {
            mode
        }
    };
    let options = CopyOptions {
        chmod: Some(Chmod::Change(&change)),
        ..CopyOptions::default()
    };
    fs::set_permissions(fx.ctx("d/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    fx.copy(&["d"], "/x/", &options);
    assert_eq!(mode("x/sub"), 0o711);
    assert_eq!(mode("x/f"), 0o644);
    assert_eq!(mode("x/sub/g"), 0o755);
}

#[test]
fn hardlinks_in_the_copied_set_stay_hardlinks() {
    let fx = Fixture::new();
    fx.file("d/a", "shared", 0o644);
    fs::hard_link(fx.ctx("d/a"), fx.ctx("d/b")).unwrap();
    fx.copy(&["d"], "/out/", &CopyOptions::default());
    let a = fs::metadata(fx.root("out/a")).unwrap();
    let b = fs::metadata(fx.root("out/b")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
}

#[test]
fn symlinks_inside_a_directory_are_copied_as_symlinks() {
    let fx = Fixture::new();
    fx.file("d/target", "t", 0o644);
    symlink("target", fx.ctx("d/rel")).unwrap();
    symlink("/etc/passwd", fx.ctx("d/abs")).unwrap();
    fx.copy(&["d"], "/out/", &CopyOptions::default());
    assert_eq!(
        fs::read_link(fx.root("out/rel")).unwrap(),
        Path::new("target")
    );
    assert_eq!(
        fs::read_link(fx.root("out/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[test]
fn a_context_symlink_to_a_host_file_is_not_followed_out_of_the_context() {
    let fx = Fixture::new();
    symlink("/etc/passwd", fx.ctx("pw")).unwrap();
    let err = fx
        .try_copy(&["pw"], "/pw", &CopyOptions::default())
        .unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }), "{err}");
    assert!(!fx.root("pw").exists());
    // With a file of that name inside the context, the symlink resolves to it.
    fx.file("etc/passwd", "context copy", 0o644);
    fx.copy(&["pw"], "/pw", &CopyOptions::default());
    assert_eq!(fs::read_to_string(fx.root("pw")).unwrap(), "context copy");
    assert!(!fs::symlink_metadata(fx.root("pw")).unwrap().is_symlink());
}

#[test]
fn a_symlinked_destination_parent_stays_inside_the_root() {
    let fx = Fixture::new();
    fx.file("a.txt", "a", 0o644);
    symlink("/../../..", fx.root("up")).unwrap();
    let changes = fx.copy(&["a.txt"], "/up/escaped.txt", &CopyOptions::default());
    assert_eq!(changed(&changes), ["escaped.txt"]);
    assert!(fx.root("escaped.txt").is_file());
    assert!(!fx.tmp.path().join("escaped.txt").exists());
}

#[test]
fn a_symlink_at_the_destination_is_replaced_not_written_through() {
    let fx = Fixture::new();
    fx.file("a.txt", "new", 0o644);
    fs::create_dir(fx.root("etc")).unwrap();
    fs::write(fx.root("etc/target"), "original").unwrap();
    symlink("/etc/target", fx.root("dst")).unwrap();
    fx.copy(&["a.txt"], "/dst", &CopyOptions::default());
    assert_eq!(
        fs::read_to_string(fx.root("etc/target")).unwrap(),
        "original"
    );
    assert!(!fs::symlink_metadata(fx.root("dst")).unwrap().is_symlink());
    assert_eq!(fs::read_to_string(fx.root("dst")).unwrap(), "new");
}

#[test]
fn an_existing_file_is_replaced() {
    let fx = Fixture::new();
    fx.file("a.txt", "new", 0o644);
    fs::write(fx.root("a.txt"), "old content that is longer").unwrap();
    let changes = fx.copy(&["a.txt"], "/a.txt", &CopyOptions::default());
    assert_eq!(changed(&changes), ["a.txt"]);
    assert_eq!(fs::read_to_string(fx.root("a.txt")).unwrap(), "new");
}

#[test]
fn copy_from_another_stage_keeps_owners_unless_chown() {
    let fx = Fixture::new();
    fx.file("bin/tool", "#!", 0o755);
    chown(fx.ctx("bin/tool"), Some(33), Some(44)).unwrap();
    // After the chown, which clears setuid.
    fs::set_permissions(fx.ctx("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let from = CopyOptions {
        preserve_owner: true,
        ..CopyOptions::default()
    };
    fx.copy(&["/bin/tool"], "/usr/bin/tool", &from);
    let meta = fs::metadata(fx.root("usr/bin/tool")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (33, 44));
    assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid survives the chown");
    let chowned = CopyOptions {
        chown: Some((7, 8)),
        ..from
    };
    fx.copy(&["/bin/tool"], "/usr/bin/tool2", &chowned);
    let meta = fs::metadata(fx.root("usr/bin/tool2")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (7, 8));
}

#[test]
fn file_capabilities_survive_copy_from_only() {
    let fx = Fixture::new();
    fx.file("ping", "elf", 0o755);
    // VFS_CAP_REVISION_2, effective, permitted = CAP_NET_RAW.
    let cap: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    rustix::fs::setxattr(
        fx.ctx("ping"),
        CAPABILITY_XATTR,
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let from = CopyOptions {
        preserve_owner: true,
        ..CopyOptions::default()
    };
    fx.copy(&["ping"], "/from", &from);
    fx.copy(&["ping"], "/context", &CopyOptions::default());
    let mut buf = [0u8; 64];
    let len = rustix::fs::getxattr(fx.root("from"), CAPABILITY_XATTR, &mut buf[..]).unwrap();
    assert_eq!(&buf[..len], &cap);
    assert!(rustix::fs::getxattr(fx.root("context"), CAPABILITY_XATTR, &mut buf[..]).is_err());
}

#[test]
fn ignored_files_are_not_copied_but_exceptions_are() {
    let fx = Fixture::new();
    fx.file("app/main.rs", "m", 0o644);
    fx.file("app/secret.key", "k", 0o600);
    fx.file("docs/README.md", "r", 0o644);
    fx.file("docs/other.md", "o", 0o644);
    let ignore = Dockerignore::parse("**/*.key\ndocs\n!docs/README.md").unwrap();
    let options = CopyOptions {
        ignore: Some(&ignore),
        ..CopyOptions::default()
    };
    fx.copy(&["."], "/", &options);
    assert!(fx.root("app/main.rs").is_file());
    assert!(!fx.root("app/secret.key").exists());
    assert!(fx.root("docs/README.md").is_file());
    assert!(!fx.root("docs/other.md").exists());
}

#[test]
fn a_missing_source_fails_with_dockers_message() {
    let fx = Fixture::new();
    let err = fx
        .try_copy(&["missing.txt"], "/x", &CopyOptions::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "COPY failed: file not found in build context or excluded by .dockerignore: missing.txt"
    );
}

#[test]
fn a_file_cannot_replace_a_directory() {
    let fx = Fixture::new();
    fx.file("d/x", "file", 0o644);
    fs::create_dir_all(fx.root("out/x")).unwrap();
    let err = fx
        .try_copy(&["d"], "/out", &CopyOptions::default())
        .unwrap_err();
    assert!(matches!(err, CopyError::ReplaceDirectory { .. }), "{err}");
}

#[test]
fn a_later_source_with_the_same_name_wins() {
    let fx = Fixture::new();
    fx.file("a/x", "first", 0o644);
    fx.file("b/x", "second", 0o600);
    let changes = fx.copy(&["a/x", "b/x"], "/out/", &CopyOptions::default());
    assert_eq!(changed(&changes), ["out", "out/x"]);
    assert_eq!(fs::read_to_string(fx.root("out/x")).unwrap(), "second");
    assert_eq!(
        fs::metadata(fx.root("out/x")).unwrap().mode() & 0o7777,
        0o600
    );
}

#[test]
fn a_directory_replaces_a_file_written_by_an_earlier_source() {
    let fx = Fixture::new();
    fx.file("f/x", "file", 0o644);
    fx.file("d/x/inner", "inner", 0o644);
    let changes = fx.copy(&["f/x", "d"], "/out/", &CopyOptions::default());
    assert_eq!(changed(&changes), ["out", "out/x", "out/x/inner"]);
    assert_eq!(fs::read_to_string(fx.root("out/x/inner")).unwrap(), "inner");
}

#[test]
fn a_symlink_replaces_a_file_written_by_an_earlier_source() {
    let fx = Fixture::new();
    fx.file("d1/x", "file", 0o644);
    fs::create_dir(fx.ctx("d2")).unwrap();
    symlink("elsewhere", fx.ctx("d2/x")).unwrap();
    fx.copy(&["d1", "d2"], "/out/", &CopyOptions::default());
    assert_eq!(
        fs::read_link(fx.root("out/x")).unwrap(),
        Path::new("elsewhere")
    );
}

#[test]
fn created_directories_keep_the_source_mtime_once_filled() {
    let fx = Fixture::new();
    for i in 0..50 {
        fx.file(&format!("d/sub/f{i}"), "content", 0o644);
    }
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for dir in ["d", "d/sub"] {
        fs::File::open(fx.ctx(dir))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    fx.copy(&["d"], "/out/d/", &CopyOptions::default());
    for dir in ["out/d", "out/d/sub"] {
        let meta = fs::metadata(fx.root(dir)).unwrap();
        assert_eq!(meta.modified().unwrap(), mtime, "{dir}");
    }
}

#[test]
fn hardlinks_across_many_directories_stay_hardlinks() {
    let fx = Fixture::new();
    let dirs = 600;
    fx.file("d/first/f", "shared", 0o644);
    for i in 0..dirs {
        fs::create_dir(fx.ctx(&format!("d/n{i:03}"))).unwrap();
        fs::hard_link(fx.ctx("d/first/f"), fx.ctx(&format!("d/n{i:03}/f"))).unwrap();
        fx.file(&format!("d/n{i:03}/own"), &format!("own {i}"), 0o644);
    }
    let changes = fx.copy(&["d"], "/out/", &CopyOptions::default());
    assert_eq!(changes.changed().count(), 1 + 2 + dirs * 3);
    let first = fs::metadata(fx.root("out/first/f")).unwrap();
    assert_eq!(first.nlink(), 1 + dirs as u64);
    for i in [0, dirs / 2, dirs - 1] {
        let link = fs::metadata(fx.root(&format!("out/n{i:03}/f"))).unwrap();
        assert_eq!(link.ino(), first.ino(), "n{i:03}/f");
        let own = fs::read_to_string(fx.root(&format!("out/n{i:03}/own"))).unwrap();
        assert_eq!(own, format!("own {i}"));
    }
}

#[test]
fn the_first_failing_file_in_walk_order_is_reported() {
    let fx = Fixture::new();
    for name in ["a", "b", "c", "d"] {
        fx.file(&format!("src/{name}"), name, 0o644);
    }
    fs::create_dir_all(fx.root("out/b")).unwrap();
    fs::create_dir_all(fx.root("out/d")).unwrap();
    let err = fx
        .try_copy(&["src"], "/out", &CopyOptions::default())
        .unwrap_err();
    match err {
        CopyError::ReplaceDirectory { path } => assert_eq!(path, Path::new("out/b")),
        other => panic!("unexpected error: {other}"),
    }
}

/// Fills `root` with `dirs` directories of `per_dir` files of 64 B to 10 KiB (sizes vary
/// deterministically so that the tree is the same on every run).
fn populate_context(root: &Path, dirs: usize, per_dir: usize) -> u64 {
    let mut bytes = 0;
    let chunk = vec![b'k'; 10 * 1024];
    for d in 0..dirs {
        let dir = root.join(format!("d{d:03}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..per_dir {
            let i = d * per_dir + f;
            let len = 64 + (i * 7919) % (10 * 1024 - 64);
            fs::write(dir.join(format!("f{f:03}")), &chunk[..len]).unwrap();
            bytes += len as u64;
        }
    }
    bytes
}

fn time_copy(dirs: usize, per_dir: usize) {
    let fx = Fixture::new();
    let bytes = populate_context(&fx.ctx(""), dirs, per_dir);
    // Time the copy, not the writeback of the context just generated.
    rustix::fs::sync();
    let start = std::time::Instant::now();
    let changes = fx.copy(&["."], "/data/", &CopyOptions::default());
    let elapsed = start.elapsed();
    assert_eq!(changes.changed().count(), 1 + dirs + dirs * per_dir);
    println!(
        "copy of {} files ({bytes} bytes) in {dirs} dirs: {elapsed:?} ({} writers)",
        dirs * per_dir,
        pool::WRITERS
    );
}

#[test]
fn copy_reports_its_time_for_a_small_tree() {
    time_copy(10, 20);
}

/// Run with `cargo test -p kiln-exec --release -- --ignored --nocapture copy_of`.
#[test]
#[ignore = "benchmark: creates 20k files"]
fn copy_of_20k_files() {
    time_copy(200, 100);
}
