//! The local build context: a directory `COPY` reads from, with its `.dockerignore`.
//!
//! The context is opened as a [`RootFs`], so a symlink inside it (`secret -> /etc/passwd`) is
//! resolved against the context itself and can never expose host files to the image. Its digest
//! is the cache key of a `COPY`: it covers exactly the files that `COPY` would read.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustix::fs::{FileType, Mode, OFlags};
use thiserror::Error;

use crate::copy::CopyError;
use crate::digest_memo::{DigestMemo, FileIdentity, NoMemo};
use crate::dockerignore::{Dockerignore, DockerignoreError};
use crate::fsroot::RootFs;
use crate::sources::{self, Entry, Visit};

/// Why a build context could not be opened.
#[derive(Debug, Error)]
pub enum ContextError {
    /// The context directory cannot be opened.
    #[error("opening build context {}: {source}", .path.display())]
    Open {
        /// The context directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The ignore file exists but cannot be read.
    #[error("reading {}: {source}", .path.display())]
    ReadIgnore {
        /// The ignore file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The ignore file has an invalid pattern.
    #[error("{}: {source}", .path.display())]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// What is wrong with it.
        source: DockerignoreError,
    },
}

/// An opened local build context.
#[derive(Debug)]
pub struct BuildContext {
    root: RootFs,
    ignore: Dockerignore,
    /// Content hashes by file identity: what [`BuildContext::digest`] and
    /// [`BuildContext::file_digests`] need not read again.
    memo: Arc<dyn DigestMemo>,
}

impl BuildContext {
    /// Opens a context directory. The ignore file is `<dockerfile>.dockerignore` when a Dockerfile
    /// is given and that file exists, else `<dir>/.dockerignore` (read inside the context).
    pub fn open(dir: &Path, dockerfile: Option<&Path>) -> Result<BuildContext, ContextError> {
        let root = RootFs::open(dir).map_err(|source| ContextError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut ignore = None;
        if let Some(dockerfile) = dockerfile {
            let mut name = OsString::from(dockerfile.as_os_str());
            name.push(".dockerignore");
            let path = PathBuf::from(name);
            match File::open(&path) {
                Ok(file) => ignore = Some(parse_ignore(file, &path)?),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ContextError::ReadIgnore { path, source }),
            }
        }
        let ignore = match ignore {
            Some(ignore) => ignore,
            None => {
                let path = dir.join(".dockerignore");
                match root.open_path(Path::new(".dockerignore"), OFlags::RDONLY, Mode::empty()) {
                    Ok(fd) => parse_ignore(File::from(fd), &path)?,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
                    Err(source) => return Err(ContextError::ReadIgnore { path, source }),
                }
            }
        };
        Ok(BuildContext {
            root,
            ignore,
            memo: Arc::new(NoMemo),
        })
    }

    /// Uses `memo` for the content hashes of the context's files: a file whose identity it
    /// knows is not read again (see [`crate::digest_memo`]).
    pub fn with_memo(mut self, memo: Arc<dyn DigestMemo>) -> BuildContext {
        self.memo = memo;
        self
    }

    /// The context directory as a root: symlinks inside it can never reach host files.
    pub fn root(&self) -> &RootFs {
        &self.root
    }

    /// The context's ignore rules (empty when there is no ignore file).
    pub fn ignore(&self) -> &Dockerignore {
        &self.ignore
    }

    /// Content digest of what `COPY <sources>` would read, for cache keys: BLAKE3 over every
    /// selected source's name and every entry below it (after wildcard expansion and
    /// `.dockerignore`), sources sorted, entries depth first with names sorted,
    /// each length-framed as (context-relative path, file type, permission bits, size, BLAKE3
    /// of the content or link target or device number). Names are included, so a rename
    /// changes the key (Kaniko's keys omitted them and served stale layers); owners and times
    /// are not, since `COPY` resets owners and an identical regenerated file should still hit.
    /// Content hashes come from the context's memo when it knows the file's identity.
    pub fn digest(&self, sources: &[String]) -> Result<[u8; 32], CopyError> {
        let reader = ContentReader::new(self.memo.as_ref());
        digest_with(
            &self.root,
            sources,
            Some(&self.ignore),
            Owners::Ignored,
            &reader,
        )
    }

