//! The store and index shared by processes, as builds share a cache directory: a writer killed
//! with SIGKILL at any point never leaves an index entry naming a missing or corrupt blob, and
//! sessions of concurrent processes serialize.
//!
//! The child processes are this test binary run again on one of its ignored tests (named by
//! [`child`]), with the directory to use in the environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_cas::{Index, LayerRecord, StepRecord, Store, Verifier};

const DIR: &str = "KILN_CAS_TEST_DIR";
const ID: &str = "KILN_CAS_TEST_CHILD";

/// This test binary, running only the ignored test `name` with `dir` and child number `id`.
fn child(name: &str, dir: &Path, id: u64) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR, dir)
        .env(ID, id.to_string())
        .stdin(Stdio::null());
    command
}

/// The directory and number a child was started with.
fn child_env() -> (PathBuf, u64) {
    let dir = std::env::var_os(DIR).expect("run by a parent test, which sets KILN_CAS_TEST_DIR");
    let id = std::env::var(ID)
        .expect("child number")
        .parse()
        .expect("child number");
    (PathBuf::from(dir), id)
}

/// A small xorshift generator: the tests need varied sizes and delays, not good randomness.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        Rng(u64::from(nanos) ^ (salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn key(child: u64, n: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&child.to_be_bytes());
    key[8..16].copy_from_slice(&n.to_be_bytes());
    key
}

/// What a build does, forever: write a blob of random size in chunks, then record a step
/// naming it and mark it used, in one write session.
#[test]
#[ignore = "a child process of a_writer_killed_at_random_points_never_leaves_an_entry_naming_a_bad_blob"]
fn child_writing_blobs_and_records_until_killed() {
    let (dir, id) = child_env();
    let store = Store::open(&dir.join("store")).expect("store");
    let index = Index::open(&dir.join("index")).expect("index");
    let mut rng = Rng::seeded(id);
    for n in 0.. {
        let mut writer = store.writer().expect("writer");
        let size = rng.below(256 * 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut written = 0;
        while written < size {
            let len = chunk
                .len()
                .min(usize::try_from(size - written).expect("size"));
            chunk[..len].fill(u8::try_from(rng.below(256)).expect("byte"));
            writer.write_all(&chunk[..len]).expect("write");
            written += len as u64;
        }
        let blob = writer.commit().expect("commit");
        let session = index.write().expect("write session");
        let record = StepRecord {
            layer: Some(LayerRecord {
                digest: blob.digest.clone(),
                size: blob.size,
                diff_id: blob.digest.to_string(),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }),
            recorded: kiln_cas::record::now(),
        };
        session.put_step(&key(id, n), &record).expect("put step");
        session
            .touch_blobs([&blob.digest], record.recorded)
            .expect("touch");
    }
}

#[test]
fn a_writer_killed_at_random_points_never_leaves_an_entry_naming_a_bad_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::seeded(0);
    let mut verifier = Verifier::new();
    let (mut records, mut blobs) = (0, 0);
    for iteration in 0..60 {
        let mut writer = child(
            "child_writing_blobs_and_records_until_killed",
            dir.path(),
            iteration,
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the writer");
        // From just after start-up to well into its writes.
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
        writer.kill().expect("SIGKILL");
        let status = writer.wait().expect("wait");
        assert!(
            status.code().is_none(),
            "the writer must die by the signal, not exit: {status}"
        );

        // The store and index reopen, every step record names a complete blob, and every
        // named blob holds the bytes its name says (each hashed once: blobs never change).
        let store = Store::open(&dir.path().join("store")).expect("the store reopens");
        let index = Index::open(&dir.path().join("index")).expect("the index reopens");
        let summary = verifier
            .check(&store, &index)
            .unwrap_or_else(|problem| panic!("iteration {iteration}: {problem}"));
        records = summary.steps;
        blobs = summary.blobs;
        // Blob-use entries too: the writer marks a blob used only once it is complete.
        let session = index.read().expect("the index opens after a kill");
        for (digest, _) in session.blobs().expect("blobs") {
            assert!(
                store.blob_path(&digest).is_file(),
                "iteration {iteration}: the index names {digest}, which is missing"
            );
        }
    }
    // The kills must have landed among the writes, or this test proves nothing.
    assert!(
        records >= 10,
        "only {records} steps were recorded in 60 runs"
    );
    assert!(blobs >= 10, "only {blobs} blobs were written");
    eprintln!("{records} step records and {blobs} blobs after 60 kills");
}

const SESSIONS_PER_CHILD: u64 = 20;
const CHILDREN: u64 = 6;
const COUNTER: [u8; 32] = [0xcc; 32];

/// A build's use of the index: a write session that increments a shared counter (read, then
/// write: lost updates would show if two sessions overlapped) and records a step, then a read
/// session that finds every step this process wrote. Prints how long each write session took
/// from open to close, in microseconds.
#[test]
#[ignore = "a child process of concurrent_processes_sessions_serialize_and_lose_no_write"]
fn child_sharing_the_index() {
    let (dir, id) = child_env();
    let index = Index::open(&dir).expect("index");
    let record = StepRecord {
        layer: None,
        recorded: kiln_cas::record::now(),
    };
    let mut out = std::io::stdout().lock();
    for n in 0..SESSIONS_PER_CHILD {
        let started = Instant::now();
        {
            let session = index.write().expect("write session");
            let count = session.alias(&COUNTER).expect("counter").unwrap_or([0; 32]);
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&count[..8]);
            let mut next = [0u8; 32];
            next[..8].copy_from_slice(&(u64::from_be_bytes(bytes) + 1).to_be_bytes());
            session.put_alias(&COUNTER, &next).expect("counter");
            session.put_step(&key(id, n), &record).expect("put step");
        }
        let micros = started.elapsed().as_micros();
        writeln!(out, "session-us {micros}").expect("stdout");
        let session = index.read().expect("read session");
        for earlier in 0..=n {
            assert!(
                session.step(&key(id, earlier)).expect("get").is_some(),
                "{id}/{earlier}"
            );
        }
    }
}

