//! Running the `kiln` binary under test.

use std::path::Path;
use std::process::{Command, Output};

/// A `kiln` invocation being assembled.
pub struct Kiln {
    command: Command,
    cache: tempfile::TempDir,
}

/// What a kiln run did.
pub struct Outcome {
    output: Output,
}

impl Kiln {
    /// `kiln build` with a private cache directory and plain-HTTP registry flags (the test
    /// registries listen on loopback without TLS).
    pub fn build(context: &Path) -> Kiln {
        let cache = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .arg("build")
            .arg("--context")
            .arg(context)
            .arg("--cache-dir")
            .arg(cache.path())
            .env_remove("DOCKER_CONFIG")
            .env("HOME", cache.path());
        Kiln { command, cache }
    }

    /// `kiln plan` on `context`, with no registry flags: planning must not need one.
    pub fn plan(context: &Path) -> Kiln {
        let cache = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .arg("plan")
            .arg("--context")
            .arg(context)
            .env_remove("DOCKER_CONFIG")
            .env("HOME", cache.path());
        Kiln { command, cache }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Kiln
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Pushes to `destination` on a test registry (plain HTTP for pulls and pushes).
    pub fn push_to(self, destination: &str) -> Kiln {
        self.args([
            "--destination",
            destination,
            "--insecure",
            "--insecure-pull",
        ])
    }

    /// Adds a flag whose value is a path.
    pub fn arg_path(mut self, flag: &str, path: &Path) -> Kiln {
        self.command.arg(flag).arg(path);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Kiln {
        self.command.env(key, value);
        self
    }

    /// Runs kiln to completion.
    pub fn run(mut self) -> Outcome {
        let output = self.command.output().unwrap();
        drop(self.cache);
        Outcome { output }
    }
}

impl Outcome {
    /// Fails the test (showing kiln's output) unless kiln succeeded; returns stdout.
    pub fn success(self) -> String {
        assert!(
            self.output.status.success(),
            "kiln failed ({}):\n{}",
            self.output.status,
            self.stderr()
        );
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Fails the test unless kiln failed; returns stderr.
    pub fn failure(self) -> String {
        assert!(
            !self.output.status.success(),
            "kiln succeeded but should have failed:\n{}",
            self.stderr()
        );
        self.stderr()
    }

    /// The exit code, `None` if kiln was killed by a signal.
    pub fn status_code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Everything kiln wrote to standard output.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Everything kiln wrote to standard error.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}
