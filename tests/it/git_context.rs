//! Kaniko's `--git` options on a `git://` build context, against a repository served by
//! `git daemon` on loopback. Kaniko's `git://` means HTTPS; the user's git configuration
//! (here `url.<git daemon>.insteadOf=https://...`, through `GIT_CONFIG_*`) routes the clone to
//! the daemon, whose smart protocol serves shallow clones, as a real forge does.
//!
//! Depth is checked in the image: BuildKit's `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1` keeps `.git` in
//! the context, the Dockerfile copies it, and `git rev-list --count HEAD` runs on the unpacked
//! image. Without that build argument `.git` is absent, as in BuildKit.

use std::path::Path;

use crate::support::git_server::{GitServer, git};
use crate::support::tools::unpack;
use crate::support::{Kiln, Registry};

/// `repo.git` (branch `main`: three commits, the last adding submodule `mod` from `sub.git`;
/// branch `release` one commit more) served by one daemon.
fn served(base: &str) -> GitServer {
    let server = GitServer::start();
    let repo = server.repo();
    let sub = repo.with_file_name("sub.git");
    std::fs::create_dir(&sub).unwrap();
    git(&sub, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(sub.join("sub.txt"), "submodule\n").unwrap();
    git(&sub, &["add", "."]);
    git(&sub, &["commit", "--quiet", "-m", "sub"]);

    std::fs::write(
        repo.join("Dockerfile"),
        format!("FROM {base}\nCOPY . /src/\n"),
    )
    .unwrap();
    std::fs::write(repo.join("app.txt"), "main 1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    std::fs::write(repo.join("app.txt"), "main 2\n").unwrap();
    git(&repo, &["commit", "--quiet", "-am", "two"]);
    let sub_url = server.url().replace("repo.git", "sub.git");
    git(&repo, &["submodule", "add", "--quiet", &sub_url, "mod"]);
    git(&repo, &["commit", "--quiet", "-m", "three"]);
    git(&repo, &["checkout", "--quiet", "-b", "release"]);
    std::fs::write(repo.join("app.txt"), "release\n").unwrap();
    git(&repo, &["commit", "--quiet", "-am", "four"]);
    git(&repo, &["checkout", "--quiet", "main"]);
    server
}

/// Builds the served repository as a `git://` context with `args`; returns the image's root.
fn build(registry: &Registry, server: &GitServer, name: &str, args: &[&str]) -> std::path::PathBuf {
    let daemon = server.url().replace("repo.git", "");
    let https = daemon.replace("git://", "https://");
    let destination = registry.image(name);
    Kiln::build_from(&server.url())
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", format!("url.{daemon}.insteadOf"))
        .env("GIT_CONFIG_VALUE_0", &https)
        .args(args)
        .push_to(&destination)
        .run()
        .success();
    unpack(
        &format!("docker://{destination}"),
        &registry.scratch().join(name.replace(':', "-")),
    )
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn git_flags_choose_the_branch_depth_and_submodules_of_a_git_context() {
    let (registry, base) = Registry::with_busybox();
    let server = served(&base);

    let root = build(
        &registry,
        &server,
        "git-flags:1",
        &[
            "--git",
            "branch=release,single-branch=true",
            "--git=recurse-submodules=true,depth=1",
            "--build-arg",
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1",
        ],
    );
    assert_eq!(read(&root, "src/app.txt"), "release\n");
    assert_eq!(read(&root, "src/mod/sub.txt"), "submodule\n");
    let src = root.join("src");
    assert_eq!(git(&src, &["rev-list", "--count", "HEAD"]), "1", "depth=1");
    let branches = git(&src, &["branch", "--remotes", "--format=%(refname:short)"]);
    assert!(
        branches.contains("origin/release") && !branches.contains("origin/main"),
        "single-branch=true fetches one branch: {branches}"
    );

    // Kaniko's defaults: the default branch, no submodules; and BuildKit's: no `.git`.
    let root = build(&registry, &server, "git-flags:2", &[]);
    assert_eq!(read(&root, "src/app.txt"), "main 2\n");
    assert!(
        !root.join("src/mod/sub.txt").exists(),
        "recurse-submodules defaults to false"
    );
    assert!(!root.join("src/.git").exists());
}
