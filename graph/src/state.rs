//! The image configuration as a Dockerfile evolves it, instruction by instruction.

use std::collections::{BTreeMap, BTreeSet};

/// The default `PATH` BuildKit adds when a base image defines none (Linux value).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The "config" part of an OCI image config. The CLI fills it from base images and writes it
/// into the result; the planner evolves it so every step knows the environment it runs in.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ImageState {
    /// Ordered with unique keys, like Docker's `Env`; order is kept because images expose it.
    pub env: Vec<(String, String)>,
    /// `USER` as written ("u", "1000", "u:g"); `None` runs as the image default (root).
    pub user: Option<String>,
    /// Absolute working directory; `None` means `/`.
    pub working_dir: Option<String>,
    /// Exec-form entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Exec-form default command.
    pub cmd: Option<Vec<String>>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Exposed ports as `port/proto` ("80/tcp", "53/udp").
    pub exposed_ports: BTreeSet<String>,
    /// Declared volumes.
    pub volumes: BTreeSet<String>,
    /// Signal that stops the container.
    pub stop_signal: Option<String>,
    /// `SHELL`; `None` means `["/bin/sh", "-c"]`.
    pub shell: Option<Vec<String>>,
    /// Health check.
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers left for images built `FROM` this one.
    pub onbuild: Vec<String>,
    /// `MAINTAINER`: the deprecated image author (top-level `author` of the OCI config).
    #[serde(default)]
    pub author: Option<String>,
}

impl ImageState {
    /// The value of an environment variable.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a variable in place (keeping its position) or appends it, as Docker's `addEnv` does.
    pub fn set_env(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.env.push((key.to_owned(), value.to_owned())),
        }
    }

    /// The shell used for shell-form RUN, CMD and ENTRYPOINT.
    pub fn shell_or_default(&self) -> Vec<String> {
        match &self.shell {
            Some(shell) if !shell.is_empty() => shell.clone(),
            _ => vec!["/bin/sh".to_owned(), "-c".to_owned()],
        }
    }

    /// Adds `PATH` when missing: BuildKit guarantees every stage has one.
    pub(crate) fn ensure_path(&mut self) {
        if self.env_var("PATH").is_none() {
            self.env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        }
    }
}

/// A HEALTHCHECK. Durations are nanoseconds (the OCI/Docker JSON unit); `None` means "not
/// set" (Docker's zero, i.e. inherit the runtime default).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Option<i64>,
    /// Time a check may take.
    pub timeout: Option<i64>,
    /// Grace period after start.
    pub start_period: Option<i64>,
    /// Time between checks during the start period.
    pub start_interval: Option<i64>,
    /// Consecutive failures before "unhealthy".
    pub retries: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_env_replaces_in_place_and_appends_new_keys() {
        let mut s = ImageState::default();
        s.set_env("A", "1");
        s.set_env("B", "2");
        s.set_env("A", "3");
        assert_eq!(
            s.env,
            vec![("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn ensure_path_only_adds_a_missing_path() {
        let mut s = ImageState::default();
        s.ensure_path();
        assert_eq!(s.env_var("PATH"), Some(DEFAULT_PATH));
        let mut t = ImageState {
            env: vec![("PATH".into(), "/x".into())],
            ..Default::default()
        };
        t.ensure_path();
        assert_eq!(t.env, vec![("PATH".into(), "/x".into())]);
    }
}
