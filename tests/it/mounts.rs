//! `RUN --mount`: cache, bind, tmpfs and secret mounts executed in the sandbox, checked in the
//! pushed image with skopeo (config, history) and umoci (files); SSH mounts refused.

use std::path::Path;

use crate::support::tools::{config_of, unpack};
use crate::support::{Kiln, Project, Registry};

/// Every file under `root` whose contents or name contain `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if path.to_string_lossy().contains(needle) {
                found.push(path.display().to_string());
            }
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let data = std::fs::read(&path).unwrap();
                if data
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

const CACHE_DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE}
ARG ROUND
RUN --mount=type=cache,target=/var/cache/app,mode=0700,uid=1000,gid=1000 \
    n=$(cat /var/cache/app/count 2>/dev/null || echo 0); \
    echo $((n + 1)) > /var/cache/app/count; \
    cp /var/cache/app/count /seen; \
    stat -c %a:%u:%g /var/cache/app > /perm; \
    echo "$ROUND" > /round
"#;

fn cache_persists_and_stays_out_of_layers(strategy: &str) {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(CACHE_DOCKERFILE);
    let cache_dir = tempfile::tempdir().unwrap();
    for round in ["1", "2"] {
        let destination = registry.image(&format!("cache-{strategy}:{round}"));
        Kiln::build_in(project.path(), cache_dir.path())
            .args(["--build-arg", &format!("BASE={base}")])
            .args(["--build-arg", &format!("ROUND={round}")])
            .args(["--snapshot-strategy", strategy])
            .push_to(&destination)
            .run()
            .success();
        let rootfs = unpack(
            &format!("docker://{destination}"),
            &registry.scratch().join(format!("unpack-{round}")),
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("seen")).unwrap().trim(),
            round,
            "the cache did not persist between builds"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("perm")).unwrap().trim(),
            "700:1000:1000"
        );
        assert!(
            !rootfs.join("var/cache/app").exists(),
            "the cache mount reached a layer"
        );
    }
    let mounts: Vec<_> = std::fs::read_dir(cache_dir.path().join("mounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(
        std::fs::read_to_string(mounts[0].join("count"))
            .unwrap()
            .trim(),
        "2"
    );
}

#[test]
fn a_cache_mount_persists_across_builds_and_is_absent_from_layers_under_the_scan_strategy() {
    cache_persists_and_stays_out_of_layers("scan");
}

#[test]
fn a_cache_mount_persists_across_builds_and_is_absent_from_layers_under_the_overlay_strategy() {
    cache_persists_and_stays_out_of_layers("overlay");
}

#[test]
fn context_binds_honour_dockerignore_are_read_only_or_discard_writes_and_none_reach_layers() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .dockerfile(&format!(
            "FROM {base}\n\
             RUN --mount=type=bind,source=src,target=/src --mount=type=tmpfs,target=/scratch,size=1m \\\n\
             \x20   test -z \"$(ls /scratch)\" && cat /src/input > /scratch/x && cp /scratch/x /copied \\\n\
             \x20   && grep -q ' /scratch tmpfs ' /proc/mounts && ! touch /src/new 2>/dev/null \\\n\
             \x20   && test ! -e /src/hidden\n\
             RUN --mount=type=bind,source=src,target=/src,rw --mount=type=bind,source=file,target=/file,rw \\\n\
             \x20   echo changed > /src/input && echo changed > /file && cat /src/input /file > /after\n"
        ))
        .file("file", "unchanged")
        .file(".dockerignore", "src/hidden\n")
        .file("src/hidden", "ignored")
        .file("src/input", "from the context");
    let destination = registry.image("bind:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .success();
    let rootfs = unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("copied")).unwrap(),
        "from the context"
    );
    assert!(
        !rootfs.join("src").exists(),
        "the bind mount reached a layer"
    );
    assert!(
        !rootfs.join("scratch").exists(),
        "the tmpfs reached a layer"
    );
    assert!(!project.path().join("src/new").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("after")).unwrap(),
        "changed\nchanged\n"
    );
    assert!(
        !rootfs.join("file").exists(),
        "the rw file mount reached a layer"
    );
    assert_eq!(
        std::fs::read_to_string(project.path().join("src/input")).unwrap(),
        "from the context",
        "a rw bind changed the context"
    );
    assert_eq!(
        std::fs::read_to_string(project.path().join("file")).unwrap(),
        "unchanged"
    );
}

