//! Choosing where a build runs: in kiln's sandbox over private root filesystems, or in the
//! container kiln itself runs in (`--isolation=none`, Kaniko's model).
//!
//! Kaniko only ever builds in its own container's root, and refuses to start outside a
//! container unless `--force`. kiln's sandbox is safer wherever namespaces can be created (RUN
//! cannot read the build's credentials or overwrite the builder, Kaniko #2153), so `auto` keeps
//! it everywhere except where kiln *is* the container: a container whose `$KANIKO_DIR/executor`
//! is the running kiln, which is what the executor image runs in a pod with no privileges to
//! create namespaces, or where the executor is run with Kaniko's `--force` and no container
//! marker is visible. A developer running `kiln build` in a dev container keeps the sandbox
//! (and their files); `--isolation=none` asks for Kaniko's behaviour explicitly.

use std::path::Path;

use anyhow::bail;
use kiln_exec::ignore::{IgnoreList, mount_points};
use kiln_exec::run::Isolation;

use crate::args::{BuildOptions, IsolationArg};

/// Paths always ignored besides kiln's own directory and the mount points: Kaniko's, and the
/// debug image's shell (a `VOLUME` in Kaniko's image, which not every runtime mounts).
const ALWAYS_IGNORED: [&str; 5] = ["/proc", "/sys", "/dev", "/etc/mtab", "/busybox"];

/// The decided isolation and what it protects.
#[derive(Debug, Clone)]
pub struct IsolationSettings {
    /// Where RUN executes.
    pub mode: Isolation,
    /// With [`Isolation::None`], what extraction, cleanup and snapshots never touch; empty in
    /// the sandbox.
    pub ignore: IgnoreList,
    /// `--cleanup`: reset `/` after the build.
    pub cleanup: bool,
    /// `--pre-cleanup`: reset `/` before the build.
    pub pre_cleanup: bool,
}

/// The signs of running inside a container that Kaniko's `pkg/util/proc` looks for, with the
/// environment variables Kubernetes sets: the first one found, described.
pub fn container_marker(env: impl Fn(&str) -> Option<String>, root: &Path) -> Option<String> {
    for file in [".dockerenv", "run/.containerenv"] {
        if root.join(file).exists() {
            return Some(format!("/{file} exists"));
        }
    }
    for var in ["KUBERNETES_SERVICE_HOST", "container"] {
        if env(var).is_some_and(|value| !value.is_empty()) {
            return Some(format!("${var} is set"));
        }
    }
    let cgroup = std::fs::read_to_string(root.join("proc/1/cgroup")).unwrap_or_default();
    for runtime in ["docker", "kubepods", "containerd", "lxc", "libpod", "crio"] {
        if cgroup.contains(runtime) {
            return Some(format!("/proc/1/cgroup names {runtime}"));
        }
    }
    None
}

/// Whether the running binary is `kaniko_dir/executor`: kiln is the container's executor.
fn running_as_executor(kaniko_dir: &Path) -> bool {
    let Ok(exe) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return false;
    };
    std::fs::canonicalize(kaniko_dir.join("executor")).is_ok_and(|executor| executor == exe)
}

/// Whether kiln runs as the executor image's own binary (`$KANIKO_DIR/executor` or its
/// `warmer` link, `KANIKO_DIR` defaulting to `/kaniko`) in a container: there Kaniko's
/// defaults apply to every command, so the warmer fills the `/cache` the executor reads.
pub fn in_executor_image() -> bool {
    let kaniko_dir = std::env::var_os("KANIKO_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || std::path::PathBuf::from("/kaniko"),
            std::path::PathBuf::from,
        );
    running_as_executor(&kaniko_dir)
        && container_marker(|name| std::env::var(name).ok(), Path::new("/")).is_some()
}

