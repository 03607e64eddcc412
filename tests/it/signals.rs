//! Process hygiene of RUN: background children cannot hold a build, orphans are reaped by the
//! sandbox's init, and SIGINT/SIGTERM stop a running build leaving no process, no mount and no
//! pushed image behind.

use std::path::Path;
use std::time::Duration;

use crate::support::tools::{exists, unpack};
use crate::support::{Kiln, Project, Registry};

#[test]
fn background_children_do_not_hold_the_build_and_orphans_are_reaped() {
    let (registry, base) = Registry::with_busybox();
    // The second RUN execs a program that never reaps (sleep) after leaving two orphans: without
    // an init reaping them they stay zombies for the reporter to count.
    let project = Project::new().dockerfile(
        r#"ARG BASE
FROM ${BASE}
RUN sleep 1000 & echo started > /started
RUN ["/bin/sh", "-c", "(sleep 0 &); (sleep 0 &); (sleep 0.7; cat /proc/[0-9]*/stat | awk '$3 == \"Z\"' | wc -l > /zombies) & exec sleep 1.5"]
"#,
    );
    let destination = registry.image("background:1");
    let started = std::time::Instant::now();
    Kiln::build(project.path())
        .args(["--build-arg", &format!("BASE={base}")])
        .push_to(&destination)
        .spawn()
        .wait_within(Duration::from_secs(120))
        .success();
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the background sleep held the build"
    );
    let root = unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(
        std::fs::read_to_string(root.join("started")).unwrap(),
        "started\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("zombies"))
            .unwrap()
            .trim(),
        "0",
        "orphans were left as zombies"
    );
}

/// Processes whose command line is `sleep <seconds>`.
fn sleeping(seconds: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == seconds.as_bytes() {
            found.push(pid);
        }
    }
    found
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(&*dir.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

fn a_signal_stops_the_run_and_leaves_nothing_behind(signal: rustix::process::Signal, code: i32) {
    let (registry, base) = Registry::with_busybox();
    let (background, foreground) = match code {
        130 => ("7301", "7302"),
        _ => ("7311", "7312"),
    };
    let project = Project::new().dockerfile(&format!(
        "ARG BASE\nFROM ${{BASE}}\n\
         RUN --mount=type=cache,target=/cache --mount=type=tmpfs,target=/scratch \
         sleep {background} & sleep {foreground}\n\
         RUN touch /never\n"
    ));
    let cache_dir = tempfile::tempdir().unwrap();
    let destination = registry.image(&format!("interrupted-{code}:1"));
    let kiln = Kiln::build_in(project.path(), cache_dir.path())
        .args(["--build-arg", &format!("BASE={base}")])
        .push_to(&destination)
        .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while sleeping(background).is_empty() || sleeping(foreground).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started:\n{}",
            kiln.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rustix::process::Pid::from_raw(i32::try_from(kiln.pid()).unwrap()).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
    let outcome = kiln.wait_within(Duration::from_secs(30));
    assert_eq!(
        outcome.status_code(),
        Some(code),
        "kiln should exit {code}:\n{}",
        outcome.stderr()
    );
    let log = outcome.stderr();
    assert!(log.contains("interrupted"), "{log}");
    assert!(
        !log.contains("RUN touch /never"),
        "a later step ran:\n{log}"
    );
    assert_eq!(
        sleeping(background),
        Vec::<u32>::new(),
        "background process left"
    );
    assert_eq!(
        sleeping(foreground),
        Vec::<u32>::new(),
        "command left running"
    );
    assert_eq!(mounts_under(cache_dir.path()), Vec::<String>::new());
    assert!(!exists(&destination), "an interrupted build pushed");
}

#[test]
fn sigterm_stops_a_running_run_and_leaves_nothing_behind() {
    a_signal_stops_the_run_and_leaves_nothing_behind(rustix::process::Signal::TERM, 143);
}

#[test]
fn sigint_stops_a_running_run_and_leaves_nothing_behind() {
    a_signal_stops_the_run_and_leaves_nothing_behind(rustix::process::Signal::INT, 130);
}
