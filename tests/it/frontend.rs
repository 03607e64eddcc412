//! Dockerfile front-end features built end to end: heredocs, `COPY --parents/--exclude`,
//! symbolic `--chmod`, `RUN --network=none`, proxy args and `--custom-platform`, checked with
//! skopeo (config, history) and umoci (files).

use std::os::unix::fs::PermissionsExt;

use crate::support::base::{host_arch, push_multi_platform};
use crate::support::tools::{config_of, exists};
use crate::support::{Kiln, Project, Registry, build_and_unpack};

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: std::path::PathBuf) -> u32 {
    std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn heredoc_run_and_copy_create_what_buildkit_creates() {
    let (registry, base) = Registry::with_busybox();
    let dockerfile = format!(
        "FROM {base}\n\
         ARG NAME=kiln\n\
         RUN <<EOF\n\
         echo \"plain $NAME\" > /plain\n\
         echo second >> /plain\n\
         EOF\n\
         RUN <<-EOF\n\
         \t#!/bin/sh\n\
         \techo \"script $0\" > /script\n\
         \tEOF\n\
         RUN cat <<'EOF' > /stdin\n\
         quoted $NAME\n\
         EOF\n\
         COPY --chmod=u+x <<one <<'two' /docs/\n\
         hello $NAME\n\
         one\n\
         raw $NAME\n\
         two\n\
         COPY <<EOF /single.txt\n\
         only\n\
         EOF\n"
    );
    let project = Project::new().dockerfile(&dockerfile);
    let rootfs = build_and_unpack(&registry, &project, "heredoc:1");
    assert_eq!(read(rootfs.join("plain")), "plain kiln\nsecond\n");
    assert_eq!(read(rootfs.join("script")), "script /dev/pipes/EOF\n");
    assert_eq!(read(rootfs.join("stdin")), "quoted $NAME\n");
    assert_eq!(read(rootfs.join("docs/one")), "hello kiln\n");
    assert_eq!(read(rootfs.join("docs/two")), "raw $NAME\n");
    assert_eq!(mode(rootfs.join("docs/one")), 0o744);
    assert_eq!(read(rootfs.join("single.txt")), "only\n");
    assert_eq!(mode(rootfs.join("single.txt")), 0o644);
    assert!(
        !rootfs.join("dev/pipes").exists(),
        "the script mount must not reach the image"
    );
}

#[test]
fn copy_parents_exclude_and_symbolic_chmod() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .dockerfile(&format!(
            "FROM {base}\n\
             COPY --parents a/b/c.txt x/./y/z.txt /kept/\n\
             COPY --parents src/*/main.go /go/\n\
             COPY --exclude=*.md --exclude=tmp docs /docs/\n\
             COPY --chmod=g-w,o=r,a+X tool.sh data.txt /bin2/\n"
        ))
        .file("a/b/c.txt", "c")
        .file("x/y/z.txt", "z")
        .file("src/one/main.go", "1")
        .file("src/two/main.go", "2")
        .file("src/two/other.go", "no")
        .file("docs/guide.txt", "g")
        .file("docs/README.md", "r")
        .file("docs/tmp/scratch", "s")
        .file("docs/sub/notes.md", "n")
        .file("tool.sh", "#!/bin/sh\n")
        .file("data.txt", "d");
    std::fs::set_permissions(
        project.path().join("tool.sh"),
        std::fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    std::fs::set_permissions(
        project.path().join("data.txt"),
        std::fs::Permissions::from_mode(0o660),
    )
    .unwrap();
    let rootfs = build_and_unpack(&registry, &project, "copyflags:1");
    assert_eq!(read(rootfs.join("kept/a/b/c.txt")), "c");
    assert_eq!(read(rootfs.join("kept/y/z.txt")), "z");
    assert!(
        !rootfs.join("kept/x").exists(),
        "./ marks where the kept part starts"
    );
    assert_eq!(read(rootfs.join("go/src/one/main.go")), "1");
    assert_eq!(read(rootfs.join("go/src/two/main.go")), "2");
    assert!(!rootfs.join("go/src/two/other.go").exists());
    assert_eq!(read(rootfs.join("docs/guide.txt")), "g");
    assert!(!rootfs.join("docs/README.md").exists());
    assert!(!rootfs.join("docs/tmp").exists());
    assert!(rootfs.join("docs/sub").is_dir());
    assert!(
        rootfs.join("docs/sub/notes.md").exists(),
        "*.md matches one level below the source only, as in .dockerignore"
    );
    assert_eq!(mode(rootfs.join("bin2/tool.sh")), 0o755);
    assert_eq!(mode(rootfs.join("bin2/data.txt")), 0o644);
}

#[test]
fn run_network_none_sees_only_loopback() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         RUN --network=none sed -n '3,$s/:.*//p' /proc/net/dev | sed 's/ //g' > /none\n\
         RUN --network=host sed -n '3,$p' /proc/net/dev | wc -l > /host\n"
    ));
    let rootfs = build_and_unpack(&registry, &project, "network:1");
    assert_eq!(read(rootfs.join("none")), "lo\n");
    let host: usize = read(rootfs.join("host")).trim().parse().unwrap();
    assert!(host > 1, "the host network has more than loopback");
}

