//! Snapshot strategies and modes, `--single-snapshot`, `--ignore-path` and VOLUME, checked on
//! pushed images with skopeo and umoci.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::support::{Kiln, Project, Registry, tools};

/// One RUN per scenario of issue 5. Each pins the times of what it touched (and of their parent
/// directories), so that two builds at different moments can give byte-identical layers.
const SCENARIOS: &str = r#"
RUN T() { touch -h -d @1000000000 "$@"; }; mkdir -p /srv/tree/deep /srv/dir && echo x > /srv/tree/deep/x \
    && echo f > /srv/file && echo i > /srv/dir/inner && ln -s file /srv/link \
    && T /srv/tree/deep/x /srv/tree/deep /srv/tree /srv/file /srv/dir/inner /srv/dir /srv/link /srv
RUN T() { touch -h -d @1000000000 "$@"; }; echo new > /etc/new && T /etc/new /etc
RUN T() { touch -h -d @1000000000 "$@"; }; echo changed > /etc/motd && T /etc/motd
RUN chmod 600 /etc/passwd
RUN T() { touch -h -d @1000000000 "$@"; }; rm /etc/arch && T /etc
RUN T() { touch -h -d @1000000000 "$@"; }; ln /etc/group /etc/group2 && T /etc
RUN T() { touch -h -d @1000000000 "$@"; }; rm -rf /srv/dir && echo now-a-file > /srv/dir && T /srv/dir /srv
RUN T() { touch -h -d @1000000000 "$@"; }; rm /srv/file && mkdir /srv/file && echo in > /srv/file/in \
    && T /srv/file/in /srv/file /srv
RUN T() { touch -h -d @1000000000 "$@"; }; rm /srv/link && ln -s dir /srv/link && T /srv/link /srv
RUN T() { touch -h -d @1000000000 "$@"; }; rm -rf /srv/tree && T /srv
RUN T() { touch -h -d @1000000000 "$@"; }; rm -rf /home && mkdir /home && echo c > /home/c && T /home/c /home
RUN echo -n >> /etc/motd
"#;

/// The layer digests of a pushed image, base layers included.
fn layers(image: &str) -> Vec<String> {
    let manifest = tools::inspect(&format!("docker://{image}"));
    manifest["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer.as_str().unwrap().to_owned())
        .collect()
}

fn history_empty_layers(image: &str) -> Vec<bool> {
    let config = tools::config_of(image);
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["empty_layer"].as_bool().unwrap_or(false))
        .collect()
}

#[test]
fn overlay_and_every_scan_mode_give_identical_layers_for_every_run_scenario() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!("FROM {base}\n{SCENARIOS}"));
    let mut all = Vec::new();
    for (tag, flags) in [
        ("overlay", vec!["--snapshot-strategy", "overlay"]),
        ("redo", vec!["--snapshot-strategy", "scan"]),
        (
            "full",
            vec!["--snapshot-strategy", "scan", "--snapshot-mode", "full"],
        ),
    ] {
        let image = registry.image(&format!("scenarios:{tag}"));
        Kiln::build(project.path())
            .args(flags)
            .push_to(&image)
            .run()
            .success();
        all.push((tag, layers(&image)));
    }
    let (_, overlay) = &all[0];
    // One base layer and one per scenario except the one that changes nothing.
    assert_eq!(overlay.len(), 1 + 11, "{overlay:#?}");
    for (tag, layers) in &all[1..] {
        assert_eq!(layers, overlay, "{tag} differs from overlay");
    }

    let rootfs = tools::unpack(
        &format!("docker://{}", registry.image("scenarios:overlay")),
        registry.scratch(),
    );
    let read = |path: &str| std::fs::read_to_string(rootfs.join(path)).unwrap();
    assert_eq!(read("etc/new"), "new\n");
    assert_eq!(read("etc/motd"), "changed\n");
    let passwd = std::fs::metadata(rootfs.join("etc/passwd")).unwrap();
    assert_eq!(passwd.permissions().mode() & 0o7777, 0o600, "chmod only");
    assert!(!rootfs.join("etc/arch").exists(), "deleted");
    let group = std::fs::metadata(rootfs.join("etc/group")).unwrap();
    let group2 = std::fs::metadata(rootfs.join("etc/group2")).unwrap();
    assert_eq!(group.ino(), group2.ino(), "hardlink");
    assert_eq!(read("srv/dir"), "now-a-file\n", "dir replaced by a file");
    assert_eq!(read("srv/file/in"), "in\n", "file replaced by a dir");
    assert_eq!(
        std::fs::read_link(rootfs.join("srv/link")).unwrap(),
        Path::new("dir"),
        "symlink swap"
    );
    assert!(!rootfs.join("srv/tree").exists(), "whole dir deleted");
    let home: Vec<_> = std::fs::read_dir(rootfs.join("home"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        home,
        vec![std::ffi::OsString::from("c")],
        "opaque directory"
    );
}

