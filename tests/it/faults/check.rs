//! What every fault, kill and concurrency test checks after a build: the cache directory is
//! consistent, no mount or process of the build is left, and a tag points where it should.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_cas::verify::Summary;
use kiln_cas::{Index, Store, Verifier};

use crate::support::base::sha256;
use crate::support::tools::skopeo;

/// Checks the cache directory `cache_dir` with `verifier` (which remembers the blobs it has
/// hashed): every step record names a whole layer, every blob holds the bytes its name says.
/// Fails the test naming `what` otherwise.
pub fn cache_is_consistent(cache_dir: &Path, verifier: &mut Verifier, what: &str) -> Summary {
    let store_dir = cache_dir.join("store");
    let index_dir = cache_dir.join("index");
    if !store_dir.exists() && !index_dir.exists() {
        // Killed before it opened the cache directory.
        return Summary::default();
    }
    let store = Store::open(&store_dir).unwrap_or_else(|err| panic!("{what}: the store: {err}"));
    let index = Index::open(&index_dir).unwrap_or_else(|err| panic!("{what}: the index: {err}"));
    verifier
        .check(&store, &index)
        .unwrap_or_else(|problem| panic!("{what}: inconsistent cache directory: {problem}"))
}

/// Lines of this process's mount table (the host's mount namespace) that mention `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(&dir))
        .map(str::to_owned)
        .collect()
}

/// Processes whose environment holds `marker` (`NAME=value`), with their command lines.
pub fn processes_marked(marker: &str) -> Vec<String> {
    let own = std::process::id().to_string();
    let needle = marker.as_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() || name == own {
            continue;
        }
        // Gone since the listing, or a kernel thread: nothing to read.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == needle) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Waits up to `limit` for `leftovers` to return nothing (the kernel kills a dead parent's
/// children asynchronously); returns what is still there then.
pub fn settled(limit: Duration, leftovers: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = leftovers();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The digest of the manifest `image` (`host:port/repo:tag`) points at, as skopeo reads it from
/// the registry; `None` if the tag does not exist. Any other failure fails the test.
pub fn tag_digest(image: &str) -> Option<String> {
    let output = skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    if output.status.success() {
        return Some(sha256(&output.stdout));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("manifest unknown"),
        "skopeo inspect {image}: {stderr}"
    );
    None
}

/// The image digest a successful kiln build printed (the last line of its standard output).
pub fn printed_digest(stdout: &str) -> String {
    let digest = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "kiln printed no digest: {stdout:?}"
    );
    digest
}

/// How many steps a build log says came from the cache.
pub fn cached_steps(log: &str) -> usize {
    log.lines().filter(|line| line.contains("CACHED ")).count()
}