    /// The identity of every regular file `COPY <sources>` would read, without reading any:
    /// what a persistent memo looks up, all at once, before the digests are computed.
    pub fn identities(&self, sources: &[String]) -> Result<Vec<FileIdentity>, CopyError> {
        let mut identities = Vec::new();
        for source in sources::expand(&self.root, sources, Some(&self.ignore))? {
            sources::walk(&self.root, &source, Some(&self.ignore), &mut |visit| {
                if let Visit::Leaf(entry) = visit
                    && FileType::from_raw_mode(entry.stat.st_mode) == FileType::RegularFile
                {
                    identities.push(FileIdentity::of(entry.stat));
                }
                Ok(())
            })?;
        }
        Ok(identities)
    }
}

/// Whether a content digest covers owners: `COPY` from the context resets them, `COPY --from`
/// keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Left out of the digest.
    Ignored,
    /// Part of every entry's digest.
    Kept,
}

/// Content digest of what `COPY <sources>` would read from `root` (see [`BuildContext::digest`];
/// `ignore` applies `.dockerignore` rules, `owners` says whether uid and gid count).
pub fn digest_sources(
    root: &RootFs,
    sources: &[String],
    ignore: Option<&Dockerignore>,
    owners: Owners,
) -> Result<[u8; 32], CopyError> {
    digest_with(root, sources, ignore, owners, &ContentReader::new(&NoMemo))
}

fn digest_with(
    root: &RootFs,
    sources: &[String],
    ignore: Option<&Dockerignore>,
    owners: Owners,
    reader: &ContentReader<'_>,
) -> Result<[u8; 32], CopyError> {
    let mut selected = sources::expand(root, sources, ignore)?;
    selected.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    selected.dedup_by(|a, b| a.name == b.name && a.path == b.path);
    let mut hasher = blake3::Hasher::new();
    frame(
        &mut hasher,
        match owners {
            Owners::Ignored => b"kiln-context-digest-v2",
            Owners::Kept => b"kiln-owned-digest-v2",
        },
    );
    for source in &selected {
        // The name a source was selected under becomes a destination name (a symlink is
        // copied as its target's content under its own name), so it is part of the key.
        frame(&mut hasher, b"source");
        frame(&mut hasher, source.name.as_bytes());
        sources::walk(root, source, ignore, &mut |visit| match visit {
            Visit::Enter(entry) | Visit::Leaf(entry) => {
                if owners == Owners::Kept {
                    frame(&mut hasher, &entry.stat.st_uid.to_le_bytes());
                    frame(&mut hasher, &entry.stat.st_gid.to_le_bytes());
                }
                hash_entry(&mut hasher, &entry, reader)
            }
            Visit::Leave(_) => Ok(()),
        })?;
    }
    Ok(*hasher.finalize().as_bytes())
}

fn parse_ignore(file: File, path: &Path) -> Result<Dockerignore, ContextError> {
    Dockerignore::from_reader(BufReader::new(file)).map_err(|source| ContextError::Ignore {
        path: path.to_path_buf(),
        source,
    })
}