#[test]
fn single_snapshot_makes_one_layer_per_stage_and_keeps_every_history_entry() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .file("f", "from context\n")
        .dockerfile(&format!(
            "FROM {base}\n\
         RUN echo a > /a\n\
         COPY f /f\n\
         ENV X=1\n\
         RUN rm /etc/motd && echo b > /b\n"
        ));
    let image = registry.image("single:1");
    Kiln::build(project.path())
        .args(["--single-snapshot"])
        .push_to(&image)
        .run()
        .success();
    assert_eq!(layers(&image).len(), 2, "base layer + one for the stage");
    // Base history, then the four instructions: only the last carries the layer.
    let empty = history_empty_layers(&image);
    assert_eq!(&empty[empty.len() - 4..], &[true, true, true, false]);
    let rootfs = tools::unpack(&format!("docker://{image}"), registry.scratch());
    assert_eq!(std::fs::read_to_string(rootfs.join("a")).unwrap(), "a\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("f")).unwrap(),
        "from context\n"
    );
    assert_eq!(std::fs::read_to_string(rootfs.join("b")).unwrap(), "b\n");
    assert!(!rootfs.join("etc/motd").exists());
}

#[test]
fn ignored_paths_stay_out_of_layers_and_run_writes_to_a_volume_are_discarded() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         RUN mkdir -p /var/cache && echo x > /var/cache/x && echo y > /kept\n\
         RUN test -e /var/cache/x\n\
         VOLUME /data\n\
         RUN echo lost > /data/lost && echo z > /kept2\n\
         RUN test ! -e /data/lost\n"
    ));
    for strategy in ["overlay", "scan"] {
        let image = registry.image(&format!("ignored:{strategy}"));
        Kiln::build(project.path())
            .args([
                "--snapshot-strategy",
                strategy,
                "--ignore-path",
                "/var/cache",
            ])
            .push_to(&image)
            .run()
            .success();
        let scratch = registry.scratch().join(strategy);
        let rootfs = tools::unpack(&format!("docker://{image}"), &scratch);
        assert!(rootfs.join("kept").exists(), "{strategy}");
        assert!(rootfs.join("kept2").exists(), "{strategy}");
        assert!(
            !rootfs.join("var/cache").exists(),
            "{strategy}: ignored path"
        );
        assert!(
            rootfs.join("data").is_dir(),
            "{strategy}: volume mount point"
        );
        assert!(
            !rootfs.join("data/lost").exists(),
            "{strategy}: volume write"
        );
    }
}

#[test]
fn a_relative_ignore_path_is_refused_naming_it() {
    let project = Project::new().dockerfile("FROM scratch\n");
    let stderr = Kiln::build(project.path())
        .args(["--no-push", "--ignore-path", "var/cache"])
        .run()
        .failure();
    assert!(stderr.contains("--ignore-path var/cache"), "{stderr}");
}

#[test]
fn auto_falls_back_to_scan_where_no_overlay_can_be_mounted_and_overlay_refuses_naming_why() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN echo x > /x\n"));
    // overlayfs cannot take a directory with a comma in its mount options: no overlay there.
    let cache = project.out("cache,dir");
    let image = registry.image("fallback:auto");
    Kiln::build_in(project.path(), &cache)
        .push_to(&image)
        .run()
        .success();
    let rootfs = tools::unpack(&format!("docker://{image}"), registry.scratch());
    assert_eq!(std::fs::read_to_string(rootfs.join("x")).unwrap(), "x\n");

    let stderr = Kiln::build_in(project.path(), &cache)
        .args(["--snapshot-strategy", "overlay"])
        .push_to(&registry.image("fallback:overlay"))
        .run()
        .failure();
    assert!(
        stderr.contains("--snapshot-strategy overlay") && stderr.contains("cache,dir"),
        "{stderr}"
    );
}
