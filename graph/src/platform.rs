//! The platform an image is built for (`linux/amd64`, `linux/arm64/v8`).

use std::fmt;
use std::str::FromStr;

/// Target platform. kiln runs RUN steps natively, so the build platform is the target platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go/OCI naming, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Architecture variant, e.g. `v7` for `arm`.
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;

    /// Parses `os/arch[/variant]`; `os` and `arch` are lowercased like containerd does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Self {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: None,
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Self {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: Some(variant.to_ascii_lowercase()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"
            )),
        }
    }
}

impl Platform {
    /// Whether `other` names this platform; a missing variant on either side matches any.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_platforms() {
        let p: Platform = "linux/arm64/v8".parse().expect("valid");
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "Linux/AMD64".parse::<Platform>().map(|p| p.to_string()),
            Ok("linux/amd64".to_owned())
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//x".parse::<Platform>().is_err());
    }

    #[test]
    fn missing_variant_matches_any_variant() {
        let a: Platform = "linux/arm64".parse().expect("valid");
        let b: Platform = "linux/arm64/v8".parse().expect("valid");
        let c: Platform = "linux/amd64".parse().expect("valid");
        assert!(a.matches(&b) && b.matches(&a));
        assert!(!a.matches(&c));
    }
}
