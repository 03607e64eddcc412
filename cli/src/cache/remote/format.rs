//! The records of one cache scope as they are stored: an OCI image manifest whose config blob
//! (`application/vnd.kiln.cache.records.v1+json`) lists the step results, and whose layers are
//! every layer those results name (docs/design.md, "Remote cache format").
//!
//! Pure data: reading, merging, expiring, trimming and writing records; the registry and the
//! OCI layout only move the bytes.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use kiln_cas::{LayerRecord, StepRecord};
use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Publication;

/// Media type of the records blob, the manifest's config. Registries store it as an OCI
/// artifact; no tool mistakes the manifest for a runnable image.
pub const RECORDS_MEDIA_TYPE: &str = "application/vnd.kiln.cache.records.v1+json";

/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The OCI 1.1 empty descriptor: the one layer of a scope whose records name no layer, since
/// OCI asks for at least one layer "for portability" and some registries enforce it.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The empty descriptor's blob.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// Most step results (and aliases) one scope keeps: the newest win. Bounds the records blob
/// (~130 bytes a step) and the manifest (one descriptor per layer), whatever the churn.
pub const MAX_RECORDS: usize = 1000;

/// Largest manifest or records blob read back (1,000 records are ~150 KiB).
pub const MAX_BLOB_BYTES: u64 = 16 * 1024 * 1024;

/// A `COPY --from` definition key resolved to a content key, and when that was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The content key.
    pub to: [u8; 32],
    /// Seconds since the Unix epoch.
    pub recorded: u64,
}

/// One scope's records in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRecords {
    /// Step results by cache key.
    pub steps: HashMap<[u8; 32], StepRecord>,
    /// Definition key -> content key.
    pub aliases: HashMap<[u8; 32], Alias>,
}

/// A descriptor, as much of it as the cache uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the blob.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// The manifest a scope's tag points at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The records blob.
    pub config: Descriptor,
    /// Every layer the records name, in the records' order.
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    /// Parses a fetched manifest; `None` (with a warning) when it is not kiln cache records,
    /// which reads as an empty scope: the next publish replaces it.
    pub fn parse(bytes: &[u8], source: &str) -> Option<Manifest> {
        match serde_json::from_slice::<Manifest>(bytes) {
            Ok(manifest) if manifest.config.media_type == RECORDS_MEDIA_TYPE => Some(manifest),
            Ok(manifest) => {
                tracing::warn!(
                    "{source} is not kiln cache records (its config is {}): ignored, the next publish replaces it",
                    manifest.config.media_type
                );
                None
            }
            Err(error) => {
                tracing::warn!(
                    "{source} is not an OCI image manifest ({error}): ignored, the next publish replaces it"
                );
                None
            }
        }
    }
}

