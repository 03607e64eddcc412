//! A Dockerfile using every instruction of the walking skeleton, built, pushed, and checked with
//! skopeo (config) and umoci (files).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::json;

use crate::support::tools::{config_of, inspect, unpack};
use crate::support::{Kiln, Project, Registry, build_and_unpack};

const DOCKERFILE: &str = r#"# A build that uses every instruction kiln's walking skeleton supports.
ARG BASE
FROM ${BASE} AS builder
RUN mkdir /out && echo built > /out/artifact

FROM ${BASE}
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    PATH=/srv/app/bin:$PATH
LABEL org.example.title="kiln test" version=1
EXPOSE 8080 53/udp
WORKDIR $APP_HOME
COPY --chown=app:app files/ ./
COPY --chmod=755 run.sh bin/run.sh
COPY *.txt /notes/
COPY --from=builder /out/artifact /artifact
RUN echo "$GREETING" > greeting && rm /etc/motd && ln -s /srv/app/greeting /greeting-link
RUN ["/bin/sh", "-c", "id -u > /srv/app/uid"]
USER app
RUN id -u > /home/app/uid-as-app
VOLUME ["/data"]
ENTRYPOINT ["/srv/app/bin/run.sh"]
CMD ["--serve"]
"#;

fn project() -> Project {
    Project::new()
        .dockerfile(DOCKERFILE)
        .file("files/config.ini", "[app]\n")
        .file("files/sub/data.bin", "data")
        .file("run.sh", "#!/bin/sh\necho run\n")
        .file("a.txt", "a")
        .file("b.txt", "b")
}

#[test]
fn every_instruction_is_built_pushed_and_configured_as_docker_would() {
    let (registry, base) = Registry::with_busybox();
    let project = project();
    let destination = registry.image("app:1.0");
    let digest_file = project.out("digest");
    let names_file = project.out("names");

    let stdout = Kiln::build(project.path())
        .args([
            "--build-arg",
            &format!("BASE={base}"),
            "--destination",
            &destination,
        ])
        .args(["--destination", &registry.image("app:latest")])
        .arg_path("--digest-file", &digest_file)
        .arg_path("--image-name-with-digest-file", &names_file)
        .args([
            "--insecure",
            "--insecure-pull",
            "--label",
            "built-with=kiln",
        ])
        .run()
        .success();

    let config = config_of(&destination);
    let runtime = &config["config"];
    let env: Vec<&str> = runtime["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    assert!(
        env.contains(
            &"PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "{env:?}"
    );
    assert_eq!(runtime["Cmd"], json!(["--serve"]));
    assert_eq!(runtime["Entrypoint"], json!(["/srv/app/bin/run.sh"]));
    assert_eq!(runtime["WorkingDir"], json!("/srv/app"));
    assert_eq!(runtime["User"], json!("app"));
    assert_eq!(
        runtime["Labels"],
        json!({"org.example.title": "kiln test", "version": "1", "built-with": "kiln"})
    );
    assert_eq!(
        runtime["ExposedPorts"],
        json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(runtime["Volumes"], json!({"/data": {}}));
    assert_eq!(
        config["architecture"],
        json!(crate::support::base::host_arch())
    );
    assert_eq!(config["os"], json!("linux"));

    // One history entry for the base plus one per instruction of the final stage (ARG included,
    // as BuildKit writes it); layers only for the steps that changed files.
    let history = config["history"].as_array().unwrap();
    let created_by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(created_by.len(), 1 + 16, "{created_by:#?}");
    assert!(created_by.contains(&"RUN |1 GREETING=hello /bin/sh -c echo \"$GREETING\" > greeting && rm /etc/motd && ln -s /srv/app/greeting /greeting-link # buildkit"), "{created_by:#?}");
    let layers = history
        .iter()
        .filter(|h| h["empty_layer"] != json!(true))
        .count();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(
        layers, diff_ids,
        "history and rootfs disagree: {history:#?}"
    );

    // Both tags point at the digest kiln reported and wrote down.
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(stdout.trim(), digest);
    assert_eq!(
        inspect(&format!("docker://{destination}"))["Digest"],
        json!(digest)
    );
    assert_eq!(
        inspect(&format!("docker://{}", registry.image("app:latest")))["Digest"],
        json!(digest)
    );
    let names = std::fs::read_to_string(&names_file).unwrap();
    assert_eq!(
        names,
        format!("{0}@{digest}\n{0}@{digest}\n", registry.image("app"))
    );

    let rootfs = unpack(&format!("docker://{destination}"), registry.scratch());
    let meta = |path: &str| std::fs::symlink_metadata(rootfs.join(path)).unwrap();
    let read = |path: &str| std::fs::read_to_string(rootfs.join(path)).unwrap();
    // COPY --chown by name, through the image's /etc/passwd and /etc/group.
    assert_eq!(
        (
            meta("srv/app/config.ini").uid(),
            meta("srv/app/config.ini").gid()
        ),
        (1000, 1000)
    );
    assert_eq!(meta("srv/app/sub").uid(), 1000);
    assert_eq!(read("srv/app/sub/data.bin"), "data");
    // COPY --chmod, and files copied without --chown belong to root.
    assert_eq!(
        meta("srv/app/bin/run.sh").permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(meta("srv/app/bin/run.sh").uid(), 0);
    // Wildcards into a directory.
    assert_eq!(read("notes/a.txt"), "a");
    assert_eq!(read("notes/b.txt"), "b");
    // Multi-stage COPY --from.
    assert_eq!(read("artifact"), "built\n");
    // RUN: ARG visible as env, deleted file gone (whiteout), symlink kept as a symlink.
    assert_eq!(read("srv/app/greeting"), "hello\n");
    assert!(
        !rootfs.join("etc/motd").exists(),
        "/etc/motd should have been deleted"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("greeting-link"))
            .unwrap()
            .to_str(),
        Some("/srv/app/greeting")
    );
    // Exec-form RUN as root; USER app applies to later RUNs.
    assert_eq!(read("srv/app/uid"), "0\n");
    assert_eq!(read("home/app/uid-as-app"), "1000\n");
    // Base files and modes survive; the sandbox's mount points left nothing behind.
    assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
    assert_eq!(
        read("etc/arch"),
        format!("{}\n", crate::support::base::host_arch())
    );
    assert!(!rootfs.join("proc").exists() && !rootfs.join("dev").exists());
    assert!(std::fs::read_to_string(rootfs.join("etc/resolv.conf")).is_err());
}

#[test]
fn a_base_image_pinned_by_digest_is_used_exactly() {
    let (registry, base) = Registry::with_busybox();
    let digest = inspect(&format!("docker://{base}"))["Digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let project = Project::new().dockerfile(&format!(
        "FROM {}@{digest}\nRUN echo pinned > /pinned\n",
        registry.image("busybox")
    ));
    let rootfs = build_and_unpack(&registry, &project, "pinned:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("pinned")).unwrap(),
        "pinned\n"
    );
}

#[test]
fn run_deletions_replacements_and_hardlinks_reach_the_image() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         RUN rm -rf /home/app && rm /etc/arch && mkdir /etc/arch && echo dir > /etc/arch/now \
             && mkdir -p /x && echo a > /x/f && ln /x/f /x/g && chmod 4755 /x/f\n"
    ));
    let rootfs = build_and_unpack(&registry, &project, "changes:1");
    assert!(
        !rootfs.join("home/app").exists(),
        "deleted directory must be whited out"
    );
    assert!(rootfs.join("home").is_dir());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/arch/now")).unwrap(),
        "dir\n"
    );
    let f = std::fs::metadata(rootfs.join("x/f")).unwrap();
    let g = std::fs::metadata(rootfs.join("x/g")).unwrap();
    assert_eq!(f.ino(), g.ino(), "hardlinks must stay linked");
    assert_eq!(f.permissions().mode() & 0o7777, 0o4755);
}

