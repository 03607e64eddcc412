//! `USER` and `COPY --chown` resolution against the image's own `/etc/passwd` and `/etc/group`.
//!
//! Names must mean what they mean *inside the image*: the files are read through [`RootFs`], so a
//! symlinked `/etc/passwd` in a layer can neither point at the host's accounts nor out of the root.
//! `USER` follows runc's `GetExecUser` (what Docker and BuildKit run); `--chown` follows the
//! Dockerfile reference, which differs for a user given without a group.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use thiserror::Error;

use crate::fsroot::RootFs;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// Why a user or group could not be resolved.
#[derive(Debug, Error)]
pub enum UserError {
    /// The name is not in the root's passwd file.
    #[error("unable to find user {user}: no matching entries in passwd file {}", .file.display())]
    UnknownUser {
        /// The user as written.
        user: String,
        /// The passwd file consulted (host path).
        file: PathBuf,
    },
    /// The group name is not in the root's group file.
    #[error("unable to find group {group}: no matching entries in group file {}", .file.display())]
    UnknownGroup {
        /// The group as written.
        group: String,
        /// The group file consulted (host path).
        file: PathBuf,
    },
    /// The spec is empty or otherwise unusable.
    #[error("invalid user specification {spec:?}")]
    Invalid {
        /// The spec as written.
        spec: String,
    },
    /// The passwd or group file exists but could not be read.
    #[error("reading {}: {source}", .file.display())]
    Read {
        /// The file (host path).
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The credentials a `RUN` step executes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups, from the groups in `/etc/group` that list the user as a member.
    pub groups: Vec<u32>,
    /// Home directory from passwd, when the user has an entry.
    pub home: Option<String>,
}

/// One `/etc/passwd` entry (the fields kiln needs).
#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves a `USER` value: `""`/`root`, `name`, `uid`, and any of those followed by `:group` or
/// `:gid`. A numeric uid without a passwd entry is allowed (gid 0, as Docker); supplementary
/// groups are only added when no group is given explicitly (runc).
pub fn resolve_user(root: &RootFs, user: &str) -> Result<Ids, UserError> {
    let (user_part, group_part) = split_spec(user);
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric = user_part.parse::<u32>().ok();
    let entry = find_passwd(root, |e| match numeric {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    })?;
    let mut ids = match (&entry, numeric) {
        (Some(e), _) => Ids {
            uid: e.uid,
            gid: e.gid,
            groups: Vec::new(),
            home: Some(e.home.clone()),
        },
        (None, Some(uid)) => Ids {
            uid,
            gid: 0,
            groups: Vec::new(),
            home: None,
        },
        (None, None) if user_part == "root" => Ids {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: None,
        },
        (None, None) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_owned(),
                file: host_path(root, PASSWD),
            });
        }
    };
    match group_part {
        Some(group) if !group.is_empty() => ids.gid = resolve_group(root, group)?,
        _ => {
            if let Some(entry) = &entry {
                let mut groups = Vec::new();
                for_each_group(root, |g| {
                    if g.members.contains(&entry.name) && !groups.contains(&g.gid) {
                        groups.push(g.gid);
                    }
                    true
                })?;
                ids.groups = groups;
            }
        }
    }
    Ok(ids)
}

/// Resolves a `COPY --chown` value to `(uid, gid)`. Names are looked up in the destination
/// root; a user without a group uses the same numeric id as gid (Dockerfile reference: "Providing
/// a username without groupname or a UID without GID will use the same numeric UID as the GID").
pub fn resolve_chown(root: &RootFs, spec: &str) -> Result<(u32, u32), UserError> {
    let (user_part, group_part) = split_spec(spec);
    if user_part.is_empty() {
        return Err(UserError::Invalid {
            spec: spec.to_owned(),
        });
    }
    let uid = match user_part.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => find_passwd(root, |e| e.name == user_part)?
            .map(|e| e.uid)
            .ok_or_else(|| UserError::UnknownUser {
                user: user_part.to_owned(),
                file: host_path(root, PASSWD),
            })?,
    };
    let gid = match group_part {
        Some(group) if !group.is_empty() => resolve_group(root, group)?,
        _ => uid,
    };
    Ok((uid, gid))
}

