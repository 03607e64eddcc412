//! Saving credentials to `config.json` the way `docker login` does, so Docker, Kaniko and
//! kiln share one file: `auths[<server>] = {"auth": base64("user:password")}`, every other
//! key kept, the file replaced atomically and readable by its owner only.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::docker_config::DOCKER_HUB_SERVER;
use super::secret::Secret;
use crate::reference::DOCKER_HUB;

/// Names under which `docker login` treats a server as Docker Hub.
const DOCKER_HUB_NAMES: [&str; 4] = [
    DOCKER_HUB,
    "docker.io",
    "registry-1.docker.io",
    "index.docker.io/v1",
];

/// Why credentials could not be saved; names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginStoreError {
    /// Reading, creating or replacing the file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory at fault.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The existing file is not a JSON object; overwriting it would lose its contents.
    #[error("parsing Docker config {}: {detail}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What is wrong (positions only, never values).
        detail: String,
    },
}

/// The registry (`host[:port]`) a `kiln login` argument names, and the `auths` key Docker
/// stores its credentials under (`https://index.docker.io/v1/` for Docker Hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginServer {
    /// The registry to verify the credentials against.
    pub registry: String,
    /// The `auths` key.
    pub key: String,
}

impl LoginServer {
    /// Parses `server` as `docker login` accepts it: a host with optional port, optionally
    /// with a scheme and trailing path, or nothing for Docker Hub.
    pub fn parse(server: Option<&str>) -> LoginServer {
        let server = server.unwrap_or(DOCKER_HUB).trim();
        let without_scheme = server
            .strip_prefix("https://")
            .or_else(|| server.strip_prefix("http://"))
            .unwrap_or(server)
            .trim_end_matches('/');
        let lowered = without_scheme.to_ascii_lowercase();
        if DOCKER_HUB_NAMES.contains(&lowered.as_str()) {
            return LoginServer {
                registry: DOCKER_HUB.to_owned(),
                key: DOCKER_HUB_SERVER.to_owned(),
            };
        }
        let host = lowered.split('/').next().unwrap_or_default().to_owned();
        LoginServer {
            registry: host.clone(),
            key: host,
        }
    }
}

/// Writes `username`/`password` for `key` into `dir/config.json`, creating the directory
/// (mode 0700) and file (mode 0600) if needed, and returns the file's path.
pub fn store_login(
    dir: &Path,
    key: &str,
    username: &str,
    password: &Secret,
) -> Result<PathBuf, LoginStoreError> {
    let path = dir.join("config.json");
    let mut config = read_object(&path)?;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let mut entry = Map::new();
    entry.insert("auth".to_owned(), Value::String(auth));
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Value::Object(auths) = auths {
        auths.insert(key.to_owned(), Value::Object(entry));
    }
    create_private_dir(dir)?;
    write_private(&path, &Value::Object(config))?;
    Ok(path)
}

fn read_object(path: &Path) -> Result<Map<String, Value>, LoginStoreError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(source) => {
            return Err(LoginStoreError::Io {
                action: "reading Docker config",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(LoginStoreError::Parse {
            path: path.to_path_buf(),
            detail: "not a JSON object".to_owned(),
        }),
        Err(e) => Err(LoginStoreError::Parse {
            path: path.to_path_buf(),
            detail: format!(
                "line {} column {}: {:?}",
                e.line(),
                e.column(),
                e.classify()
            ),
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), LoginStoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| LoginStoreError::Io {
        action: "creating Docker config directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes to a sibling file created with mode 0600 and renames it over `path`, so a reader
/// never sees half a file and the secret is never world-readable, even briefly.
fn write_private(path: &Path, config: &Value) -> Result<(), LoginStoreError> {
    let temporary = path.with_extension(format!("json.kiln-{}", std::process::id()));
    let io = |action: &'static str, at: &Path| {
        let at = at.to_path_buf();
        move |source| LoginStoreError::Io {
            action,
            path: at,
            source,
        }
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options
            .open(&temporary)
            .map_err(io("creating", &temporary))?;
        let mut text = serde_json::to_vec_pretty(config).map_err(|e| LoginStoreError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        text.push(b'\n');
        file.write_all(&text).map_err(io("writing", &temporary))?;
        file.sync_all().map_err(io("writing", &temporary))?;
        fs::rename(&temporary, path).map_err(io("replacing", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::docker_config::{DockerConfig, Lookup};
    use crate::auth::secret::Credential;

    #[test]
    fn docker_hub_names_map_to_dockers_legacy_key() {
        for name in [
            None,
            Some("docker.io"),
            Some("https://index.docker.io/v1/"),
            Some("registry-1.docker.io"),
        ] {
            let server = LoginServer::parse(name);
            assert_eq!(server.key, "https://index.docker.io/v1/", "{name:?}");
            assert_eq!(server.registry, DOCKER_HUB);
        }
        let server = LoginServer::parse(Some("https://Reg.Example:5000/v2/"));
        assert_eq!(server.registry, "reg.example:5000");
        assert_eq!(server.key, "reg.example:5000");
    }

    #[test]
    fn stored_credentials_are_read_back_and_other_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(
            &path,
            r#"{"auths":{"other.test":{"auth":"b3RoZXI6cA=="},"reg.test":{"identitytoken":"old"}},"credHelpers":{"gcr.io":"gcloud"},"psFormat":"x"}"#,
        )
        .unwrap();
        store_login(dir.path(), "reg.test", "user", &Secret::new("p@ss:word")).unwrap();
        let config = DockerConfig::load(dir.path()).unwrap().unwrap();
        assert_eq!(
            config.lookup("reg.test", "a"),
            Lookup::Inline(Credential::Basic {
                username: "user".to_owned(),
                password: Secret::new("p@ss:word"),
            })
        );
        assert!(matches!(
            config.lookup("other.test", "a"),
            Lookup::Inline(_)
        ));
        let raw: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["psFormat"], "x");
        assert_eq!(raw["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(raw["auths"]["reg.test"].as_object().unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_and_a_new_directory_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join("new");
        let path = store_login(&config_dir, "reg.test", "u", &Secret::new("p")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&config_dir), 0o700);
        assert_eq!(fs::read_dir(&config_dir).unwrap().count(), 1);
    }

    #[test]
    fn a_config_that_is_not_an_object_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, "[1,2]").unwrap();
        let err = store_login(dir.path(), "reg.test", "u", &Secret::new("p")).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "[1,2]");
    }
}
