//! Multi-layer test images written tar block by tar block, with what real base images contain
//! and simple writers never produce: whiteouts, opaque directories, a directory replaced by a
//! file and back, hardlinks across layers, devices, fifos, xattrs, setuid/setgid/sticky modes
//! and non-root owners. Pushed to the test registry with skopeo.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use tar::{EntryType, Header};

use crate::support::base::{put, sha256, write_index};
use crate::support::tools::require;

/// Applets the listing script and the RUN need.
const APPLETS: &[&str] = &[
    "sh",
    "find",
    "sort",
    "stat",
    "sha256sum",
    "readlink",
    "cat",
    "echo",
    "test",
    "[",
    "ls",
];

/// One layer's tar, built in memory (test layers are small).
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

/// Metadata of one entry; `Default` is a root-owned entry with mtime 1_600_000_000.
#[derive(Clone)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: Vec<(&'static str, Vec<u8>)>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            xattrs: Vec::new(),
        }
    }
}

impl Meta {
    pub fn mode(mode: u32) -> Meta {
        Meta {
            mode,
            ..Meta::default()
        }
    }

    pub fn owned(mut self, uid: u64, gid: u64) -> Meta {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Meta {
        self.mtime = mtime;
        self
    }

    pub fn xattr(mut self, key: &'static str, value: &[u8]) -> Meta {
        self.xattrs.push((key, value.to_vec()));
        self
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, meta: &Meta, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(meta.mode);
        header.set_uid(meta.uid);
        header.set_gid(meta.gid);
        header.set_mtime(meta.mtime);
        header.set_size(size);
        header
    }

    fn pax(&mut self, meta: &Meta) {
        if meta.xattrs.is_empty() {
            return;
        }
        let records: Vec<(String, &[u8])> = meta
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
    }

    pub fn dir(&mut self, path: &str, meta: Meta) -> &mut Layer {
        self.pax(&meta);
        let mut header = Layer::header(EntryType::Directory, &meta, 0);
        self.builder
            .append_data(&mut header, path, std::io::empty())
            .unwrap();
        self
    }

    pub fn file(&mut self, path: &str, meta: Meta, contents: &[u8]) -> &mut Layer {
        self.pax(&meta);
        let mut header = Layer::header(EntryType::Regular, &meta, contents.len() as u64);
        self.builder
            .append_data(&mut header, path, contents)
            .unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Layer {
        let mut header = Layer::header(EntryType::Symlink, &Meta::mode(0o777), 0);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Layer {
        let mut header = Layer::header(EntryType::Link, &Meta::default(), 0);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn node(&mut self, path: &str, kind: EntryType, dev: (u32, u32), meta: Meta) -> &mut Layer {
        let mut header = Layer::header(kind, &meta, 0);
        header.set_device_major(dev.0).unwrap();
        header.set_device_minor(dev.1).unwrap();
        self.builder
            .append_data(&mut header, path, std::io::empty())
            .unwrap();
        self
    }

    /// A regular file whose name is written verbatim, `..` included (tar-rs's own path setters
    /// refuse those), as a hostile layer would have it.
    pub fn verbatim_file(&mut self, name: &str, contents: &[u8]) -> &mut Layer {
        let mut header = Layer::header(EntryType::Regular, &Meta::default(), contents.len() as u64);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        self.builder.append(&header, contents).unwrap();
        self
    }

    /// An entry of any kind whose name and link target are written verbatim (`..`, absolute
    /// paths and all), as a hostile layer would have them.
    pub fn verbatim(
        &mut self,
        kind: EntryType,
        name: &str,
        link: &str,
        contents: &[u8],
    ) -> &mut Layer {
        let mut header = Layer::header(kind, &Meta::default(), contents.len() as u64);
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        self.builder.append(&header, contents).unwrap();
        self
    }

    /// A whiteout of `path` (`dir/.wh.name`), or an opaque marker for `dir/.wh..wh..opq`.
    pub fn whiteout(&mut self, path: &str) -> &mut Layer {
        self.file(path, Meta::default(), b"")
    }

    /// The gzip blob and the diff id.
    fn finish(self) -> (Vec<u8>, String) {
        let tar = self.builder.into_inner().unwrap();
        let diff_id = sha256(&tar);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), diff_id)
    }
}

/// The layer with busybox, the applets the tests run, and `/etc/passwd`.
pub fn busybox() -> Layer {
    let binary = std::fs::read(require("busybox", "busybox-static")).unwrap();
    let mut layer = Layer::new();
    layer
        .dir("bin/", Meta::mode(0o755))
        .dir("etc/", Meta::mode(0o755))
        .file("bin/busybox", Meta::mode(0o755), &binary)
        .file(
            "etc/passwd",
            Meta::default(),
            b"root:x:0:0:root:/root:/bin/sh\n",
        );
    for applet in APPLETS {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer
}

/// Writes `layers` as a host-platform image tagged `latest` in the OCI layout `layout`;
/// returns the layers' digests.
pub fn write_layout(layout: &Path, layers: Vec<Layer>) -> Vec<String> {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let (blob, diff_id) = layer.finish();
        descriptors.push(put(
            layout,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &blob,
        ));
        diff_ids.push(diff_id);
    }
    let history: Vec<_> = diff_ids
        .iter()
        .map(|_| json!({ "created": "2024-01-01T00:00:00Z", "created_by": "test layer" }))
        .collect();
    let config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": crate::support::base::host_arch(),
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    let config = put(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descriptors,
    });
    let descriptor = put(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    write_index(layout, "latest", descriptor);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect()
}
