//! `ADD` beyond plain copies: bzip2 and xz archives, remote URLs (checksums, modes, times,
//! naming, node keys) and git repositories, each pushed to the real registry and read back with
//! umoci.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::base::sha256;
use crate::support::files::FileServer;
use crate::support::git_server::{GitServer, git};
use crate::support::tools::exists;
use crate::support::{Kiln, Project, Registry, build_and_unpack};

/// A tar with one executable owned by 1000:50.
fn tool_tar() -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(6);
    header.set_mode(0o750);
    header.set_uid(1000);
    header.set_gid(50);
    archive
        .append_data(&mut header, "tool/bin/run", &b"#!run\n"[..])
        .unwrap();
    archive.into_inner().unwrap()
}

/// `bytes` compressed by the system's `bzip2`/`xz`, as users make their archives.
fn compressed_with(tool: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{tool} is needed (apt-get install {tool}): {err}"));
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}

#[test]
fn add_extracts_bzip2_and_xz_archives_with_their_owners() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nADD tool.tar.bz2 /opt/bz/\nADD tool.txz /opt/xz/\n"
    ));
    std::fs::write(
        project.path().join("tool.tar.bz2"),
        compressed_with("bzip2", &tool_tar()),
    )
    .unwrap();
    std::fs::write(
        project.path().join("tool.txz"),
        compressed_with("xz", &tool_tar()),
    )
    .unwrap();
    let rootfs = build_and_unpack(&registry, &project, "add-bz-xz:1");
    for dir in ["opt/bz", "opt/xz"] {
        let run = std::fs::metadata(rootfs.join(dir).join("tool/bin/run")).unwrap();
        assert_eq!((run.uid(), run.gid()), (1000, 50), "{dir}");
        assert_eq!(run.permissions().mode() & 0o7777, 0o750, "{dir}");
        assert_eq!(
            std::fs::read(rootfs.join(dir).join("tool/bin/run")).unwrap(),
            b"#!run\n"
        );
    }
    assert!(!rootfs.join("opt/bz/tool.tar.bz2").exists());
    assert!(!rootfs.join("opt/xz/tool.txz").exists());
}

/// 2015-10-21 07:28:00 UTC, as an HTTP date and as seconds since the epoch.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LAST_MODIFIED_SECS: i64 = 1_445_412_480;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn add_url_downloads_with_mode_0600_last_modified_mtime_and_dockers_naming() {
    let (registry, base) = Registry::with_busybox();
    let files = FileServer::start();
    files.put("/dist/tool-1.0.bin", b"tool bytes", Some(LAST_MODIFIED));
    files.put("/dist/run.sh", b"#!/bin/sh\necho hi\n", None);
    let archive = gzip(&tool_tar());
    files.put("/dist/pkg.tar.gz", &archive, None);
    let checksum = sha256(&archive);
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         ADD {tool} /opt/\n\
         ADD {tool} /opt/renamed\n\
         ADD --chown=1000:50 --chmod=755 {script} /usr/local/bin/\n\
         ADD --checksum={checksum} {archive} /archives/\n",
        tool = files.url("/dist/tool-1.0.bin"),
        script = files.url("/dist/run.sh"),
        archive = files.url("/dist/pkg.tar.gz"),
    ));
    let rootfs = build_and_unpack(&registry, &project, "add-url:1");
    for path in ["opt/tool-1.0.bin", "opt/renamed"] {
        let meta = std::fs::symlink_metadata(rootfs.join(path)).unwrap();
        assert!(meta.is_file(), "{path}");
        assert_eq!(std::fs::read(rootfs.join(path)).unwrap(), b"tool bytes");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{path}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
        assert_eq!(
            meta.mtime(),
            LAST_MODIFIED_SECS,
            "{path}: mtime from Last-Modified"
        );
    }
    let script = std::fs::metadata(rootfs.join("usr/local/bin/run.sh")).unwrap();
    assert_eq!(script.permissions().mode() & 0o7777, 0o755);
    assert_eq!((script.uid(), script.gid()), (1000, 50));
    // Remote archives are not extracted (Docker's rule).
    assert_eq!(
        std::fs::read(rootfs.join("archives/pkg.tar.gz")).unwrap(),
        archive
    );
    assert!(!rootfs.join("archives/tool").exists());
    assert_eq!(
        files
            .requests()
            .iter()
            .filter(|r| r.ends_with("/dist/tool-1.0.bin"))
            .count(),
        1,
        "one download per URL"
    );
}

#[test]
fn add_url_with_a_wrong_checksum_fails_naming_both_digests_and_pushes_nothing() {
    let (registry, base) = Registry::with_busybox();
    let files = FileServer::start();
    files.put("/f", b"actual content", None);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN touch /ran\nADD --checksum={wrong} {} /f\n",
        files.url("/f")
    ));
    let destination = registry.image("add-url-bad:1");
    let log = Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(log.contains("Dockerfile:3:1"), "{log}");
    assert!(log.contains("checksum mismatch"), "{log}");
    assert!(log.contains(&wrong), "{log}");
    assert!(log.contains(&sha256(b"actual content")), "{log}");
    assert!(
        !log.contains("RUN touch /ran\n"),
        "nothing runs before the check:\n{log}"
    );
    assert!(!exists(&destination));
}

