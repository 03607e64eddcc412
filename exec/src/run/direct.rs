//! `RUN` without a sandbox: the command runs in kiln's own root, as Kaniko runs it.
//!
//! This is `--isolation=none`: kiln is the container (Kaniko's executor image in a pod), the
//! image's filesystem has been extracted over `/`, and the runtime that started the container
//! already gave it its own mount and pid namespaces, `/proc`, `/dev` and DNS files. An
//! unprivileged pod cannot create namespaces or mount anything, so there is nothing more to set
//! up: the command gets the step's environment, working directory and user, in its own process
//! group, which is killed once the command exits so no daemon it left behind outlives the step
//! (Kaniko's `Setpgid` + `kill(-pgid)`).
//!
//! What the sandbox would have mounted cannot be honoured: `RUN --mount` and
//! `--network=none` are refused before the command starts.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;

use rustix::fs::{Gid, Uid};

use super::{DEFAULT_PATH, Network, RunError, RunSpec, environment, find_executable};
use crate::fsroot::RootFs;
use crate::users::resolve_user;

/// Where BuildKit puts the script of a `RUN <<EOF` that starts with `#!`.
const PIPES: &str = "/dev/pipes";

/// Runs `spec` directly in `root`, which must be the process's own `/`.
pub fn run_direct(root: &RootFs, spec: &RunSpec) -> Result<(), RunError> {
    let refuse = |what: &str| RunError::Setup {
        step: "running without isolation",
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{what} needs the RUN sandbox, which --isolation=none does not have (use --isolation=chroot where namespaces can be created)"
            ),
        ),
    };
    let host_root = std::fs::canonicalize(root.path()).map_err(|source| RunError::Setup {
        step: "resolving the root",
        source,
    })?;
    if host_root != Path::new("/") {
        return Err(RunError::Setup {
            step: "running without isolation",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the root filesystem is {}, not /: a command run without a sandbox would not see it",
                    host_root.display()
                ),
            ),
        });
    }
    if !spec.mounts.is_empty() {
        return Err(refuse("RUN --mount"));
    }
    if spec.network == Network::None {
        return Err(refuse("RUN --network=none"));
    }
    let program = spec.argv.first().ok_or_else(|| RunError::Spawn {
        program: String::new(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
    })?;
    let ids = resolve_user(root, &spec.user)?;
    // The command shares the container's UTS namespace: `HOSTNAME` names that host, not the
    // sandbox's `buildkitsandbox`.
    let mut with_host = spec.clone();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname");
    if let (Ok(name), false) = (hostname, with_host.env.iter().any(|(k, _)| k == "HOSTNAME")) {
        with_host
            .env
            .push(("HOSTNAME".to_owned(), name.trim().to_owned()));
    }
    let env = environment(&with_host, ids.uid, ids.home.as_deref());
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let workdir = if spec.workdir.is_empty() {
        "/"
    } else {
        spec.workdir.as_str()
    };
    let _pipes = match &spec.pipes {
        Some(dir) => Some(Pipes::install(dir)?),
        None => None,
    };
    let executable = find_executable(root, program, path_var, workdir)?;
    let mut command = Command::new(OsStr::from_bytes(executable.as_bytes()));
    command
        .arg0(program)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workdir)
        .process_group(0);
    let groups: Vec<Gid> = ids.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let (uid, gid) = (Uid::from_raw(ids.uid), Gid::from_raw(ids.gid));
    set_credentials(&mut command, groups, uid, gid);
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let status = child.wait().map_err(|source| RunError::Spawn {
        program: program.to_owned(),
        source,
    });
    // Whatever the command started in its group (daemons, background jobs) ends with it.
    if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    let status = status?;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(RunError::Exit { code }),
        (None, Some(signal)) => Err(RunError::Signal { signal }),
        (None, None) => Err(RunError::Exit { code: -1 }),
    }
}

#[allow(unsafe_code)]
fn set_credentials(command: &mut Command, groups: Vec<Gid>, uid: Uid, gid: Gid) {
    // SAFETY: the hook runs in the forked child before exec and only makes raw
    // setgroups/setgid/setuid/close_range system calls on data prepared before the fork (no
    // allocation, no locks). They act on the calling thread only, which is the child's only thread.
    unsafe {
        command.pre_exec(move || {
            rustix::thread::set_thread_groups(&groups)?;
            rustix::thread::set_thread_gid(gid)?;
            rustix::thread::set_thread_uid(uid)?;
            super::descriptors::close_on_exec_from_3();
            Ok(())
        });
    }
}

/// The `#!` heredoc scripts copied to `/dev/pipes` for one command, removed afterwards.
struct Pipes {
    created: Vec<std::path::PathBuf>,
}

impl Pipes {
    fn install(dir: &Path) -> Result<Pipes, RunError> {
        let setup = |source| RunError::Setup {
            step: "copying the heredoc script to /dev/pipes",
            source,
        };
        std::fs::create_dir_all(PIPES).map_err(setup)?;
        let mut pipes = Pipes {
            created: Vec::new(),
        };
        for entry in std::fs::read_dir(dir).map_err(setup)? {
            let entry = entry.map_err(setup)?;
            let target = Path::new(PIPES).join(entry.file_name());
            std::fs::copy(entry.path(), &target).map_err(setup)?;
            pipes.created.push(target);
        }
        Ok(pipes)
    }
}

impl Drop for Pipes {
    fn drop(&mut self) {
        for path in &self.created {
            let _ = std::fs::remove_file(path);
        }
    }
}
