//! Which files a `COPY` reads: source patterns expanded inside a source root, then walked.
//!
//! Both `COPY` itself and the build-context digest (the cache key) go through this module, so the
//! key always covers exactly the files the copy would write. Every lookup is resolved inside the
//! source [`RootFs`]: `../x` is clamped to the root, and a symlink in the context that points at
//! `/etc/passwd` names the context's own `etc/passwd`, never the host's.
//!
//! BuildKit follows a source that is itself a symlink (explicitly named or matched by a wildcard)
//! and copies what it points to under the symlink's own name; symlinks found while walking a
//! directory are copied as symlinks.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::copy::CopyError;
use crate::dockerignore::Dockerignore;
use crate::fsroot::{RootFs, clean};
use crate::glob;

/// One selected source, after wildcard expansion and following a top-level symlink.
#[derive(Debug)]
pub struct Source {
    /// Where its content really is: root-relative, symlinks resolved (empty for the root itself).
    pub path: PathBuf,
    /// The name it was selected under (a symlink's own name), used as the destination name.
    pub name: OsString,
    /// The root-relative path it was selected under (before following a symlink), which
    /// `COPY --parents` recreates below the destination.
    pub selected: PathBuf,
    /// Metadata of what `path` points to.
    pub stat: Stat,
}

/// Expands `patterns` (as written in the Dockerfile) inside `root`.
///
/// A literal source that is missing or excluded is an error, and so is a wildcard that matches
/// nothing (BuildKit); excluded wildcard matches are dropped silently.
pub fn expand(
    root: &RootFs,
    patterns: &[String],
    ignore: Option<&Dockerignore>,
) -> Result<Vec<Source>, CopyError> {
    let mut sources = Vec::new();
    for pattern in patterns {
        let rel = clean(Path::new(pattern));
        if glob::has_wildcards(&rel.to_string_lossy()) {
            let found = expand_wildcard(root, pattern, &rel, ignore)?;
            if found.is_empty() {
                return Err(CopyError::NoMatch {
                    pattern: pattern.clone(),
                });
            }
            sources.extend(found);
        } else {
            let not_found = || CopyError::NotFound {
                path: pattern.clone(),
            };
            if is_excluded(ignore, &rel) {
                return Err(not_found());
            }
            sources.push(resolve(root, &rel)?.ok_or_else(not_found)?);
        }
    }
    Ok(sources)
}

/// Expands a pattern component by component with Go's `filepath.Match`.
fn expand_wildcard(
    root: &RootFs,
    pattern: &str,
    rel: &Path,
    ignore: Option<&Dockerignore>,
) -> Result<Vec<Source>, CopyError> {
    let mut candidates = vec![PathBuf::new()];
    for component in rel.components() {
        let component = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        if !glob::has_wildcards(&component) {
            let literal = glob::unescape(&component);
            next.extend(candidates.iter().map(|c| c.join(&literal)));
        } else {
            for dir in &candidates {
                for name in list_dir(root, dir)? {
                    let matched =
                        glob::matches(&component, &name.to_string_lossy()).map_err(|_| {
                            CopyError::BadPattern {
                                pattern: pattern.to_owned(),
                            }
                        })?;
                    if matched {
                        next.push(dir.join(&name));
                    }
                }
            }
        }
        candidates = next;
    }
    let mut sources = Vec::new();
    for candidate in candidates {
        if is_excluded(ignore, &candidate) {
            continue;
        }
        if let Some(source) = resolve(root, &candidate)? {
            sources.push(source);
        }
    }
    Ok(sources)
}

/// Entry names of a directory in the root, sorted; a missing or non-directory path has none.
fn list_dir(root: &RootFs, dir: &Path) -> Result<Vec<OsString>, CopyError> {
    let fd = match root.open_path(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
        Ok(fd) => fd,
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Ok(Vec::new());
        }
        Err(err) => return Err(CopyError::in_source("open directory", dir, err)),
    };
    read_names(&fd).map_err(|err| CopyError::in_source("read directory", dir, err))
}

/// Sorted entry names of an open directory, without `.` and `..`.
pub(crate) fn read_names(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Follows `rel` (symlinks included, clamped to the root); `None` if it does not exist.
fn resolve(root: &RootFs, rel: &Path) -> Result<Option<Source>, CopyError> {
    let fd = match root.open_path(rel, OFlags::PATH, Mode::empty()) {
        Ok(fd) => fd,
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Ok(None);
        }
        Err(err) => return Err(CopyError::in_source("resolve", rel, err)),
    };
    let path = root
        .real_path(&fd)
        .map_err(|err| CopyError::in_source("resolve", rel, err))?;
    let stat =
        rustix::fs::fstat(&fd).map_err(|err| CopyError::in_source("stat", rel, err.into()))?;
    let name = rel.file_name().map(OsStr::to_os_string).unwrap_or_default();
    Ok(Some(Source {
        path,
        name,
        selected: rel.to_path_buf(),
        stat,
    }))
}

