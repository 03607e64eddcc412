//! Names for images in the store's `index.json`, so `skopeo inspect oci:<store>:<name>` and
//! `umoci` can open what the warmer stored.
//!
//! Several processes (warmers sharing a volume, builds) may name images at once: each update
//! takes `index.json.lock` exclusively, reads the index, and replaces it with a rename, so a
//! reader never sees a half-written file and no update is lost.

use std::fs::{OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use serde_json::{Map, Value, json};

use crate::{Error, Result, Store};

/// The annotation OCI layouts name their images with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image manifest to name in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedManifest {
    /// The manifest's media type (OCI or Docker schema 2).
    pub media_type: String,
    /// The manifest blob (which must already be in the store).
    pub digest: oci_spec::image::Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its platform as `os`, `architecture` and optional `variant`: one name can carry one
    /// manifest per platform.
    pub platform: (String, String, Option<String>),
}

impl Store {
    /// Points `name` (for `manifest.platform`) at `manifest` in `index.json`, replacing what
    /// that name and platform pointed at before.
    pub fn set_ref(&self, name: &str, manifest: &NamedManifest) -> Result<()> {
        let lock_path = self.root().join("index.json.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io("opening", &lock_path))?;
        lock.lock().map_err(Error::io("locking", &lock_path))?;
        let path = self.root().join("index.json");
        let text = std::fs::read(&path).map_err(Error::io("reading", &path))?;
        let mut index: Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
            action: "reading the store's index.json",
            source,
        })?;
        let (os, architecture, variant) = &manifest.platform;
        let mut platform = Map::new();
        platform.insert("os".into(), json!(os));
        platform.insert("architecture".into(), json!(architecture));
        if let Some(variant) = variant {
            platform.insert("variant".into(), json!(variant));
        }
        let platform = Value::Object(platform);
        let entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest.to_string(),
            "size": manifest.size,
            "platform": platform,
            "annotations": { REF_NAME: name },
        });
        let Some(manifests) = index
            .as_object_mut()
            .map(|object| object.entry("manifests").or_insert_with(|| json!([])))
            .and_then(Value::as_array_mut)
        else {
            return Err(Error::Json {
                action: "reading the store's index.json",
                source: serde::de::Error::custom("it is not an image index"),
            });
        };
        manifests.retain(|existing| {
            existing["annotations"][REF_NAME].as_str() != Some(name)
                || existing["platform"] != platform
        });
        manifests.push(entry);
        let bytes = serde_json::to_vec(&index).map_err(|source| Error::Json {
            action: "encoding the store's index.json",
            source,
        })?;
        let mut temp = tempfile::NamedTempFile::new_in(self.root())
            .map_err(Error::io("creating a file in", self.root()))?;
        // Readable by every user, as the file it replaces (a temporary file starts 0600).
        temp.write_all(&bytes)
            .and_then(|()| {
                temp.as_file()
                    .set_permissions(Permissions::from_mode(0o644))
            })
            .and_then(|()| temp.as_file().sync_all())
            .map_err(Error::io("writing", temp.path().to_path_buf()))?;
        temp.persist(&path)
            .map_err(|err| Error::io("replacing", &path)(err.error))?;
        drop(lock);
        Ok(())
    }

    /// The manifests `index.json` names `name`, with their platforms.
    pub fn refs(&self, name: &str) -> Result<Vec<NamedManifest>> {
        let path = self.root().join("index.json");
        let text = std::fs::read(&path).map_err(Error::io("reading", &path))?;
        let index: Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
            action: "reading the store's index.json",
            source,
        })?;
        let empty = Vec::new();
        let manifests = index["manifests"].as_array().unwrap_or(&empty);
        Ok(manifests
            .iter()
            .filter(|entry| entry["annotations"][REF_NAME].as_str() == Some(name))
            .filter_map(|entry| {
                let text = |value: &Value| value.as_str().map(str::to_owned);
                Some(NamedManifest {
                    media_type: text(&entry["mediaType"])?,
                    digest: entry["digest"].as_str()?.parse().ok()?,
                    size: entry["size"].as_u64()?,
                    platform: (
                        text(&entry["platform"]["os"])?,
                        text(&entry["platform"]["architecture"])?,
                        text(&entry["platform"]["variant"]),
                    ),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(store: &Store, body: &[u8], arch: &str) -> NamedManifest {
        let blob = store.put(body).unwrap();
        NamedManifest {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: blob.digest,
            size: blob.size,
            platform: ("linux".into(), arch.into(), None),
        }
    }

    #[test]
    fn a_name_points_at_one_manifest_per_platform_and_moves_when_set_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = manifest(&store, b"{\"a\":1}", "amd64");
        let arm = manifest(&store, b"{\"a\":2}", "arm64");
        let newer = manifest(&store, b"{\"a\":3}", "amd64");
        store.set_ref("reg/app:1", &amd).unwrap();
        store.set_ref("reg/app:1", &arm).unwrap();
        store.set_ref("other:2", &amd).unwrap();
        store.set_ref("reg/app:1", &newer).unwrap();
        let mut found = store.refs("reg/app:1").unwrap();
        found.sort_by(|a, b| a.platform.cmp(&b.platform));
        assert_eq!(found, vec![newer, arm]);
        assert_eq!(store.refs("other:2").unwrap(), vec![amd]);
    }

    #[test]
    fn concurrent_updates_lose_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let named = manifest(&store, format!("{{\"n\":{n}}}").as_bytes(), "amd64");
                    store.set_ref(&format!("app:{n}"), &named).unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for n in 0..8 {
            assert_eq!(store.refs(&format!("app:{n}")).unwrap().len(), 1, "app:{n}");
        }
    }
}
