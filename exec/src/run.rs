//! `RUN`: a command executed inside the root filesystem, in a sandbox.
//!
//! Kaniko ran commands directly in its own container, so a build could read its registry
//! credentials and overwrite its binaries (GK #2153). Here the command runs as pid 1 of fresh
//! mount, pid, UTS and IPC namespaces, `pivot_root`ed into the image root, with its own `/proc`,
//! a minimal `/dev` and the host's DNS configuration mounted read-only. The root's mounts are made
//! private first, so nothing propagates back to the host, and they all vanish with the namespace.
//!
//! The process tree is kiln → middle process (creates the namespaces, waits, exits with the
//! command's status) → init (pid 1: sets the sandbox up, reaps orphans, forwards signals, exits
//! with the command's status, as Docker's `--init`) → command (pid 2). Each dies with its parent
//! (`PR_SET_PDEATHSIG`), and the kernel kills every process of the pid namespace when pid 1
//! exits: what the command left in the background cannot outlive it or hold the build. A command
//! killed by signal N is reported as exit code 128+N, as Docker reports it. [`cancel`] stops every
//! running sandbox (kiln's SIGINT/SIGTERM).

pub mod cancel;
mod descriptors;
mod direct;
mod mounts;
mod output;
mod sandbox;
mod stubs;

pub use direct::run_direct;
pub use mounts::{MountSource, RunMount};
pub use output::{LineSink, Output, Stream};

use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{FileType, Gid, Mode, OFlags};
use thiserror::Error;

use crate::fsroot::RootFs;
use crate::overlay::OverlayMount;
use crate::users::{UserError, resolve_user};

use mounts::MountPlan;
use sandbox::{DevPlan, Plan, Step};
use stubs::{Kind, Stubs};

/// `PATH` when the image's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// BuildKit's hostname for build containers.
const HOSTNAME: &[u8] = b"buildkitsandbox";

/// Device nodes bind-mounted from the host into the sandbox's `/dev`, as Docker provides them.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks Docker creates in `/dev`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

/// Host files mounted read-only over the image's, so the command resolves names like the host.
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// What to run: argv, environment, working directory and `USER`, all as the Dockerfile resolved
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// The command; `argv[0]` is looked up in the `PATH` of `env` inside the root.
    pub argv: Vec<String>,
    /// The environment, exactly; `PATH` and `HOME` get Docker's defaults when absent.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the root (the caller has created it).
    pub workdir: String,
    /// The `USER` value (`name`, `uid`, `name:group`, ...), resolved in the root.
    pub user: String,
    /// The network the command sees.
    pub network: Network,
    /// A host directory mounted read-only at `/dev/pipes` (BuildKit puts the script of a
    /// `RUN <<EOF` that starts with `#!` there); it never reaches the image.
    pub pipes: Option<PathBuf>,
    /// `RUN --mount`s, resolved to host paths or tmpfs, mounted in this order (a later target
    /// inside an earlier one is mounted over it).
    pub mounts: Vec<RunMount>,
    /// Where stdout and stderr go. Only the sandbox pipes them ([`run_direct`] always inherits:
    /// nothing bounds the life of what a command leaves running in kiln's own root, and a
    /// background process holding the pipe would hold the step).
    pub output: Output,
}

/// Where a `RUN` executes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// In the sandbox: new namespaces, `pivot_root` into the root filesystem ([`run_with`]).
    #[default]
    Chroot,
    /// Directly in kiln's own root, which is the image's (Kaniko's model, [`run_direct`]).
    None,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// The host's network (`default` and `host`).
    #[default]
    Host,
    /// A fresh network namespace with only the loopback interface, up.
    None,
}

