//! The Dockerfile corpus: each directory under `tests/corpus/` is one case (a `Dockerfile`, an
//! optional `context/` directory and an optional `args` file with one extra `kiln plan` argument
//! per line). Every case is planned with `kiln plan --format json` and the result, or the error
//! kiln prints, is compared with the `plan.snap` snapshot beside it.
//!
//! Review a changed plan with `cargo insta review` (or rerun with `INSTA_UPDATE=always` and read
//! the diff of the `.snap` files): a snapshot is only as good as the reading it got.

use std::path::{Path, PathBuf};

use crate::support::Kiln;

/// Where the cases live.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

/// The case directories, sorted so failures are reported in a stable order.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

/// Extra arguments of a case; every case is planned for linux/amd64 unless it names a platform,
/// so the snapshots do not depend on the machine running the tests.
fn case_args(case: &Path) -> Vec<String> {
    let mut args: Vec<String> = match std::fs::read_to_string(case.join("args")) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    };
    if !args.iter().any(|arg| arg == "--custom-platform") {
        args.extend(["--custom-platform".to_owned(), "linux/amd64".to_owned()]);
    }
    args
}

/// Plans one case and renders what a reader of the snapshot needs: the plan, or the error.
fn plan(case: &Path) -> String {
    let empty = tempfile::tempdir().unwrap();
    let context = case.join("context");
    let context = if context.is_dir() {
        context
    } else {
        empty.path().to_owned()
    };
    let outcome = Kiln::plan(&context)
        .arg_path("--dockerfile", &case.join("Dockerfile"))
        .args(["--format", "json"])
        .args(case_args(case))
        .run();
    let rendered = match outcome.status_code() {
        Some(0) => outcome.stdout(),
        code => format!("exit status {code:?}\n{}", outcome.stderr()),
    };
    let case_path = case.display().to_string();
    rendered
        .replace(&case_path, "[case]")
        .replace(&empty.path().display().to_string(), "[empty context]")
}

#[test]
fn corpus_has_at_least_eighty_cases() {
    let count = cases().len();
    assert!(count >= 80, "only {count} corpus cases");
}

#[test]
fn every_corpus_case_plans_as_its_snapshot_says() {
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&case);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_input_file(case.join("Dockerfile"));
        settings.set_description(format!("kiln plan of tests/corpus/{name}"));
        settings.bind(|| insta::assert_snapshot!("plan", plan(&case)));
    }
}
