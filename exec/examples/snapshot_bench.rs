//! Snapshot cost after a `RUN` that touches 10 files in a large root filesystem, for each
//! strategy and scan mode (issue 5's benchmark; `benches/snapshot.sh` runs it).
//!
//! Usage: `snapshot_bench [FILES] [WORKDIR]` (defaults: 200000 files, a temporary directory on
//! the filesystem of `$TMPDIR`). Needs root (namespaces, overlayfs) and `/bin/busybox`.
//! The root is populated once (1 KiB files, 100 per directory); every measurement then runs the
//! same command, so caches are warm for all strategies alike.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_exec::RootFs;
use kiln_exec::run::RunSpec;
use kiln_exec::snapshot::ScanMode;
use kiln_exec::snapshotter::{Snapshotter, Strategy};
use rayon::prelude::*;

const TOUCHED: usize = 10;
const REPEATS: usize = 3;

fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args
        .next()
        .map(|n| n.parse().expect("FILES must be a number"))
        .unwrap_or(200_000);
    let keep = args.next().map(PathBuf::from);
    let tmp = tempfile::tempdir_in(keep.as_deref().unwrap_or(&std::env::temp_dir())).unwrap();
    let rootfs = tmp.path().join("rootfs");
    let started = Instant::now();
    populate(&rootfs, files);
    println!(
        "populated {files} files in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let root = RootFs::open(&rootfs).unwrap();
    let spec = touch_spec(files);

    let bare = best(|| {
        let mut snapshotter = Snapshotter::new(
            Strategy::Scan(ScanMode::Redo),
            &[],
            false,
            tmp.path().join("bare"),
        );
        let started = Instant::now();
        snapshotter.run_unobserved(&root, &spec, &[]).unwrap();
        started.elapsed()
    });
    println!("RUN alone (sandbox + command): {:.3} s", bare.as_secs_f64());
    println!();
    println!(
        "| strategy | mode | RUN + snapshot (s) | snapshot (s) | rootfs files/s | changed paths |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");

    let cases = [
        ("overlay", Strategy::Overlay, "-", false),
        (
            "scan",
            Strategy::Scan(ScanMode::Redo),
            "redo, first RUN",
            false,
        ),
        (
            "scan",
            Strategy::Scan(ScanMode::Redo),
            "redo, next RUN",
            true,
        ),
        (
            "scan",
            Strategy::Scan(ScanMode::Time),
            "time, next RUN",
            true,
        ),
        (
            "scan",
            Strategy::Scan(ScanMode::Full),
            "full, next RUN",
            true,
        ),
    ];
    for (index, (name, strategy, mode, warm)) in cases.into_iter().enumerate() {
        let mut changed = 0;
        let total = best(|| {
            let mut snapshotter =
                Snapshotter::new(strategy, &[], true, tmp.path().join(format!("s{index}")));
            if warm {
                // The previous RUN's walk is this one's baseline (consecutive RUNs).
                snapshotter.run(&root, &spec, &[]).unwrap();
            }
            let started = Instant::now();
            let changes = snapshotter.run(&root, &spec, &[]).unwrap();
            let took = started.elapsed();
            changed = changes.changed().count();
            took
        });
        let snapshot = total.saturating_sub(bare);
        println!(
            "| {name} | {mode} | {:.3} | {:.3} | {:.0} | {changed} |",
            total.as_secs_f64(),
            snapshot.as_secs_f64(),
            files as f64 / snapshot.as_secs_f64().max(1e-6),
        );
    }
}

/// The fastest of a few runs: the least disturbed by the other jobs on the machine.
fn best(mut measure: impl FnMut() -> Duration) -> Duration {
    (0..REPEATS).map(|_| measure()).min().unwrap()
}

/// `sh -c 'echo … > f; …'` over `TOUCHED` files spread across the tree.
fn touch_spec(files: usize) -> RunSpec {
    let script: Vec<String> = (0..TOUCHED)
        .map(|i| {
            let n = i * (files / TOUCHED);
            format!("echo $$ >> /data/d{:04}/f{n}", n / 100)
        })
        .collect();
    RunSpec {
        argv: vec!["sh".into(), "-c".into(), script.join(" && ")],
        env: vec![("PATH".into(), "/bin".into())],
        workdir: "/".into(),
        user: String::new(),
        ..RunSpec::default()
    }
}

fn populate(root: &Path, files: usize) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox is missing: apt-get install busybox-static");
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let content = vec![b'k'; 1024];
    (0..files.div_ceil(100)).into_par_iter().for_each(|d| {
        let dir = root.join(format!("data/d{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for n in d * 100..((d + 1) * 100).min(files) {
            std::fs::write(dir.join(format!("f{n}")), &content).unwrap();
        }
    });
}
