//! `ADD <url>` and `ADD <git repository>`: every URL the plan's ADD steps name is downloaded before node keys are assigned,
//! so a step's key holds what the server delivered (its sha256 and `Last-Modified`), not just
//! the URL: Kaniko keyed ADD-URL steps by their text and served stale layers after the file
//! changed upstream. `--checksum` is verified right after the download, before anything runs.
//!
//! Files land in `<work>/downloads/<n>/<name>` with mode 0600 and the server's `Last-Modified`
//! as mtime (Docker's rules), named after the URL path's last segment; the step then copies them
//! like `COPY` copies context files, so `--chown`, `--chmod` and destination naming (a `/`
//! ending means "into this directory") are COPY's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use kiln_graph::{CopyStep, Plan, StepKind};
use kiln_registry::Client;
use sha2::Digest as _;

use super::git::{Checkout, CloneOptions, GitSource, checkout};

/// One downloaded URL.
#[derive(Debug, Clone)]
pub struct Download {
    /// The file, in its own directory.
    pub path: PathBuf,
    /// Its name: the last segment of the URL's path.
    pub name: String,
    /// sha256 of the content, hex.
    pub sha256: String,
    /// The server's `Last-Modified`, which is also the file's mtime.
    pub last_modified: Option<SystemTime>,
}

/// Every download and git checkout of a build, by URL.
#[derive(Debug, Default)]
pub struct Downloads {
    by_url: BTreeMap<String, Download>,
    /// `ADD <repository>` checkouts, by source text (URL with its `#ref:subdir`) and
    /// `--keep-git-dir`.
    clones: BTreeMap<(String, bool), Checkout>,
}

impl Downloads {
    /// Downloads every URL of every `ADD <url>` step of `plan` into `dir` (once per URL), and
    /// verifies each step's `--checksum`.
    pub async fn fetch(
        client: &Client,
        plan: &Plan,
        dir: &Path,
        dockerfile: &str,
    ) -> anyhow::Result<Downloads> {
        let mut downloads = Downloads::default();
        for stage in &plan.stages {
            for step in &stage.steps {
                let StepKind::Copy(copy) = &step.kind else {
                    continue;
                };
                let at = || format!("{dockerfile}:{}:{}: {}", step.line, step.column, step.text);
                if copy.clones() {
                    for source in &copy.sources {
                        let key = (source.clone(), copy.keep_git_dir);
                        if downloads.clones.contains_key(&key) {
                            continue;
                        }
                        let target = dir.join(format!("git-{}", downloads.clones.len()));
                        let keep = copy.keep_git_dir;
                        let text = source.clone();
                        let checkout = tokio::task::spawn_blocking(move || {
                            let source = GitSource::parse(&text)?;
                            if let Some(parent) = target.parent() {
                                std::fs::create_dir_all(parent)?;
                            }
                            checkout(&source, &target, &CloneOptions::for_add(keep))
                        })
                        .await
                        .context("the git thread failed")?
                        .with_context(at)?;
                        downloads.clones.insert(key, checkout);
                    }
                    continue;
                }
                if !copy.downloads() {
                    continue;
                }
                for url in &copy.sources {
                    if !downloads.by_url.contains_key(url) {
                        let target = dir.join(downloads.by_url.len().to_string());
                        let download = fetch_one(client, url, &target).await.with_context(at)?;
                        downloads.by_url.insert(url.clone(), download);
                    }
                    if let (Some(checksum), Some(download)) =
                        (&copy.checksum, downloads.by_url.get(url))
                    {
                        verify(checksum, download, url).with_context(at)?;
                    }
                }
            }
        }
        Ok(downloads)
    }

