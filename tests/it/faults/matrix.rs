//! The fault matrix: the fault-injecting proxy between kiln and a real registry, every kind of
//! fault in every network phase of a `--cache` build with a `--cache-repo`.
//!
//! A transient fault (once) must be survived: the build succeeds and its tag points at the
//! digest kiln printed. A persistent one must fail the build cleanly: exit status 1, an error
//! naming the registry, and the destination tag still on the image it held before. Either way
//! the local cache stays consistent; after a failure in each phase, a next build without faults
//! succeeds and runs only what the failed build did not finish.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_cas::Verifier;

use super::check::{cache_is_consistent, printed_digest, tag_digest};
use crate::support::base::sha256;
use crate::support::proxy::{Action, Proxy};
use crate::support::tools::raw_manifest;
use crate::support::{Kiln, Outcome, Project, Registry};

/// Where in a build the fault strikes: the first request matching (method, path fragment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the cache records of the stage from `--cache-repo`.
    CacheLookup,
    /// Downloading the base image's blobs.
    BasePull,
    /// Uploading a blob (the new config) to the destination.
    BlobPush,
    /// Putting the manifest on the destination tag.
    ManifestPush,
    /// Putting the new cache records on the scope's tag.
    CachePublish,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::CacheLookup,
        Phase::BasePull,
        Phase::BlobPush,
        Phase::ManifestPush,
        Phase::CachePublish,
    ];

    fn request(self) -> (&'static str, &'static str) {
        match self {
            Phase::CacheLookup => ("GET", "/v2/cache/manifests/"),
            Phase::BasePull => ("GET", "/v2/busybox/blobs/"),
            Phase::BlobPush => ("PUT", "/v2/app/blobs/uploads/"),
            Phase::ManifestPush => ("PUT", "/v2/app/manifests/"),
            Phase::CachePublish => ("PUT", "/v2/cache/manifests/"),
        }
    }

    /// Whether the fault strikes a download (its response body can be cut or damaged) rather
    /// than an upload (its request body can).
    fn downloads(self) -> bool {
        self.request().0 == "GET"
    }

    /// Whether the RUN has finished (and been recorded) before this phase.
    fn after_the_run(self) -> bool {
        matches!(
            self,
            Phase::BlobPush | Phase::ManifestPush | Phase::CachePublish
        )
    }
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The connection is reset (RST) before any answer.
    Reset,
    /// 503 Service Unavailable once, 500 Internal Server Error for good.
    ServerError,
    /// 429 Too Many Requests with `Retry-After: 1`.
    Throttled,
    /// A body (or, for uploads, the answer) held back 1 s mid-transfer.
    Stalled,
    /// The body is cut in the middle and the connection closed.
    Truncated,
    /// One bit of the content flipped in flight: its digest is wrong.
    WrongDigest,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Reset,
        Kind::ServerError,
        Kind::Throttled,
        Kind::Stalled,
        Kind::Truncated,
        Kind::WrongDigest,
    ];

    fn action(self, phase: Phase, persistent: bool) -> Action {
        let stall = Duration::from_secs(1);
        match (self, phase.downloads()) {
            (Kind::Reset, _) => Action::Reset,
            (Kind::ServerError, _) => Action::Status(if persistent { 500 } else { 503 }),
            (Kind::Throttled, _) => Action::Respond(
                429,
                vec![("Retry-After".to_owned(), "1".to_owned())],
                String::new(),
            ),
            (Kind::Stalled, true) => Action::StallBody(stall),
            (Kind::Stalled, false) => Action::Stall(stall),
            (Kind::Truncated, true) => Action::CutBody,
            (Kind::Truncated, false) => Action::CutRequestBody,
            (Kind::WrongDigest, true) => Action::FlipByte,
            (Kind::WrongDigest, false) => Action::FlipRequestByte,
        }
    }

    /// What the error must say besides the registry, when the fault persists.
    fn named_in_error(self) -> Option<&'static str> {
        match self {
            Kind::ServerError => Some("HTTP 500"),
            Kind::Throttled => Some("HTTP 429"),
            _ => None,
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy)]
struct Cell {
    phase: Phase,
    kind: Kind,
    /// The fault strikes every matching request (with one retry allowed) instead of once.
    persistent: bool,
}

impl Cell {
    fn name(&self) -> String {
        format!(
            "{:?}-{:?}-{}",
            self.phase,
            self.kind,
            if self.persistent { "always" } else { "once" }
        )
        .to_lowercase()
    }

    /// Whether a next build follows the failed one: what it may reuse depends on the phase
    /// the build failed in, not on how, so one kind per phase is enough.
    fn next_build(&self) -> bool {
        !self.must_succeed() && self.kind == Kind::ServerError
    }