#[test]
fn proxy_args_reach_run_but_not_history_or_config() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN echo \"$HTTP_PROXY|$no_proxy\" > /proxy\n"
    ));
    let destination = registry.image("proxy:1");
    Kiln::build(project.path())
        .args([
            "--build-arg",
            "HTTP_PROXY=http://user:secret@proxy:3128",
            "--build-arg",
            "no_proxy=internal",
        ])
        .push_to(&destination)
        .run()
        .success();
    let rootfs =
        crate::support::tools::unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(
        read(rootfs.join("proxy")),
        "http://user:secret@proxy:3128|internal\n"
    );
    let config = config_of(&destination);
    let text = config.to_string();
    for value in [
        "secret",
        "proxy:3128",
        "internal",
        "HTTP_PROXY=",
        "no_proxy=",
    ] {
        assert!(!text.contains(value), "{value} leaked into {text}");
    }
    assert_eq!(
        config["history"][1]["created_by"],
        "RUN /bin/sh -c echo \"$HTTP_PROXY|$no_proxy\" > /proxy # buildkit"
    );
}

#[test]
fn custom_platform_selects_bases_and_config_and_buildplatform_stages_run_natively() {
    let registry = Registry::start();
    let base = registry.image("multi:latest");
    push_multi_platform(&base, registry.scratch());
    let (other, variant) = if host_arch() == "amd64" {
        ("arm64", Some("v8"))
    } else {
        ("amd64", None)
    };
    let platform = match variant {
        Some(v) => format!("linux/{other}/{v}"),
        None => format!("linux/{other}"),
    };
    let project = Project::new().dockerfile(&format!(
        "FROM --platform=$BUILDPLATFORM {base} AS build\n\
         ARG TARGETARCH\n\
         RUN cp /etc/arch /build-arch && echo $TARGETARCH > /target-arch\n\
         FROM --platform=$TARGETPLATFORM {base}\n\
         ARG TARGETARCH\n\
         COPY <<EOF /target\n\
         $TARGETARCH\n\
         EOF\n\
         COPY --from=build /build-arch /target-arch /\n"
    ));
    let destination = registry.image("foreign:1");
    Kiln::build(project.path())
        .args(["--custom-platform", &platform])
        .push_to(&destination)
        .run()
        .success();
    let rootfs = crate::support::tools::unpack_with(
        &format!("docker://{destination}"),
        registry.scratch(),
        &[],
    );
    assert_eq!(read(rootfs.join("etc/arch")), format!("{other}\n"));
    assert_eq!(read(rootfs.join("target")), format!("{other}\n"));
    assert_eq!(
        read(rootfs.join("build-arch")),
        format!("{}\n", host_arch()),
        "a $BUILDPLATFORM stage runs natively on the host's image"
    );
    assert_eq!(read(rootfs.join("target-arch")), format!("{other}\n"));
    let config = config_of(&destination);
    assert_eq!(config["architecture"], other);

    let with_run = Project::new().dockerfile(&format!("FROM {base}\n\n RUN true\n"));
    let stderr = Kiln::build(with_run.path())
        .args(["--custom-platform", &platform])
        .push_to(&registry.image("foreign:2"))
        .run()
        .failure();
    assert!(stderr.contains("Dockerfile:3:2"), "{stderr}");
    assert!(stderr.contains("does not emulate"), "{stderr}");
    assert!(!exists(&registry.image("foreign:2")));
}

#[test]
fn ssh_mounts_and_insecure_security_are_refused_with_their_position() {
    let (registry, base) = Registry::with_busybox();
    for (line, expected) in [
        (
            "RUN --mount=type=ssh git fetch",
            "is not supported: kiln does not forward SSH agents",
        ),
        (
            "RUN --security=insecure true",
            "--security=insecure is refused",
        ),
    ] {
        let project = Project::new().dockerfile(&format!("FROM {base}\n\n  {line}\n"));
        let destination = registry.image("refused:1");
        let stderr = Kiln::build(project.path())
            .push_to(&destination)
            .run()
            .failure();
        assert!(stderr.contains("Dockerfile:3:3"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!exists(&destination));
    }
}