/// Why a `RUN` did not succeed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The command ran and exited non-zero.
    #[error("command did not complete successfully: exit code: {code}")]
    Exit {
        /// Its exit code.
        code: i32,
    },
    /// The command was killed by a signal.
    #[error("command did not complete successfully: killed by signal {signal}")]
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// The command could not be started (not found, not executable, ...).
    #[error("exec {program:?}: {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// Preparing the sandbox failed.
    #[error("preparing the RUN sandbox: {step}: {source}")]
    Setup {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// kiln was asked to stop (SIGINT/SIGTERM): the command and everything it started were
    /// killed, or it was never started.
    #[error("interrupted: the command was stopped before it completed")]
    Cancelled,
    /// `USER` does not resolve in the root.
    #[error(transparent)]
    User(#[from] UserError),
}

/// Runs `spec.argv` inside `root` in a sandbox and waits for it; the command's stdout and stderr
/// are kiln's. Blocking: async callers use `spawn_blocking`.
pub fn run(root: &RootFs, spec: &RunSpec) -> Result<(), RunError> {
    run_with(root, spec, &[]).map(drop)
}

/// [`run`] with `overlays` mounted in the sandbox before anything else, in order: an overlay on
/// the root itself makes the command write into its upper directory (the overlay snapshot
/// strategy), one on a volume discards what the command writes there.
///
/// Returns the root-relative directories that held mount-point stubs: their ctime moved though
/// the command may not have touched them.
pub fn run_with(
    root: &RootFs,
    spec: &RunSpec,
    overlays: &[OverlayMount],
) -> Result<Vec<PathBuf>, RunError> {
    let program = spec.argv.first().ok_or_else(|| RunError::Spawn {
        program: String::new(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
    })?;
    let ids = resolve_user(root, &spec.user)?;
    let env = environment(spec, ids.uid, ids.home.as_deref());
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let workdir = if spec.workdir.is_empty() {
        "/"
    } else {
        spec.workdir.as_str()
    };
    let executable = find_executable(root, program, path_var, workdir)?;

    let mut stubs = Stubs::new(root);
    let outcome = prepare(root, &mut stubs, workdir, &ids, spec).and_then(|(mut plan, report)| {
        plan.overlays = overlays
            .iter()
            .map(|mount| (mount.target.clone(), mount.options.clone()))
            .collect();
        let mut command = Command::new(OsStr::from_bytes(executable.as_bytes()));
        command
            .arg0(program)
            .args(&spec.argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)));
        spec.output.configure(&mut command);
        execute(command, plan, report, program, &spec.output)
    });
    let host_root = std::fs::canonicalize(root.path()).ok();
    let upper = overlays
        .iter()
        .find(|mount| Some(&mount.lower) == host_root.as_ref())
        .map(|mount| mount.upper.as_path());
    let cleanup = stubs.remove(upper).map_err(|source| RunError::Setup {
        step: "removing mount-point stubs",
        source,
    });
    outcome.and(cleanup)
}

/// The command's environment: exactly `spec.env`, plus `PATH`, `HOME` and `HOSTNAME` (BuildKit
/// sets it to the sandbox's hostname) when missing.
fn environment(spec: &RunSpec, uid: u32, home: Option<&str>) -> Vec<(String, String)> {
    let mut env = spec.env.clone();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        let home = match home.filter(|h| !h.is_empty()) {
            Some(home) => home,
            None if uid == 0 => "/root",
            None => "/",
        };
        env.push(("HOME".to_owned(), home.to_owned()));
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push((
            "HOSTNAME".to_owned(),
            String::from_utf8_lossy(HOSTNAME).into_owned(),
        ));
    }
    env
}

