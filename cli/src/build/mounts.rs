//! `RUN --mount`: each Dockerfile mount resolved to what the sandbox mounts (a host directory or
//! file, or a tmpfs) for one command, plus the locks and scratch files that must live as long as
//! the command.
//!
//! Cache mounts persist in `<cache-dir>/mounts/<sha256 of the id>` between builds; secrets are
//! copied into a private scratch directory (for the mode and owner the mount asks for) that is
//! removed when the command ends. Nothing here reaches a layer: the sandbox mounts it over the
//! root in the command's own namespace.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_exec::RootFs;
use kiln_exec::context::BuildContext;
use kiln_exec::copy::{CopyOptions, copy};
use kiln_exec::run::{MountSource, RunMount};
use kiln_graph::{Mount, Sharing};
use sha2::{Digest as _, Sha256};

use super::secrets::{SecretSource, Secrets};

/// What mounts are resolved against, for a whole build.
#[derive(Debug)]
pub struct MountInputs<'a> {
    /// `--cache-dir`: cache mounts live in its `mounts/` directory.
    pub cache_dir: &'a Path,
    /// The build context, for binds without `from=`.
    pub context: &'a BuildContext,
    /// `--secret`s.
    pub secrets: &'a Secrets,
    /// Where the scratch directories of secrets and `rw` binds are created.
    pub work: &'a Path,
    /// Whether overlayfs can be mounted there: `rw` binds of directories need it.
    pub overlay_available: bool,
}

/// The mounts of one RUN, ready for [`kiln_exec::run::RunSpec`]; dropping it releases the cache
/// locks and removes the secret copies, so it must outlive the command.
#[derive(Debug, Default)]
pub struct Resolved {
    /// What the sandbox mounts, in the Dockerfile's order.
    pub mounts: Vec<RunMount>,
    /// Secrets exposed as environment variables (`env=`).
    pub env: Vec<(String, String)>,
    _locks: Vec<File>,
    _scratch: Option<tempfile::TempDir>,
}