/// `user[:group]`, split at the first colon.
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    }
}

/// A group name or number to a gid; a number need not have an entry.
fn resolve_group(root: &RootFs, group: &str) -> Result<u32, UserError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let mut found = None;
    for_each_group(root, |g| {
        if g.name == group {
            found = Some(g.gid);
            return false;
        }
        true
    })?;
    found.ok_or_else(|| UserError::UnknownGroup {
        group: group.to_owned(),
        file: host_path(root, GROUP),
    })
}

/// The first passwd entry accepted by `pred`; a missing passwd file has no entries.
fn find_passwd(
    root: &RootFs,
    pred: impl Fn(&PasswdEntry) -> bool,
) -> Result<Option<PasswdEntry>, UserError> {
    let mut found = None;
    for_each_line(root, PASSWD, |line| {
        match parse_passwd(line).filter(&pred) {
            Some(entry) => {
                found = Some(entry);
                false
            }
            None => true,
        }
    })?;
    Ok(found)
}

/// Feeds every group entry to `visit` until it returns `false`.
fn for_each_group(
    root: &RootFs,
    mut visit: impl FnMut(GroupEntry) -> bool,
) -> Result<(), UserError> {
    for_each_line(root, GROUP, |line| parse_group(line).is_none_or(&mut visit))
}

/// Streams the lines of an image file, resolved inside the root, until `visit` returns `false`.
fn for_each_line(
    root: &RootFs,
    path: &str,
    mut visit: impl FnMut(&str) -> bool,
) -> Result<(), UserError> {
    let read_err = |source| UserError::Read {
        file: host_path(root, path),
        source,
    };
    let fd = match root.open_path(Path::new(path), OFlags::RDONLY, Mode::empty()) {
        Ok(fd) => fd,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(read_err(err)),
    };
    let reader = BufReader::new(File::from(fd));
    for line in reader.split(b'\n') {
        let line = line.map_err(read_err)?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !visit(line) {
            break;
        }
    }
    Ok(())
}

/// `name:password:uid:gid:gecos:home:shell`; lines with unparsable ids are skipped.
fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let mut fields = line.split(':');
    let name = fields.next()?.to_owned();
    let _password = fields.next();
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    let _gecos = fields.next();
    let home = fields.next().unwrap_or("").to_owned();
    Some(PasswdEntry {
        name,
        uid,
        gid,
        home,
    })
}

/// `name:password:gid:member,member`.
fn parse_group(line: &str) -> Option<GroupEntry> {
    let mut fields = line.split(':');
    let name = fields.next()?.to_owned();
    let _password = fields.next();
    let gid = fields.next()?.parse().ok()?;
    let members = fields
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    Some(GroupEntry { name, gid, members })
}