#[test]
fn secrets_from_a_file_and_an_env_var_reach_the_command_and_nothing_else() {
    let (registry, base) = Registry::with_busybox();
    let value = "kiln-secret-value-7f3a9c";
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         RUN --mount=type=secret,id=token --mount=type=secret,id=api,env=API_KEY \\\n\
         \x20   [ \"$(cat /run/secrets/token)\" = \"$API_KEY\" ] && echo same > /same \\\n\
         \x20   && stat -c %a /run/secrets/token > /mode\n"
    ));
    let secret_file = project.out("token");
    std::fs::write(&secret_file, value).unwrap();
    let destination = registry.image("secret:1");
    let outcome = Kiln::build(project.path())
        .args([
            "--secret",
            &format!("id=token,src={}", secret_file.display()),
        ])
        .args(["--secret", "id=api,env=KILN_TEST_API_KEY"])
        .env("KILN_TEST_API_KEY", value)
        .args(["--verbosity", "trace"])
        .push_to(&destination)
        .run();
    let printed = outcome.everything_printed();
    assert!(outcome.succeeded(), "{printed}");
    assert!(!printed.contains(value), "kiln printed the secret");

    let rootfs = unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("same")).unwrap().trim(),
        "same"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("mode")).unwrap().trim(),
        "400"
    );
    assert!(
        !rootfs.join("run/secrets").exists(),
        "the secret mount point reached a layer"
    );
    assert_eq!(files_containing(&rootfs, value), Vec::<String>::new());
    let config = config_of(&destination);
    assert!(!config.to_string().contains(value), "{config:#}");
    assert!(
        config["history"].to_string().contains("/run/secrets/token"),
        "{config:#}"
    );
}

#[test]
fn a_required_secret_that_was_not_given_fails_at_its_line() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN --mount=type=secret,id=npm,required=true cat /run/secrets/npm\n"
    ));
    let stderr = Kiln::build(project.path())
        .push_to(&registry.image("secret:missing"))
        .run()
        .failure();
    assert!(stderr.contains("Dockerfile:2:1"), "{stderr}");
    assert!(
        stderr.contains("secret npm is required but was not provided"),
        "{stderr}"
    );
}

#[test]
fn ssh_mounts_are_refused_at_their_line() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN echo first\nRUN --mount=type=ssh git clone git@example.com:x.git\n"
    ));
    let stderr = Kiln::build(project.path())
        .push_to(&registry.image("ssh:1"))
        .run()
        .failure();
    assert!(stderr.contains("Dockerfile:3:1"), "{stderr}");
    assert!(stderr.contains("type=ssh"), "{stderr}");
    assert!(stderr.contains("does not forward SSH agents"), "{stderr}");
}

#[test]
fn binds_and_caches_from_a_stage_or_an_image_read_its_root_and_stay_out_of_layers() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base} AS tools\n\
         RUN mkdir /out && echo built-in-stage > /out/artifact\n\
         FROM {base}\n\
         RUN --mount=type=bind,from=tools,source=/out,target=/tools \\\n\
         \x20   --mount=type=bind,from={base},source=/bin,target=/imgbin \\\n\
         \x20   cat /tools/artifact > /from-stage && test -x /imgbin/busybox && echo ok > /from-image\n\
         RUN --mount=type=cache,target=/seeded,from=tools,source=/out cat /seeded/artifact > /from-cache\n"
    ));
    let destination = registry.image("from:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .success();
    let rootfs = unpack(&format!("docker://{destination}"), registry.scratch());
    let read = |name: &str| std::fs::read_to_string(rootfs.join(name)).unwrap();
    assert_eq!(read("from-stage"), "built-in-stage\n");
    assert_eq!(read("from-image"), "ok\n");
    assert_eq!(read("from-cache"), "built-in-stage\n");
    for mount in ["tools", "imgbin", "seeded", "out"] {
        assert!(!rootfs.join(mount).exists(), "/{mount} reached a layer");
    }
}