#[test]
fn add_extracts_a_local_tar_gz_with_its_owners_and_copies_other_files() {
    let (registry, base) = Registry::with_busybox();
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
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &archive.into_inner().unwrap()).unwrap();
    let project = Project::new()
        .dockerfile(&format!(
            "FROM {base}\nADD tool.tar.gz /opt/\nADD notes.txt /opt/notes.txt\n"
        ))
        .file("notes.txt", "plain");
    std::fs::write(project.path().join("tool.tar.gz"), gz.finish().unwrap()).unwrap();
    let rootfs = build_and_unpack(&registry, &project, "added:1");
    let run = std::fs::metadata(rootfs.join("opt/tool/bin/run")).unwrap();
    assert_eq!((run.uid(), run.gid()), (1000, 50));
    assert_eq!(run.permissions().mode() & 0o7777, 0o750);
    assert!(!rootfs.join("opt/tool.tar.gz").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/notes.txt")).unwrap(),
        "plain"
    );
}

#[test]
fn copy_from_an_image_and_a_stage_index_keeps_contents_and_owners() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         RUN mkdir -p /made && echo zero > /made/by-stage-0 && chown 1000:50 /made/by-stage-0\n\
         FROM scratch\n\
         COPY --from={base} /etc/passwd /from-image/passwd\n\
         COPY --from=0 /made/ /from-stage/\n"
    ));
    let rootfs = build_and_unpack(&registry, &project, "copied-from:1");
    assert!(
        std::fs::read_to_string(rootfs.join("from-image/passwd"))
            .unwrap()
            .contains("app:x:1000")
    );
    let made = std::fs::metadata(rootfs.join("from-stage/by-stage-0")).unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (1000, 50),
        "COPY --from keeps owners"
    );
    assert!(
        !rootfs.join("bin").exists(),
        "only the copied files reach a scratch image"
    );
}

#[test]
fn target_builds_only_the_named_stage() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base} AS tools\nRUN echo tools > /tools\nCMD [\"tools\"]\n\
         FROM {base}\nRUN exit 1\n"
    ));
    let destination = registry.image("target:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .args(["--target", "tools"])
        .run()
        .success();
    assert_eq!(config_of(&destination)["config"]["Cmd"], json!(["tools"]));
    let rootfs = unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tools")).unwrap(),
        "tools\n"
    );
}
