//! Which entry names and link targets a layer may use: the lexical half of safe extraction.
//!
//! Containment itself never depends on these checks: every path is resolved by the kernel with
//! `RESOLVE_IN_ROOT` ([`crate::fsroot`]), so nothing a layer names can reach outside the root.
//! These rules decide what is an *error*, following Docker (moby `pkg/archive`), the strictest
//! of the runtimes, so an image kiln accepts also runs there:
//!
//! | what the layer says | Docker | containerd | kiln |
//! | --- | --- | --- | --- |
//! | absolute name `/etc/x` | rooted | rooted | rooted |
//! | `..` staying inside (`a/../b`) | cleaned | cleaned | cleaned |
//! | `..` climbing above the root | refused (breakout) | clamped | refused |
//! | symlinked parent directory | followed in a chroot | followed in root | followed in root |
//! | hardlink target climbing above the root | refused (breakout) | clamped | refused |
//! | hardlink target through symlinked parents | resolved in a chroot | resolved in root | resolved in root, last component not followed |
//! | absolute symlink target | kept verbatim | kept verbatim | kept verbatim |
//! | relative symlink target climbing above the root | refused (breakout) | kept verbatim | refused |
//! | `.wh.`, `.wh..`, `.wh...` | not checked | refused | refused |
//!
//! A symlink target is data: it is never resolved while extracting, and when a later entry
//! goes through it the kernel resolves it inside the root, as a chroot would.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::fsroot;

/// The root-relative path an entry name or hardlink target denotes, or why it is refused.
pub(super) fn beneath_root(name: &[u8]) -> Result<PathBuf, &'static str> {
    fsroot::clean_beneath(Path::new(OsStr::from_bytes(name)))
        .ok_or("climbs above the root with `..` (a path traversal; Docker refuses it too)")
}

/// Refuses a relative symlink target that climbs above the root from the link's directory
/// (`etc/evil -> ../../host`). Absolute targets are rooted wherever they are resolved.
pub(super) fn check_symlink_target(link: &Path, target: &[u8]) -> Result<(), String> {
    if target.is_empty() {
        return Err("symlink with an empty target".to_owned());
    }
    if target.starts_with(b"/") {
        return Ok(());
    }
    let dir = link.parent().unwrap_or(Path::new(""));
    match fsroot::clean_beneath(&dir.join(OsStr::from_bytes(target))) {
        Some(_) => Ok(()),
        None => Err(format!(
            "symlink target {:?} climbs above the root from {} (Docker refuses it as a breakout)",
            shown(Path::new(OsStr::from_bytes(target))),
            if dir.as_os_str().is_empty() {
                "the root directory".to_owned()
            } else {
                format!("directory {}", dir.display())
            }
        )),
    }
}

/// Longest entry name shown whole in an error; longer ones (a 10k-deep path) keep both ends.
const SHOWN_NAME: usize = 160;

/// An entry name for an error message: whole when short, else its head and tail around the
/// elided byte count, so a hostile 20 kB name cannot flood the log.
pub(super) fn shown(entry: &Path) -> String {
    let text = entry.to_string_lossy();
    if text.len() <= SHOWN_NAME {
        return text.into_owned();
    }
    let mut head = SHOWN_NAME / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - SHOWN_NAME / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}...({} bytes)...{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// The name a whiteout deletes, refusing the names that would delete its own directory or
/// the directory's parent.
pub(super) fn whiteout_target(target: &[u8]) -> Result<&OsStr, String> {
    if target.is_empty() || target == b"." || target == b".." {
        return Err(format!(
            "whiteout of {:?} names no file in its directory",
            String::from_utf8_lossy(target)
        ));
    }
    Ok(OsStr::from_bytes(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_use_dot_dot_only_while_they_stay_inside() {
        assert_eq!(beneath_root(b"/usr/../etc/x").unwrap(), Path::new("etc/x"));
        assert!(beneath_root(b"../../etc/x").is_err());
        assert!(beneath_root(b"a/../../x").is_err());
    }

    #[test]
    fn relative_symlink_targets_are_judged_from_the_link_directory() {
        assert!(check_symlink_target(Path::new("usr/lib/x"), b"../../bin/sh").is_ok());
        assert!(check_symlink_target(Path::new("usr/lib/x"), b"../../../bin/sh").is_err());
        assert!(check_symlink_target(Path::new("up"), b"..").is_err());
        assert!(check_symlink_target(Path::new("root"), b"/").is_ok());
        assert!(check_symlink_target(Path::new("a"), b"").is_err());
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        let long = format!("{}f", "a/".repeat(10_000));
        let text = shown(Path::new(&long));
        assert!(text.len() < 200, "{text}");
        assert!(text.starts_with("a/a/") && text.ends_with("a/f"), "{text}");
        assert_eq!(shown(Path::new("etc/passwd")), "etc/passwd");
    }

    #[test]
    fn whiteouts_of_dot_and_dot_dot_are_refused() {
        for bad in [&b""[..], b".", b".."] {
            assert!(whiteout_target(bad).is_err());
        }
        assert_eq!(whiteout_target(b"...").unwrap(), OsStr::new("..."));
    }
}
