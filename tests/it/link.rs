//! `COPY --link`, end to end: the layer is the copy onto an empty tree (BuildKit's FileOp on
//! scratch), and its key ignores the parent, so a new base image reuses the very same blob while
//! the steps after it run again. Kaniko parses `--link` and ignores it (no rebasing:
//! ../shared/reference/kaniko.md section 2).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::support::tools::{inspect, unpack};
use crate::support::{Kiln, Outcome, Project, Registry};

/// `path type mode uid:gid [size]` for every entry of an uncompressed or gzip layer tar.
fn layer_listing(blob: &Path) -> Vec<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(blob)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(&bytes[..]))
    } else {
        Box::new(&bytes[..])
    };
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "link",
                tar::EntryType::Link => "hardlink",
                _ => "file",
            };
            let mut line = format!(
                "{} {kind} {:o} {}:{}",
                entry.path().unwrap().display(),
                header.mode().unwrap() & 0o7777,
                header.uid().unwrap(),
                header.gid().unwrap()
            );
            match kind {
                "file" => line.push_str(&format!(" {}", header.size().unwrap())),
                "hardlink" => line.push_str(&format!(
                    " -> {}",
                    entry.link_name().unwrap().unwrap().display()
                )),
                _ => {}
            }
            line
        })
        .collect()
}

/// The layer blobs of tag `img` in the OCI layout skopeo wrote, in order.
fn layout_layers(layout: &Path) -> Vec<PathBuf> {
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| blob(layer["digest"].as_str().unwrap()))
        .collect()
}

fn layer_digests(image: &str) -> Vec<String> {
    inspect(&format!("docker://{image}"))["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_link_copy_is_built_on_an_empty_tree_and_its_layers_list_as_buildkit_writes_them() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .file("f.txt", "hello")
        .file("tree/sub/a.txt", "aaa")
        .dockerfile(&format!(
            "FROM {base} AS build\n\
             RUN mkdir /out && echo built > /out/x && ln /out/x /out/y\n\
             FROM {base}\n\
             RUN mkdir -p /opt/real /tmp && chmod 1777 /tmp && ln -s /opt/real /opt/link\n\
             # not resolved through the parent's symlink: /opt/link becomes a directory\n\
             COPY --link f.txt /opt/link/f.txt\n\
             # the parent's 1777 /tmp is not read: the layer records tmp/ as created\n\
             COPY --link tree/ /tmp/app/\n\
             COPY --link --chown=1000:1000 f.txt /deep/a/f.txt\n\
             COPY --link --from=build /out/ /out/\n"
        ));
    let destination = registry.image("link:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .success();
    let root = unpack(&format!("docker://{destination}"), registry.scratch());
    let layers = layout_layers(&registry.scratch().join("unpack-layout"));
    let base_layers = layer_digests(&base).len();
    let listings: Vec<Vec<String>> = layers[base_layers + 1..]
        .iter()
        .map(|blob| layer_listing(blob))
        .collect();
    assert_eq!(
        listings,
        [
            vec![
                "opt/ dir 755 0:0",
                "opt/link/ dir 755 0:0",
                "opt/link/f.txt file 644 0:0 5",
            ],
            vec![
                "tmp/ dir 755 0:0",
                "tmp/app/ dir 755 0:0",
                "tmp/app/sub/ dir 755 0:0",
                "tmp/app/sub/a.txt file 644 0:0 3",
            ],
            vec![
                "deep/ dir 755 1000:1000",
                "deep/a/ dir 755 1000:1000",
                "deep/a/f.txt file 644 1000:1000 5",
            ],
            vec![
                "out/ dir 755 0:0",
                "out/x file 644 0:0 6",
                "out/y hardlink 644 0:0 -> out/x",
            ],
        ]
    );
    // What a consumer unpacks: the layer's directories win over the parent's entries.
    let meta = std::fs::symlink_metadata(root.join("opt/link")).unwrap();
    assert!(meta.is_dir(), "/opt/link is still a symlink");
    assert!(root.join("opt/real").is_dir());
    assert!(!root.join("opt/real/f.txt").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/app/sub/a.txt")).unwrap(),
        "aaa"
    );
}

/// One registry, a second base image differing from busybox only by its config, two cache
/// directories.
struct World {
    registry: Registry,
    bases: [String; 2],
    project: Project,
}

const LINKED: &str = "ARG BASE\n\
     FROM busybox_base AS tool\n\
     RUN echo tool > /tool\n\
     FROM ${BASE}\n\
     RUN echo $((40+2))ran && echo ran > /ran\n\
     COPY --link app/ /app/\n\
     COPY --link --from=tool /tool /tool\n\
     RUN echo $((50+5))after && cat /app/a.txt /tool > /after\n";

impl World {
    fn new() -> World {
        let (registry, busybox) = Registry::with_busybox();
        let relabelled = registry.image("base:b");
        let base_project = Project::new().dockerfile(&format!("FROM {busybox}\nLABEL v=2\n"));
        Kiln::build(base_project.path())
            .push_to(&relabelled)
            .run()
            .success();
        let project = Project::new()
            .file("app/a.txt", "one\n")
            .dockerfile(&LINKED.replace("busybox_base", &busybox));
        World {
            registry,
            bases: [busybox, relabelled],
            project,
        }
    }

    fn build(&self, base: usize, cache_dir: &Path, cache_repo: &str, name: &str) -> Outcome {
        Kiln::build_in(self.project.path(), cache_dir)
            .args([
                "--cache",
                "--build-arg",
                &format!("BASE={}", self.bases[base]),
            ])
            .args(["--cache-repo", &self.registry.image(cache_repo)])
            .push_to(&self.registry.image(name))
            .run()
    }
}

#[test]
fn a_new_base_reuses_the_link_layers_from_the_local_and_the_remote_cache_and_reruns_the_rest() {
    let world = World::new();
    let local = tempfile::tempdir().unwrap();
    let first = world.build(0, local.path(), "cache", "app:1");
    let log = first.everything_printed();
    first.success();
    assert!(log.contains("42ran") && log.contains("55after"), "{log}");

    let cached_links = |log: &str| {
        log.lines()
            .filter(|line| line.contains("CACHED COPY --link"))
            .count()
    };
    // Same local cache directory, a cache repository that holds nothing: a local hit.
    let second = world.build(1, local.path(), "empty-cache", "app:2");
    let log2 = second.everything_printed();
    second.success();
    // Fresh cache directory: only the cache repository can serve it.
    let fresh = tempfile::tempdir().unwrap();
    let third = world.build(1, fresh.path(), "cache", "app:3");
    let log3 = third.everything_printed();
    third.success();
    for (log, from) in [(&log2, "local"), (&log3, "remote")] {
        assert_eq!(cached_links(log), 2, "{from} cache:\n{log}");
        assert!(
            log.contains("42ran") && log.contains("55after"),
            "the steps before and after the --link copies must run again on a new base ({from} cache):\n{log}"
        );
    }

    let [one, two, three] = ["app:1", "app:2", "app:3"].map(|name| {
        let layers = layer_digests(&world.registry.image(name));
        // base, RUN, COPY --link, COPY --link --from, RUN
        layers[layers.len() - 4..].to_vec()
    });
    assert_eq!(one[1..3], two[1..3], "the --link layers are the same blobs");
    assert_eq!(
        one[1..3],
        three[1..3],
        "the --link layers are the same blobs"
    );
    let root = unpack(
        &format!("docker://{}", world.registry.image("app:3")),
        world.registry.scratch(),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("after")).unwrap(),
        "one\ntool\n"
    );
}
