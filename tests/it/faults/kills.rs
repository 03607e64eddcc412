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
/// Dockerfile): any process carrying it after a build ended is a leftover.
const MARKER: &str = "KILN_KILLS_TEST=1";

/// Steps recorded in the cache: the two COPYs and the two RUNs.
const CACHEABLE_STEPS: usize = 4;

/// The first COPY and RUN are cached after the first build that finishes them; the second RUN
/// and COPY depend on `N`, which changes with every kill, so each build has work to interrupt.
const DOCKERFILE: &str = "ARG BASE\nFROM ${BASE}\nENV KILN_KILLS_TEST=1\nCOPY a.txt /a.txt\nRUN echo one > /one && sleep 0.2\nARG N\nRUN echo \"$N\" > /n && sleep 0.3 && echo $((40+2))ran\nCOPY b.txt /b.txt\n";

const KILLS: u64 = 50;
/// A next build after every this many kills.
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

struct World {
    registry: Registry,
    base: String,
    project: Project,
    cache_dir: tempfile::TempDir,
}

impl World {
    fn kiln(&self, n: &str) -> Kiln {
        Kiln::build_in(self.project.path(), self.cache_dir.path())
            .args(["--cache", "--build-arg", &format!("BASE={}", self.base)])
            .args(["--build-arg", &format!("N={n}")])
            .env("KILN_KILLS_TEST", "1")
            .push_to(&self.registry.image("killed:latest"))
    }

    fn build(&self, n: &str) -> Outcome {
        self.kiln(n).run()
    }
}

/// What kiln was doing when the signal came: the start of its last log line, without the
/// timestamp and level.
fn doing(log: &str) -> String {
    let line = log.lines().last().unwrap_or("(nothing logged)");
    let message = line.split_once(" INFO ").map_or(line, |(_, m)| m);
    message
        .split_whitespace()
        .take(2)
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
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (registry, base) = Registry::with_busybox();
    let world = World {
        registry,
        base,
        project: Project::new()
            .dockerfile(DOCKERFILE)
            .file("a.txt", "a\n")
            .file("b.txt", "b\n"),
        cache_dir: tempfile::tempdir().unwrap(),
    };
    let mut verifier = Verifier::new();
    // The first build caches the stable prefix; the second, timed, is what every later build
    // is: the prefix cached, the rest to do.
    world.build("first").success();
    let timed = Instant::now();
    world.build("second").success();
    let full = timed.elapsed();

    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    let (mut terms, mut finished_first, mut follow_ups) = (0, 0, 0);
    for kill in 0..KILLS {
        let n = format!("kill-{kill}");
        let what = format!("kill {kill} (seed {seed})");
        let signal = if rng.below(2) == 0 {
            Signal::TERM
        } else {
            Signal::KILL
        };
        let delay = Duration::from_millis(rng.below(u64::try_from(full.as_millis()).unwrap()));
        let records_before = cache_is_consistent(world.cache_dir.path(), &mut verifier, &what);
        let running = world.kiln(&n).spawn();
        std::thread::sleep(delay);
        *at.entry(doing(&running.log())).or_default() += 1;
        let pid = Pid::from_raw(i32::try_from(running.pid()).unwrap()).unwrap();
        // It may have finished already: then there is nothing to signal.
        let _ = rustix::process::kill_process(pid, signal);
        let outcome = running.wait_within(Duration::from_secs(60));
        match (signal, outcome.status_code()) {
            // Finished before the signal came, stopped by it, or killed before its handler
            // was installed.
            (_, Some(0) | None) => {}
            (Signal::TERM, Some(143)) => terms += 1,
            (_, code) => panic!(
                "{what}: {signal:?} after {delay:?} ended kiln with {code:?}:\n{}",
                outcome.stderr()
            ),
        }
        if outcome.succeeded() {
            finished_first += 1;
        }
        let processes = settled(Duration::from_secs(10), || processes_marked(MARKER));
        assert!(
            processes.is_empty(),
            "{what}: {signal:?} after {delay:?} left processes: {processes:?}\n{}",
            outcome.stderr()
        );
        let mounts = settled(Duration::from_secs(10), || {
            mounts_under(world.cache_dir.path())
        });
        assert!(
            mounts.is_empty(),
            "{what}: {signal:?} after {delay:?} left mounts: {mounts:?}"
        );
        let after_kill = cache_is_consistent(world.cache_dir.path(), &mut verifier, &what);
        assert!(after_kill.steps >= records_before.steps, "{what}: records lost");

        if kill % FOLLOW_UP_EVERY == FOLLOW_UP_EVERY - 1 {
            follow_ups += 1;
            let next = world.build(&n);
            let log = next.everything_printed();
            let stdout = next.success();
            let after = cache_is_consistent(world.cache_dir.path(), &mut verifier, &what);
            // Every step it ran was one the index did not hold: what was complete was reused.
            let ran = CACHEABLE_STEPS - cached_steps(&log);
            assert_eq!(
                ran,
                after.steps - after_kill.steps,
                "{what}: the next build ran {ran} steps but recorded {} new ones:\n{log}",
                after.steps - after_kill.steps
            );
            assert_eq!(
                tag_digest(&world.registry.image("killed:latest")),
                Some(printed_digest(&stdout)),
                "{what}"
            );
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "kills: {KILLS} kills ({terms} SIGTERMs answered with 143, {finished_first} builds finished before their signal), {follow_ups} next builds, in {elapsed:.1?} ({:.2?} per kill; a build alone {full:.2?}); kiln was last logging: {at:?}",
        elapsed / u32::try_from(KILLS).unwrap()
    );
}