impl MountInputs<'_> {
    /// Resolves `mounts`; `sources` holds the host root of each `from=` mount by its index (a
    /// stage's or an image's root filesystem), relative targets are relative to `workdir`, as in
    /// BuildKit, and `at` (`Dockerfile:line:column`) prefixes every error.
    pub fn resolve(
        &self,
        mounts: &[Mount],
        sources: &BTreeMap<usize, PathBuf>,
        workdir: &str,
        at: &str,
    ) -> anyhow::Result<Resolved> {
        let mut resolved = Resolved::default();
        for (index, mount) in mounts.iter().enumerate() {
            let from = match sources.get(&index) {
                Some(root) => Some(RootFs::open(root).with_context(|| {
                    format!("{at}: RUN --mount={mount}: opening {}", root.display())
                })?),
                None => None,
            };
            self.resolve_one(mount, from.as_ref(), &mut resolved)
                .with_context(|| format!("{at}: RUN --mount={mount}"))?;
        }
        for mount in &mut resolved.mounts {
            if !mount.target.starts_with('/') {
                mount.target = format!("{}/{}", workdir.trim_end_matches('/'), mount.target);
            }
        }
        Ok(resolved)
    }

    fn resolve_one(
        &self,
        mount: &Mount,
        from: Option<&RootFs>,
        resolved: &mut Resolved,
    ) -> anyhow::Result<()> {
        match mount {
            Mount::Bind {
                target,
                source,
                readwrite,
                ..
            } => {
                let source = source.as_deref().unwrap_or("/");
                let (root, name) = match from {
                    Some(root) => (root, "from="),
                    None => (self.context.root(), "the build context"),
                };
                let path = root
                    .host_path(Path::new(source))
                    .with_context(|| format!("source {source} in {name}"))?;
                let view = match from {
                    None if !self.context.ignore().is_empty() => {
                        self.context_view(source, &path, resolved)?
                    }
                    _ => None,
                };
                let source = if let Some(view) = view {
                    // A scratch copy already: writes to it are discarded with it.
                    MountSource::Bind {
                        path: view,
                        readonly: !*readwrite,
                    }
                } else if *readwrite {
                    self.discarded(path, resolved)?
                } else {
                    MountSource::Bind {
                        path,
                        readonly: true,
                    }
                };
                resolved.mounts.push(RunMount {
                    target: target.clone(),
                    source,
                });
            }
            Mount::Cache {
                target,
                id,
                sharing,
                source,
                readonly,
                mode,
                uid,
                gid,
                ..
            } => {
                let id = id.as_deref().unwrap_or(target);
                let seed = from.map(|root| (root, source.as_deref().unwrap_or("/")));
                let (path, lock) = self.cache_dir(id, *sharing, seed, *mode, *uid, *gid)?;
                resolved._locks.extend(lock);
                resolved.mounts.push(RunMount {
                    target: target.clone(),
                    source: MountSource::Bind {
                        path,
                        readonly: *readonly,
                    },
                });
            }
            Mount::Tmpfs { target, size } => resolved.mounts.push(RunMount {
                target: target.clone(),
                source: MountSource::Tmpfs { size: *size },
            }),
            Mount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(value) = self.secret(id)? else {
                    if *required {
                        bail!(
                            "secret {id} is required but was not provided (pass --secret id={id},src=PATH or --secret id={id},env=VAR)"
                        );
                    }
                    return Ok(());
                };
                if let Some(var) = env {
                    let text = String::from_utf8(value.clone()).map_err(|_| {
                        anyhow::anyhow!("secret {id} is not UTF-8 and cannot be the value of {var}")
                    })?;
                    resolved.env.push((var.clone(), text));
                }
                if env.is_none() || target.is_some() {
                    let target = target
                        .clone()
                        .unwrap_or_else(|| format!("/run/secrets/{id}"));
                    let path = self
                        .scratch(resolved)?
                        .join(resolved.mounts.len().to_string());
                    write_secret(&path, &value, mode.unwrap_or(0o400), *uid, *gid)
                        .with_context(|| format!("staging secret {id}"))?;
                    resolved.mounts.push(RunMount {
                        target,
                        source: MountSource::Bind {
                            path,
                            readonly: true,
                        },
                    });
                }
            }
            Mount::Ssh { .. } => bail!(
                "SSH agent forwarding is not implemented; fetch private sources before the build or with a secret mount"
            ),
        }
        Ok(())
    }

    /// The RUN's private scratch directory, created on first use and removed with `resolved`.
    fn scratch(&self, resolved: &mut Resolved) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &resolved._scratch {
            return Ok(dir.path().to_path_buf());
        }
        let dir = tempfile::Builder::new()
            .prefix("mounts-")
            .tempdir_in(self.work)
            .context("creating the RUN mounts scratch directory")?;
        let path = dir.path().to_path_buf();
        resolved._scratch = Some(dir);
        Ok(path)
    }

    /// The context as BuildKit shows it, `.dockerignore` applied: a scratch copy of directory
    /// `source` without the excluded files; `None` for a file `source`, used as it is unless
    /// excluded.
    fn context_view(
        &self,
        source: &str,
        path: &Path,
        resolved: &mut Resolved,
    ) -> anyhow::Result<Option<PathBuf>> {
        let ignore = self.context.ignore();
        let rel = source.trim_start_matches('/');
        if !path.is_dir() {
            if ignore.is_excluded(rel) {
                bail!("source {source} is excluded by .dockerignore");
            }
            return Ok(None);
        }
        let view = self
            .scratch(resolved)?
            .join(format!("context-{}", resolved.mounts.len()));
        std::fs::create_dir(&view).with_context(|| format!("creating {}", view.display()))?;
        let dest = RootFs::open(&view)?;
        let options = CopyOptions {
            ignore: Some(ignore),
            ..CopyOptions::default()
        };
        let name = if rel.is_empty() { "." } else { rel };
        copy(
            self.context.root(),
            &[name.to_owned()],
            &dest,
            "/",
            &options,
        )
        .with_context(|| {
            format!("copying {source} of the build context without its .dockerignore'd files")
        })?;
        Ok(Some(view))
    }

    /// A writable view of `path` whose writes vanish with the command: an overlay for a
    /// directory, a scratch copy for a file.
    fn discarded(&self, path: PathBuf, resolved: &mut Resolved) -> anyhow::Result<MountSource> {
        let scratch = self
            .scratch(resolved)?
            .join(format!("rw-{}", resolved.mounts.len()));
        if path.is_dir() {
            if !self.overlay_available {
                bail!(
                    "rw needs overlayfs where kiln's work area lives ({}), which cannot be mounted there; drop rw",
                    self.work.display()
                );
            }
            return Ok(MountSource::Discarded { path, scratch });
        }
        std::fs::copy(&path, &scratch)
            .with_context(|| format!("copying {} for a rw mount", path.display()))?;
        Ok(MountSource::Bind {
            path: scratch,
            readonly: false,
        })
    }

    /// The secret's value, `None` when it was not given or its source does not exist.
    fn secret(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.secrets.get(id) {
            None => Ok(None),
            Some(SecretSource::Env(var)) => Ok(std::env::var_os(var).map(|v| {
                use std::os::unix::ffi::OsStringExt as _;
                v.into_vec()
            })),
            Some(SecretSource::File(path)) => match std::fs::read(path) {
                Ok(value) => Ok(Some(value)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => {
                    Err(err).with_context(|| format!("reading secret {id} from {}", path.display()))
                }
            },
        }
    }

    /// The host directory of cache `id`, created (mode, owner) on first use, with the lock its
    /// sharing mode needs: `locked` waits for the directory, `private` takes the first of
    /// `<hash>`, `<hash>-1`, ... that no other build holds. A new directory starts as a copy of
    /// `seed` (a root and a path in it) when given.
    fn cache_dir(
        &self,
        id: &str,
        sharing: Sharing,
        seed: Option<(&RootFs, &str)>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> anyhow::Result<(PathBuf, Option<File>)> {
        let base = self.cache_dir.join("mounts");
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let hash: String = Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let open_lock = |name: &str| -> anyhow::Result<File> {
            let path = base.join(format!("{name}.lock"));
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
        };
        let (name, lock) = match sharing {
            Sharing::Shared => (hash, None),
            Sharing::Locked => {
                let lock = open_lock(&hash)?;
                lock.lock()
                    .with_context(|| format!("locking cache {id} in {}", base.display()))?;
                (hash, Some(lock))
            }
            Sharing::Private => {
                let mut n = 0u32;
                loop {
                    let name = if n == 0 {
                        hash.clone()
                    } else {
                        format!("{hash}-{n}")
                    };
                    let lock = open_lock(&name)?;
                    if lock.try_lock().is_ok() {
                        break (name, Some(lock));
                    }
                    n += 1;
                }
            }
        };
        let dir = base.join(&name);
        if !dir.is_dir() {
            create_cache(&base, &name, seed, mode.unwrap_or(0o755), uid, gid)
                .with_context(|| format!("creating cache {id} in {}", dir.display()))?;
        }
        Ok((dir, lock))
    }
}

/// Creates the cache directory `base/name` whole or not at all: set up under a temporary name,
/// then renamed (a concurrent build that won the race keeps its own).
fn create_cache(
    base: &Path,
    name: &str,
    seed: Option<(&RootFs, &str)>,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> anyhow::Result<()> {
    let staging = tempfile::Builder::new()
        .prefix(&format!(".new-{name}-"))
        .tempdir_in(base)?;
    let dir = staging.path().join("d");
    std::fs::DirBuilder::new().mode(mode).create(&dir)?;
    if let Some((root, source)) = seed {
        let options = CopyOptions {
            preserve_owner: true,
            ..CopyOptions::default()
        };
        let dest = RootFs::open(&dir)?;
        copy(root, &[source.to_owned()], &dest, "/", &options)
            .with_context(|| format!("seeding the cache from {source}"))?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(&dir, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))?;
    // Never `rename(2)` over the target: it replaces an *empty* directory, which is what a
    // concurrent build's cache is between its creation and its command's first write, and
    // that build would then work in an unlinked directory nobody else sees.
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        &dir,
        rustix::fs::CWD,
        base.join(name),
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(_) if base.join(name).is_dir() => Ok(()),
        Err(err) => Err(std::io::Error::from(err).into()),
    }
}

/// Writes a secret's copy, readable only as the mount asks.
fn write_secret(
    path: &Path,
    value: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value)?;
    std::os::unix::fs::chown(path, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn cache(sharing: &str) -> Mount {
        Mount::parse(&format!(
            "type=cache,target=/c,id=shared-id,sharing={sharing},mode=0750,uid=7,gid=8"
        ))
        .unwrap()
    }

    fn host_path(resolved: &Resolved) -> PathBuf {
        match &resolved.mounts[0].source {
            MountSource::Bind { path, .. } => path.clone(),
            other => panic!("not a bind: {other:?}"),
        }
    }

    struct World {
        cache: tempfile::TempDir,
        work: tempfile::TempDir,
        context: BuildContext,
        secrets: Secrets,
    }

    impl World {
        fn new() -> World {
            let context_dir = tempfile::tempdir().unwrap();
            let context = BuildContext::open(context_dir.path(), None).unwrap();
            World {
                cache: tempfile::tempdir().unwrap(),
                work: tempfile::tempdir().unwrap(),
                context,
                secrets: Secrets::default(),
            }
        }

        fn inputs(&self) -> MountInputs<'_> {
            MountInputs {
                cache_dir: self.cache.path(),
                context: &self.context,
                secrets: &self.secrets,
                work: self.work.path(),
                overlay_available: false,
            }
        }
    }

    #[test]
    fn a_new_cache_directory_gets_the_mode_and_owner_asked_for() {
        let world = World::new();
        let resolved = world
            .inputs()
            .resolve(&[cache("shared")], &BTreeMap::new(), "/", "D:1:1")
            .unwrap();
        let meta = std::fs::metadata(host_path(&resolved)).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o750, 7, 8)
        );
    }

    #[test]
    fn private_caches_give_concurrent_users_their_own_directory() {
        let world = World::new();
        let inputs = world.inputs();
        let first = inputs
            .resolve(&[cache("private")], &BTreeMap::new(), "/", "D:1:1")
            .unwrap();
        let second = inputs
            .resolve(&[cache("private")], &BTreeMap::new(), "/", "D:1:1")
            .unwrap();
        assert_ne!(host_path(&first), host_path(&second));
        let path = host_path(&first);
        drop(first);
        let third = inputs
            .resolve(&[cache("private")], &BTreeMap::new(), "/", "D:1:1")
            .unwrap();
        assert_eq!(host_path(&third), path);
    }

    #[test]
    fn locked_caches_make_a_second_user_wait_for_the_first() {
        let world = World::new();
        let first = world
            .inputs()
            .resolve(&[cache("locked")], &BTreeMap::new(), "/", "D:1:1")
            .unwrap();
        let (done, finished) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let second = world
                    .inputs()
                    .resolve(&[cache("locked")], &BTreeMap::new(), "/", "D:1:1")
                    .unwrap();
                done.send(host_path(&second)).unwrap();
            });
            assert!(
                finished.recv_timeout(Duration::from_millis(300)).is_err(),
                "the second user did not wait"
            );
            let path = host_path(&first);
            drop(first);
            assert_eq!(
                finished.recv_timeout(Duration::from_secs(10)).unwrap(),
                path
            );
        });
    }

    #[test]
    fn relative_targets_are_relative_to_the_working_directory() {
        let world = World::new();
        let tmpfs = Mount::parse("type=tmpfs,target=scratch").unwrap();
        let resolved = world
            .inputs()
            .resolve(&[tmpfs], &BTreeMap::new(), "/srv/app/", "D:1:1")
            .unwrap();
        assert_eq!(resolved.mounts[0].target, "/srv/app/scratch");
    }

    #[test]
    fn a_missing_optional_secret_is_skipped_and_a_required_one_fails_without_its_value() {
        let world = World::new();
        let optional = Mount::parse("type=secret,id=npm").unwrap();
        let resolved = world
            .inputs()
            .resolve(&[optional], &BTreeMap::new(), "/", "D:2:1")
            .unwrap();
        assert!(resolved.mounts.is_empty() && resolved.env.is_empty());
        let required = Mount::parse("type=secret,id=npm,required=true").unwrap();
        let err = world
            .inputs()
            .resolve(&[required], &BTreeMap::new(), "/", "D:2:1")
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.starts_with("D:2:1: RUN --mount=type=secret"),
            "{message}"
        );
        assert!(message.contains("secret npm is required"), "{message}");
    }

    #[test]
    fn creating_a_cache_never_replaces_the_empty_one_a_concurrent_build_just_made() {
        let base = tempfile::tempdir().unwrap();
        create_cache(base.path(), "c", None, 0o755, None, None).unwrap();
        let first = std::fs::metadata(base.path().join("c")).unwrap().ino();
        // A second build that saw no directory a moment ago finishes creating its own.
        create_cache(base.path(), "c", None, 0o700, None, None).unwrap();
        let kept = std::fs::metadata(base.path().join("c")).unwrap();
        assert_eq!(
            kept.ino(),
            first,
            "the first build's directory was replaced"
        );
        assert_eq!(kept.mode() & 0o7777, 0o755);
    }
}