fn is_excluded(ignore: Option<&Dockerignore>, rel: &Path) -> bool {
    match ignore {
        Some(ignore) if !rel.as_os_str().is_empty() => ignore.is_excluded(&rel.to_string_lossy()),
        _ => false,
    }
}

/// One file or directory met while walking a source.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Path relative to the source itself (empty for the source).
    pub rel: &'a Path,
    /// Path relative to the source root (what `.dockerignore` and the cache key see).
    pub root_path: &'a Path,
    /// The directory holding the entry, for `*at` calls.
    pub parent: BorrowedFd<'a>,
    /// The entry's name in `parent`.
    pub name: &'a OsStr,
    /// `lstat` of the entry (for the source itself: `stat` of what it points to).
    pub stat: &'a Stat,
}

/// What the walker reports, in depth-first order with names sorted bytewise.
#[derive(Debug, Clone, Copy)]
pub enum Visit<'a> {
    /// A directory, before its contents.
    Enter(Entry<'a>),
    /// The same directory, after its contents (to set its mtime last).
    Leave(Entry<'a>),
    /// Anything that is not a directory (sockets are skipped).
    Leaf(Entry<'a>),
}

/// A directory on the walk stack. Excluded directories are only reported once something inside
/// them turns out to be included by a `!` exception.
struct Frame {
    dir: OwnedFd,
    name: OsString,
    stat: Stat,
    rel: PathBuf,
    root_path: PathBuf,
    names: std::vec::IntoIter<OsString>,
    reported: bool,
}

/// Walks `source`, applying `ignore` to everything below it.
pub fn walk(
    root: &RootFs,
    source: &Source,
    ignore: Option<&Dockerignore>,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    walk_excluding(root, source, ignore, None, visit)
}

/// [`walk`], also leaving out what `exclude` (`COPY --exclude` patterns) matches, by the path
/// relative to the source being walked.
pub fn walk_excluding(
    root: &RootFs,
    source: &Source,
    ignore: Option<&Dockerignore>,
    exclude: Option<&Dockerignore>,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let (top_parent, top_name) = if source.path.as_os_str().is_empty() {
        let fd = root
            .open_path(
                Path::new(""),
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .map_err(|err| CopyError::in_source("open", &source.path, err))?;
        (fd, OsString::from("."))
    } else {
        root.parent(&source.path)
            .map_err(|err| CopyError::in_source("open parent of", &source.path, err))?
    };
    let top = |stat| Entry {
        rel: Path::new(""),
        root_path: &source.path,
        parent: top_parent.as_fd(),
        name: &top_name,
        stat,
    };
    if FileType::from_raw_mode(source.stat.st_mode) != FileType::Directory {
        return visit(Visit::Leaf(top(&source.stat)));
    }
    let mut frames = vec![open_frame(
        top_parent.as_fd(),
        &top_name,
        source.stat,
        PathBuf::new(),
        source.path.clone(),
    )?];
    report_pending(&mut frames, top_parent.as_fd(), visit)?;
    let has_exceptions = ignore.is_some_and(Dockerignore::has_exceptions)
        || exclude.is_some_and(Dockerignore::has_exceptions);
    while let Some(frame) = frames.last_mut() {
        let next = frame.names.next();
        let Some(name) = next else {
            if let Some(done) = frames.pop().filter(|done| done.reported) {
                let parent = frames.last().map_or(top_parent.as_fd(), |f| f.dir.as_fd());
                visit(Visit::Leave(Entry {
                    rel: &done.rel,
                    root_path: &done.root_path,
                    parent,
                    name: &done.name,
                    stat: &done.stat,
                }))?;
            }
            continue;
        };
        let depth = frames.len() - 1;
        let frame = &frames[depth];
        let root_path = frame.root_path.join(&name);
        let rel = frame.rel.join(&name);
        let stat = match rustix::fs::statat(&frame.dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(err) => return Err(CopyError::in_source("stat", &root_path, err.into())),
        };
        let excluded = is_excluded(ignore, &root_path) || is_excluded(exclude, &rel);
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Socket => {}
            FileType::Directory => {
                if excluded && !has_exceptions {
                    continue;
                }
                let child = open_frame(frames[depth].dir.as_fd(), &name, stat, rel, root_path)?;
                frames.push(child);
                if !excluded {
                    report_pending(&mut frames, top_parent.as_fd(), visit)?;
                }
            }
            _ if excluded => {}
            _ => {
                report_pending(&mut frames, top_parent.as_fd(), visit)?;
                let Some(frame) = frames.last() else { break };
                visit(Visit::Leaf(Entry {
                    rel: &rel,
                    root_path: &root_path,
                    parent: frame.dir.as_fd(),
                    name: &name,
                    stat: &stat,
                }))?;
            }
        }
    }
    Ok(())
}

fn open_frame(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    stat: Stat,
    rel: PathBuf,
    root_path: PathBuf,
) -> Result<Frame, CopyError> {
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| CopyError::in_source("open directory", &root_path, err.into()))?;
    let names = read_names(&dir)
        .map_err(|err| CopyError::in_source("read directory", &root_path, err))?
        .into_iter();
    Ok(Frame {
        dir,
        name: name.to_os_string(),
        stat,
        rel,
        root_path,
        names,
        reported: false,
    })
}

/// Reports every directory on the stack not reported yet, outermost first.
fn report_pending(
    frames: &mut [Frame],
    top_parent: BorrowedFd<'_>,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    for i in 0..frames.len() {
        if frames[i].reported {
            continue;
        }
        let parent = if i == 0 {
            top_parent
        } else {
            frames[i - 1].dir.as_fd()
        };
        let frame = &frames[i];
        visit(Visit::Enter(Entry {
            rel: &frame.rel,
            root_path: &frame.root_path,
            parent,
            name: &frame.name,
            stat: &frame.stat,
        }))?;
        frames[i].reported = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn context() -> (tempfile::TempDir, RootFs) {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        fs::create_dir_all(p.join("src/sub")).unwrap();
        fs::write(p.join("a.txt"), "a").unwrap();
        fs::write(p.join("b.txt"), "b").unwrap();
        fs::write(p.join("c.md"), "c").unwrap();
        fs::write(p.join("src/one.rs"), "1").unwrap();
        fs::write(p.join("src/sub/two.rs"), "2").unwrap();
        let root = RootFs::open(p).unwrap();
        (tmp, root)
    }

    fn names(sources: &[Source]) -> Vec<String> {
        sources
            .iter()
            .map(|s| s.path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn star_matches_files_in_sorted_order() {
        let (_tmp, root) = context();
        let found = expand(&root, &["*.txt".to_owned()], None).unwrap();
        assert_eq!(names(&found), ["a.txt", "b.txt"]);
    }

    #[test]
    fn wildcards_apply_per_component() {
        let (_tmp, root) = context();
        let found = expand(&root, &["s?c/*.rs".to_owned()], None).unwrap();
        assert_eq!(names(&found), ["src/one.rs"]);
        let found = expand(&root, &["[a-b].txt".to_owned()], None).unwrap();
        assert_eq!(names(&found), ["a.txt", "b.txt"]);
    }

    #[test]
    fn a_wildcard_without_match_is_an_error() {
        let (_tmp, root) = context();
        let err = expand(&root, &["*.none".to_owned()], None).unwrap_err();
        assert!(matches!(err, CopyError::NoMatch { .. }), "{err}");
    }

    #[test]
    fn excluded_wildcard_matches_are_dropped() {
        let (_tmp, root) = context();
        let ignore = Dockerignore::parse("b.txt").unwrap();
        let found = expand(&root, &["*.txt".to_owned()], Some(&ignore)).unwrap();
        assert_eq!(names(&found), ["a.txt"]);
    }

    #[test]
    fn a_missing_or_excluded_literal_uses_dockers_message() {
        let (_tmp, root) = context();
        let err = expand(&root, &["nope.txt".to_owned()], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "COPY failed: file not found in build context or excluded by .dockerignore: nope.txt"
        );
        let ignore = Dockerignore::parse("a.txt").unwrap();
        let err = expand(&root, &["a.txt".to_owned()], Some(&ignore)).unwrap_err();
        assert!(matches!(err, CopyError::NotFound { .. }));
    }

    #[test]
    fn parent_components_cannot_leave_the_root() {
        let (tmp, root) = context();
        let inner = tmp.path().join("inner");
        fs::create_dir(&inner).unwrap();
        let inner_root = RootFs::open(&inner).unwrap();
        let err = expand(&inner_root, &["../a.txt".to_owned()], None).unwrap_err();
        assert!(matches!(err, CopyError::NotFound { .. }));
        let found = expand(&root, &["src/../../../a.txt".to_owned()], None).unwrap();
        assert_eq!(names(&found), ["a.txt"]);
    }

    #[test]
    fn walking_skips_excluded_entries_but_honours_exceptions() {
        let (_tmp, root) = context();
        let ignore = Dockerignore::parse("src\n!src/sub/two.rs").unwrap();
        let sources = expand(&root, &[".".to_owned()], Some(&ignore)).unwrap();
        let mut seen = Vec::new();
        walk(&root, &sources[0], Some(&ignore), &mut |visit| {
            let (tag, entry) = match visit {
                Visit::Enter(e) => ("enter", e),
                Visit::Leave(e) => ("leave", e),
                Visit::Leaf(e) => ("leaf", e),
            };
            seen.push(format!("{tag} {}", entry.rel.display()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "enter ",
                "leaf a.txt",
                "leaf b.txt",
                "leaf c.md",
                "enter src",
                "enter src/sub",
                "leaf src/sub/two.rs",
                "leave src/sub",
                "leave src",
                "leave ",
            ]
        );
    }
}
