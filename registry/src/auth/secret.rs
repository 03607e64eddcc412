//! Secrets and credentials whose `Debug` output never shows the secret, so they cannot
//! leak through logs, `{:?}` in errors or panics.

use std::fmt;

use base64::Engine as _;
use reqwest::header::HeaderValue;

/// A string that must not be printed. Deliberately has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or access token used as password).
    Basic {
        /// User name; not secret.
        username: String,
        /// Password or token.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(Secret),
    /// A token sent to the registry as `Authorization: Bearer` as it is (`registrytoken`).
    RegistryToken(Secret),
}

impl Credential {
    /// The `Authorization: Basic` value for these credentials, if they are a password.
    pub(crate) fn basic_header(&self) -> Option<HeaderValue> {
        match self {
            Credential::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
                value.set_sensitive(true);
                Some(value)
            }
            Credential::IdentityToken(_) | Credential::RegistryToken(_) => None,
        }
    }

    /// The `Authorization: Bearer` value, if these credentials are a registry token.
    pub(crate) fn registry_token_header(&self) -> Option<HeaderValue> {
        match self {
            Credential::RegistryToken(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", token.expose())).ok()?;
                value.set_sensitive(true);
                Some(value)
            }
            Credential::Basic { .. } | Credential::IdentityToken(_) => None,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_secrets() {
        let basic = Credential::Basic {
            username: "alice".to_owned(),
            password: Secret::new("hunter2"),
        };
        let token = Credential::IdentityToken(Secret::new("refresh-xyz"));
        let bearer = Credential::RegistryToken(Secret::new("bearer-xyz"));
        let shown = format!("{basic:?} {token:?} {bearer:?} {:?}", Secret::new("s3cr3t"));
        assert!(shown.contains("alice"));
        for secret in ["hunter2", "refresh-xyz", "bearer-xyz", "s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn basic_header_is_base64_of_user_colon_password_and_sensitive() {
        let basic = Credential::Basic {
            username: "alice".to_owned(),
            password: Secret::new("pw"),
        };
        let header = basic.basic_header().unwrap();
        assert_eq!(header.to_str().unwrap(), "Basic YWxpY2U6cHc=");
        assert!(header.is_sensitive());
        assert!(
            Credential::IdentityToken(Secret::new("t"))
                .basic_header()
                .is_none()
        );
    }
}
