//! Hostile inputs through `kiln build`, end to end: a build context, a base image or a registry
//! chosen by an attacker. Each must end with nothing written outside kiln's roots, a clear error
//! (or, where the input is merely odd, a correct build), and nothing pushed to the destination
//! (checked with skopeo on the real registry). See docs/security.md for the threat model.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tar::EntryType;

use crate::extract::image::{self, Layer};
use crate::support::hostile_registry::{Body, HostileRegistry, Route};
use crate::support::tools::{exists, regular_files, unpack};
use crate::support::{Kiln, Project, Registry};

/// A name unique to this test process, for host files a hostile input aims at.
fn unique(what: &str) -> String {
    format!("kiln-{what}-{}", std::process::id())
}

/// A host file the tests check is left alone; removed when dropped.
struct Sentinel(PathBuf);

impl Sentinel {
    fn new(name: &str, contents: &str) -> Sentinel {
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        Sentinel(path)
    }

    fn assert_untouched(&self, contents: &str) {
        assert_eq!(
            std::fs::read_to_string(&self.0).unwrap_or_default(),
            contents,
            "{} on the host was changed or deleted",
            self.0.display()
        );
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A plain tar whose entries' names are written verbatim (tar-rs refuses `..` otherwise).
fn verbatim_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_size(contents.len() as u64);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *contents).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Serves `layers` as `repo:latest` on `hostile`, from an OCI layout under `scratch`.
fn serve_image(hostile: &HostileRegistry, scratch: &Path, repo: &str, layers: Vec<Layer>) {
    let layout = scratch.join(format!("{repo}-layout"));
    image::write_layout(&layout, layers);
    hostile.serve_layout(repo, "latest", &layout);
}

/// Builds `dockerfile` (FROM images on the hostile registry) towards `destination`.
fn build(dockerfile: &str, destination: &str) -> crate::support::Outcome {
    let project = Project::new().dockerfile(dockerfile);
    Kiln::build(project.path()).push_to(destination).run()
}

#[test]
fn a_context_tar_climbing_out_with_dotdot_fails_naming_the_entry_and_writes_nothing() {
    let registry = Registry::start();
    let escape = unique("ctx-escape");
    let name = format!("{}tmp/{escape}", "../".repeat(12));
    let archive = registry.scratch().join("hostile-context.tar");
    std::fs::write(
        &archive,
        verbatim_tar(&[
            ("Dockerfile", b"FROM scratch\nCOPY . /\n"),
            (&name, b"pwned"),
        ]),
    )
    .unwrap();
    let destination = registry.image("ctx-escape:1");
    let stderr = Kiln::build_from(&format!("tar://{}", archive.display()))
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains(&name), "names the entry: {stderr}");
    assert!(stderr.contains("climbs above the root"), "{stderr}");
    assert!(
        !Path::new("/tmp").join(&escape).exists(),
        "written on the host"
    );
    assert!(!exists(&destination), "pushed");
}

#[test]
fn copy_through_context_symlinks_pointing_outside_never_reads_host_files() {
    let registry = Registry::start();
    let secret = unique("host-secret-content");
    let host_file = Sentinel::new(&unique("host-secret"), &secret);
    let file_name = host_file
        .0
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let host_dir = host_file.0.parent().unwrap().to_owned();
    let project = Project::new().file("plain", "plain\n");
    let link = |name: &str, target: &Path| {
        std::os::unix::fs::symlink(target, project.path().join(name)).unwrap();
    };
    link("absolute", &host_file.0);
    link(
        "relative",
        &Path::new(&"../".repeat(16)).join(host_file.0.strip_prefix("/").unwrap()),
    );
    link("dirlink", &host_dir);

    // Each way of naming the host file: followed inside the context (and missing there), or
    // copied as the link it is; never the host file's bytes.
    for source in ["absolute", "relative", &format!("dirlink/{file_name}"), "."] {
        std::fs::write(
            project.path().join("Dockerfile"),
            format!("FROM scratch\nCOPY {source} /got/\n"),
        )
        .unwrap();
        let destination = registry.image("symlinks:1");
        let outcome = Kiln::build(project.path()).push_to(&destination).run();
        assert!(
            !outcome.everything_printed().contains(&secret),
            "COPY {source}: the host file's contents were printed"
        );
        if outcome.succeeded() {
            let scratch = tempfile::tempdir().unwrap();
            let rootfs = unpack(&format!("docker://{destination}"), scratch.path());
            let leaked = grep_tree(&rootfs, secret.as_bytes());
            assert!(
                leaked.is_empty(),
                "COPY {source} copied host bytes into {leaked:?}"
            );
        } else {
            assert!(!exists(&destination), "COPY {source} failed but pushed");
        }
    }
    host_file.assert_untouched(&secret);
}

