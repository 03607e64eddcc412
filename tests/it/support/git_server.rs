//! A git repository served by `git daemon` on loopback, for `ADD <repository>` and git build
//! context tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A bare-served work repository; the daemon is killed on drop.
pub struct GitServer {
    daemon: Child,
    port: u16,
    base: tempfile::TempDir,
}

/// Runs git in `dir` with a fixed identity; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
        .args(args)
        .output()
        .expect("git is needed (apt-get install git)");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl GitServer {
    /// Serves an empty repository named `repo.git`; fill it through [`GitServer::repo`].
    pub fn start() -> GitServer {
        let base = tempfile::tempdir().unwrap();
        let repo = base.path().join("repo.git");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        let port = super::registry::free_port();
        // git-daemon itself, not the `git` wrapper: killing the wrapper would orphan it.
        let exec_path = git(base.path(), &["--exec-path"]);
        let daemon = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.path().display()))
            .arg(format!("--port={port}"))
            .arg("--listen=127.0.0.1")
            .arg(base.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon is needed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        GitServer { daemon, port, base }
    }

    /// The served repository's work tree.
    pub fn repo(&self) -> PathBuf {
        self.base.path().join("repo.git")
    }

    /// `git://127.0.0.1:port/repo.git`.
    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/repo.git", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
