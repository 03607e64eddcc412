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
        let dir = cache.path().to_path_buf();
        Kiln::build_with_cache(context, cache, &dir)
    }

    /// [`Kiln::build`] with the cache directory at `cache_dir` (for tests about where it lives).
    pub fn build_in(context: &Path, cache_dir: &Path) -> Kiln {
        Kiln::build_with_cache(context, tempfile::tempdir().unwrap(), cache_dir)
    }

    /// [`Kiln::build`] with `--context` given as text (`tar://...`, `git://...`, a URL).
    pub fn build_from(context: &str) -> Kiln {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().to_path_buf();
        Kiln::build_with_cache(Path::new(context), cache, &dir)
    }

    fn build_with_cache(context: &Path, cache: tempfile::TempDir, cache_dir: &Path) -> Kiln {
        let mut kiln = Kiln::private(cache, ["build"]);
        kiln.command
            .arg("--context")
            .arg(context)
            .arg("--cache-dir")
            .arg(cache_dir);
        kiln
    }

    /// `kiln <args>` with `HOME` at a private directory (kept for the run) and no
    /// `DOCKER_CONFIG`, so no credentials of the host's leak in.
    fn private<I, S>(cache: tempfile::TempDir, args: I) -> Kiln
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .args(args)
            .env_remove("DOCKER_CONFIG")
            .env("HOME", cache.path());
        Kiln { command, cache }
    }

    /// `kiln plan` on `context`, with no registry flags: planning must not need one.
    pub fn plan(context: &Path) -> Kiln {
        let mut kiln = Kiln::private(tempfile::tempdir().unwrap(), ["plan"]);
        kiln.command.arg("--context").arg(context);
        kiln
    }

    /// `kiln login` with `HOME` pointing at a private directory and no `DOCKER_CONFIG`.
    pub fn login() -> Kiln {
        Kiln::private(tempfile::tempdir().unwrap(), ["login"])
    }

    /// `kiln warm --cache-dir <cache_dir>` with a private `HOME`.
    pub fn warm(cache_dir: &Path) -> Kiln {
        let mut kiln = Kiln::private(tempfile::tempdir().unwrap(), ["warm", "--cache-dir"]);
        kiln.command.arg(cache_dir);
        kiln
    }

    /// `kiln push <source>` with a private `HOME` and no `DOCKER_CONFIG`.
    pub fn push(source: &str) -> Kiln {
        Kiln::private(tempfile::tempdir().unwrap(), ["push", source])
    }

    /// `kiln cache gc --cache-dir <cache_dir>` with a private `HOME`.
    pub fn cache_gc(cache_dir: &Path) -> Kiln {
        let mut kiln = Kiln::private(tempfile::tempdir().unwrap(), ["cache", "gc", "--cache-dir"]);
        kiln.command.arg(cache_dir);
        kiln
    }

    /// `kiln cache explain --context <context> --cache-dir <cache_dir>` with a private `HOME`.
    pub fn cache_explain(context: &Path, cache_dir: &Path) -> Kiln {
        let mut kiln = Kiln::private(
            tempfile::tempdir().unwrap(),
            ["cache", "explain", "--context"],
        );
        kiln.command.arg(context).arg("--cache-dir").arg(cache_dir);
        kiln
    }

    /// Runs kiln in a private mount namespace where `dir` is bind-mounted onto itself
    /// read-only (as a pod mounts a read-only volume); needs root and `unshare`.
    pub fn read_only_mount(self, dir: &Path) -> Kiln {
        let unshare = super::tools::require("unshare", "util-linux");
        let mut wrapped = Command::new(unshare);
        wrapped
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(dir)
            .arg(self.command.get_program())
            .args(self.command.get_args());
        for (key, value) in self.command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        Kiln {
            command: wrapped,
            cache: self.cache,
        }
    }

    /// Feeds `text` to kiln's standard input.
    pub fn stdin_text(mut self, text: &str) -> Kiln {
        let path = self.cache.path().join("stdin");
        std::fs::write(&path, text).unwrap();
        self.command.stdin(std::process::Stdio::from(
            std::fs::File::open(path).unwrap(),
        ));
        self
    }

    /// Feeds the file at `path` to kiln's standard input.
    pub fn stdin_file(mut self, path: &Path) -> Kiln {
        self.command.stdin(std::process::Stdio::from(
            std::fs::File::open(path).unwrap(),
        ));
        self
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

    /// Removes an environment variable kiln would otherwise inherit.
    pub fn env_remove(mut self, key: &str) -> Kiln {
        self.command.env_remove(key);
        self
    }

    /// Runs kiln to completion under GNU time and returns its peak resident set size in bytes
    /// (of kiln and the processes it waited for) with the outcome.
    pub fn run_measuring_memory(self) -> (Outcome, u64) {
        let time = super::tools::require("time", "time");
        let mut measured = Command::new(time);
        measured
            .arg("-v")
            .arg(self.command.get_program())
            .args(self.command.get_args());
        for (key, value) in self.command.get_envs() {
            match value {
                Some(value) => measured.env(key, value),
                None => measured.env_remove(key),
            };
        }
        let output = measured.output().unwrap();
        drop(self.cache);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let kib: u64 = stderr
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .unwrap_or_else(|| panic!("no peak memory in GNU time's report:\n{stderr}"))
            .parse()
            .unwrap();
        (Outcome { output }, kib * 1024)
    }

    /// Starts kiln without waiting, its output captured in files (for tests that signal it).
    pub fn spawn(mut self) -> Running {
        let logs = tempfile::tempdir().unwrap();
        let child = self
            .command
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Running {
            child: Some(child),
            logs,
            _cache: self.cache,
        }
    }

    /// Runs kiln to completion.
    pub fn run(mut self) -> Outcome {
        let output = self.command.output().unwrap();
        drop(self.cache);
        Outcome { output }
    }
}

/// A kiln process started with [`Kiln::spawn`]; killed if still running when dropped.
pub struct Running {
    child: Option<std::process::Child>,
    logs: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Running {
    /// kiln's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits at most `limit` for kiln to exit; panics (after killing it) if it does not.
    pub fn wait_within(mut self, limit: std::time::Duration) -> Outcome {
        let mut child = self.child.take().unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kiln still running after {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Outcome {
            output: Output {
                status,
                stdout: std::fs::read(self.logs.path().join("stdout")).unwrap(),
                stderr: std::fs::read(self.logs.path().join("stderr")).unwrap(),
            },
        }
    }

    /// What kiln has logged so far (stderr).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.logs.path().join("stderr")).unwrap())
            .into_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

    /// Fails the test (showing kiln's output) unless kiln succeeded; returns its log (stderr).
    pub fn success_log(self) -> String {
        let log = self.stderr();
        self.success();
        log
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

    /// Fails the test unless kiln succeeded; returns stdout and stderr (the log).
    pub fn success_with_log(self) -> (String, String) {
        let stderr = self.stderr();
        let stdout = self.success();
        (stdout, stderr)
    }

    /// stdout and stderr together, whatever the outcome: for checking what kiln ever prints.
    pub fn everything_printed(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Whether kiln exited successfully.
    pub fn succeeded(&self) -> bool {
        self.output.status.success()
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
