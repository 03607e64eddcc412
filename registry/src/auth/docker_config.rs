//! Docker's `config.json`: `auths`, `credHelpers` and `credsStore`.
//!
//! Keys are normalised the way the Docker CLI writes them (`https://index.docker.io/v1/`,
//! `host`, `https://host/v2/`) and then matched on the exact host: never by suffix or
//! pattern, so credentials for `example.com` are not sent to
//! `example.com.attacker.net` (the class of bug behind Kaniko's ACR token leak).
//!
//! A key may also name a path on the host (`host/org` or `host/org/repo`, as podman and
//! Kaniko's `FF_KANIKO_PATH_SCOPED_REGISTRY_AUTH` allow): it covers that repository or
//! namespace only, and the longest matching path wins over a host-wide entry, so credentials
//! for `host/org-a` are never offered to `host/org-b`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::secret::{Credential, Secret};
use crate::reference::DOCKER_HUB;

/// The server URL Docker uses for Docker Hub in `auths` and with credential helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// Other host names under which Docker Hub credentials may be stored.
const DOCKER_HUB_HOSTS: [&str; 3] = ["index.docker.io", "docker.io", "registry-1.docker.io"];

/// Why the Docker config could not be used; names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerConfigError {
    /// The file exists but could not be read.
    #[error("reading Docker config {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("parsing Docker config {}: {source}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Underlying error (positions only; serde_json never echoes values here).
        #[source]
        source: serde_json::Error,
    },
    /// An `auths` entry has an `auth` field that is not base64 `user:password`.
    #[error("parsing Docker config {}: auths entry {key:?}: \"auth\" is not base64 of \"username:password\"", path.display())]
    BadAuth {
        /// The config file.
        path: PathBuf,
        /// The `auths` key.
        key: String,
    },
}

/// Where to look up a registry's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Credentials stored inline in `auths`.
    Inline(Credential),
    /// Ask `docker-credential-<helper>` for `server_url`.
    Helper {
        /// Helper name (suffix after `docker-credential-`).
        helper: String,
        /// Server URL to pass on stdin.
        server_url: String,
    },
    /// Nothing configured: anonymous.
    Anonymous,
}

/// What a config key covers: a host, optionally narrowed to a repository path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scope {
    /// Lower-case `host[:port]`.
    host: String,
    /// Repository or namespace (`org`, `org/repo`); empty for the whole host.
    path: String,
}

impl Scope {
    /// `https://host/v1/` -> host-wide; `host/org/` -> `org` on `host`; `HOST:5000` ->
    /// `host:5000`.
    fn of_key(key: &str) -> Scope {
        let key = key.trim();
        let without_scheme = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        let (host, path) = without_scheme
            .split_once('/')
            .unwrap_or((without_scheme, ""));
        let path = path.trim_matches('/');
        // `/v1/` and `/v2/` are API versions in URL-style keys, not repositories.
        let path = if matches!(path, "v1" | "v2") {
            ""
        } else {
            path
        };
        Scope {
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        }
    }

    /// How specific a match of this scope for `repository` on one of `hosts` is (path
    /// length), or `None` when it does not cover it. Paths match whole components only.
    fn specificity(&self, hosts: &[String], repository: &str) -> Option<usize> {
        if !hosts.contains(&self.host) {
            return None;
        }
        let covers = self.path.is_empty()
            || repository == self.path
            || repository
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        covers.then_some(self.path.len())
    }
}

#[derive(Clone)]
struct AuthEntry {
    scope: Scope,
    /// The key as written, preferred when several spellings cover the same scope.
    key: String,
    credential: Credential,
}

/// A parsed Docker config file.
#[derive(Clone)]
pub struct DockerConfig {
    path: PathBuf,
    auths: Vec<AuthEntry>,
    /// `(scope, helper)`.
    cred_helpers: Vec<(Scope, String)>,
    creds_store: Option<String>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field(
                "auths",
                &self.auths.iter().map(|e| &e.key).collect::<Vec<_>>(),
            )
            .field("cred_helpers", &self.cred_helpers)
            .field("creds_store", &self.creds_store)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: HashMap<String, RawAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl DockerConfig {
    /// The config directory to use: explicit, else `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn default_dir(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
    }