/// For error messages: where on the host the image file lives (lexically; symlinks aside).
fn host_path(root: &RootFs, image_path: &str) -> PathBuf {
    root.path().join(image_path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(passwd: &str, group: &str) -> (tempfile::TempDir, RootFs) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(tmp.path().join("etc/group"), group).unwrap();
        let root = RootFs::open(tmp.path()).unwrap();
        (tmp, root)
    }

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        app:x:1000:1001:App:/home/app:/bin/sh\n\
        broken:x:notanumber:1:::\n\
        web:x:33:33::/var/www:/usr/sbin/nologin\n";
    const GROUP_TEXT: &str = "root:x:0:\n\
        appgrp:x:1001:\n\
        audio:x:29:app,web\n\
        video:x:44:web, app\n\
        staff:x:50:\n";

    fn ids(uid: u32, gid: u32, groups: &[u32], home: Option<&str>) -> Ids {
        Ids {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.map(str::to_owned),
        }
    }

    #[test]
    fn empty_and_root_are_uid_zero_with_roots_home() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(
            resolve_user(&root, "").unwrap(),
            ids(0, 0, &[], Some("/root"))
        );
        assert_eq!(
            resolve_user(&root, "root").unwrap(),
            ids(0, 0, &[], Some("/root"))
        );
    }

    #[test]
    fn root_needs_no_passwd_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RootFs::open(tmp.path()).unwrap();
        assert_eq!(resolve_user(&root, "root").unwrap(), ids(0, 0, &[], None));
        assert_eq!(resolve_user(&root, "").unwrap(), ids(0, 0, &[], None));
    }

    #[test]
    fn a_name_gets_its_primary_group_home_and_supplementary_groups() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(
            resolve_user(&root, "app").unwrap(),
            ids(1000, 1001, &[29, 44], Some("/home/app"))
        );
    }

    #[test]
    fn a_uid_with_an_entry_is_treated_like_its_name() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(
            resolve_user(&root, "33").unwrap(),
            ids(33, 33, &[29, 44], Some("/var/www"))
        );
    }

    #[test]
    fn a_uid_without_an_entry_gets_gid_zero() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(
            resolve_user(&root, "4242").unwrap(),
            ids(4242, 0, &[], None)
        );
    }

    #[test]
    fn an_explicit_group_replaces_primary_and_supplementary_groups() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(
            resolve_user(&root, "app:staff").unwrap(),
            ids(1000, 50, &[], Some("/home/app"))
        );
        assert_eq!(
            resolve_user(&root, "app:7").unwrap(),
            ids(1000, 7, &[], Some("/home/app"))
        );
        assert_eq!(
            resolve_user(&root, "4242:staff").unwrap(),
            ids(4242, 50, &[], None)
        );
        assert_eq!(
            resolve_user(&root, "4242:9").unwrap(),
            ids(4242, 9, &[], None)
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_the_user_and_file() {
        let (tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        let err = resolve_user(&root, "nobody").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("unable to find user nobody: no matching entries in passwd file"),
            "{msg}"
        );
        assert!(msg.contains(&tmp.path().join("etc/passwd").display().to_string()));
        let err = resolve_user(&root, "app:nogroup").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unable to find group nogroup: no matching entries in group file"),
            "{err}"
        );
        // A malformed line never matches, even by name.
        assert!(resolve_user(&root, "broken").is_err());
    }

    #[test]
    fn passwd_is_read_inside_the_root_not_through_a_host_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow-like", tmp.path().join("etc/passwd")).unwrap();
        std::fs::write(
            tmp.path().join("etc/shadow-like"),
            "inside:x:7:7::/in:/bin/sh\n",
        )
        .unwrap();
        let root = RootFs::open(tmp.path()).unwrap();
        assert_eq!(
            resolve_user(&root, "inside").unwrap(),
            ids(7, 7, &[], Some("/in"))
        );
    }

    #[test]
    fn chown_without_group_uses_the_uid_as_gid() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(resolve_chown(&root, "app").unwrap(), (1000, 1000));
        assert_eq!(resolve_chown(&root, "55").unwrap(), (55, 55));
    }

    #[test]
    fn chown_with_group_names_and_numbers() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(resolve_chown(&root, "app:audio").unwrap(), (1000, 29));
        assert_eq!(resolve_chown(&root, "55:staff").unwrap(), (55, 50));
        assert_eq!(resolve_chown(&root, "10:11").unwrap(), (10, 11));
        assert_eq!(resolve_chown(&root, "web:3").unwrap(), (33, 3));
    }

    #[test]
    fn chown_rejects_unknown_names_and_empty_specs() {
        let (_tmp, root) = root_with(PASSWD_TEXT, GROUP_TEXT);
        assert!(matches!(
            resolve_chown(&root, "ghost"),
            Err(UserError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_chown(&root, "app:ghosts"),
            Err(UserError::UnknownGroup { .. })
        ));
        assert!(matches!(
            resolve_chown(&root, ""),
            Err(UserError::Invalid { .. })
        ));
    }
}