    /// What a step's node key takes for its sources: each URL with its file name, content
    /// digest and mtime, framed.
    pub fn digest(&self, copy: &CopyStep) -> Result<[u8; 32], String> {
        let mut hasher = sha2::Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        if copy.clones() {
            field(b"git");
            field(&(copy.sources.len() as u64).to_le_bytes());
            for source in &copy.sources {
                let checkout = self.checkout(copy, source).map_err(|e| e.to_string())?;
                field(source.as_bytes());
                field(checkout.commit.as_bytes());
                field(&[u8::from(copy.keep_git_dir)]);
            }
            return Ok(hasher.finalize().into());
        }
        field(&(copy.sources.len() as u64).to_le_bytes());
        for url in &copy.sources {
            let download = self
                .by_url
                .get(url)
                .ok_or_else(|| format!("{url} was not downloaded"))?;
            let mtime = download
                .last_modified
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string())
                .unwrap_or_default();
            field(url.as_bytes());
            field(download.name.as_bytes());
            field(download.sha256.as_bytes());
            field(mtime.as_bytes());
        }
        Ok(hasher.finalize().into())
    }

    /// The checkout of `source`, a git source of `copy`.
    pub fn checkout(&self, copy: &CopyStep, source: &str) -> anyhow::Result<&Checkout> {
        self.clones
            .get(&(source.to_owned(), copy.keep_git_dir))
            .with_context(|| format!("{source} was not cloned"))
    }

    /// A directory (under `scratch`) holding the files of `copy`'s URLs under their names, to
    /// copy from, and those names in source order.
    pub fn stage_sources(
        &self,
        copy: &CopyStep,
        scratch: &Path,
    ) -> anyhow::Result<(tempfile::TempDir, Vec<String>)> {
        let dir = tempfile::Builder::new()
            .prefix("add-url-")
            .tempdir_in(scratch)
            .with_context(|| format!("creating a directory in {}", scratch.display()))?;
        let mut names = Vec::new();
        for url in &copy.sources {
            let download = self
                .by_url
                .get(url)
                .with_context(|| format!("{url} was not downloaded"))?;
            if names.contains(&download.name) {
                bail!(
                    "ADD: two URLs download to the same file name {:?}; use one ADD per URL",
                    download.name
                );
            }
            // A hard link: same inode, so the mode and mtime come along.
            std::fs::hard_link(&download.path, dir.path().join(&download.name))
                .with_context(|| format!("staging the download of {url}"))?;
            names.push(download.name.clone());
        }
        Ok((dir, names))
    }
}

async fn fetch_one(client: &Client, url: &str, dir: &Path) -> anyhow::Result<Download> {
    let name = file_name(url);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(&name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    tracing::info!("Downloading {url}");
    let mut sink = BufWriter::with_capacity(1 << 20, file);
    let downloaded = client.download(url, &mut sink).await?;
    let file = sink
        .into_inner()
        .map_err(|err| err.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(time) = downloaded.last_modified {
        file.set_modified(time)
            .with_context(|| format!("setting the mtime of {}", path.display()))?;
    }
    // `create_new` with mode 0600 is subject to the umask; make it exact.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    tracing::debug!(
        "downloaded {url}: {} bytes, sha256:{}",
        downloaded.size,
        downloaded.sha256
    );
    Ok(Download {
        path,
        name,
        sha256: downloaded.sha256,
        last_modified: downloaded.last_modified,
    })
}

/// `--checksum=<algorithm>:<hex>` against what was downloaded.
fn verify(checksum: &str, download: &Download, url: &str) -> anyhow::Result<()> {
    let (algorithm, expected) = checksum.split_once(':').unwrap_or(("", checksum));
    let actual = match algorithm {
        "sha256" => download.sha256.clone(),
        "sha384" => hash_file::<sha2::Sha384>(&download.path)?,
        "sha512" => hash_file::<sha2::Sha512>(&download.path)?,
        other => bail!("ADD --checksum: unsupported algorithm {other:?}"),
    };
    if actual != expected {
        bail!(
            "ADD {url}: checksum mismatch: --checksum={checksum}, but the downloaded content is {algorithm}:{actual}"
        );
    }
    Ok(())
}

fn hash_file<D: sha2::Digest>(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = D::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The file name Docker gives a download: the URL path's last segment, percent-decoded;
/// `__unnamed__` (BuildKit's) when the path has none.
fn file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_fragment = after_scheme.split('#').next().unwrap_or_default();
    let without_query = without_fragment.split('?').next().unwrap_or_default();
    let path = without_query.split_once('/').map_or("", |(_, path)| path);
    let last = path.rsplit('/').next().unwrap_or_default();
    let decoded = percent_decode(last);
    if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains('/') {
        "__unnamed__".to_owned()
    } else {
        decoded
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_is_the_last_path_segment_decoded() {
        assert_eq!(file_name("https://h/a/b/tool.tar.gz"), "tool.tar.gz");
        assert_eq!(file_name("http://h:8080/x/my%20file?sig=1#frag"), "my file");
        assert_eq!(file_name("https://h/"), "__unnamed__");
        assert_eq!(file_name("https://h"), "__unnamed__");
        assert_eq!(file_name("https://h/a/%2e%2e"), "__unnamed__");
    }
}
