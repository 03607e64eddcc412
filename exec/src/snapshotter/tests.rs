//! Both strategies on the same RUN scenarios: same changes, byte-identical layers. These run
//! real commands (Debian's static busybox) in the sandbox and mount overlays; they need root.

use super::*;
use crate::compression::Compression;
use crate::layer::{LayerOptions, write_layer};
use std::fs;
use std::os::unix::fs::symlink;

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 12] = [
    "sh", "touch", "mkdir", "echo", "rm", "ln", "chmod", "chown", "mv", "mknod", "cat", "test",
];

/// A root with busybox and a small tree every scenario changes.
fn base_root(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    for applet in APPLETS {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    fs::create_dir_all(dir.join("etc/conf.d")).unwrap();
    fs::write(dir.join("etc/motd"), "hello\n").unwrap();
    fs::write(dir.join("etc/keep"), "keep\n").unwrap();
    fs::write(dir.join("etc/conf.d/a"), "a\n").unwrap();
    fs::write(dir.join("etc/conf.d/b"), "b\n").unwrap();
    fs::create_dir_all(dir.join("srv/tree/deep")).unwrap();
    fs::write(dir.join("srv/tree/deep/x"), "x\n").unwrap();
    fs::write(dir.join("srv/file"), "file\n").unwrap();
    fs::create_dir_all(dir.join("srv/dir")).unwrap();
    fs::write(dir.join("srv/dir/inner"), "inner\n").unwrap();
    symlink("motd", dir.join("etc/link")).unwrap();
}

fn sh(script: &str) -> RunSpec {
    RunSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        workdir: "/".into(),
        user: String::new(),
        ..Default::default()
    }
}

/// The scenarios of issue 5: each leaves its mark on the base tree.
const SCENARIOS: [(&str, &str); 15] = [
    ("create", "echo new > /etc/new"),
    ("modify", "echo changed > /etc/motd"),
    ("chmod only", "chmod 600 /etc/keep"),
    ("chown only", "chown 1000:1000 /etc/keep"),
    ("mtime only", "touch -d @1234567890 /etc/keep"),
    ("rename", "mv /etc/keep /srv/kept"),
    ("delete", "rm /etc/conf.d/a"),
    (
        "dir replaced by file",
        "rm -rf /srv/dir && echo now-a-file > /srv/dir",
    ),
    (
        "file replaced by dir",
        "rm /srv/file && mkdir /srv/file && echo in > /srv/file/in",
    ),
    ("hardlink", "ln /etc/keep /etc/keep-link"),
    ("symlink swap", "rm /etc/link && ln -s keep /etc/link"),
    ("delete a whole dir", "rm -rf /srv/tree"),
    (
        "opaque",
        "rm -rf /etc/conf.d && mkdir /etc/conf.d && echo c > /etc/conf.d/c",
    ),
    ("bare copy-up", "echo -n >> /etc/motd"),
    ("nothing", "true"),
];

/// Sets fixed times on every changed path and its parents, so two runs at different moments
/// give the same layer bytes.
fn pin_times(root: &RootFs, changes: &Changes) {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
    };
    for path in changes.changed().chain(changes.deleted()) {
        for p in path.ancestors() {
            let Ok((parent, name)) = root.parent(p) else {
                continue;
            };
            let _ = rustix::fs::utimensat(
                &parent,
                name.as_os_str(),
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            );
        }
    }
}

struct Outcome {
    changed: Vec<PathBuf>,
    deleted: Vec<PathBuf>,
    opaque: Vec<PathBuf>,
    diff_id: String,
}

fn run_scenario(
    strategy: Strategy,
    script: &str,
    volumes: &[String],
) -> (Outcome, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    base_root(&rootfs);
    let root = RootFs::open(&rootfs).unwrap();
    let mut snapshotter = Snapshotter::new(strategy, &[], true, tmp.path().join("scratch"));
    let changes = snapshotter.run(&root, &sh(script), volumes).unwrap();
    pin_times(&root, &changes);
    let options = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    let written = write_layer(&root, &changes, &options, Vec::new()).unwrap();
    let outcome = Outcome {
        changed: changes.changed().map(Path::to_path_buf).collect(),
        deleted: changes.deleted().map(Path::to_path_buf).collect(),
        opaque: changes.opaque().map(Path::to_path_buf).collect(),
        diff_id: written.diff_id,
    };
    (outcome, tmp)
}

fn require_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    if let Err(err) = crate::overlay::probe(tmp.path()) {
        panic!("these tests need overlayfs (run as root on a kernel with overlay): {err}");
    }
}

#[test]
fn overlay_and_scan_report_the_same_changes_and_layer_for_every_scenario() {
    require_overlay();
    for (name, script) in SCENARIOS {
        let (scan, _a) = run_scenario(Strategy::Scan(ScanMode::Redo), script, &[]);
        let (overlay, _b) = run_scenario(Strategy::Overlay, script, &[]);
        assert_eq!(overlay.changed, scan.changed, "{name}: changed");
        assert_eq!(overlay.deleted, scan.deleted, "{name}: deleted");
        assert_eq!(overlay.opaque, scan.opaque, "{name}: opaque");
        assert_eq!(overlay.diff_id, scan.diff_id, "{name}: layer");
    }
}