/// Regular files under `root` (not following symlinks) that contain `needle`.
fn grep_tree(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    regular_files(root)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn base_layer_traversal_tricks_that_docker_roots_land_inside_the_root() {
    let registry = Registry::start();
    let hostile = HostileRegistry::start();
    let abs = unique("abs");
    let via_link = unique("via-symlinked-parent");
    let whiteout_target = Sentinel::new(&unique("whiteout-target"), "keep");
    let wh_name = whiteout_target
        .0
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut tricks = Layer::new();
    tricks
        .dir("tmp/", image::Meta::mode(0o1777))
        // An absolute name.
        .verbatim(EntryType::Regular, &format!("/tmp/{abs}"), "", b"abs")
        // A symlinked parent: `up` points at the host's /tmp, if anything followed it outside.
        .verbatim(EntryType::Symlink, "up", "/tmp", b"")
        .verbatim(EntryType::Regular, &format!("up/{via_link}"), "", b"link")
        // A hardlink to an absolute path: the image's /etc/passwd, not the host's.
        .verbatim(EntryType::Link, "hl", "/etc/passwd", b"")
        // Whiteouts of a host file, by absolute name and through the symlinked parent.
        .verbatim(EntryType::Regular, &format!("/tmp/.wh.{wh_name}"), "", b"")
        .verbatim(EntryType::Regular, &format!("up/.wh.{wh_name}"), "", b"");
    serve_image(
        &hostile,
        registry.scratch(),
        "tricks",
        vec![image::busybox(), tricks],
    );
    let destination = registry.image("tricks:1");
    build(
        &format!(
            "FROM {}\nRUN test -f /tmp/{abs} && test -f /tmp/{via_link} && \
             grep -q '^root:x:0:0:root:/root:/bin/sh$' /hl && \
             test \"$(grep -c . /hl)\" = 1\n",
            hostile.image("tricks:latest")
        ),
        &destination,
    )
    .success();
    for name in [&abs, &via_link] {
        assert!(!Path::new("/tmp").join(name).exists(), "{name} on the host");
    }
    whiteout_target.assert_untouched("keep");
    assert!(exists(&destination));
}

#[test]
fn base_layer_entries_climbing_out_are_refused_naming_layer_and_entry() {
    let registry = Registry::start();
    let hostile = HostileRegistry::start();
    let target = Sentinel::new(&unique("climb-target"), "keep");
    let target_name = target.0.file_name().unwrap().to_str().unwrap().to_owned();
    let climb = "../".repeat(12);
    let cases = [
        (
            "hardlink",
            EntryType::Link,
            "hl".to_owned(),
            format!("{climb}tmp/{target_name}"),
        ),
        (
            "whiteout",
            EntryType::Regular,
            format!("{climb}tmp/.wh.{target_name}"),
            String::new(),
        ),
        (
            "symlink",
            EntryType::Symlink,
            "etc/evil".to_owned(),
            format!("{climb}tmp/{target_name}"),
        ),
    ];
    for (repo, kind, name, link) in cases {
        let mut layer = Layer::new();
        layer.verbatim(kind, &name, &link, b"");
        serve_image(
            &hostile,
            registry.scratch(),
            repo,
            vec![image::busybox(), layer],
        );
        let destination = registry.image(&format!("{repo}-never:1"));
        let stderr = build(
            &format!(
                "FROM {}\nRUN true\n",
                hostile.image(&format!("{repo}:latest"))
            ),
            &destination,
        )
        .failure();
        assert!(stderr.contains("climbs above the root"), "{repo}: {stderr}");
        assert!(
            stderr.contains("sha256:"),
            "{repo}: names the layer: {stderr}"
        );
        assert!(!exists(&destination), "{repo}: pushed");
        target.assert_untouched("keep");
    }
}

#[test]
fn blobs_that_lie_about_their_digest_or_size_fail_the_build_and_push_nothing() {
    let registry = Registry::start();
    let hostile = HostileRegistry::start();
    let layout = registry.scratch().join("liar-layout");
    let digests = image::write_layout(&layout, vec![image::busybox()]);
    let manifest = hostile.serve_layout("liar", "latest", &layout);
    let layer_path = format!("/v2/liar/blobs/{}", digests[0]);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let config_path = format!("/v2/liar/blobs/{config_digest}");
    let from = format!("FROM {}\nRUN true\n", hostile.image("liar:latest"));
    let blob = |digest: &str| {
        std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
    };

    // The layer's bytes are not what its digest says.
    let mut tampered = blob(&digests[0]);
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    hostile.route(&layer_path, Route::ok("application/octet-stream", tampered));
    let destination = registry.image("liar-digest:1");
    let stderr = build(&from, &destination).failure();
    assert!(stderr.contains(&digests[0]), "names the blob: {stderr}");
    assert!(stderr.contains("digest"), "{stderr}");
    assert!(!exists(&destination));

    // The layer is longer than its descriptor's size (right bytes, then more).
    let mut longer = blob(&digests[0]);
    longer.extend_from_slice(&[0; 4096]);
    hostile.route(&layer_path, Route::ok("application/octet-stream", longer));
    let destination = registry.image("liar-size:1");
    let stderr = build(&from, &destination).failure();
    assert!(stderr.contains(&digests[0]), "names the blob: {stderr}");
    assert!(!exists(&destination));

    // The config is longer than its descriptor says (bounded read, then refused).
    hostile.route(
        &layer_path,
        Route::ok("application/octet-stream", blob(&digests[0])),
    );
    let mut config = blob(&config_digest);
    config.extend_from_slice(&[b' '; 1024]);
    hostile.route(&config_path, Route::ok("application/octet-stream", config));
    let destination = registry.image("liar-config:1");
    let stderr = build(&from, &destination).failure();
    assert!(
        stderr.contains(&config_digest),
        "names the config: {stderr}"
    );
    assert!(!exists(&destination));
}

#[test]
fn a_registry_redirect_to_another_host_does_not_carry_the_credentials() {
    let registry = Registry::start();
    let origin = HostileRegistry::start();
    let elsewhere = HostileRegistry::start_on("127.0.0.2");
    let password = unique("redirect-password");
    origin.require_basic("puller", &password);
    let layout = registry.scratch().join("redirect-layout");
    let digests = image::write_layout(&layout, vec![image::busybox()]);
    origin.serve_layout("private", "latest", &layout);
    elsewhere.serve_layout("private", "latest", &layout);
    // Layers live "in blob storage" on another host, as S3 or a CDN behind a registry.
    for digest in &digests {
        let path = format!("/v2/private/blobs/{digest}");
        origin.route(
            &path,
            Route::redirect(&format!("http://{}{path}", elsewhere.addr())),
        );
    }
    let config = tempfile::tempdir().unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("puller:{password}"));
    std::fs::write(
        config.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, origin.addr()),
    )
    .unwrap();
    let project = Project::new().dockerfile(&format!(
        "FROM {}\nRUN true\n",
        origin.image("private:latest")
    ));
    let destination = registry.image("redirected:1");
    let printed = Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", config.path())
        .args(["--verbosity", "trace"])
        .run();
    let log = printed.everything_printed();
    assert!(printed.succeeded(), "{log}");
    assert!(
        !log.contains(&password) && !log.contains(&auth),
        "credentials logged"
    );
    assert!(
        origin.seen().iter().any(|r| r.authorization.is_some()),
        "the origin got the credentials"
    );
    let followed = elsewhere.seen();
    assert!(
        followed
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("/blobs/")),
        "the redirect was followed: {followed:?}"
    );
    assert!(
        followed.iter().all(|r| r.authorization.is_none()),
        "credentials sent to another host: {followed:?}"
    );
    assert!(exists(&destination));
}

