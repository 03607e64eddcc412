//! `.dockerignore` text from the build context (chosen by whoever wrote the repository): parsing
//! must fail cleanly or yield a matcher, and matching any path must neither panic nor blow up
//! (Go's `filepath.Match` semantics are backtracking; a pattern must not make it exponential).
//! The input is split at the first NUL: ignore file before it, paths (one a line) after.
#![no_main]

use kiln_exec::dockerignore::Dockerignore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = text
        .split_once('\0')
        .unwrap_or((text, "a/b/c\nDockerfile\n.git"));
    let Ok(ignore) = Dockerignore::parse(patterns) else {
        return;
    };
    let _ = ignore.is_empty();
    let _ = ignore.has_exceptions();
    for path in paths.lines() {
        let _ = ignore.is_excluded(path);
    }
});