/// Length-prefixed field, so that no two different entries can hash the same byte stream.
fn frame(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn hash_entry(
    hasher: &mut blake3::Hasher,
    entry: &Entry<'_>,
    reader: &ContentReader<'_>,
) -> Result<(), CopyError> {
    let stat = entry.stat;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    frame(hasher, entry.root_path.as_os_str().as_bytes());
    let type_tag: u8 = match file_type {
        FileType::RegularFile => b'f',
        FileType::Directory => b'd',
        FileType::Symlink => b'l',
        FileType::Fifo => b'p',
        FileType::CharacterDevice => b'c',
        FileType::BlockDevice => b'b',
        _ => b'?',
    };
    frame(hasher, &[type_tag]);
    frame(hasher, &(stat.st_mode & 0o7777).to_le_bytes());
    match file_type {
        FileType::RegularFile => {
            let size = u64::try_from(stat.st_size).unwrap_or(0);
            frame(hasher, &size.to_le_bytes());
            frame(hasher, &reader.content(entry, size)?);
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(entry.parent, entry.name, Vec::new())
                .map_err(|err| CopyError::in_source("read link", entry.root_path, err.into()))?;
            frame(hasher, target.as_bytes());
        }
        FileType::CharacterDevice | FileType::BlockDevice => {
            frame(hasher, &stat.st_rdev.to_le_bytes());
        }
        _ => {}
    }
    Ok(())
}

/// Opens a regular file found by the walk, for reading.
type Open<'a> = dyn Fn(BorrowedFd<'_>, &OsStr) -> io::Result<OwnedFd> + Sync + 'a;

/// Reads content hashes: from the memo when it knows the file's identity, else from the file,
/// telling the memo what it read.
struct ContentReader<'a> {
    memo: &'a dyn DigestMemo,
    open: &'a Open<'a>,
}

impl<'a> ContentReader<'a> {
    fn new(memo: &'a dyn DigestMemo) -> ContentReader<'a> {
        ContentReader {
            memo,
            open: &open_file,
        }
    }

    /// BLAKE3 of the `size` bytes of the regular file `entry`.
    fn content(&self, entry: &Entry<'_>, size: u64) -> Result<[u8; 32], CopyError> {
        let identity = FileIdentity::of(entry.stat);
        if let Some(hash) = self.memo.recall(&identity) {
            return Ok(hash);
        }
        let read_at = SystemTime::now();
        let file = File::from(
            (self.open)(entry.parent, entry.name)
                .map_err(|err| CopyError::in_source("open", entry.root_path, err))?,
        );
        let mut hasher = blake3::Hasher::new();
        let copied = io::copy(&mut (&file).take(size), &mut HashWriter(&mut hasher))
            .map_err(|err| CopyError::in_source("read", entry.root_path, err))?;
        if copied != size {
            return Err(CopyError::in_source(
                "read",
                entry.root_path,
                io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while hashing"),
            ));
        }
        let hash = *hasher.finalize().as_bytes();
        // A file that changed while it was read is hashed as read, but vouches for nothing.
        if rustix::fs::fstat(&file).is_ok_and(|after| FileIdentity::of(&after) == identity) {
            self.memo
                .remember(identity, hash, identity.settled(read_at));
        }
        Ok(hash)
    }
}

fn open_file(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// `io::Write` into a hasher we only borrow.
struct HashWriter<'a>(&'a mut blake3::Hasher);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BuildContext {
    /// The digest of each entry `COPY <sources>` would read, by its context-relative path: the
    /// same framing as [`BuildContext::digest`] applied to one entry at a time, so a changed
    /// digest here means a changed key there. `kiln cache explain` compares these between
    /// builds to name the files that made a COPY miss.
    pub fn file_digests(&self, sources: &[String]) -> Result<Vec<(String, [u8; 32])>, CopyError> {
        self.file_digests_with(sources, &ContentReader::new(self.memo.as_ref()))
    }

    fn file_digests_with(
        &self,
        sources: &[String],
        reader: &ContentReader<'_>,
    ) -> Result<Vec<(String, [u8; 32])>, CopyError> {
        let mut selected = sources::expand(&self.root, sources, Some(&self.ignore))?;
        selected.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
        selected.dedup_by(|a, b| a.name == b.name && a.path == b.path);
        let mut files = Vec::new();
        for source in &selected {
            sources::walk(
                &self.root,
                source,
                Some(&self.ignore),
                &mut |visit| match visit {
                    Visit::Enter(entry) | Visit::Leaf(entry) => {
                        let mut hasher = blake3::Hasher::new();
                        hash_entry(&mut hasher, &entry, reader)?;
                        let path = entry.root_path.to_string_lossy().into_owned();
                        files.push((path, *hasher.finalize().as_bytes()));
                        Ok(())
                    }
                    Visit::Leave(_) => Ok(()),
                },
            )?;
        }
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = tmp.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        tmp
    }