/// The records blob as stored. Layers are named by their index in the manifest's `layers`,
/// whose uncompressed digests are `diff_ids` (as in an image config).
#[derive(Debug, Serialize, Deserialize)]
struct RecordsBlob {
    #[serde(default)]
    diff_ids: Vec<String>,
    #[serde(default)]
    steps: Vec<StepEntry>,
    #[serde(default)]
    aliases: Vec<AliasEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StepEntry {
    #[serde(with = "hex_key")]
    key: [u8; 32],
    layer: Option<usize>,
    recorded: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct AliasEntry {
    #[serde(with = "hex_key")]
    from: [u8; 32],
    #[serde(with = "hex_key")]
    to: [u8; 32],
    recorded: u64,
}

/// A scope's records ready to store: the records blob, the layers it names and the manifest.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The records blob (the manifest's config).
    pub config: Vec<u8>,
    /// Whether the manifest carries the empty descriptor (no layer named).
    pub empty_layer: bool,
    /// The manifest.
    pub manifest: Vec<u8>,
}

impl ScopeRecords {
    /// Reads a scope's records from its manifest and records blob. The blob's digest was
    /// verified by whoever fetched it.
    pub fn decode(manifest: &Manifest, config: &[u8]) -> anyhow::Result<ScopeRecords> {
        let blob: RecordsBlob =
            serde_json::from_slice(config).context("the records blob is not valid JSON")?;
        let mut layers = Vec::with_capacity(blob.diff_ids.len());
        for (index, diff_id) in blob.diff_ids.iter().enumerate() {
            let Some(descriptor) = manifest.layers.get(index) else {
                bail!(
                    "the records name {} layers, the manifest has {}",
                    blob.diff_ids.len(),
                    manifest.layers.len()
                );
            };
            let digest: Digest = descriptor
                .digest
                .parse()
                .with_context(|| format!("layer {index} has an invalid digest"))?;
            layers.push(LayerRecord {
                digest,
                size: descriptor.size,
                diff_id: diff_id.clone(),
                media_type: descriptor.media_type.clone(),
            });
        }
        let mut records = ScopeRecords::default();
        for step in blob.steps {
            let layer =
                match step.layer {
                    None => None,
                    Some(index) => Some(layers.get(index).cloned().with_context(|| {
                        format!("a step names layer {index} of {}", layers.len())
                    })?),
                };
            records.put_step(
                step.key,
                StepRecord {
                    layer,
                    recorded: step.recorded,
                },
            );
        }
        for alias in blob.aliases {
            records.put_alias(
                alias.from,
                Alias {
                    to: alias.to,
                    recorded: alias.recorded,
                },
            );
        }
        Ok(records)
    }

    /// Adds a step result unless a newer one for the same key is there.
    fn put_step(&mut self, key: [u8; 32], record: StepRecord) {
        match self.steps.get(&key) {
            Some(existing) if existing.recorded > record.recorded => {}
            _ => {
                self.steps.insert(key, record);
            }
        }
    }

    fn put_alias(&mut self, from: [u8; 32], alias: Alias) {
        match self.aliases.get(&from) {
            Some(existing) if existing.recorded > alias.recorded => {}
            _ => {
                self.aliases.insert(from, alias);
            }
        }
    }

    /// Adds a build's new results; its aliases are recorded `now`.
    pub fn merge(&mut self, publication: &Publication, now: u64) {
        for (key, record) in &publication.steps {
            self.put_step(*key, record.clone());
        }
        for (from, to) in &publication.aliases {
            self.put_alias(
                *from,
                Alias {
                    to: *to,
                    recorded: now,
                },
            );
        }
    }

    /// Drops everything recorded before `oldest` (seconds since the epoch).
    pub fn expire(&mut self, oldest: u64) {
        self.steps.retain(|_, record| record.recorded >= oldest);
        self.aliases.retain(|_, alias| alias.recorded >= oldest);
    }

    /// Keeps the newest [`MAX_RECORDS`] steps and aliases.
    pub fn trim(&mut self) {
        if self.steps.len() > MAX_RECORDS {
            let kept: Vec<[u8; 32]> = newest_first(&self.steps, |r| r.recorded)
                .into_iter()
                .take(MAX_RECORDS)
                .collect();
            let mut steps = std::mem::take(&mut self.steps);
            self.steps = kept
                .into_iter()
                .filter_map(|key| steps.remove_entry(&key))
                .collect();
        }
        if self.aliases.len() > MAX_RECORDS {
            let kept: Vec<[u8; 32]> = newest_first(&self.aliases, |a| a.recorded)
                .into_iter()
                .take(MAX_RECORDS)
                .collect();
            let mut aliases = std::mem::take(&mut self.aliases);
            self.aliases = kept
                .into_iter()
                .filter_map(|key| aliases.remove_entry(&key))
                .collect();
        }
    }

