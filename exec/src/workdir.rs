//! `WORKDIR`: make sure the directory exists before anything runs in it.
//!
//! BuildKit creates a missing working directory (and its parents) owned by the stage's current
//! `USER`, mode `0755`, following symlinks inside the image; an existing directory is left exactly
//! as it is.

use std::path::Path;

use crate::changes::Changes;
use crate::copy::CopyError;
use crate::fsroot::RootFs;

/// Creates `path` (absolute image path) and any missing parents owned by `owner` with mode 0755;
/// returns the directories it created (none if the directory existed).
pub fn ensure_workdir(root: &RootFs, path: &str, owner: (u32, u32)) -> Result<Changes, CopyError> {
    let (_, created) = root
        .create_dir_all(Path::new(path), 0o755, Some(owner))
        .map_err(|err| CopyError::in_dest("create working directory", Path::new(path), err))?;
    let mut changes = Changes::new();
    for dir in created {
        changes.add_changed(dir);
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::PathBuf;

    #[test]
    fn missing_directories_are_created_owned_by_the_user() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RootFs::open(tmp.path()).unwrap();
        let changes = ensure_workdir(&root, "/srv/app", (1000, 1001)).unwrap();
        assert_eq!(
            changes.changed().collect::<Vec<_>>(),
            vec![Path::new("srv"), Path::new("srv/app")]
        );
        let meta = std::fs::metadata(tmp.path().join("srv/app")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn an_existing_directory_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("tmp")).unwrap();
        std::fs::set_permissions(
            tmp.path().join("tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        let root = RootFs::open(tmp.path()).unwrap();
        let changes = ensure_workdir(&root, "/tmp", (1000, 1000)).unwrap();
        assert!(changes.is_empty());
        let meta = std::fs::metadata(tmp.path().join("tmp")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(meta.uid(), 0);
    }

    #[test]
    fn a_symlinked_workdir_resolves_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir_all(rootdir.join("real")).unwrap();
        symlink("/real", rootdir.join("link")).unwrap();
        let root = RootFs::open(&rootdir).unwrap();
        let changes = ensure_workdir(&root, "/link/app", (0, 0)).unwrap();
        assert!(rootdir.join("real/app").is_dir());
        assert!(
            !Path::new("/real").exists(),
            "the host's /real must not be created"
        );
        assert_eq!(
            changes.changed().map(Path::to_path_buf).collect::<Vec<_>>(),
            vec![PathBuf::from("real/app")]
        );
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let root = RootFs::open(tmp.path()).unwrap();
        let err = ensure_workdir(&root, "/file/sub", (0, 0)).unwrap_err();
        assert!(err.to_string().contains("/file/sub"), "{err}");
    }
}
