//! Static keys from the shared AWS files: `AWS_SHARED_CREDENTIALS_FILE` (default
//! `~/.aws/credentials`, sections named `[profile]`) and `AWS_CONFIG_FILE` (default
//! `~/.aws/config`, sections named `[profile name]`, `[default]`), for `AWS_PROFILE`
//! (default `default`). The credentials file wins, as in the SDKs.

use std::path::PathBuf;

use super::AwsCredentials;
use crate::auth::secret::Secret;
use crate::auth::vars::Vars;

pub(super) fn credentials(vars: Vars<'_>) -> Result<Option<AwsCredentials>, String> {
    let profile = vars("AWS_PROFILE")
        .or_else(|| vars("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let home = vars("HOME").map(PathBuf::from);
    let credentials_file = vars("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let config_file = vars("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let config_section = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    for (file, section) in [
        (credentials_file, profile.clone()),
        (config_file, config_section),
    ] {
        let Some(file) = file else { continue };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        let entries = section_entries(&text, &section);
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            return Ok(Some(AwsCredentials {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: get("aws_session_token").map(Secret::new),
                expires_unix: None,
            }));
        }
    }
    Ok(None)
}

/// `key = value` pairs of INI section `[name]` (keys lower-cased; comments skipped).
fn section_entries(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            entries.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::aws::tests::table;

    #[test]
    fn the_named_profile_is_read_from_the_credentials_file_then_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\n\
             [ci]\n# comment\naws_access_key_id=AKIACI\naws_secret_access_key = ci-secret\naws_session_token = tok\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[profile build]\nregion = eu-west-1\naws_access_key_id = AKIABUILD\naws_secret_access_key = b\n",
        )
        .unwrap();
        let (c, f) = (creds.to_str().unwrap(), config.to_str().unwrap());
        let pick = |profile: &str| {
            let pairs = [
                ("AWS_SHARED_CREDENTIALS_FILE", c),
                ("AWS_CONFIG_FILE", f),
                ("AWS_PROFILE", profile),
            ];
            let vars = table(&pairs);
            credentials(&vars).unwrap().map(|c| c.access_key_id)
        };
        assert_eq!(pick("").as_deref(), Some("AKIADEFAULT"));
        assert_eq!(pick("ci").as_deref(), Some("AKIACI"));
        assert_eq!(pick("build").as_deref(), Some("AKIABUILD"));
        assert_eq!(pick("missing"), None);
    }
}