    /// The records blob, the layers it names and the manifest, in a canonical order (newest
    /// first, then by key), so equal records always give equal bytes.
    pub fn encode(&self) -> anyhow::Result<Encoded> {
        let mut layers: Vec<LayerRecord> = Vec::new();
        let mut positions: HashMap<&Digest, usize> = HashMap::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for key in newest_first(&self.steps, |r| r.recorded) {
            let record = &self.steps[&key];
            let layer = record.layer.as_ref().map(|layer| {
                *positions.entry(&layer.digest).or_insert_with(|| {
                    layers.push(layer.clone());
                    layers.len() - 1
                })
            });
            steps.push(StepEntry {
                key,
                layer,
                recorded: record.recorded,
            });
        }
        let aliases = newest_first(&self.aliases, |a| a.recorded)
            .into_iter()
            .map(|from| AliasEntry {
                from,
                to: self.aliases[&from].to,
                recorded: self.aliases[&from].recorded,
            })
            .collect();
        let blob = RecordsBlob {
            diff_ids: layers.iter().map(|layer| layer.diff_id.clone()).collect(),
            steps,
            aliases,
        };
        let config = serde_json::to_vec(&blob).context("encoding the cache records")?;
        let mut descriptors: Vec<Descriptor> = layers
            .iter()
            .map(|layer| Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.to_string(),
                size: layer.size,
            })
            .collect();
        let empty_layer = descriptors.is_empty();
        if empty_layer {
            descriptors.push(Descriptor {
                media_type: EMPTY_MEDIA_TYPE.to_owned(),
                digest: sha256(EMPTY_BLOB),
                size: EMPTY_BLOB.len() as u64,
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: Descriptor {
                media_type: RECORDS_MEDIA_TYPE.to_owned(),
                digest: sha256(&config),
                size: config.len() as u64,
            },
            layers: descriptors,
        };
        let manifest = serde_json::to_vec(&manifest).context("encoding the cache manifest")?;
        Ok(Encoded {
            config,
            empty_layer,
            manifest,
        })
    }
}

/// Keys ordered newest first, ties by key.
fn newest_first<V>(map: &HashMap<[u8; 32], V>, recorded: impl Fn(&V) -> u64) -> Vec<[u8; 32]> {
    let mut keys: Vec<([u8; 32], u64)> = map.iter().map(|(k, v)| (*k, recorded(v))).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    keys.into_iter().map(|(key, _)| key).collect()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Keys as 64 lowercase hex digits.
mod hex_key {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(key: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(D::Error::custom(format!(
                "key {text:?} is not 64 hex digits"
            )));
        }
        let mut key = [0u8; 32];
        for (index, pair) in bytes.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => key[index] = (high * 16 + low) as u8,
                _ => return Err(D::Error::custom(format!("key {text:?} is not hex"))),
            }
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> LayerRecord {
        let bytes = [n; 8];
        LayerRecord {
            digest: sha256(&bytes).parse().unwrap(),
            size: 8,
            diff_id: sha256(&[n, n]),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
        }
    }

    fn step(layer: Option<LayerRecord>, recorded: u64) -> StepRecord {
        StepRecord { layer, recorded }
    }

    fn round_trip(records: &ScopeRecords) -> ScopeRecords {
        let encoded = records.encode().unwrap();
        let manifest = Manifest::parse(&encoded.manifest, "test").unwrap();
        assert_eq!(manifest.config.digest, sha256(&encoded.config));
        ScopeRecords::decode(&manifest, &encoded.config).unwrap()
    }

    #[test]
    fn records_survive_encoding_with_shared_and_missing_layers() {
        let mut records = ScopeRecords::default();
        records.put_step([1; 32], step(Some(layer(1)), 10));
        records.put_step([2; 32], step(Some(layer(1)), 11));
        records.put_step([3; 32], step(Some(layer(2)), 12));
        records.put_step([4; 32], step(None, 13));
        records.put_alias(
            [5; 32],
            Alias {
                to: [6; 32],
                recorded: 14,
            },
        );
        assert_eq!(round_trip(&records), records);
        let encoded = records.encode().unwrap();
        let manifest = Manifest::parse(&encoded.manifest, "test").unwrap();
        assert_eq!(manifest.layers.len(), 2, "a shared layer is listed once");
        assert!(!encoded.empty_layer);
    }

    #[test]
    fn a_scope_without_layers_carries_the_empty_descriptor() {
        let mut records = ScopeRecords::default();
        records.put_step([4; 32], step(None, 13));
        let encoded = records.encode().unwrap();
        assert!(encoded.empty_layer);
        let manifest = Manifest::parse(&encoded.manifest, "test").unwrap();
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].media_type, EMPTY_MEDIA_TYPE);
        assert_eq!(round_trip(&records), records);
    }

