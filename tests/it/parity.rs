//! COPY/ADD parity with Docker (BuildKit): one Dockerfile per Kaniko bug family, the resulting
//! image unpacked with umoci and its entries compared as (path, type, mode, uid, gid, size, link
//! target). Each case names the Kaniko issue family it guards (../shared/reference/kaniko.md
//! sections 2 and 5).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::support::{Project, Registry, build_and_unpack};

/// `path type mode uid:gid size target` for one entry (`size` only for files).
fn entry(root: &Path, path: &str) -> String {
    let full = root.join(path.trim_start_matches('/'));
    let meta = std::fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    let kind = if meta.file_type().is_symlink() {
        "link"
    } else if meta.is_dir() {
        "dir"
    } else {
        "file"
    };
    let mut line = format!(
        "{path} {kind} {:o} {}:{}",
        meta.permissions().mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    if kind == "file" {
        line.push_str(&format!(" {}", meta.len()));
    }
    if kind == "link" {
        line.push_str(&format!(
            " -> {}",
            std::fs::read_link(&full).unwrap().display()
        ));
    }
    line
}

fn listing(root: &Path, paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| entry(root, p)).collect()
}

#[test]
fn copy_and_add_ownership_modes_links_and_users_match_docker() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .file("f.txt", "hello")
        .file("tree/sub/a.txt", "aaa")
        .file("tree/b.sh", "#!/bin/sh\n")
        .dockerfile(&format!(
            "FROM {base} AS prep\n\
             RUN mkdir -p /hl && echo linked > /hl/one && ln /hl/one /hl/two\n\
             FROM {base}\n\
             RUN mkdir -p /opt/real /tmp && chmod 1777 /tmp && ln -s /opt/real /opt/link\n\
             # Kaniko: parents created by --chown stayed root-owned\n\
             COPY --chown=1000:1000 f.txt /owned/deep/f.txt\n\
             # Kaniko: /tmp lost its sticky 1777 when COPY wrote into it\n\
             COPY f.txt /tmp/f.txt\n\
             # --chmod reaches copied directories too, as in BuildKit since fsutil#228\n\
             # (Kaniko v1.23 did the same, #3166, and reverted)\n\
             COPY --chmod=640 tree/ /modes/\n\
             # Kaniko: symlinks dereferenced inside directories\n\
             COPY links/ /links/\n\
             # Docker follows a symlink named as the source itself\n\
             COPY links/to-f /followed\n\
             # Kaniko: hardlinks lost within a COPY and across COPY --from\n\
             COPY hard/ /hard/\n\
             COPY --from=prep /hl/ /hl/\n\
             # Writing through a symlinked destination parent lands in its target\n\
             COPY f.txt /opt/link/through.txt\n\
             # Kaniko: USER u:g dropped the group\n\
             USER 1000:2000\n\
             RUN touch /tmp/by-user && id -g > /tmp/gid\n"
        ));
    std::fs::create_dir_all(project.path().join("links")).unwrap();
    std::fs::write(project.path().join("links/f"), "target").unwrap();
    std::os::unix::fs::symlink("f", project.path().join("links/to-f")).unwrap();
    std::fs::create_dir_all(project.path().join("hard")).unwrap();
    std::fs::write(project.path().join("hard/one"), "same").unwrap();
    std::fs::hard_link(
        project.path().join("hard/one"),
        project.path().join("hard/two"),
    )
    .unwrap();
    let root = build_and_unpack(&registry, &project, "parity:1");
    assert_eq!(
        listing(
            &root,
            &[
                "/owned",
                "/owned/deep",
                "/owned/deep/f.txt",
                "/tmp",
                "/tmp/f.txt",
                "/modes",
                "/modes/sub",
                "/modes/sub/a.txt",
                "/modes/b.sh",
                "/links/f",
                "/links/to-f",
                "/followed",
                "/opt/link",
                "/opt/real/through.txt",
                "/tmp/by-user",
            ]
        ),
        [
            "/owned dir 755 1000:1000",
            "/owned/deep dir 755 1000:1000",
            "/owned/deep/f.txt file 644 1000:1000 5",
            "/tmp dir 1777 0:0",
            "/tmp/f.txt file 644 0:0 5",
            "/modes dir 640 0:0",
            "/modes/sub dir 640 0:0",
            "/modes/sub/a.txt file 640 0:0 3",
            "/modes/b.sh file 640 0:0 10",
            "/links/f file 644 0:0 6",
            "/links/to-f link 777 0:0 -> f",
            "/followed file 644 0:0 6",
            "/opt/link link 777 0:0 -> /opt/real",
            "/opt/real/through.txt file 644 0:0 5",
            "/tmp/by-user file 644 1000:2000 0",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/gid")).unwrap(),
        "2000\n"
    );
    let ino = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino("hard/one"), ino("hard/two"), "hardlink within a COPY");
    assert_eq!(ino("hl/one"), ino("hl/two"), "hardlink across COPY --from");
}