    /// Loads `dir/config.json`. A missing file means anonymous access (`Ok(None)`).
    pub fn load(dir: &Path) -> Result<Option<DockerConfig>, DockerConfigError> {
        let path = dir.join("config.json");
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DockerConfigError::Read { path, source }),
        };
        Self::parse(&path, &text).map(Some)
    }

    /// Parses config text; `path` is for messages.
    pub fn parse(path: &Path, text: &[u8]) -> Result<DockerConfig, DockerConfigError> {
        let raw: RawConfig =
            serde_json::from_slice(text).map_err(|source| DockerConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let mut auths = Vec::new();
        let mut keys: Vec<&String> = raw.auths.keys().collect();
        keys.sort();
        for key in keys {
            let Some(entry) = raw.auths.get(key) else {
                continue;
            };
            if let Some(credential) = credential_of(path, key, entry)? {
                auths.push(AuthEntry {
                    scope: Scope::of_key(key),
                    key: key.clone(),
                    credential,
                });
            }
        }
        let mut cred_helpers: Vec<(Scope, String)> = raw
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (Scope::of_key(&k), v))
            .collect();
        cred_helpers.sort();
        Ok(DockerConfig {
            path: path.to_path_buf(),
            auths,
            cred_helpers,
            creds_store: raw.creds_store.filter(|s| !s.is_empty()),
        })
    }

    /// The file this config came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where credentials for `repository` on `registry` come from, in Docker's order: a
    /// `credHelpers` entry, then `credsStore`, then inline `auths`. Among entries of one
    /// kind, the longest path covering the repository wins over host-wide ones.
    pub fn lookup(&self, registry: &str, repository: &str) -> Lookup {
        let hosts = candidate_hosts(registry);
        let server_url = if registry == DOCKER_HUB {
            DOCKER_HUB_SERVER.to_owned()
        } else {
            registry.to_owned()
        };
        let helper = self
            .cred_helpers
            .iter()
            .filter_map(|(scope, helper)| Some((scope.specificity(&hosts, repository)?, helper)))
            .max_by_key(|(specificity, _)| *specificity);
        if let Some((_, helper)) = helper {
            return Lookup::Helper {
                helper: helper.clone(),
                server_url,
            };
        }
        if let Some(store) = &self.creds_store {
            return Lookup::Helper {
                helper: store.clone(),
                server_url,
            };
        }
        // Longest path first; for one scope, the key exactly as Docker writes it first.
        let best = self
            .auths
            .iter()
            .filter_map(|entry| {
                let specificity = entry.scope.specificity(&hosts, repository)?;
                let exact = entry.key == server_url || entry.key == registry;
                Some(((specificity, exact), entry))
            })
            .max_by_key(|(rank, _)| *rank);
        match best {
            Some((_, entry)) => Lookup::Inline(entry.credential.clone()),
            None => Lookup::Anonymous,
        }
    }
}

fn credential_of(
    path: &Path,
    key: &str,
    entry: &RawAuth,
) -> Result<Option<Credential>, DockerConfigError> {
    let bad = || DockerConfigError::BadAuth {
        path: path.to_path_buf(),
        key: key.to_owned(),
    };
    if let Some(token) = entry.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::RegistryToken(Secret::new(token))));
    }
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credential::Basic {
            username: username.clone(),
            password: Secret::new(password.clone()),
        })),
        _ => Ok(None),
    }
}

