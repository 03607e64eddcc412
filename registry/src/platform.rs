//! Platforms (`os/architecture[/variant]`) and choosing one manifest from an index.
//!
//! Index entries spell the same platform several ways (`arm64` vs `arm64/v8`, `amd64/v1`,
//! `armhf`), so matching normalises both sides first, as containerd's platform matcher
//! does, then falls back to compatible older variants (an arm/v7 host runs arm/v6).

use std::fmt;
use std::str::FromStr;

/// A target platform using Go's `GOOS`/`GOARCH` names, as image indexes do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`.
    pub variant: Option<String>,
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected os/architecture[/variant], e.g. linux/arm64")]
pub struct PlatformParseError {
    /// The rejected input.
    pub input: String,
}

impl Platform {
    /// The platform this process runs on, so builds default to images that can run here.
    pub fn host() -> Platform {
        let (architecture, variant) = go_arch(std::env::consts::ARCH);
        Platform {
            os: go_os(std::env::consts::OS).to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The containerd-normalised form, used for comparison only.
    pub(crate) fn normalised(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let os = if os == "macos" {
            "darwin".to_owned()
        } else {
            os
        };
        let (architecture, variant) = normalise_arch(&self.architecture, self.variant.as_deref());
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Platforms an image for which runs on `self`, best first: the exact platform, then
    /// older variants of the same architecture.
    fn acceptable(&self) -> Vec<Platform> {
        let wanted = self.normalised();
        let mut out = vec![wanted.clone()];
        let older: &[&str] = match (wanted.architecture.as_str(), wanted.variant.as_deref()) {
            ("arm", Some("v8")) => &["v7", "v6", "v5"],
            ("arm", Some("v7")) => &["v6", "v5"],
            ("arm", Some("v6")) => &["v5"],
            ("amd64", Some("v4")) => &["v3", "v2", ""],
            ("amd64", Some("v3")) => &["v2", ""],
            ("amd64", Some("v2")) => &[""],
            _ => &[],
        };
        out.extend(older.iter().map(|v| Platform {
            variant: (!v.is_empty()).then(|| (*v).to_owned()),
            ..wanted.clone()
        }));
        out
    }
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
    type Err = PlatformParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = input.split('/').collect();
        let err = || PlatformParseError {
            input: input.to_owned(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(err()),
        }
    }
}

/// Picks the index entry for `wanted` among `candidates` (entries without a platform are
/// `None`). Returns the index of the best match.
pub(crate) fn select(wanted: &Platform, candidates: &[Option<Platform>]) -> Option<usize> {
    let normalised: Vec<Option<Platform>> = candidates
        .iter()
        .map(|c| c.as_ref().map(Platform::normalised))
        .collect();
    wanted.acceptable().iter().find_map(|acceptable| {
        normalised
            .iter()
            .position(|c| c.as_ref() == Some(acceptable))
    })
}

fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    let (arch, variant): (&str, Option<String>) = match arch.as_str() {
        "i386" | "x86" | "386" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => (
            "arm64",
            variant.filter(|v| !matches!(v.as_str(), "8" | "v8" | "v8.0")),
        ),
        "armhf" => ("arm", Some("v7".to_owned())),
        "armel" => ("arm", Some("v6".to_owned())),
        "arm" => (
            "arm",
            Some(match variant.as_deref() {
                None | Some("7") => "v7".to_owned(),
                Some(v @ ("5" | "6" | "8")) => format!("v{v}"),
                Some(v) => v.to_owned(),
            }),
        ),
        other => (other, variant),
    };
    (arch.to_owned(), variant)
}

fn go_arch(rust_arch: &str) -> (&str, Option<&str>) {
    match rust_arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "loongarch64" => ("loong64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        "mips" if cfg!(target_endian = "little") => ("mipsle", None),
        other => (other, None),
    }
}

fn go_os(rust_os: &str) -> &str {
    match rust_os {
        "macos" => "darwin",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn pick(wanted: &str, available: &[&str]) -> Option<String> {
        let candidates: Vec<Option<Platform>> = available.iter().map(|s| Some(p(s))).collect();
        select(&p(wanted), &candidates).map(|i| available[i].to_owned())
    }

    #[test]
    fn host_platform_uses_go_names() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.architecture, "amd64");
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(host.architecture, "arm64");
        }
    }

    #[test]
    fn exact_platform_wins() {
        let available = [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "linux/arm/v6",
        ];
        assert_eq!(
            pick("linux/amd64", &available).as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(
            pick("linux/arm/v6", &available).as_deref(),
            Some("linux/arm/v6")
        );
        assert_eq!(
            pick("linux/arm/v7", &available).as_deref(),
            Some("linux/arm/v7")
        );
    }

    #[test]
    fn arm64_with_and_without_v8_are_the_same_platform() {
        assert_eq!(
            pick("linux/arm64", &["linux/amd64", "linux/arm64/v8"]).as_deref(),
            Some("linux/arm64/v8")
        );
        assert_eq!(
            pick("linux/arm64/v8", &["linux/arm64"]).as_deref(),
            Some("linux/arm64")
        );
        assert_eq!(
            pick("linux/aarch64", &["linux/arm64"]).as_deref(),
            Some("linux/arm64")
        );
    }

    #[test]
    fn amd64_without_variant_matches_v1_and_not_v3() {
        assert_eq!(
            pick("linux/amd64", &["linux/amd64/v1"]).as_deref(),
            Some("linux/amd64/v1")
        );
        assert_eq!(
            pick("linux/x86_64", &["linux/amd64"]).as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(pick("linux/amd64", &["linux/amd64/v3"]), None);
        assert_eq!(
            pick("linux/amd64/v3", &["linux/amd64/v2", "linux/amd64"]).as_deref(),
            Some("linux/amd64/v2")
        );
    }

    #[test]
    fn arm_defaults_to_v7_and_falls_back_to_older_variants() {
        assert_eq!(
            pick("linux/arm", &["linux/arm/v6", "linux/arm/v7"]).as_deref(),
            Some("linux/arm/v7")
        );
        assert_eq!(
            pick("linux/arm/v7", &["linux/arm/v5", "linux/arm/v6"]).as_deref(),
            Some("linux/arm/v6")
        );
        assert_eq!(pick("linux/arm/v6", &["linux/arm/v7"]), None);
        assert_eq!(
            pick("linux/armhf", &["linux/arm"]).as_deref(),
            Some("linux/arm")
        );
    }

    #[test]
    fn os_must_match_and_missing_platform_entries_are_skipped() {
        assert_eq!(pick("linux/amd64", &["windows/amd64"]), None);
        let candidates = vec![None, Some(p("linux/amd64"))];
        assert_eq!(select(&p("linux/amd64"), &candidates), Some(1));
        assert_eq!(
            pick("linux/amd64", &["unknown/unknown", "linux/amd64"]).as_deref(),
            Some("linux/amd64")
        );
    }

    #[test]
    fn parses_and_displays_platform_strings() {
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/amd64").variant, None);
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