/// Decides `--isolation` and logs the choice with its reason.
pub fn decide(options: &BuildOptions) -> anyhow::Result<Isolation> {
    let marker = container_marker(|name| std::env::var(name).ok(), Path::new("/"));
    let executor = running_as_executor(&options.kaniko_dir)
        .then(|| options.kaniko_dir.join("executor").display().to_string());
    let (mode, reason) = choose(
        options.isolation,
        marker.as_deref(),
        options.force,
        executor.as_deref(),
    )?;
    match mode {
        Isolation::None => tracing::info!(
            "Isolation: none ({reason}): building in this container's own root filesystem"
        ),
        Isolation::Chroot => tracing::info!(
            "Isolation: chroot ({reason}): RUN executes in a sandbox over a private root filesystem"
        ),
    }
    Ok(mode)
}

/// The isolation for `--isolation` given the container marker found, `--force`, and the
/// executor path kiln runs as (if it is `$KANIKO_DIR/executor`), with the reason to log. As
/// the executor, kiln does what Kaniko does: it builds in its own root inside a container, and
/// outside one only when forced (Kaniko's `--force`, which pipelines pass on CI runners and
/// sandboxes that hide every container marker).
fn choose(
    isolation: IsolationArg,
    marker: Option<&str>,
    force: bool,
    executor: Option<&str>,
) -> anyhow::Result<(Isolation, String)> {
    Ok(match (isolation, marker, executor) {
        (IsolationArg::Chroot, _, _) => (Isolation::Chroot, "--isolation=chroot".to_owned()),
        (IsolationArg::None, Some(marker), _) => (
            Isolation::None,
            format!("--isolation=none, in a container ({marker})"),
        ),
        (IsolationArg::None, None, _) if force => (
            Isolation::None,
            "--isolation=none outside a container, forced".to_owned(),
        ),
        (IsolationArg::None, None, _) => bail!(
            "--isolation=none builds in this machine's own root filesystem (it extracts the base image over / and deletes files between stages), and no container was detected (/.dockerenv, /run/.containerenv, $KUBERNETES_SERVICE_HOST, $container, /proc/1/cgroup): pass --force if you are sure, or use --isolation=chroot"
        ),
        (IsolationArg::Auto, Some(marker), Some(executor)) => (
            Isolation::None,
            format!("running as {executor} in a container ({marker})"),
        ),
        (IsolationArg::Auto, None, Some(executor)) if force => (
            Isolation::None,
            format!("running as {executor} with --force, no container detected"),
        ),
        (IsolationArg::Auto, _, _) => (
            Isolation::Chroot,
            "the default outside an executor container".to_owned(),
        ),
    })
}

