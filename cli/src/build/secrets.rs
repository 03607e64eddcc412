//! `kiln build --secret`: the secrets a `RUN --mount=type=secret` may ask for, by id.
//!
//! Only where each secret comes from is kept (a file path or an environment variable's name):
//! the value is read when a RUN needs it, goes straight into the sandbox, and is never logged,
//! hashed into a node key or written into an error message.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the host.
    File(PathBuf),
    /// An environment variable of kiln.
    Env(String),
}

/// Every `--secret` of a build, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, SecretSource>);

impl Secrets {
    /// Parses BuildKit's `--secret` values: `id=ID,src=PATH`, `id=ID,env=VAR`, with `source=`,
    /// `type=file|env` as synonyms; `id=ID` alone reads the variable `ID`, else the file `ID`.
    pub fn parse(values: &[String]) -> anyhow::Result<Self> {
        let mut secrets = BTreeMap::new();
        for value in values {
            let (id, source) = parse_one(value).with_context(|| format!("--secret {value}"))?;
            secrets.insert(id, source);
        }
        Ok(Self(secrets))
    }

    /// Where the secret `id` comes from, if it was given.
    pub fn get(&self, id: &str) -> Option<&SecretSource> {
        self.0.get(id)
    }
}

fn parse_one(value: &str) -> anyhow::Result<(String, SecretSource)> {
    let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let Some((key, val)) = field.split_once('=') else {
            bail!("{field:?} is not KEY=VALUE (id=ID,src=PATH or id=ID,env=VAR)");
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(val.to_owned()),
            "type" => kind = Some(val.to_ascii_lowercase()),
            "src" | "source" => src = Some(val.to_owned()),
            "env" => env = Some(val.to_owned()),
            other => bail!("unexpected key {other:?} (id, type, src or env)"),
        }
    }
    let id = id
        .or_else(|| src.clone())
        .or_else(|| env.clone())
        .filter(|id| !id.is_empty())
        .context("a secret needs id=ID")?;
    let source = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => bail!("give either src= or env=, not both"),
        (Some("env"), Some(var), None) | (None | Some("env"), None, Some(var)) => {
            SecretSource::Env(var)
        }
        (None | Some("file"), Some(path), None) => SecretSource::File(PathBuf::from(path)),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some("env"), None, None) => SecretSource::Env(id.clone()),
        (None, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some(other), _, _) => bail!("unsupported type {other:?} (file or env)"),
    };
    Ok((id, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_environment_variables_are_recognised_by_id() {
        let secrets = Secrets::parse(&[
            "id=npm,src=/run/npmrc".to_owned(),
            "id=token,env=API_TOKEN".to_owned(),
            "type=file,id=key,source=key.pem".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            secrets.get("npm"),
            Some(&SecretSource::File("/run/npmrc".into()))
        );
        assert_eq!(
            secrets.get("token"),
            Some(&SecretSource::Env("API_TOKEN".into()))
        );
        assert_eq!(
            secrets.get("key"),
            Some(&SecretSource::File("key.pem".into()))
        );
        assert!(Secrets::parse(&["id=x,src=a,env=B".to_owned()]).is_err());
        assert!(Secrets::parse(&["src".to_owned()]).is_err());
    }
}
