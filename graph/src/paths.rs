//! Container path arithmetic (always `/`-separated, independent of the host OS).

/// Lexically cleans an absolute path like Go's `path.Clean`: no `.`/`..`/empty segments.
pub(crate) fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Resolves `path` against the directory `base` (absolute paths ignore `base`).
pub(crate) fn resolve(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean(path)
    } else {
        clean(&format!("{base}/{path}"))
    }
}

/// Resolves a COPY destination, keeping a trailing `/` (and turning `.` into `dir/`), since the
/// slash decides whether the destination is a directory.
pub(crate) fn resolve_dest(workdir: &str, dest: &str) -> String {
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let mut out = resolve(workdir, dest);
    let wants_dir = dest.ends_with('/') || dest.ends_with("/.");
    if wants_dir && !out.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_and_resolves() {
        assert_eq!(clean("/a/./b/../c//"), "/a/c");
        assert_eq!(clean("/.."), "/");
        assert_eq!(resolve("/app", "sub/../x"), "/app/x");
        assert_eq!(resolve("/app", "/abs"), "/abs");
    }

    #[test]
    fn destinations_keep_their_directory_slash() {
        assert_eq!(resolve_dest("/app", "."), "/app/");
        assert_eq!(resolve_dest("/app", "lib/"), "/app/lib/");
        assert_eq!(resolve_dest("/app", "f.txt"), "/app/f.txt");
        assert_eq!(resolve_dest("/", "/x/"), "/x/");
        assert_eq!(resolve_dest("/", "/"), "/");
    }
}
