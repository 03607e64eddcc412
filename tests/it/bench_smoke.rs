//! The benchmark harness's smoke run: tiny corpora, one run, kiln and Buildah against a real
//! registry. Benchmarks never decide pass/fail; this only keeps the harness from rotting.

use std::path::Path;
use std::process::Command;

use crate::support::tools::{require, run};

const SCENARIOS: &[(&str, &[&str])] = &[
    ("S1", &["cold", "warm", "change"]),
    ("S2", &["cold", "warm", "change"]),
    ("S3", &["cold", "warm", "change"]),
    ("S4", &["cold", "warm", "change"]),
    ("S5", &["cold", "warm"]),
];

#[test]
fn the_benchmark_smoke_run_reports_every_scenario_for_kiln_and_buildah() {
    for (program, package) in [
        ("python3", "python3"),
        ("buildah", "buildah"),
        ("b3sum", "b3sum"),
        ("zstd", "zstd"),
        ("curl", "curl"),
        ("time", "time"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
    ] {
        require(program, package);
    }
    let work = tempfile::tempdir().unwrap();
    let results = work.path().join("results.md");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/run");
    let output = run(Command::new("python3")
        .arg(harness)
        .arg("--smoke")
        .args(["--kiln", env!("CARGO_BIN_EXE_kiln")])
        .arg("--work")
        .arg(work.path())
        .arg("--out")
        .arg(&results)
        // Per-run arguments with placeholders, appended to kiln's own (the layer cache).
        .arg("--kiln-arg=--label=bench.run={scenario}-r{rep}")
        .env_remove("KANIKO_EXECUTOR"));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = std::fs::read_to_string(&results).unwrap();
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.with_extension("json")).unwrap())
            .unwrap();
    let samples = raw["cells"].as_array().unwrap();
    assert_eq!(
        stdout.trim(),
        report.trim(),
        "stdout and the results file differ"
    );
    assert!(
        report.contains(
            "| scenario | variant | kiln s | buildah s | kiln/buildah | limit s | kiln/limit |"
        ),
        "no comparison table:\n{report}"
    );
    for (scenario, variants) in SCENARIOS {
        for variant in *variants {
            let row = report
                .lines()
                .find(|line| line.starts_with(&format!("| {scenario} | {variant} |")))
                .unwrap_or_else(|| panic!("no row for {scenario} {variant}:\n{report}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            for (column, cell) in [("kiln", cells[3]), ("buildah", cells[4])] {
                assert!(
                    cell.parse::<f64>().is_ok_and(|seconds| seconds > 0.0),
                    "{scenario} {variant}: {column} has no time: {row}"
                );
            }
            let rss = cells[cells.len() - 3];
            assert!(
                rss.split(" / ")
                    .all(|mib| mib.parse::<f64>().is_ok_and(|mib| mib > 0.0)),
                "{scenario} {variant}: no peak RSS: {row}"
            );
            if *variant == "cold" {
                // A cold push uploads at least the new layers: the counting proxy saw them. The
                // report rounds to 0.1 MB, so read the raw byte counts beside it.
                let uploaded = samples
                    .iter()
                    .find(|cell| {
                        cell["scenario"] == *scenario
                            && cell["variant"] == "cold"
                            && cell["builder"] == "kiln"
                    })
                    .and_then(|cell| cell["samples"][0]["uploaded"].as_u64())
                    .unwrap_or(0);
                assert!(uploaded > 0, "{scenario}: no upload counted: {row}");
            }
        }
        assert!(
            report
                .lines()
                .any(|line| line.starts_with(&format!("| {scenario} | ")) && line.contains("MB/s")),
            "no physical limits for {scenario}:\n{report}"
        );
    }
    assert!(
        report.contains("KANIKO_EXECUTOR is not set"),
        "the skipped Kaniko column is not explained:\n{report}"
    );
    let logs: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|entry| entry.unwrap().path().join("logs/S3/kiln-r1.log"))
        .filter(|log| log.exists())
        .collect();
    assert_eq!(logs.len(), 1, "no single kiln log for S3 in {logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(
        log.contains("--label=bench.run=s3-r1"),
        "--kiln-arg was not substituted and passed to kiln"
    );
    assert!(
        log.contains("--cache=true") && log.contains("/kiln-cache/s3-r1"),
        "kiln did not run with its layer cache and a per-repetition cache repository:\n{log}"
    );
}

/// The third column: an executor run the way a Kaniko pod runs it (a chroot holding only the
/// executor and CA certificates, `--force`). There is no Kaniko binary here, so kiln's own
/// binary stands in for `/kaniko/executor`, as in kiln's executor image; the harness copies a
/// dynamically linked executor's libraries into the pod.
#[test]
fn the_kaniko_column_runs_an_executor_in_a_chroot_pod_with_kilns_binary_standing_in() {
    for (program, package) in [
        ("python3", "python3"),
        ("buildah", "buildah"),
        ("ldd", "libc-bin"),
    ] {
        require(program, package);
    }
    let work = tempfile::tempdir().unwrap();
    let results = work.path().join("results.md");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/run");
    run(Command::new("python3")
        .arg(harness)
        .args(["--smoke", "--scenarios", "S1"])
        .args(["--kiln", env!("CARGO_BIN_EXE_kiln")])
        .arg("--work")
        .arg(work.path())
        .arg("--out")
        .arg(&results)
        .env("KANIKO_EXECUTOR", env!("CARGO_BIN_EXE_kiln")));
    let report = std::fs::read_to_string(&results).unwrap();
    assert!(
        report.contains("| kiln s | buildah s | kaniko s |"),
        "no Kaniko column:\n{report}"
    );
    for variant in ["cold", "warm", "change"] {
        let row = report
            .lines()
            .find(|line| line.starts_with(&format!("| S1 | {variant} |")))
            .unwrap_or_else(|| panic!("no row for S1 {variant}:\n{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert!(
            cells[5].parse::<f64>().is_ok_and(|seconds| seconds > 0.0),
            "S1 {variant}: the executor has no time: {row}"
        );
    }
}