    /// Whether the build must succeed: every transient fault is survived, and a stall is
    /// slowness, not failure.
    fn must_succeed(&self) -> bool {
        !self.persistent || self.kind == Kind::Stalled
    }
}

/// Every kind in every phase once, then every kind but the stall in every phase for good.
fn cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for persistent in [false, true] {
        for phase in Phase::ALL {
            for kind in Kind::ALL {
                if persistent && kind == Kind::Stalled {
                    continue;
                }
                cells.push(Cell {
                    phase,
                    kind,
                    persistent,
                });
            }
        }
    }
    cells
}

/// The registry and what every cell shares: the base image, the build context, the cache
/// records an earlier build published, and the image each destination tag holds before.
struct World {
    registry: Registry,
    project: Project,
    /// The manifest every destination tag holds before its cell's build.
    old_manifest: Vec<u8>,
}

/// A COPY the seed build published to the cache (a remote hit for every cell, whose layer is
/// pulled from the cache repository), and a RUN that differs per cell (built and published).
const DOCKERFILE: &str = "ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nARG CELL\nRUN echo \"$CELL\" > /cell && echo $((40+2))ran\n";

impl World {
    fn new() -> World {
        let (registry, _) = Registry::with_busybox();
        let project = Project::new()
            .dockerfile(DOCKERFILE)
            .file("app/a.txt", "a\n");
        let mut world = World {
            registry,
            project,
            old_manifest: Vec::new(),
        };
        // An earlier build: its records are in the cache repository, and its image is what
        // each cell's destination tag holds before the cell's build.
        world
            .build(
                world.registry.addr(),
                &tempfile::tempdir().unwrap(),
                "seed",
                None,
            )
            .success();
        world.old_manifest = raw_manifest(&world.registry.image("app:seed"));
        world
    }

    /// `kiln build --cache` of the cell's Dockerfile through `registry` (the proxy, or the
    /// registry itself) into `app:<tag>`, with `retries` for both directions if given.
    fn build(
        &self,
        registry: &str,
        cache_dir: &tempfile::TempDir,
        tag: &str,
        retries: Option<u32>,
    ) -> Outcome {
        let mut kiln = Kiln::build_in(self.project.path(), cache_dir.path())
            .args(["--cache", "--cache-repo", &format!("{registry}/cache")])
            .args(["--build-arg", &format!("BASE={registry}/busybox:latest")])
            .args(["--build-arg", &format!("CELL={tag}"), "--log-timestamp"]);
        if let Some(retries) = retries {
            let retries = retries.to_string();
            kiln = kiln.args(["--push-retry", &retries, "--image-download-retry", &retries]);
        }
        kiln.push_to(&format!("{registry}/app:{tag}")).run()
    }

    /// Points `app:<tag>` at the old image, straight on the registry. Done for every cell
    /// before any runs: distribution's filesystem driver rewrites a manifest's link file in
    /// place, so putting the same manifest again while another cell reads it can answer 500.
    fn reset_tag(&self, tag: &str) {
        put_manifest(self.registry.addr(), "app", tag, &self.old_manifest);
    }