#[test]
fn add_url_that_answers_404_fails_naming_the_url_and_status() {
    let (registry, base) = Registry::with_busybox();
    let files = FileServer::start();
    let url = files.url("/missing.tgz");
    let project = Project::new().dockerfile(&format!("FROM {base}\nADD {url} /x\n"));
    let log = Kiln::build(project.path())
        .push_to(&registry.image("add-url-404:1"))
        .run()
        .failure();
    assert!(log.contains(&url), "{log}");
    assert!(log.contains("404"), "{log}");
    assert!(log.contains("Dockerfile:2:1"), "{log}");
}

/// The node key the build logged for the step on `line`.
fn key_of(log: &str, line: u32) -> String {
    let marker = format!("/Dockerfile:{line} ");
    log.lines()
        .find_map(|l| {
            let rest = l.split_once("key ")?.1;
            let (key, place) = rest.split_once(" for ")?;
            place.contains(&marker).then(|| key.to_owned())
        })
        .unwrap_or_else(|| panic!("no key for line {line} in:\n{log}"))
}

/// Kaniko keyed an ADD of a URL by its text, so a changed download reused a stale layer.
#[test]
fn add_url_content_is_part_of_the_node_key() {
    let (_registry, base) = Registry::with_busybox();
    let files = FileServer::start();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nADD {} /etc/conf\nRUN cat /etc/conf\n",
        files.url("/conf")
    ));
    let keys = |content: &[u8]| {
        files.put("/conf", content, Some(LAST_MODIFIED));
        let log = Kiln::build(project.path())
            .args(["--no-push", "--insecure-pull", "--verbosity", "debug"])
            .run()
            .success_log();
        (key_of(&log, 2), key_of(&log, 3))
    };
    let first = keys(b"one");
    let again = keys(b"one");
    let changed = keys(b"two");
    assert_eq!(first, again, "same download, same keys");
    assert_ne!(first.0, changed.0, "the ADD key must follow the content");
    assert_ne!(first.1, changed.1, "and so must every later step's");
}

#[test]
fn add_url_goes_through_the_proxy_named_in_the_environment() {
    let (registry, base) = Registry::with_busybox();
    let proxy = FileServer::start();
    proxy.put("/via/proxy.txt", b"proxied", None);
    // The name does not resolve: only a proxy can fetch it.
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nADD http://files.invalid/via/proxy.txt /p\n"
    ));
    let destination = registry.image("add-url-proxy:1");
    Kiln::build(project.path())
        .env("HTTP_PROXY", format!("http://{}", proxy.addr()))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .push_to(&destination)
        .run()
        .success();
    assert_eq!(
        proxy.requests(),
        vec!["http://files.invalid/via/proxy.txt".to_owned()]
    );
    let rootfs =
        crate::support::tools::unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(std::fs::read(rootfs.join("p")).unwrap(), b"proxied");
}

/// A served repository: tag `v1` with `docs/readme.md` = "v1", then `main` with "v2" and an
/// executable `bin/tool`, and a `feature` branch with `feature.txt`.
fn served_repository() -> GitServer {
    let server = GitServer::start();
    let repo = server.repo();
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    std::fs::write(repo.join("docs/readme.md"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("docs/readme.md"), "v2\n").unwrap();
    std::fs::create_dir_all(repo.join("bin")).unwrap();
    std::fs::write(repo.join("bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        repo.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "two"]);
    git(&repo, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(repo.join("feature.txt"), "feature\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "three"]);
    git(&repo, &["checkout", "--quiet", "main"]);
    server
}

#[test]
fn add_git_checks_out_refs_and_subdirectories_and_keeps_git_dir_only_when_asked() {
    let (registry, base) = Registry::with_busybox();
    let server = served_repository();
    let url = server.url();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         ADD {url}#v1:docs /from-tag/\n\
         ADD --keep-git-dir {url} /full\n\
         ADD --chown=1000:50 {url}#feature /feat/\n"
    ));
    let rootfs = build_and_unpack(&registry, &project, "add-git:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("from-tag/readme.md")).unwrap(),
        "v1\n"
    );
    assert!(!rootfs.join("from-tag/.git").exists());
    assert!(
        !rootfs.join("from-tag/docs").exists(),
        "only the subdirectory"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("full/docs/readme.md")).unwrap(),
        "v2\n"
    );
    assert!(rootfs.join("full/.git/HEAD").is_file(), "--keep-git-dir");
    let tool = std::fs::metadata(rootfs.join("full/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o777, 0o755);
    assert_eq!((tool.uid(), tool.gid()), (0, 0));
    let feature = std::fs::metadata(rootfs.join("feat/feature.txt")).unwrap();
    assert_eq!((feature.uid(), feature.gid()), (1000, 50));
    assert!(!rootfs.join("feat/.git").exists());
}

#[test]
fn add_git_of_a_missing_ref_fails_naming_it() {
    let (registry, base) = Registry::with_busybox();
    let server = served_repository();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nADD {}#no-such-branch /src/\n",
        server.url()
    ));
    let log = Kiln::build(project.path())
        .push_to(&registry.image("add-git-bad:1"))
        .run()
        .failure();
    assert!(log.contains("no-such-branch"), "{log}");
    assert!(log.contains("Dockerfile:2:1"), "{log}");
}