    fn digest(tmp: &tempfile::TempDir, sources: &[&str]) -> [u8; 32] {
        let ctx = BuildContext::open(tmp.path(), None).unwrap();
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        ctx.digest(&sources).unwrap()
    }

    /// Remembers every hash with whether it was settled, and counts the files opened.
    #[derive(Debug, Default)]
    struct Memo {
        known: std::sync::Mutex<std::collections::HashMap<FileIdentity, ([u8; 32], bool)>>,
    }

    impl DigestMemo for Memo {
        fn recall(&self, file: &FileIdentity) -> Option<[u8; 32]> {
            self.known.lock().unwrap().get(file).map(|(hash, _)| *hash)
        }

        fn remember(&self, file: FileIdentity, hash: [u8; 32], settled: bool) {
            self.known.lock().unwrap().insert(file, (hash, settled));
        }
    }

    type FileDigests = Vec<(String, [u8; 32])>;

    /// Digest and per-file digests of `sources` through `memo`, with how many files were opened.
    fn digests_counting(
        tmp: &tempfile::TempDir,
        sources: &[&str],
        memo: &Memo,
    ) -> ([u8; 32], FileDigests, usize) {
        let ctx = BuildContext::open(tmp.path(), None).unwrap();
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let opened = std::sync::atomic::AtomicUsize::new(0);
        let counting = |parent: BorrowedFd<'_>, name: &OsStr| {
            opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open_file(parent, name)
        };
        let reader = ContentReader {
            memo,
            open: &counting,
        };
        let digest = digest_with(
            ctx.root(),
            &sources,
            Some(ctx.ignore()),
            Owners::Ignored,
            &reader,
        )
        .unwrap();
        let files = ctx.file_digests_with(&sources, &reader).unwrap();
        (digest, files, opened.into_inner())
    }

    #[test]
    fn a_file_whose_identity_the_memo_knows_is_not_read_again() {
        let a = context(&[("app/a", "one"), ("app/b", "two"), ("app/sub/c", "three")]);
        let memo = Memo::default();
        let (first, files, opened) = digests_counting(&a, &["app"], &memo);
        // The digest read each file once; the per-file digests after it read none.
        assert_eq!(opened, 3);
        assert_eq!(
            first,
            digest(&a, &["app"]),
            "the memo does not change the digest"
        );
        assert_eq!(
            files,
            BuildContext::open(a.path(), None)
                .unwrap()
                .file_digests(&["app".into()])
                .unwrap()
        );
        // Just written: usable for this build, not to be trusted by the next one.
        assert!(
            memo.known
                .lock()
                .unwrap()
                .values()
                .all(|(_, settled)| !settled)
        );
        let (again, _, opened) = digests_counting(&a, &["app"], &memo);
        assert_eq!((again, opened), (first, 0));
        // The identity lists exactly the regular files the digest reads.
        let ctx = BuildContext::open(a.path(), None).unwrap();
        let mut identities = ctx.identities(&["app".into()]).unwrap();
        identities.sort_by_key(|id| id.ino);
        let mut known: Vec<FileIdentity> = memo.known.lock().unwrap().keys().copied().collect();
        known.sort_by_key(|id| id.ino);
        assert_eq!(identities, known);
    }

    #[test]
    fn an_edit_that_restores_size_and_mtime_is_read_again() {
        let a = context(&[("f", "one"), ("g", "two")]);
        let memo = Memo::default();
        let (before, _, _) = digests_counting(&a, &["f", "g"], &memo);
        let path = a.path().join("f");
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        // Past the kernel's coarse timestamp clock, so the ctime moves.
        std::thread::sleep(std::time::Duration::from_millis(50));
        fs::write(&path, "ONE").unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let (after, _, opened) = digests_counting(&a, &["f", "g"], &memo);
        assert_eq!(opened, 1, "only the edited file is read");
        assert_ne!(after, before);
        assert_eq!(after, digest(&a, &["f", "g"]));
    }