    /// Runs one cell; returns what went wrong, if anything.
    fn cell(&self, cell: Cell) -> Result<(), String> {
        let tag = cell.name();
        let old = sha256(&self.old_manifest);
        let destination = self.registry.image(&format!("app:{tag}"));
        let proxy = Proxy::start(self.registry.addr());
        let (method, fragment) = cell.phase.request();
        let times = if cell.persistent { 1000 } else { 1 };
        proxy.fail(
            method,
            fragment,
            times,
            cell.kind.action(cell.phase, cell.persistent),
        );
        let cache_dir = tempfile::tempdir().unwrap();
        let mut verifier = Verifier::new();
        let retries = cell.persistent.then_some(1);

        let outcome = self.build(proxy.addr(), &cache_dir, &tag, retries);
        let log = outcome.everything_printed();
        if std::env::var_os("KILN_FAULT_CELLS").is_some() {
            eprintln!("{tag}:\n{log}");
        }
        let struck = proxy.count(method, fragment);
        if struck == 0 {
            return Err(format!(
                "no {method} {fragment} request: the fault never struck\n{log}"
            ));
        }
        if cell.must_succeed() {
            if !outcome.succeeded() {
                return Err(format!("the build failed:\n{log}"));
            }
            let printed = printed_digest(&outcome.stdout());
            let now = tag_digest(&destination);
            if now.as_deref() != Some(printed.as_str()) {
                return Err(format!(
                    "the tag is on {now:?}, not on the digest kiln printed, {printed}"
                ));
            }
        } else {
            if outcome.succeeded() || outcome.status_code() != Some(1) {
                return Err(format!(
                    "expected a clean failure (exit 1), got {:?}:\n{log}",
                    outcome.status_code()
                ));
            }
            let stderr = outcome.stderr();
            // The error line: the last one, before the `hint:` that may follow it.
            let error = stderr
                .lines()
                .rev()
                .find(|line| !line.trim_start().starts_with("hint:"))
                .unwrap_or_default();
            if stderr.contains("panicked") || !error.contains(proxy.addr()) {
                return Err(format!("the error does not name the registry:\n{stderr}"));
            }
            if let Some(status) = cell.kind.named_in_error()
                && !error.contains(status)
            {
                return Err(format!("the error does not name HTTP {status}:\n{stderr}"));
            }
            let now = tag_digest(&destination);
            if now.as_deref() != Some(old.as_str()) {
                return Err(format!(
                    "a failed build moved the tag from {old} to {now:?}:\n{stderr}"
                ));
            }
        }
        cache_is_consistent(cache_dir.path(), &mut verifier, &tag);
        if !cell.next_build() {
            return Ok(());
        }

        // The next build, without faults, reuses what the failed one finished.
        proxy.heal();
        let ran_before = log.contains("42ran");
        let next = self.build(proxy.addr(), &cache_dir, &tag, None);
        let next_log = next.everything_printed();
        if std::env::var_os("KILN_FAULT_CELLS").is_some() {
            eprintln!("{tag}, next build:\n{next_log}");
        }
        if !next.succeeded() {
            return Err(format!("the next build failed:\n{next_log}"));
        }
        let printed = printed_digest(&next.stdout());
        if tag_digest(&destination).as_deref() != Some(printed.as_str()) {
            return Err(format!("the next build's tag is not on {printed}"));
        }
        if next_log.contains("42ran") == ran_before {
            return Err(format!(
                "the RUN {} in the faulted build but {} in the next:\n{log}\n---\n{next_log}",
                if ran_before { "ran" } else { "did not run" },
                if ran_before {
                    "ran again"
                } else {
                    "did not run either"
                },
            ));
        }
        if cell.phase.after_the_run() && !ran_before {
            return Err(format!("the RUN should have run before the fault:\n{log}"));
        }
        cache_is_consistent(cache_dir.path(), &mut verifier, &tag);
        Ok(())
    }
}

/// `PUT /v2/<repo>/manifests/<tag>` of `manifest` straight to the registry at `addr`.
fn put_manifest(addr: &str, repo: &str, tag: &str, manifest: &[u8]) {
    let media_type = serde_json::from_slice::<serde_json::Value>(manifest).unwrap()["mediaType"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        manifest.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(manifest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
}

/// Cells run at once: most of a cell's time is waiting (retry back-off, stalls, the registry).
const PARALLEL_CELLS: usize = 8;

#[test]
fn every_fault_in_every_phase_is_survived_or_fails_cleanly_leaving_the_tag_and_cache_sound() {
    let started = Instant::now();
    let world = World::new();
    // KILN_FAULT_CELLS=<part of a cell's name> runs only the matching cells (for debugging).
    let only = std::env::var("KILN_FAULT_CELLS").unwrap_or_default();
    let cells: Vec<Cell> = cells()
        .into_iter()
        .filter(|cell| cell.name().contains(&only))
        .collect();
    for cell in &cells {
        world.reset_tag(&cell.name());
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let timings = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_CELLS {
            scope.spawn(|| {
                while let Some(cell) = cells.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let cell_started = Instant::now();
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| world.cell(*cell)))
                        .unwrap_or_else(|panic| {
                            Err(panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_else(|| "panicked".to_owned()))
                        });
                    if let Err(problem) = result {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {problem}", cell.name()));
                    }
                    timings
                        .lock()
                        .unwrap()
                        .push((cell.name(), cell_started.elapsed()));
                }
            });
        }
    });
    let mut timings = timings.into_inner().unwrap();
    timings.sort_by_key(|(_, elapsed)| std::cmp::Reverse(*elapsed));
    let slowest: Vec<String> = timings
        .iter()
        .take(5)
        .map(|(name, elapsed)| format!("{name} {elapsed:.1?}"))
        .collect();
    eprintln!(
        "fault matrix: {} cells ({} phases x {} kinds once, and but the stall for good) in {:.1?}; slowest: {}",
        cells.len(),
        Phase::ALL.len(),
        Kind::ALL.len(),
        started.elapsed(),
        slowest.join(", "),
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n\n")
    );
}
