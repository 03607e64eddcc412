//! `--context` sources besides a directory: tar archives on disk and on stdin, git repositories
//! (served over git's dumb HTTP protocol by a loopback server), https tarballs, and
//! `--context-sub-path`; object stores refused by name.

use crate::support::files::FileServer;
use crate::support::git_server::git;
use crate::support::tools::unpack;
use crate::support::{Kiln, Registry};

/// A tar of `files` (`(path, contents)`), gzip-compressed when `gzip`.
fn context_tar(files: &[(&str, &str)], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, path, contents.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

fn dockerfile(base: &str) -> String {
    format!("FROM {base}\nCOPY app.txt /app.txt\n")
}

fn built_file(_registry: &Registry, destination: &str, path: &str) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = unpack(&format!("docker://{destination}"), scratch.path());
    std::fs::read_to_string(rootfs.join(path)).unwrap()
}

#[test]
fn a_tar_gz_context_and_a_tar_on_stdin_build_like_a_directory() {
    let (registry, base) = Registry::with_busybox();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("ctx.tar.gz");
    std::fs::write(
        &archive,
        context_tar(
            &[
                ("Dockerfile", &dockerfile(&base)),
                ("app.txt", "from tar.gz\n"),
            ],
            true,
        ),
    )
    .unwrap();
    let destination = registry.image("ctx-tar:1");
    Kiln::build_from(&format!("tar://{}", archive.display()))
        .push_to(&destination)
        .run()
        .success();
    assert_eq!(
        built_file(&registry, &destination, "app.txt"),
        "from tar.gz\n"
    );

    let plain = scratch.path().join("ctx.tar");
    std::fs::write(
        &plain,
        context_tar(
            &[
                ("Dockerfile", &dockerfile(&base)),
                ("app.txt", "from stdin\n"),
            ],
            false,
        ),
    )
    .unwrap();
    let destination = registry.image("ctx-stdin:1");
    Kiln::build_from("tar://stdin")
        .stdin_file(&plain)
        .push_to(&destination)
        .run()
        .success();
    assert_eq!(
        built_file(&registry, &destination, "app.txt"),
        "from stdin\n"
    );
}

#[test]
fn a_git_context_checks_out_its_ref_and_subdirectory() {
    let (registry, base) = Registry::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("work");
    std::fs::create_dir_all(repo.join("svc")).unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.join("svc/Dockerfile"), dockerfile(&base)).unwrap();
    std::fs::write(repo.join("svc/app.txt"), "main\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    git(&repo, &["checkout", "--quiet", "-b", "release"]);
    std::fs::write(repo.join("svc/app.txt"), "release\n").unwrap();
    git(&repo, &["commit", "--quiet", "-am", "two"]);
    git(&repo, &["checkout", "--quiet", "main"]);
    let bare = work.path().join("repo.git");
    git(
        work.path(),
        &["clone", "--quiet", "--bare", "work", "repo.git"],
    );
    git(&bare, &["update-server-info"]);
    let server = FileServer::start();
    server.put_tree("/repo.git", &bare);

    let destination = registry.image("ctx-git:1");
    Kiln::build_from(&format!("{}#release:svc", server.url("/repo.git")))
        .push_to(&destination)
        .run()
        .success();
    assert_eq!(built_file(&registry, &destination, "app.txt"), "release\n");

    let destination = registry.image("ctx-git-sub:1");
    Kiln::build_from(&server.url("/repo.git"))
        .args(["--context-sub-path", "svc"])
        .push_to(&destination)
        .run()
        .success();
    assert_eq!(built_file(&registry, &destination, "app.txt"), "main\n");
}

#[test]
fn an_https_tarball_context_is_downloaded_and_extracted() {
    let (registry, base) = Registry::with_busybox();
    let server = FileServer::start();
    server.put(
        "/ctx/app.tgz",
        &context_tar(
            &[
                ("src/Dockerfile", &dockerfile(&base)),
                ("src/app.txt", "tarball\n"),
            ],
            true,
        ),
        None,
    );
    let destination = registry.image("ctx-tarball:1");
    Kiln::build_from(&server.url("/ctx/app.tgz"))
        .args(["--context-sub-path", "src"])
        .push_to(&destination)
        .run()
        .success();
    assert_eq!(built_file(&registry, &destination, "app.txt"), "tarball\n");
}

#[test]
fn object_store_contexts_are_refused_as_not_supported_yet() {
    for context in [
        "s3://bucket/ctx.tgz",
        "gs://bucket/ctx.tgz",
        "az://acct/ctx.tgz",
    ] {
        let log = Kiln::build_from(context)
            .args(["--no-push"])
            .run()
            .failure();
        assert!(log.contains("not supported yet"), "{context}: {log}");
        assert!(log.contains(context), "{log}");
    }
}
