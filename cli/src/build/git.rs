//! Git sources, for `ADD <repository>` and git build contexts: BuildKit's URL forms
//! (`https://host/repo.git#ref:subdir`, `git://host/repo#ref`, `git@host:repo.git`), cloned with
//! the `git` binary (so the user's git configuration, credential helpers and proxies apply) and
//! checked out detached at the commit the ref names; that commit identifies the content.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

mod options;
pub use options::CloneOptions;

/// A repository, the ref to check out and the directory of it to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// What `git clone` is given.
    pub url: String,
    /// Branch, tag or commit; the remote's default branch when absent.
    pub reference: Option<String>,
    /// Directory inside the repository, relative.
    pub subdir: Option<String>,
    /// `reference` is Kaniko's commit after a second `#`, which `--git branch=` does not replace.
    pub commit_given: bool,
}

impl GitSource {
    /// Splits `url#ref:subdir` (both parts optional).
    pub fn parse(text: &str) -> anyhow::Result<GitSource> {
        let (url, fragment) = match text.split_once('#') {
            Some((url, fragment)) => (url, Some(fragment)),
            None => (text, None),
        };
        // Kaniko appends a commit after the ref (`#refs/heads/main#<sha>`): the commit wins.
        let (fragment, commit) = match fragment.map(|f| f.split_once('#')) {
            Some(Some((fragment, commit))) => (Some(fragment), Some(commit)),
            Some(None) => (fragment, None),
            None => (None, None),
        };
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(fragment) => match fragment.split_once(':') {
                Some((reference, subdir)) => (Some(reference), Some(subdir)),
                None => (Some(fragment), None),
            },
        };
        let commit = commit.filter(|c| !c.is_empty());
        let commit_given = commit.is_some();
        let reference = commit.or(reference);
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let subdir = subdir.and_then(nonempty);
        if let Some(subdir) = &subdir
            && Path::new(subdir)
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        {
            bail!("git source {text:?}: the subdirectory must stay inside the repository");
        }
        if url.is_empty() {
            bail!("git source {text:?} has no repository URL");
        }
        Ok(GitSource {
            url: url.to_owned(),
            reference: reference.and_then(nonempty),
            subdir,
            commit_given,
        })
    }
}

/// A checked-out repository.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The directory to use: the clone, or its `subdir`.
    pub root: PathBuf,
    /// The commit checked out (hex).
    pub commit: String,
}