    #[test]
    fn renaming_a_file_changes_the_digest() {
        let a = context(&[("dir/one", "x")]);
        let b = context(&[("dir/two", "x")]);
        assert_ne!(digest(&a, &["dir"]), digest(&b, &["dir"]));
    }

    #[test]
    fn content_and_mode_change_the_digest_but_mtime_does_not() {
        let a = context(&[("f", "x")]);
        let before = digest(&a, &["f"]);
        let file = fs::File::options()
            .write(true)
            .open(a.path().join("f"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(digest(&a, &["f"]), before);
        fs::write(a.path().join("f"), "y").unwrap();
        let changed = digest(&a, &["f"]);
        assert_ne!(changed, before);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(a.path().join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(digest(&a, &["f"]), changed);
    }

    #[test]
    fn ignored_files_do_not_affect_the_digest() {
        let a = context(&[
            ("src/main.rs", "fn main(){}"),
            (".dockerignore", "src/*.log"),
        ]);
        let before = digest(&a, &["src"]);
        fs::write(a.path().join("src/debug.log"), "noise").unwrap();
        assert_eq!(digest(&a, &["src"]), before);
        fs::write(a.path().join("src/lib.rs"), "").unwrap();
        assert_ne!(digest(&a, &["src"]), before);
    }

    #[test]
    fn wildcards_select_the_same_files_as_copy() {
        let a = context(&[("a.txt", "a"), ("b.txt", "b"), ("c.md", "c")]);
        let wild = digest(&a, &["*.txt"]);
        assert_eq!(wild, digest(&a, &["a.txt", "b.txt"]));
        assert_eq!(wild, digest(&a, &["b.txt", "a.txt"]));
        fs::write(a.path().join("c.md"), "changed").unwrap();
        assert_eq!(digest(&a, &["*.txt"]), wild);
    }

    #[test]
    fn a_new_symlink_matching_a_wildcard_changes_the_digest() {
        let a = context(&[("a.txt", "a")]);
        let before = digest(&a, &["*.txt"]);
        std::os::unix::fs::symlink("a.txt", a.path().join("l.txt")).unwrap();
        assert_ne!(digest(&a, &["*.txt"]), before);
    }

    #[test]
    fn a_dockerfile_specific_ignore_file_wins() {
        let a = context(&[
            ("keep", "k"),
            ("drop", "d"),
            (".dockerignore", "keep"),
            ("build/app.Dockerfile.dockerignore", "drop"),
        ]);
        let dockerfile = a.path().join("build/app.Dockerfile");
        let ctx = BuildContext::open(a.path(), Some(&dockerfile)).unwrap();
        assert!(ctx.ignore().is_excluded("drop"));
        assert!(!ctx.ignore().is_excluded("keep"));
        let ctx = BuildContext::open(a.path(), Some(&a.path().join("Dockerfile"))).unwrap();
        assert!(ctx.ignore().is_excluded("keep"));
    }

    #[test]
    fn a_symlinked_dockerignore_cannot_read_host_files() {
        let a = context(&[("etc/hostname", "inside")]);
        std::os::unix::fs::symlink("/etc/hostname", a.path().join(".dockerignore")).unwrap();
        let ctx = BuildContext::open(a.path(), None).unwrap();
        assert!(ctx.ignore().is_excluded("inside"));
    }

    #[test]
    fn a_bad_ignore_file_names_the_file_and_line() {
        let a = context(&[(".dockerignore", "ok\n[\n")]);
        let err = BuildContext::open(a.path(), None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(".dockerignore") && msg.contains("line 2"),
            "{msg}"
        );
    }
}