#[test]
fn full_mode_agrees_with_redo_on_every_scenario_but_a_bare_rewrite() {
    for (name, script) in SCENARIOS {
        let (redo, _a) = run_scenario(Strategy::Scan(ScanMode::Redo), script, &[]);
        let (full, _b) = run_scenario(Strategy::Scan(ScanMode::Full), script, &[]);
        assert_eq!(full.changed, redo.changed, "{name}: changed");
        assert_eq!(full.diff_id, redo.diff_id, "{name}: layer");
    }
}

#[test]
fn the_overlay_leaves_the_root_as_the_command_saw_it_and_cleans_up() {
    require_overlay();
    let script = "rm -rf /etc/conf.d && mkdir /etc/conf.d && echo c > /etc/conf.d/c \
                  && chmod 700 /srv && rm -rf /srv/tree && ln /etc/keep /etc/keep2 \
                  && touch -d @1000000000 /etc";
    let (_, tmp) = run_scenario(Strategy::Overlay, script, &[]);
    let rootfs = tmp.path().join("rootfs");
    let names = |dir: &str| {
        let mut names: Vec<String> = fs::read_dir(rootfs.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("etc/conf.d"), vec!["c"]);
    assert_eq!(names("srv"), vec!["dir", "file"]);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let srv = fs::metadata(rootfs.join("srv")).unwrap();
    assert_eq!(srv.permissions().mode() & 0o7777, 0o700);
    assert_eq!(
        fs::metadata(rootfs.join("etc")).unwrap().mtime(),
        1_000_000_000,
        "a merged directory keeps the times the command left"
    );
    let keep = fs::metadata(rootfs.join("etc/keep")).unwrap();
    let keep2 = fs::metadata(rootfs.join("etc/keep2")).unwrap();
    assert_eq!((keep.ino(), keep.nlink()), (keep2.ino(), 2));
    assert_eq!(
        rustix::fs::lgetxattr(
            rootfs.join("etc/conf.d"),
            "trusted.overlay.opaque",
            &mut [0u8; 8][..]
        ),
        Err(rustix::io::Errno::NODATA),
        "overlayfs' xattrs must not stay in the root"
    );
    assert!(!tmp.path().join("scratch/root").exists());
}

#[test]
fn writes_under_a_volume_are_discarded_and_the_rest_kept() {
    require_overlay();
    for strategy in [Strategy::Overlay, Strategy::Scan(ScanMode::Redo)] {
        let (outcome, tmp) = run_scenario(
            strategy,
            "echo v > /srv/dir/inner && echo w > /srv/dir/new && echo k > /etc/kept",
            &["/srv/dir".to_owned()],
        );
        let rootfs = tmp.path().join("rootfs");
        assert_eq!(
            fs::read_to_string(rootfs.join("srv/dir/inner")).unwrap(),
            "inner\n",
            "{strategy:?}"
        );
        assert!(!rootfs.join("srv/dir/new").exists(), "{strategy:?}");
        assert_eq!(
            outcome.changed,
            vec![PathBuf::from("etc"), PathBuf::from("etc/kept")]
        );
    }
}

#[test]
fn a_missing_volume_directory_is_created_and_recorded() {
    require_overlay();
    let (outcome, tmp) = run_scenario(
        Strategy::Overlay,
        "echo data > /data/x",
        &["/data".to_owned()],
    );
    assert!(tmp.path().join("rootfs/data").is_dir());
    assert!(!tmp.path().join("rootfs/data/x").exists());
    assert_eq!(outcome.changed, vec![PathBuf::from("data")]);
}

#[test]
fn ignored_paths_stay_in_the_root_but_out_of_the_changes() {
    for strategy in [Strategy::Overlay, Strategy::Scan(ScanMode::Redo)] {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        base_root(&rootfs);
        let root = RootFs::open(&rootfs).unwrap();
        let mut snapshotter = Snapshotter::new(
            strategy,
            &[PathBuf::from("/srv")],
            true,
            tmp.path().join("scratch"),
        );
        let changes = snapshotter
            .run(
                &root,
                &sh("echo x > /srv/new && rm -rf /srv/tree && echo y > /etc/new"),
                &[],
            )
            .unwrap();
        assert!(rootfs.join("srv/new").exists(), "{strategy:?}");
        assert_eq!(
            changes.changed().collect::<Vec<_>>(),
            vec![Path::new("etc"), Path::new("etc/new")],
            "{strategy:?}"
        );
        assert_eq!(changes.deleted().count(), 0, "{strategy:?}");
    }
}

#[test]
fn a_failed_command_leaves_the_root_untouched_under_overlay() {
    require_overlay();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    base_root(&rootfs);
    let root = RootFs::open(&rootfs).unwrap();
    let mut snapshotter =
        Snapshotter::new(Strategy::Overlay, &[], true, tmp.path().join("scratch"));
    let err = snapshotter
        .run(&root, &sh("echo x > /etc/motd; rm -rf /srv; exit 3"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("exit code: 3"), "{err}");
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert!(rootfs.join("srv/tree/deep/x").exists());
}
