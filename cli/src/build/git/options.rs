//! How a repository is cloned: Kaniko's `--git` options for git build contexts
//! (`branch=`, `single-branch=`, `recurse-submodules=`, `insecure-skip-tls=`, and OSS Kaniko's
//! `depth=`), and BuildKit's fixed choices for `ADD <repository>`.

use std::num::NonZeroU32;

use anyhow::bail;

/// The `--git` keys Kaniko (and OSS Kaniko's `depth`) define.
const KEYS: [&str; 5] = [
    "branch",
    "single-branch",
    "recurse-submodules",
    "insecure-skip-tls",
    "depth",
];

/// Clone options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneOptions {
    /// `branch=`: the branch or tag to clone instead of the URL's `#ref` (a commit after a
    /// second `#` still wins, as in Kaniko).
    pub branch: Option<String>,
    /// `single-branch=true`: fetch only that ref (`git clone --single-branch`).
    pub single_branch: bool,
    /// `recurse-submodules=true`: check submodules out too (Kaniko's default is false; `ADD`
    /// always does, as BuildKit).
    pub recurse_submodules: bool,
    /// `insecure-skip-tls=true`: no TLS certificate verification (`http.sslVerify=false`).
    pub insecure_skip_tls: bool,
    /// `depth=N`: a shallow clone of the last N commits; absent (or 0) is the whole history.
    pub depth: Option<NonZeroU32>,
    /// Keep the clone's `.git` directory (`ADD --keep-git-dir`; for contexts, BuildKit's
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1` build argument).
    pub keep_git_dir: bool,
}

impl CloneOptions {
    /// Parses repeated `--git KEY=VALUE` flags (each may also hold several, comma-separated,
    /// as Kaniko's `--git branch=main,single-branch=true`).
    pub fn parse(flags: &[String]) -> anyhow::Result<CloneOptions> {
        let mut options = CloneOptions::default();
        for option in flags.iter().flat_map(|flag| flag.split(',')) {
            let Some((key, value)) = option.split_once('=') else {
                bail!("--git {option:?} must be KEY=VALUE");
            };
            let switch = || match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bail!("--git {option:?}: {value:?} is not a valid value for {key}"),
            };
            match key {
                "branch" if !value.is_empty() => options.branch = Some(value.to_owned()),
                "branch" => options.branch = None,
                "single-branch" => options.single_branch = switch()?,
                "recurse-submodules" => options.recurse_submodules = switch()?,
                "insecure-skip-tls" => options.insecure_skip_tls = switch()?,
                "depth" => {
                    let depth = value.parse::<u32>().map_err(|_| {
                        anyhow::anyhow!(
                            "--git {option:?}: {value:?} is not a valid value for depth"
                        )
                    })?;
                    options.depth = NonZeroU32::new(depth);
                }
                _ => bail!(
                    "--git {option:?}: unknown key {key:?} (known: {})",
                    KEYS.join(", ")
                ),
            }
        }
        Ok(options)
    }

    /// BuildKit's `ADD <repository>`: whole history, submodules, `.git` as asked.
    pub fn for_add(keep_git_dir: bool) -> CloneOptions {
        CloneOptions {
            recurse_submodules: true,
            keep_git_dir,
            ..CloneOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> anyhow::Result<CloneOptions> {
        CloneOptions::parse(&flags.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn kaniko_git_flags_parse_repeated_or_comma_separated() {
        let options = parse(&[
            "branch=release,single-branch=true",
            "recurse-submodules=true",
            "depth=1",
            "insecure-skip-tls=false",
        ])
        .unwrap();
        assert_eq!(
            options,
            CloneOptions {
                branch: Some("release".into()),
                single_branch: true,
                recurse_submodules: true,
                insecure_skip_tls: false,
                depth: NonZeroU32::new(1),
                keep_git_dir: false,
            }
        );
        assert_eq!(parse(&["depth=0"]).unwrap().depth, None);
        let unknown = parse(&["colour=blue"]).unwrap_err().to_string();
        assert!(unknown.contains("unknown key \"colour\""), "{unknown}");
        let invalid = parse(&["single-branch=maybe"]).unwrap_err().to_string();
        assert!(invalid.contains("not a valid value"), "{invalid}");
        assert!(parse(&["depth=-1"]).is_err());
        assert!(parse(&["branch"]).is_err());
    }
}