/// `execvp`'s lookup, but in the root and with the image's `PATH`: returns the image path to exec.
fn find_executable(
    root: &RootFs,
    program: &str,
    path_var: &str,
    workdir: &str,
) -> Result<String, RunError> {
    if program.contains('/') {
        return Ok(program.to_owned());
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = if dir.starts_with('/') {
            format!("{}/{program}", dir.trim_end_matches('/'))
        } else {
            format!("{}/{dir}/{program}", workdir.trim_end_matches('/'))
        };
        let Ok(fd) = root.open_path(Path::new(&candidate), OFlags::PATH, Mode::empty()) else {
            continue;
        };
        let Ok(stat) = rustix::fs::fstat(&fd) else {
            continue;
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            && stat.st_mode & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(RunError::Spawn {
        program: program.to_owned(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            format!("executable file not found in $PATH ({path_var})"),
        ),
    })
}

/// Creates the mount-point stubs and computes every path the child will need; also returns the
/// read end of the pipe the child reports setup failures on.
fn prepare(
    root: &RootFs,
    stubs: &mut Stubs<'_>,
    workdir: &str,
    ids: &crate::users::Ids,
    spec: &RunSpec,
) -> Result<(Plan, io::PipeReader), RunError> {
    let setup = |step: &'static str| move |source: io::Error| RunError::Setup { step, source };
    let host_root = std::fs::canonicalize(root.path()).map_err(setup("resolving the root"))?;
    let mut mount_point = |image_path: &str, kind: Kind| -> Result<Option<CString>, RunError> {
        stubs
            .prepare(image_path, kind)
            .map_err(setup("creating mount-point stubs"))?
            .map(|rel| c_path(&host_root.join(rel)))
            .transpose()
    };
    let proc = mount_point("/proc", Kind::Dir)?;
    let dev = match mount_point("/dev", Kind::Dir)? {
        Some(dir) => Some(dev_plan(dir, spec.pipes.as_deref())?),
        None if spec.pipes.is_some() => {
            return Err(RunError::Setup {
                step: "mounting the heredoc script at /dev/pipes",
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the image's /dev cannot be a mount point",
                ),
            });
        }
        None => None,
    };
    let sys = mount_point("/sys", Kind::Dir)?;
    let mut files = Vec::new();
    for file in HOST_FILES {
        if !Path::new(file).is_file() {
            continue;
        }
        if let Some(target) = mount_point(file, Kind::File)? {
            files.push((c_path(Path::new(file))?, target));
        }
    }
    let mut mounts = Vec::new();
    for mount in &spec.mounts {
        let kind = match &mount.source {
            MountSource::Bind { path, .. } if !path.is_dir() => Kind::File,
            _ => Kind::Dir,
        };
        let target = mount_point(&mount.target, kind)?.ok_or_else(|| RunError::Setup {
            step: "creating a --mount target",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} exists in the image and is not a {}",
                    mount.target,
                    if kind == Kind::Dir {
                        "directory"
                    } else {
                        "file"
                    }
                ),
            ),
        })?;
        mounts.push(match &mount.source {
            MountSource::Bind { path, readonly } => {
                MountPlan::Bind(c_path(path)?, target, *readonly)
            }
            MountSource::Discarded { path, scratch } => {
                let overlay = crate::overlay::Overlay::create(path, scratch)
                    .and_then(|overlay| overlay.mount())
                    .map_err(|err| RunError::Setup {
                        step: "preparing a writable --mount",
                        source: io::Error::other(err.to_string()),
                    })?;
                MountPlan::Overlay(target, overlay.options)
            }
            MountSource::Tmpfs { size } => {
                let options = mounts::tmpfs_options(*size);
                MountPlan::Tmpfs(
                    target,
                    CString::new(options).map_err(|_| nul_error("tmpfs options"))?,
                )
            }
        });
    }
    let (reader, writer) = io::pipe().map_err(setup("creating the report pipe"))?;
    let plan = Plan {
        root: c_path(&host_root)?,
        overlays: Vec::new(),
        proc,
        dev,
        sys,
        files,
        mounts,
        hostname: HOSTNAME,
        network_none: spec.network == Network::None,
        workdir: CString::new(workdir).map_err(|_| nul_error(workdir))?,
        uid: ids.uid,
        gid: ids.gid,
        groups: ids.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        parent: rustix::process::getpid(),
        report: writer.into(),
    };
    Ok((plan, reader))
}

fn dev_plan(dir: CString, pipes: Option<&Path>) -> Result<DevPlan, RunError> {
    let dir_path = PathBuf::from(OsStr::from_bytes(dir.as_bytes()));
    let in_dev = |name: &str| c_path(&dir_path.join(name));
    let mut nodes = Vec::new();
    for device in DEVICES {
        let host = Path::new("/dev").join(device);
        if host.exists() {
            nodes.push((c_path(&host)?, in_dev(device)?));
        }
    }
    let mut links = Vec::new();
    for (target, name) in DEV_LINKS {
        links.push((c_path(Path::new(target))?, in_dev(name)?));
    }
    let pipes = match pipes {
        Some(host) => Some((c_path(host)?, in_dev("pipes")?)),
        None => None,
    };
    Ok(DevPlan {
        nodes,
        links,
        pipes,
        pts: in_dev("pts")?,
        shm: in_dev("shm")?,
        dir,
    })
}

