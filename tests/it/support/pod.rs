//! A pod, simulated: an unpacked image entered the way a container runtime starts a container.
//!
//! kiln's `--isolation=none` extracts base images over `/` and deletes files between stages, so
//! it must only ever run against a throwaway root. [`Pod::run`] gives it one: new mount and pid
//! namespaces (`unshare`), the unpacked image bind-mounted on itself, a fresh `/proc`, a tmpfs
//! `/dev` holding only the usual device nodes, the test's files bind-mounted where a pod spec
//! would put them (`/workspace`, `/kaniko/.docker`), private copies of `/etc/hosts` and
//! `/etc/resolv.conf`, the capability bounding set cut to Docker's defaults (no
//! `CAP_SYS_ADMIN`: no namespaces, no mounts, as in an unprivileged pod), then `chroot` with the
//! image config's environment. The host network is shared, so a registry on 127.0.0.1 is
//! reachable. Every mount dies with the namespace when the command exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::tools::require;

/// Docker's default capability set: what a container gets without `privileged`.
const DOCKER_CAPABILITIES: &str = "-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap";

/// Device nodes a runtime puts in a container's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// A container about to be started from an unpacked image.
pub struct Pod {
    rootfs: PathBuf,
    env: Vec<String>,
    binds: Vec<(PathBuf, String)>,
    /// Targets of `binds` mounted read-only.
    read_only: Vec<String>,
    etc: tempfile::TempDir,
}

impl Pod {
    /// A pod running the umoci bundle at `bundle` (its `rootfs` and the `config.json` umoci
    /// generated from the image config, whose environment the container gets).
    pub fn from_bundle(bundle: &Path) -> Pod {
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let env = config["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_str().unwrap().to_owned())
            .collect();
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            etc.path().join("hosts"),
            "127.0.0.1 localhost\n::1 localhost\n",
        )
        .unwrap();
        std::fs::write(
            etc.path().join("resolv.conf"),
            std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        )
        .unwrap();
        Pod {
            rootfs: bundle.join("rootfs"),
            env,
            binds: Vec::new(),
            read_only: Vec::new(),
            etc,
        }
    }

    /// Sets an environment variable as the pod spec would (`KUBERNETES_SERVICE_HOST`, ...).
    pub fn env(mut self, key: &str, value: &str) -> Pod {
        self.env
            .retain(|entry| !entry.starts_with(&format!("{key}=")));
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Bind-mounts the host directory `host` at `target` in the container (a volume).
    pub fn bind(mut self, host: &Path, target: &str) -> Pod {
        self.binds.push((host.to_path_buf(), target.to_owned()));
        self
    }

    /// Bind-mounts `host` at `target` read-only (a warmer's volume mounted `readOnly`).
    pub fn bind_read_only(mut self, host: &Path, target: &str) -> Pod {
        self.read_only.push(target.to_owned());
        self.bind(host, target)
    }

    /// The container's root filesystem as the host sees it (to inspect after a run).
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// Starts the container with `argv` as its command and waits for it.
    pub fn run(&self, argv: &[&str]) -> Output {
        let unshare = require("unshare", "util-linux");
        let setpriv = require("setpriv", "util-linux");
        let chroot = require("chroot", "coreutils");
        let root = quote(&self.rootfs);
        let mut script = format!(
            "set -eu\nroot={root}\nmount --bind \"$root\" \"$root\"\nmkdir -p \"$root/proc\" \"$root/dev\" \"$root/etc\"\nmount -t proc proc \"$root/proc\"\nmount -t tmpfs -o mode=755,nosuid tmpfs \"$root/dev\"\n"
        );
        for device in DEVICES {
            script.push_str(&format!(
                "touch \"$root/dev/{device}\"\nmount --bind /dev/{device} \"$root/dev/{device}\"\n"
            ));
        }
        for file in ["hosts", "resolv.conf"] {
            script.push_str(&format!(
                "touch \"$root/etc/{file}\"\nmount --bind {} \"$root/etc/{file}\"\n",
                quote(&self.etc.path().join(file))
            ));
        }
        for (host, target) in &self.binds {
            script.push_str(&format!(
                "mkdir -p \"$root{target}\"\nmount --bind {} \"$root{target}\"\n",
                quote(host)
            ));
            if self.read_only.contains(target) {
                script.push_str(&format!("mount -o remount,bind,ro \"$root{target}\"\n"));
            }
        }
        script.push_str(&format!(
            "exec {} --bounding-set={DOCKER_CAPABILITIES} -- /usr/bin/env -i \"$@\"\n",
            setpriv.display()
        ));
        let mut command = Command::new(unshare);
        command
            .args(["--mount", "--pid", "--fork", "--propagation", "private"])
            .args(["--", "/bin/sh", "-c", &script, "pod"])
            .args(&self.env)
            .arg(chroot)
            .arg(&self.rootfs)
            .args(argv);
        command
            .output()
            .unwrap_or_else(|err| panic!("starting the pod {command:?}: {err}"))
    }
}

/// Single-quotes a path for the shell.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}