/// Clones `source` into `dir` (which must not exist) as `options` say, checks out its ref,
/// updates submodules if asked, and removes `.git` unless asked to keep it.
pub fn checkout(
    source: &GitSource,
    dir: &Path,
    options: &CloneOptions,
) -> anyhow::Result<Checkout> {
    let label = || format!("git source {}", source.url);
    tracing::info!("Cloning {}", source.url);
    // `--git branch=` replaces the URL's ref; a commit named after a second `#` still wins.
    let reference = match (&options.branch, source.commit_given) {
        (Some(branch), false) => Some(branch.as_str()),
        _ => source.reference.as_deref(),
    };
    let tls: &[&str] = if options.insecure_skip_tls {
        &["-c", "http.sslVerify=false"]
    } else {
        &[]
    };
    let mut clone: Vec<String> = tls.iter().map(|s| (*s).to_owned()).collect();
    clone.extend(["clone", "--quiet", "--no-checkout"].map(str::to_owned));
    if let Some(depth) = options.depth {
        clone.push(format!("--depth={depth}"));
    }
    if options.single_branch {
        clone.push("--single-branch".to_owned());
    } else if options.depth.is_some() {
        // `--depth` implies one branch in git; Kaniko's shallow clones keep every branch.
        clone.push("--no-single-branch".to_owned());
    }
    // `--branch` takes branch and tag names only; a commit is resolved after the clone.
    if let Some(name) = reference.filter(|r| !looks_like_commit(r))
        && (options.single_branch || options.depth.is_some())
    {
        let name = name
            .strip_prefix("refs/heads/")
            .or_else(|| name.strip_prefix("refs/tags/"))
            .unwrap_or(name);
        clone.push(format!("--branch={name}"));
    }
    clone.extend(["--".to_owned(), source.url.clone()]);
    let args: Vec<&str> = clone.iter().map(String::as_str).collect();
    git(None, &args).arg(dir).run().with_context(label)?;
    let reference = reference.unwrap_or("HEAD");
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference);
    let candidates = [
        format!("{reference}^{{commit}}"),
        format!("refs/remotes/origin/{branch}^{{commit}}"),
        format!("refs/tags/{reference}^{{commit}}"),
    ];
    let commit = candidates
        .iter()
        .find_map(|candidate| {
            git(Some(dir), &["rev-parse", "--verify", "--quiet", candidate])
                .output()
                .ok()
        })
        .map(|out| out.trim().to_owned())
        .with_context(|| format!("{}: no branch, tag or commit {reference:?}", label()))?;
    git(Some(dir), &["checkout", "--quiet", "--detach", &commit])
        .run()
        .with_context(label)?;
    if options.recurse_submodules {
        let mut update: Vec<&str> = tls.to_vec();
        update.extend(["submodule", "update", "--quiet", "--init", "--recursive"]);
        git(Some(dir), &update).run().with_context(label)?;
    }
    if !options.keep_git_dir {
        std::fs::remove_dir_all(dir.join(".git"))
            .with_context(|| format!("removing {}", dir.join(".git").display()))?;
    }
    let root = match &source.subdir {
        Some(subdir) => dir.join(subdir),
        None => dir.to_path_buf(),
    };
    if !root.is_dir() {
        bail!(
            "{}: {} is not a directory at {commit}",
            label(),
            source.subdir.as_deref().unwrap_or(".")
        );
    }
    // A symlinked subdir could point anywhere on the host.
    let canonical = std::fs::canonicalize(&root)?;
    if !canonical.starts_with(std::fs::canonicalize(dir)?) {
        bail!("{}: the subdirectory leaves the repository", label());
    }
    Ok(Checkout {
        root: canonical,
        commit,
    })
}

/// An abbreviated or full hexadecimal object name, which `git clone --branch` cannot take.
fn looks_like_commit(reference: &str) -> bool {
    (7..=64).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

struct Git(Command);

fn git(dir: Option<&Path>, args: &[&str]) -> Git {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    command
        .args(args)
        // Never wait for a password on a terminal nobody watches.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null());
    Git(command)
}

impl Git {
    fn arg(mut self, arg: &Path) -> Git {
        self.0.arg(arg);
        self
    }

    fn run(self) -> anyhow::Result<()> {
        self.output().map(drop)
    }

    /// Runs it; stdout on success, an error with git's stderr otherwise.
    fn output(mut self) -> anyhow::Result<String> {
        let output = self.0.output().context("running git (is it installed?)")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!(
                "git {} failed ({}): {}",
                self.0
                    .get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
                output.status,
                stderr.trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_repository_ref_and_subdirectory() {
        assert_eq!(
            GitSource::parse("https://h/r.git#v1.0:docs/api").unwrap(),
            GitSource {
                url: "https://h/r.git".into(),
                reference: Some("v1.0".into()),
                subdir: Some("docs/api".into()),
                commit_given: false,
            }
        );
        assert_eq!(
            GitSource::parse("git://h/r#:sub").unwrap(),
            GitSource {
                url: "git://h/r".into(),
                reference: None,
                subdir: Some("sub".into()),
                commit_given: false,
            }
        );
        assert_eq!(GitSource::parse("git@h:r.git").unwrap().reference, None);
        assert!(GitSource::parse("https://h/r.git#main:../x").is_err());
        assert_eq!(
            GitSource::parse("https://h/r.git#refs/heads/dev#0123abc")
                .unwrap()
                .reference
                .as_deref(),
            Some("0123abc"),
            "Kaniko's trailing commit wins"
        );
    }
}