#[test]
fn concurrent_processes_sessions_serialize_and_lose_no_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let children: Vec<_> = (0..CHILDREN)
        .map(|id| {
            child("child_sharing_the_index", dir.path(), id)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut contended = Vec::new();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(output.status.success(), "a child failed: {}", output.status);
        contended.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                // The harness prints its own "test ... " before the first line.
                .filter_map(|line| line.split("session-us ").nth(1))
                .map(|micros| micros.parse::<u64>().expect("micros")),
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(contended.len() as u64, CHILDREN * SESSIONS_PER_CHILD);

    let index = Index::open(dir.path()).expect("index");
    let session = index.read().expect("read");
    let count = session
        .alias(&COUNTER)
        .expect("counter")
        .expect("a counter");
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&count[..8]);
    assert_eq!(
        u64::from_be_bytes(bytes),
        CHILDREN * SESSIONS_PER_CHILD,
        "lost updates"
    );
    assert_eq!(
        session.steps().expect("steps").len() as u64,
        CHILDREN * SESSIONS_PER_CHILD
    );
    drop(session);

    // One process alone: open, write, close.
    let mut alone = Vec::new();
    for n in 0..50 {
        let started = Instant::now();
        index
            .write()
            .expect("write")
            .put_step(
                &key(99, n),
                &StepRecord {
                    layer: None,
                    recorded: 0,
                },
            )
            .expect("put");
        alone.push(started.elapsed().as_micros() as u64);
    }
    let median = |mut values: Vec<u64>| {
        values.sort_unstable();
        values[values.len() / 2]
    };
    eprintln!(
        "{CHILDREN} processes x {SESSIONS_PER_CHILD} write sessions in {elapsed:?}; write session open+write+close: median {} us alone, median {} us (max {} us) under contention",
        median(alone),
        median(contended.clone()),
        contended.iter().max().copied().unwrap_or(0),
    );
}