fn c_path(path: &Path) -> Result<CString, RunError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| nul_error(&path.to_string_lossy()))
}

fn nul_error(what: &str) -> RunError {
    RunError::Setup {
        step: "preparing paths",
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what:?} contains a NUL byte"),
        ),
    }
}

/// Spawns the sandboxed command, waits for it and maps its fate.
fn execute(
    mut command: Command,
    plan: Plan,
    mut report: io::PipeReader,
    program: &str,
    output: &Output,
) -> Result<(), RunError> {
    if cancel::is_cancelled() {
        return Err(RunError::Cancelled);
    }
    spawn_sandboxed(&mut command, plan);
    let spawned = command.spawn();
    // Dropping the command drops our copy of the report pipe's write end.
    drop(command);
    let status = match spawned {
        Ok(mut child) => {
            let wait_error = |source| RunError::Spawn {
                program: program.to_owned(),
                source,
            };
            let registered = cancel::Registered::new(child.id());
            let forwarding = output.forward(&mut child);
            // Wait without reaping, deregister, then reap: a cancellation can never signal a
            // recycled pid.
            wait_exited_keeping(&child).map_err(wait_error)?;
            drop(registered);
            let status = child.wait().map_err(wait_error)?;
            // The namespace ended with the command, and every writer with it.
            forwarding.finish();
            if cancel::is_cancelled() && !status.success() {
                return Err(RunError::Cancelled);
            }
            status
        }
        Err(source) => {
            let mut message = Vec::new();
            // All writers are gone by now (the children exited), so this cannot block.
            let _ = report.read_to_end(&mut message);
            return Err(setup_failure(&message).unwrap_or(RunError::Spawn {
                program: program.to_owned(),
                source,
            }));
        }
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(RunError::Exit { code }),
        (None, Some(signal)) => Err(RunError::Signal { signal }),
        (None, None) => Err(RunError::Exit { code: -1 }),
    }
}

/// Waits until `child` has exited, leaving it to be reaped.
fn wait_exited_keeping(child: &std::process::Child) -> io::Result<()> {
    let pid = rustix::process::Pid::from_child(child);
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::Pid(pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Decodes a `(step, errno)` report written by the child.
fn setup_failure(message: &[u8]) -> Option<RunError> {
    let step = Step::from_raw(u32::from_le_bytes(message.get(..4)?.try_into().ok()?))?;
    let errno = i32::from_le_bytes(message.get(4..8)?.try_into().ok()?);
    let mut source = io::Error::from_raw_os_error(errno);
    if step == Step::Unshare && errno == libc::EPERM {
        // The one failure users meet: an unprivileged container (a Kubernetes pod).
        source = io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{source}: this process may not create namespaces (no CAP_SYS_ADMIN, as in an unprivileged container); build with --isolation=none there"
            ),
        );
    }
    Some(RunError::Setup {
        step: step.describe(),
        source,
    })
}

/// Mounts `mount` in a throwaway mount namespace and reports whether the kernel accepted it.
pub(crate) fn probe_overlay(mount: &OverlayMount) -> io::Result<()> {
    sandbox::probe_overlay(&mount.target, &mount.options)
}

#[allow(unsafe_code)]
fn spawn_sandboxed(command: &mut Command, plan: Plan) {
    // SAFETY: the hook runs in the forked child before exec. `sandbox::enter` only makes
    // async-signal-safe system calls on data prepared in `plan` before the fork: it allocates
    // nothing and takes no locks, so the state of other threads of kiln cannot deadlock it.
    unsafe {
        command.pre_exec(move || sandbox::enter(&plan));
    }
}

#[cfg(test)]
mod tests;