fn candidate_hosts(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        DOCKER_HUB_HOSTS.iter().map(|h| (*h).to_owned()).collect()
    } else {
        vec![registry.to_ascii_lowercase()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("/cfg/config.json"), json.as_bytes()).unwrap()
    }

    fn basic(user: &str, pass: &str) -> Lookup {
        Lookup::Inline(Credential::Basic {
            username: user.to_owned(),
            password: Secret::new(pass),
        })
    }

    #[test]
    fn auth_field_is_decoded_and_docker_hub_key_matches_index_docker_io() {
        // dXNlcjpwYXNz = user:pass
        let cfg = parse(r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}}"#);
        assert_eq!(cfg.lookup(DOCKER_HUB, "team/app"), basic("user", "pass"));
        assert_eq!(cfg.lookup("gcr.io", "team/app"), Lookup::Anonymous);
    }

    #[test]
    fn username_password_and_all_key_spellings_match_exact_host() {
        for key in [
            "reg.example.com:5000",
            "https://reg.example.com:5000",
            "http://reg.example.com:5000/v2/",
            "https://reg.example.com:5000/v1/",
            "REG.example.com:5000",
        ] {
            let cfg = parse(&format!(
                r#"{{"auths":{{"{key}":{{"username":"u","password":"p"}}}}}}"#
            ));
            assert_eq!(
                cfg.lookup("reg.example.com:5000", "team/app"),
                basic("u", "p"),
                "{key}"
            );
            assert_eq!(
                cfg.lookup("reg.example.com", "team/app"),
                Lookup::Anonymous,
                "{key}: port must match"
            );
        }
    }

    #[test]
    fn credentials_never_match_by_suffix_or_prefix() {
        let cfg = parse(r#"{"auths":{"evil.example.com":{"auth":"dXNlcjpwYXNz"}}}"#);
        assert_eq!(
            cfg.lookup("evil.example.com.attacker.net", "team/app"),
            Lookup::Anonymous
        );
        assert_eq!(
            cfg.lookup("sub.evil.example.com", "team/app"),
            Lookup::Anonymous
        );
        assert_eq!(cfg.lookup("example.com", "team/app"), Lookup::Anonymous);
        assert_eq!(
            cfg.lookup("evil.example.com", "team/app"),
            basic("user", "pass")
        );
    }

    #[test]
    fn identity_token_takes_precedence() {
        let cfg = parse(
            r#"{"auths":{"r.io":{"username":"00000000-0000-0000-0000-000000000000","password":"","identitytoken":"rt"}}}"#,
        );
        assert_eq!(
            cfg.lookup("r.io", "team/app"),
            Lookup::Inline(Credential::IdentityToken(Secret::new("rt")))
        );
    }

    #[test]
    fn cred_helpers_win_over_creds_store_which_wins_over_auths() {
        let cfg = parse(
            r#"{"auths":{"a.io":{"auth":"dXNlcjpwYXNz"},"b.io":{}},
                "credHelpers":{"b.io":"ecr-login"},"credsStore":"desktop"}"#,
        );
        assert_eq!(
            cfg.lookup("b.io", "team/app"),
            Lookup::Helper {
                helper: "ecr-login".to_owned(),
                server_url: "b.io".to_owned()
            }
        );
        assert_eq!(
            cfg.lookup("a.io", "team/app"),
            Lookup::Helper {
                helper: "desktop".to_owned(),
                server_url: "a.io".to_owned()
            }
        );
        assert_eq!(
            cfg.lookup(DOCKER_HUB, "team/app"),
            Lookup::Helper {
                helper: "desktop".to_owned(),
                server_url: DOCKER_HUB_SERVER.to_owned()
            }
        );
    }

    #[test]
    fn path_scoped_entries_cover_their_namespace_only_and_the_longest_wins() {
        let cfg = parse(
            r#"{"auths":{
                "reg.io":{"username":"host","password":"h"},
                "https://reg.io/org":{"username":"org","password":"o"},
                "reg.io/org/app/":{"username":"app","password":"a"},
                "reg.io/other":{"username":"other","password":"x"},
                "https://index.docker.io/v1/":{"username":"hub","password":"d"},
                "docker.io/myorg":{"username":"hub-org","password":"m"}}}"#,
        );
        assert_eq!(cfg.lookup("reg.io", "org/app"), basic("app", "a"));
        assert_eq!(cfg.lookup("reg.io", "org/app/sub"), basic("app", "a"));
        assert_eq!(cfg.lookup("reg.io", "org/lib"), basic("org", "o"));
        assert_eq!(cfg.lookup("reg.io", "org"), basic("org", "o"));
        // Whole path components only: `org` does not cover `organisation`.
        assert_eq!(cfg.lookup("reg.io", "organisation/x"), basic("host", "h"));
        assert_eq!(cfg.lookup("reg.io", "team/app"), basic("host", "h"));
        assert_eq!(cfg.lookup(DOCKER_HUB, "myorg/tool"), basic("hub-org", "m"));
        assert_eq!(cfg.lookup(DOCKER_HUB, "library/busybox"), basic("hub", "d"));
        // A path-scoped entry alone never covers the rest of its host.
        let only_org = parse(r#"{"auths":{"reg.io/org-a":{"auth":"dXNlcjpwYXNz"}}}"#);
        assert_eq!(only_org.lookup("reg.io", "org-b/app"), Lookup::Anonymous);
        assert_eq!(
            only_org.lookup("reg.io", "org-a/app"),
            basic("user", "pass")
        );
    }

    #[test]
    fn registry_token_is_kept_as_a_bearer_credential_before_anything_else() {
        let cfg = parse(
            r#"{"auths":{"r.io":{"auth":"dXNlcjpwYXNz","identitytoken":"rt","registrytoken":"bt"}}}"#,
        );
        assert_eq!(
            cfg.lookup("r.io", "a"),
            Lookup::Inline(Credential::RegistryToken(Secret::new("bt")))
        );
    }

    #[test]
    fn empty_entries_are_anonymous() {
        let cfg = parse(r#"{"auths":{"a.io":{}},"credsStore":""}"#);
        assert_eq!(cfg.lookup("a.io", "team/app"), Lookup::Anonymous);
        assert_eq!(parse("{}").lookup("a.io", "team/app"), Lookup::Anonymous);
    }

    #[test]
    fn malformed_config_errors_name_the_file_and_not_the_secret() {
        let err = DockerConfig::parse(Path::new("/cfg/config.json"), b"{\"auths\": [").unwrap_err();
        assert!(err.to_string().contains("/cfg/config.json"), "{err}");
        let err = DockerConfig::parse(
            Path::new("/cfg/config.json"),
            br#"{"auths":{"a.io":{"auth":"bm9jb2xvbg=="}}}"#, // "nocolon"
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/cfg/config.json") && msg.contains("a.io"),
            "{msg}"
        );
        assert!(
            !msg.contains("nocolon") && !msg.contains("bm9jb2xvbg"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_is_anonymous_but_unreadable_dir_entry_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DockerConfig::load(dir.path()).unwrap().is_none());
        std::fs::create_dir(dir.path().join("config.json")).unwrap();
        assert!(matches!(
            DockerConfig::load(dir.path()),
            Err(DockerConfigError::Read { .. })
        ));
    }

    #[test]
    fn debug_does_not_show_credentials() {
        let cfg = parse(r#"{"auths":{"a.io":{"username":"u","password":"topsecret"}}}"#);
        let shown = format!("{cfg:?}");
        assert!(
            shown.contains("a.io") && !shown.contains("topsecret"),
            "{shown}"
        );
    }
}