#[test]
fn a_4_gib_manifest_is_refused_after_a_bounded_read() {
    let registry = Registry::start();
    let hostile = HostileRegistry::start();
    for (tag, announce) in [("announced", true), ("streamed", false)] {
        hostile.route(
            &format!("/v2/huge/manifests/{tag}"),
            Route {
                status: 200,
                headers: vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                body: Body::Endless {
                    len: 4 << 30,
                    announce,
                },
            },
        );
        let project = Project::new().dockerfile(&format!(
            "FROM {}\nRUN true\n",
            hostile.image(&format!("huge:{tag}"))
        ));
        let destination = registry.image(&format!("huge-{tag}:1"));
        let started = Instant::now();
        let (outcome, peak) = Kiln::build(project.path())
            .push_to(&destination)
            .run_measuring_memory();
        let stderr = outcome.stderr();
        assert!(!outcome.succeeded(), "{tag}: {stderr}");
        assert!(stderr.contains("huge"), "{tag}: names the image: {stderr}");
        assert!(
            stderr.contains("exceeds 16777216 bytes"),
            "{tag}: says it is too large: {stderr}"
        );
        assert!(peak < 256 << 20, "{tag}: peak memory {} MiB", peak >> 20);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{tag}: took {:?}: the whole body was read",
            started.elapsed()
        );
        assert!(!exists(&destination));
    }
}

