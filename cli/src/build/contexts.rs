//! `--context` sources other than a local directory, made into one before the build, as Kaniko
//! and BuildKit accept them: `tar://path` (plain, gzip, bzip2, xz or zstd tar), `tar://stdin`,
//! git repositories (`git://host/repo.git#ref#commit` as Kaniko writes them, cloned over
//! HTTPS as Kaniko does; `https://host/repo.git#ref:subdir` as BuildKit writes them), and
//! `https://` tarballs. `--context-sub-path` then selects a directory inside. Object stores
//! (`s3://`, `gs://`, `az://`) are an extension point: refused by name until implemented.

use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_exec::RootFs;
use kiln_exec::archive::{Format, decode};
use kiln_registry::Client;

use super::git::{CloneOptions, GitSource, checkout};

/// Where the build context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A local directory (`path` or `dir://path`), absolute.
    Dir(PathBuf),
    /// `tar://path`: a tar archive on disk, absolute.
    Tar(PathBuf),
    /// `tar://stdin`: a tar archive on kiln's standard input.
    TarStdin,
    /// A git repository, in `git clone` form with `#ref[:subdir]`, and how to clone it
    /// (`--git`).
    Git(String, CloneOptions),
    /// An `http(s)://` URL of a tar archive.
    Tarball(String),
}

impl ContextSource {
    /// Applies `--git` options (and BuildKit's `BUILDKIT_CONTEXT_KEEP_GIT_DIR`) to a git
    /// context; other contexts are unchanged.
    pub fn with_clone_options(self, options: CloneOptions) -> ContextSource {
        match self {
            ContextSource::Git(url, _) => ContextSource::Git(url, options),
            other => other,
        }
    }

    /// Parses `--context`; a local directory or archive must exist.
    pub fn parse(text: &str) -> anyhow::Result<ContextSource> {
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, text),
        };
        Ok(match scheme {
            None | Some("dir") => ContextSource::Dir(super::settings::context_dir(text)?),
            Some("tar") if rest == "stdin" => ContextSource::TarStdin,
            Some("tar") => {
                let path = std::path::absolute(rest)
                    .with_context(|| format!("--context {text:?}: cannot resolve {rest}"))?;
                if !path.is_file() {
                    bail!("--context {text:?}: {} is not a file", path.display());
                }
                ContextSource::Tar(path)
            }
            // Kaniko's git contexts: `git://` stands for a clone over HTTPS.
            Some("git") => ContextSource::Git(format!("https://{rest}"), CloneOptions::default()),
            Some("http" | "https") if kiln_graph::is_git_url(text) => {
                ContextSource::Git(text.to_owned(), CloneOptions::default())
            }
            Some("http" | "https") => ContextSource::Tarball(text.to_owned()),
            Some(scheme @ ("s3" | "gs" | "az")) => bail!(
                "--context {text:?}: {scheme}:// contexts are not supported yet; download the context and pass tar://<file> or a directory"
            ),
            Some(scheme) => bail!(
                "--context {text:?}: unknown context scheme {scheme}://; use a directory, dir://, tar://, git:// or https://"
            ),
        })
    }
}

/// A context made ready: the directory to build from, and what must live as long as the build.
#[derive(Debug)]
pub struct Materialized {
    /// The context directory (with `--context-sub-path` applied).
    pub dir: PathBuf,
    /// The scratch directory holding an extracted or cloned context, removed when dropped.
    _scratch: Option<tempfile::TempDir>,
}

