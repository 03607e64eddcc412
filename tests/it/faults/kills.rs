//! SIGTERM and SIGKILL at random points of short cached builds sharing one cache directory:
//! after every kill no mount and no process of the build is left, the cache directory is
//! consistent, and every few kills a next build succeeds, running only the steps the index does
//! not hold.
//!
//! The randomness is seeded (`KILN_KILLS_SEED` replays a run) and the seed is printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_cas::Verifier;
use rustix::process::{Pid, Signal};

use super::check::{
    cache_is_consistent, cached_steps, mounts_under, printed_digest, processes_marked, settled,
    tag_digest,
};
use crate::support::{Kiln, Outcome, Project, Registry};

/// In kiln's environment (so in its forked sandbox processes) and in the RUNs' (an ENV of the
/// Dockerfile), with the lane's number: any process carrying it after a build ended is a
/// leftover of that lane.
const MARKER: &str = "KILN_KILLS_TEST";

/// Steps recorded in the cache: the two COPYs and the two RUNs.
const CACHEABLE_STEPS: usize = 4;

/// The first COPY and RUN are cached after the first build that finishes them; the second RUN
/// and COPY depend on `N`, which changes with every kill, so each build has work to interrupt.
const DOCKERFILE: &str = "ARG BASE\nFROM ${BASE}\nARG LANE\nENV KILN_KILLS_TEST=${LANE}\nCOPY a.txt /a.txt\nRUN echo one > /one && sleep 0.1\nARG N\nRUN echo \"$N\" > /n && sleep 0.2 && echo $((40+2))ran\nCOPY b.txt /b.txt\n";

/// Lanes of kills at once, each with its own cache directory and marker: the machine mostly
/// waits (process start-up, the registry, index sessions), so two lanes take little longer
/// than one.
const LANES: u64 = 2;
const KILLS_PER_LANE: u64 = 25;
/// A next build after every this many kills of a lane.
const FOLLOW_UP_EVERY: u64 = 5;

/// xorshift64: reproducible from its seed, which is all a test needs.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// One lane: its cache directory, destination and marker.
struct Lane<'a> {
    number: u64,
    registry: &'a Registry,
    base: &'a str,
    project: &'a Project,
    cache_dir: tempfile::TempDir,
}

/// What a lane saw.
#[derive(Default)]
struct Report {
    terms: usize,
    finished_first: usize,
    follow_ups: usize,
    full: Duration,
    at: BTreeMap<String, usize>,
}