#[test]
fn a_decompression_bomb_layer_fails_cleanly_when_the_work_disk_is_full() {
    let registry = Registry::start();
    let hostile = HostileRegistry::start();
    // 192 MiB of one byte (not zeros: those would become holes) compresses to about 0.2 MiB.
    let mut bomb = Layer::new();
    bomb.file("bomb", image::Meta::default(), &vec![b'A'; 192 << 20]);
    serve_image(
        &hostile,
        registry.scratch(),
        "bomb",
        vec![image::busybox(), bomb],
    );
    // The disk kiln works on is a 64 MiB tmpfs (a quota, as a pod's ephemeral storage is).
    let cache = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(cache.path(), "64m");
    let project = Project::new().dockerfile(&format!(
        "FROM {}\nRUN true\n",
        hostile.image("bomb:latest")
    ));
    let destination = registry.image("bomb-never:1");
    let stderr = Kiln::build_in(project.path(), cache.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(
        stderr.contains("No space left on device"),
        "says the disk is full: {stderr}"
    );
    assert!(stderr.contains("bomb"), "names the entry: {stderr}");
    assert!(!exists(&destination));
}

/// A tmpfs mounted over a directory for the length of a test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        crate::support::tools::run(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The CVE-2024-21626 class (runc): a command that inherits one of kiln's descriptors, or a
/// `WORKDIR /proc/self/fd/N` entered while kiln's descriptors are still open (between fork and
/// exec), reaches the host. With the layer cache on, kiln holds its index, store and registry
/// connections while the RUN starts.
#[test]
fn a_run_inherits_no_descriptor_of_kiln_and_a_workdir_through_proc_fd_links_is_refused() {
    let (registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN ls /proc/self/fd > /fds\n"));
    let destination = registry.image("fds:1");
    Kiln::build_in(project.path(), cache.path())
        .args(["--cache=true"])
        .push_to(&destination)
        .run()
        .success();
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = unpack(&format!("docker://{destination}"), scratch.path());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("fds")).unwrap(),
        "0\n1\n2\n3\n",
        "the command sees more than its stdio (3 is the directory ls reads)"
    );

    for fd in 3..=12 {
        let project = Project::new().dockerfile(&format!(
            "FROM {base}\nWORKDIR /proc/self/fd/{fd}\nRUN ls -a . ../.. > /cwd-listing\n"
        ));
        let destination = registry.image(&format!("proc-fd-workdir:{fd}"));
        let stderr = Kiln::build_in(project.path(), cache.path())
            .args(["--cache=true"])
            .push_to(&destination)
            .run()
            .failure();
        assert!(
            stderr.contains("working directory"),
            "WORKDIR /proc/self/fd/{fd}: {stderr}"
        );
        assert!(!exists(&destination), "WORKDIR /proc/self/fd/{fd}: pushed");
    }
}