#[test]
fn chown_by_name_and_existing_destination_directories_keep_their_mode_and_owner() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().file("f.txt", "hello").dockerfile(&format!(
        "FROM {base}\n\
         RUN echo 'svc7:x:1234:4321::/home/svc7:/bin/sh' >> /etc/passwd \
         && echo 'svc7:x:4321:' >> /etc/group \
         && mkdir -m 700 /data && chown 5:6 /data\n\
         COPY --chown=svc7 f.txt /by-name/f.txt\n\
         COPY --chown=svc7:svc7 f.txt /data/f.txt\n\
         ADD --chown=1234 f.txt /added/f.txt\n"
    ));
    let root = build_and_unpack(&registry, &project, "parity-names:1");
    assert_eq!(
        listing(
            &root,
            &[
                "/by-name",
                "/by-name/f.txt",
                "/data",
                "/data/f.txt",
                "/added/f.txt",
            ]
        ),
        [
            // Docker: a user without a group gets its uid as gid, not its primary group.
            "/by-name dir 755 1234:1234",
            "/by-name/f.txt file 644 1234:1234 5",
            "/data dir 700 5:6",
            "/data/f.txt file 644 1234:4321 5",
            "/added/f.txt file 644 1234:1234 5",
        ]
    );
}

#[test]
fn chmod_reaches_copied_directories_as_in_buildkit_but_not_created_parents_or_existing_ones() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .file("f.txt", "hello")
        .file("tree/sub/a.txt", "aaa")
        .file("tree/b.sh", "#!/bin/sh\n")
        .dockerfile(&format!(
            "FROM {base}\n\
             RUN mkdir -m 700 /existing\n\
             COPY --chmod=750 tree/ /deep/er/modes/\n\
             COPY --chmod=u=rwX,go=rX tree/ /sym/\n\
             COPY --chmod=640 f.txt /parents/p/f.txt\n\
             COPY --chmod=750 tree/ /existing/\n"
        ));
    let mode = |path: &str, mode: u32| {
        std::fs::set_permissions(
            project.path().join(path),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    };
    mode("tree", 0o755);
    mode("tree/sub", 0o700);
    mode("tree/sub/a.txt", 0o600);
    mode("tree/b.sh", 0o700);
    let root = build_and_unpack(&registry, &project, "parity-chmod:1");
    assert_eq!(
        listing(
            &root,
            &[
                "/deep",
                "/deep/er",
                "/deep/er/modes",
                "/deep/er/modes/sub",
                "/deep/er/modes/sub/a.txt",
                "/deep/er/modes/b.sh",
                "/sym",
                "/sym/sub",
                "/sym/sub/a.txt",
                "/sym/b.sh",
                "/parents",
                "/parents/p",
                "/parents/p/f.txt",
                "/existing",
                "/existing/sub",
                "/existing/b.sh",
            ]
        ),
        [
            // Parents created for the destination keep 0755 (Docker 28, moby/moby#49851).
            "/deep dir 755 0:0",
            "/deep/er dir 755 0:0",
            // Where a source directory's contents land, and every directory copied.
            "/deep/er/modes dir 750 0:0",
            "/deep/er/modes/sub dir 750 0:0",
            "/deep/er/modes/sub/a.txt file 750 0:0 3",
            "/deep/er/modes/b.sh file 750 0:0 10",
            // Symbolic: X sets execute bits on directories and on files that have one.
            "/sym dir 755 0:0",
            "/sym/sub dir 755 0:0",
            "/sym/sub/a.txt file 644 0:0 3",
            "/sym/b.sh file 755 0:0 10",
            "/parents dir 755 0:0",
            "/parents/p dir 755 0:0",
            "/parents/p/f.txt file 640 0:0 5",
            // An existing destination directory keeps its mode.
            "/existing dir 700 0:0",
            "/existing/sub dir 750 0:0",
            "/existing/b.sh file 750 0:0 10",
        ]
    );
}