/// Extracts, clones or downloads `source` under `scratch_parent` and applies `sub_path`.
pub async fn materialize(
    source: &ContextSource,
    sub_path: Option<&str>,
    client: &Client,
    scratch_parent: &Path,
) -> anyhow::Result<Materialized> {
    let scratch = || -> anyhow::Result<tempfile::TempDir> {
        std::fs::create_dir_all(scratch_parent)
            .with_context(|| format!("creating {}", scratch_parent.display()))?;
        tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(scratch_parent)
            .with_context(|| format!("creating a directory in {}", scratch_parent.display()))
    };
    let (base, scratch) = match source {
        ContextSource::Dir(dir) => (dir.clone(), None),
        ContextSource::Tar(path) => {
            let scratch = scratch()?;
            let file = std::fs::File::open(path)
                .with_context(|| format!("opening the context archive {}", path.display()))?;
            let dir = scratch.path().to_path_buf();
            let label = path.display().to_string();
            tokio::task::spawn_blocking(move || extract(file, &dir, &label))
                .await
                .context("the extraction thread failed")??;
            (scratch.path().to_path_buf(), Some(scratch))
        }
        ContextSource::TarStdin => {
            let scratch = scratch()?;
            let dir = scratch.path().to_path_buf();
            tokio::task::spawn_blocking(move || extract(std::io::stdin(), &dir, "stdin"))
                .await
                .context("the extraction thread failed")??;
            (scratch.path().to_path_buf(), Some(scratch))
        }
        ContextSource::Git(url, options) => {
            let scratch = scratch()?;
            let target = scratch.path().join("repo");
            let text = url.clone();
            let options = options.clone();
            let done = tokio::task::spawn_blocking(move || {
                let source = GitSource::parse(&text)?;
                checkout(&source, &target, &options)
            })
            .await
            .context("the git thread failed")?
            .with_context(|| format!("--context {url}"))?;
            tracing::info!("Context {url} at commit {}", done.commit);
            (done.root, Some(scratch))
        }
        ContextSource::Tarball(url) => {
            let scratch = scratch()?;
            let archive = scratch.path().join("context.tar");
            let mut file = std::fs::File::create(&archive)
                .with_context(|| format!("creating {}", archive.display()))?;
            tracing::info!("Downloading the context {url}");
            client
                .download(url, &mut file)
                .await
                .with_context(|| format!("--context {url}"))?;
            drop(file);
            let dir = scratch.path().join("context");
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let file = std::fs::File::open(&archive)
                .with_context(|| format!("opening {}", archive.display()))?;
            let (target, label) = (dir.clone(), url.clone());
            tokio::task::spawn_blocking(move || extract(file, &target, &label))
                .await
                .context("the extraction thread failed")??;
            (dir, Some(scratch))
        }
    };
    let dir = match sub_path {
        None | Some("") => base,
        Some(sub) => {
            if Path::new(sub)
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
            {
                bail!("--context-sub-path {sub:?} must be a relative path inside the context");
            }
            let dir = base.join(sub);
            let canonical = std::fs::canonicalize(&dir).with_context(|| {
                format!("--context-sub-path {sub:?}: {} not found", dir.display())
            })?;
            if !canonical.starts_with(std::fs::canonicalize(&base)?) || !canonical.is_dir() {
                bail!("--context-sub-path {sub:?} is not a directory inside the context");
            }
            canonical
        }
    };
    Ok(Materialized {
        dir,
        _scratch: scratch,
    })
}

/// Extracts a tar stream, compressed or not (recognised by its first bytes), into `dir`
/// through the safe extractor: no entry can land outside it.
fn extract(reader: impl Read + Send, dir: &Path, label: &str) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let head = reader
        .fill_buf()
        .with_context(|| format!("reading the context archive {label}"))?;
    let format = Format::sniff(head);
    let root = RootFs::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let stream =
        decode(format, reader).with_context(|| format!("reading the context archive {label}"))?;
    kiln_exec::unpack::apply_layer(&root, stream, label)
        .with_context(|| format!("extracting the context archive {label}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_schemes_map_to_their_sources() {
        assert_eq!(
            ContextSource::parse("tar://stdin").unwrap(),
            ContextSource::TarStdin
        );
        assert_eq!(
            ContextSource::parse("git://github.com/acme/app.git#refs/heads/main").unwrap(),
            ContextSource::Git(
                "https://github.com/acme/app.git#refs/heads/main".into(),
                CloneOptions::default()
            )
        );
        assert_eq!(
            ContextSource::parse("https://h/app.git#main:sub").unwrap(),
            ContextSource::Git("https://h/app.git#main:sub".into(), CloneOptions::default())
        );
        assert_eq!(
            ContextSource::parse("https://h/ctx.tar.gz").unwrap(),
            ContextSource::Tarball("https://h/ctx.tar.gz".into())
        );
        for scheme in ["s3", "gs", "az"] {
            let err = ContextSource::parse(&format!("{scheme}://bucket/ctx.tgz"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not supported yet"), "{err}");
        }
        assert!(ContextSource::parse("tar:///nonexistent/ctx.tar").is_err());
    }
}