/// The ignore list of a build in kiln's own root: `$KANIKO_DIR`, `/proc`, `/sys`, `/dev`,
/// `/etc/mtab`, `/var/run` unless `--ignore-var-run=false`, every `--ignore-path`, every mount
/// point, and what kiln itself reads or keeps there (the context, the Dockerfile, its cache).
pub fn container_ignore_list(options: &BuildOptions, mountinfo: &str, own: &[&Path]) -> IgnoreList {
    let mut ignore = IgnoreList::new(ALWAYS_IGNORED);
    ignore.extend([&options.kaniko_dir]);
    if options.ignore_var_run.unwrap_or(true) {
        ignore.extend(["/var/run"]);
    }
    ignore.extend(&options.ignore_paths);
    ignore.extend(mount_points(mountinfo));
    ignore.extend(own);
    ignore
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> BuildOptions {
        let mut argv = vec!["kiln", "build", "--no-push"];
        argv.extend_from_slice(args);
        match crate::args::Cli::try_parse_kaniko(argv.into_iter().map(std::ffi::OsString::from))
            .unwrap()
            .command
        {
            crate::args::Command::Build(options) => *options,
            _ => panic!("expected build"),
        }
    }

    #[test]
    fn each_container_marker_is_recognised_and_a_bare_host_is_not() {
        let root = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        assert_eq!(container_marker(none, root.path()), None);
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(root.path().join("proc/1/cgroup"), "0::/init.scope\n").unwrap();
        assert_eq!(container_marker(none, root.path()), None);
        std::fs::write(
            root.path().join("proc/1/cgroup"),
            "0::/kubepods/besteffort/pod1/abc\n",
        )
        .unwrap();
        assert_eq!(
            container_marker(none, root.path()).as_deref(),
            Some("/proc/1/cgroup names kubepods")
        );
        let k8s = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_owned());
        assert_eq!(
            container_marker(k8s, root.path()).as_deref(),
            Some("$KUBERNETES_SERVICE_HOST is set")
        );
        std::fs::write(root.path().join(".dockerenv"), "").unwrap();
        assert_eq!(
            container_marker(none, root.path()).as_deref(),
            Some("/.dockerenv exists")
        );
    }

    #[test]
    fn the_container_ignore_list_is_kanikos() {
        let mountinfo = "\
27 1 254:0 / / rw - ext4 /dev/vda rw
22 27 0:21 / /proc rw - proc proc rw
90 27 0:50 / /workspace rw - ext4 /dev/vdb rw
91 27 0:51 / /var/run/secrets/kubernetes.io/serviceaccount ro - tmpfs tmpfs ro
92 27 0:52 /x /etc/hosts rw - ext4 /dev/vda rw
93 27 0:53 / /mnt/with\\040space rw - tmpfs tmpfs rw
";
        let list = container_ignore_list(
            &options(&["--ignore-path=/opt/keep"]),
            mountinfo,
            &[Path::new("/kaniko/kiln")],
        );
        for ignored in [
            "/kaniko/executor",
            "/proc/1",
            "/sys",
            "/dev/null",
            "/etc/mtab",
            "/var/run/x",
            "/opt/keep/file",
            "/workspace/Dockerfile",
            "/etc/hosts",
            "/mnt/with space",
        ] {
            assert!(list.ignores(Path::new(ignored)), "{ignored}");
        }
        for kept in ["/", "/etc", "/etc/hostsx", "/var/runner", "/opt", "/mnt"] {
            assert!(!list.ignores(Path::new(kept)), "{kept}");
        }
        let list = container_ignore_list(&options(&["--ignore-var-run=false"]), "", &[]);
        assert!(!list.ignores(Path::new("/var/run/x")));
        assert!(list.ignores(Path::new("/kaniko")));
        let list = container_ignore_list(&options(&["--kaniko-dir=/builder"]), "", &[]);
        assert!(list.ignores(Path::new("/builder/x")) && !list.ignores(Path::new("/kaniko")));
    }

    #[test]
    fn none_outside_a_container_needs_force_and_chroot_is_always_allowed() {
        // The test host may or may not look like a container; only the outcomes that do not
        // depend on it are pinned here.
        assert_eq!(
            decide(&options(&["--isolation=chroot"])).unwrap(),
            Isolation::Chroot
        );
        assert_eq!(
            decide(&options(&["--isolation=none", "--force"])).unwrap(),
            Isolation::None
        );
        // The test binary is not /kaniko/executor, so auto keeps the sandbox.
        assert_eq!(decide(&options(&[])).unwrap(), Isolation::Chroot);
    }

    #[test]
    fn the_executor_builds_in_its_own_root_in_a_container_or_when_forced_as_kaniko_does() {
        let executor = Some("/kaniko/executor");
        let mode = |marker, force, executor| {
            choose(IsolationArg::Auto, marker, force, executor)
                .unwrap()
                .0
        };
        assert_eq!(mode(Some("/.dockerenv"), false, executor), Isolation::None);
        assert_eq!(mode(None, true, executor), Isolation::None);
        assert_eq!(mode(None, false, executor), Isolation::Chroot);
        // `kiln build --force` is not the executor: the sandbox stays.
        assert_eq!(mode(None, true, None), Isolation::Chroot);
        assert_eq!(mode(Some("/.dockerenv"), true, None), Isolation::Chroot);
        assert!(choose(IsolationArg::None, None, false, executor).is_err());
    }
}