    #[test]
    fn equal_records_encode_to_equal_bytes() {
        let mut a = ScopeRecords::default();
        let mut b = ScopeRecords::default();
        for n in 0..50u8 {
            a.put_step([n; 32], step(Some(layer(n % 7)), u64::from(n % 5)));
        }
        for n in (0..50u8).rev() {
            b.put_step([n; 32], step(Some(layer(n % 7)), u64::from(n % 5)));
        }
        assert_eq!(a.encode().unwrap().manifest, b.encode().unwrap().manifest);
    }

    #[test]
    fn merging_keeps_the_newer_record_of_a_key() {
        let mut records = ScopeRecords::default();
        records.put_step([1; 32], step(Some(layer(1)), 20));
        let publication = Publication {
            steps: vec![
                ([1; 32], step(Some(layer(2)), 10)),
                ([2; 32], step(None, 30)),
            ],
            aliases: vec![([3; 32], [4; 32])],
        };
        records.merge(&publication, 40);
        assert_eq!(records.steps[&[1; 32]].recorded, 20);
        assert_eq!(records.steps.len(), 2);
        assert_eq!(
            records.aliases[&[3; 32]],
            Alias {
                to: [4; 32],
                recorded: 40
            }
        );
    }

    #[test]
    fn expiry_drops_steps_and_aliases_recorded_before_the_limit() {
        let mut records = ScopeRecords::default();
        records.put_step([1; 32], step(None, 99));
        records.put_step([2; 32], step(None, 100));
        records.put_alias(
            [3; 32],
            Alias {
                to: [4; 32],
                recorded: 50,
            },
        );
        records.expire(100);
        assert_eq!(records.steps.keys().collect::<Vec<_>>(), vec![&[2; 32]]);
        assert!(records.aliases.is_empty());
    }

    #[test]
    fn trimming_keeps_the_newest_thousand_steps() {
        let mut records = ScopeRecords::default();
        for n in 0..1010u64 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&n.to_be_bytes());
            records.put_step(key, step(None, 1000 + n));
        }
        records.trim();
        assert_eq!(records.steps.len(), MAX_RECORDS);
        let oldest = records.steps.values().map(|r| r.recorded).min().unwrap();
        assert_eq!(oldest, 1010);
    }

    #[test]
    fn a_manifest_of_something_else_reads_as_no_records() {
        let other = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(Manifest::parse(other, "test").is_none());
        assert!(Manifest::parse(b"not json", "test").is_none());
    }

    #[test]
    fn records_naming_a_layer_the_manifest_lacks_are_refused() {
        let manifest = Manifest {
            schema_version: 2,
            media_type: None,
            config: Descriptor {
                media_type: RECORDS_MEDIA_TYPE.to_owned(),
                digest: sha256(b""),
                size: 0,
            },
            layers: vec![],
        };
        let key = "00".repeat(32);
        let config =
            format!(r#"{{"diff_ids":[],"steps":[{{"key":"{key}","layer":0,"recorded":1}}]}}"#);
        let error = ScopeRecords::decode(&manifest, config.as_bytes()).unwrap_err();
        assert!(format!("{error:#}").contains("layer 0 of 0"), "{error:#}");
    }
}