impl Lane<'_> {
    fn destination(&self) -> String {
        self.registry
            .image(&format!("killed-{}:latest", self.number))
    }

    fn kiln(&self, n: &str) -> Kiln {
        let lane = self.number.to_string();
        Kiln::build_in(self.project.path(), self.cache_dir.path())
            .args(["--cache", "--build-arg", &format!("BASE={}", self.base)])
            .args(["--build-arg", &format!("N={n}")])
            .args(["--build-arg", &format!("LANE={lane}")])
            .env(MARKER, &lane)
            .push_to(&self.destination())
    }

    fn build(&self, n: &str) -> Outcome {
        self.kiln(n).run()
    }

    fn run(&self, seed: u64) -> Report {
        let mut rng = Rng(seed ^ (self.number + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let marker = format!("{MARKER}={}", self.number);
        let mut report = Report::default();
        let mut verifier = Verifier::new();
        let mut records = 0;
        // The first build caches the stable prefix; the second, timed, is what every later
        // build is: the prefix cached, the rest to do.
        self.build("first").success();
        let timed = Instant::now();
        self.build("second").success();
        report.full = timed.elapsed();

        for kill in 0..KILLS_PER_LANE {
            let n = format!("kill-{kill}");
            let what = format!("lane {} kill {kill} (seed {seed})", self.number);
            let signal = if rng.below(2) == 0 {
                Signal::TERM
            } else {
                Signal::KILL
            };
            let delay =
                Duration::from_millis(rng.below(u64::try_from(report.full.as_millis()).unwrap()));
            let running = self.kiln(&n).spawn();
            std::thread::sleep(delay);
            *report.at.entry(doing(&running.log())).or_default() += 1;
            let pid = Pid::from_raw(i32::try_from(running.pid()).unwrap()).unwrap();
            // It may have finished already: then there is nothing to signal.
            let _ = rustix::process::kill_process(pid, signal);
            let outcome = running.wait_within(Duration::from_secs(60));
            match (signal, outcome.status_code()) {
                // Finished before the signal came, stopped by it, or killed before its
                // handler was installed.
                (_, Some(0) | None) => {}
                (Signal::TERM, Some(143)) => report.terms += 1,
                (_, code) => panic!(
                    "{what}: {signal:?} after {delay:?} ended kiln with {code:?}:\n{}",
                    outcome.stderr()
                ),
            }
            if outcome.succeeded() {
                report.finished_first += 1;
            }
            let processes = settled(Duration::from_secs(10), || processes_marked(&marker));
            assert!(
                processes.is_empty(),
                "{what}: {signal:?} after {delay:?} left processes: {processes:?}\n{}",
                outcome.stderr()
            );
            let mounts = settled(Duration::from_secs(10), || {
                mounts_under(self.cache_dir.path())
            });
            assert!(
                mounts.is_empty(),
                "{what}: {signal:?} after {delay:?} left mounts: {mounts:?}"
            );
            let after_kill = cache_is_consistent(self.cache_dir.path(), &mut verifier, &what);
            assert!(after_kill.steps >= records, "{what}: records lost");
            records = after_kill.steps;

            if kill % FOLLOW_UP_EVERY == FOLLOW_UP_EVERY - 1 {
                report.follow_ups += 1;
                let next = self.build(&n);
                let log = next.everything_printed();
                let stdout = next.success();
                let after = cache_is_consistent(self.cache_dir.path(), &mut verifier, &what);
                records = after.steps;
                // Every step it ran was one the index did not hold: what was complete was
                // reused.
                let ran = CACHEABLE_STEPS - cached_steps(&log);
                assert_eq!(
                    ran,
                    after.steps - after_kill.steps,
                    "{what}: the next build ran {ran} steps but recorded {} new ones:\n{log}",
                    after.steps - after_kill.steps
                );
                assert_eq!(
                    tag_digest(&self.destination()),
                    Some(printed_digest(&stdout)),
                    "{what}"
                );
            }
        }
        report
    }
}

/// What kiln was doing when the signal came: the start of its last log line, without the
/// level.
fn doing(log: &str) -> String {
    let line = log.lines().last().unwrap_or("(nothing logged)");
    let message = line.split_once(" INFO ").map_or(line, |(_, m)| m);
    message
        .split_whitespace()
        .take(2)
        .filter(|word| !word.contains(':'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn sigterm_and_sigkill_at_random_points_leave_no_mount_process_or_bad_cache_entry() {
    let seed = std::env::var("KILN_KILLS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            ) | 1
        });
    eprintln!("kills: seed {seed} (KILN_KILLS_SEED={seed} replays this run)");
    let started = Instant::now();
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .dockerfile(DOCKERFILE)
        .file("a.txt", "a\n")
        .file("b.txt", "b\n");
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..LANES)
            .map(|number| {
                let lane = Lane {
                    number,
                    registry: &registry,
                    base: &base,
                    project: &project,
                    cache_dir: tempfile::tempdir().unwrap(),
                };
                scope.spawn(move || lane.run(seed))
            })
            .collect();
        lanes.into_iter().map(|lane| lane.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let kills = LANES * KILLS_PER_LANE;
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for report in &reports {
        for (doing, count) in &report.at {
            *at.entry(doing.clone()).or_default() += count;
        }
    }
    eprintln!(
        "kills: {kills} kills in {LANES} lanes ({} SIGTERMs answered with 143, {} builds finished before their signal), {} next builds, in {elapsed:.1?} ({:.2?} per kill; a build alone {:.2?}); kiln was last logging: {at:?}",
        reports.iter().map(|r| r.terms).sum::<usize>(),
        reports.iter().map(|r| r.finished_first).sum::<usize>(),
        reports.iter().map(|r| r.follow_ups).sum::<usize>(),
        elapsed / u32::try_from(kills).unwrap(),
        reports.iter().map(|r| r.full).max().unwrap_or_default(),
    );
}
