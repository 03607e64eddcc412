//! The code that runs between `fork` and `exec`: namespaces, mounts, root switch, credentials.
//!
//! Everything here executes in the child of a possibly multi-threaded process, so it may only make
//! async-signal-safe calls: raw system calls through `rustix` on C strings and vectors prepared in
//! [`Plan`] before the fork. No allocation, no locks, no logging. A failure is reported as a step
//! number and an errno over a pipe so that the parent can name what went wrong.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{CWD, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::UnshareFlags;

use super::mounts::MountPlan;

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub(super) struct Plan {
    /// Host path of the root directory (canonical).
    pub root: CString,
    /// `(mount point, options)` of overlays mounted first, in order: the root's own (the
    /// overlay snapshot strategy), then one per declared volume (whose writes are discarded).
    pub overlays: Vec<(CString, CString)>,
    /// Host paths of mount points inside the root; `None` when that mount is skipped.
    pub proc: Option<CString>,
    pub dev: Option<DevPlan>,
    pub sys: Option<CString>,
    /// `(host file, mount point)` bind-mounted read-only.
    pub files: Vec<(CString, CString)>,
    /// `RUN --mount`s, mounted after everything else, in order.
    pub mounts: Vec<MountPlan>,
    pub hostname: &'static [u8],
    /// `RUN --network=none`: a new network namespace, loopback brought up.
    pub network_none: bool,
    pub workdir: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<Gid>,
    /// Process that must still be our parent when the sandbox starts.
    pub parent: Pid,
    /// Where setup failures are reported.
    pub report: OwnedFd,
}

/// The minimal `/dev` Docker gives a container.
#[derive(Debug)]
pub(super) struct DevPlan {
    pub dir: CString,
    /// `(host device, node path)` bind-mounted into the tmpfs.
    pub nodes: Vec<(CString, CString)>,
    /// `(target, link path)`.
    pub links: Vec<(CString, CString)>,
    pub pts: CString,
    pub shm: CString,
    /// `(host directory, /dev/pipes)` bind-mounted read-only.
    pub pipes: Option<(CString, CString)>,
}

/// Setup steps, in order; the number is what goes over the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    DeathSignal,
    Unshare,
    Fork,
    PrivateMounts,
    MountOverlay,
    BindRoot,
    MountProc,
    MountDev,
    DevNode,
    DevLink,
    MountShm,
    BindFile,
    PivotRoot,
    Chdir,
    SetGroups,
    SetGid,
    SetUid,
    Hostname,
    Capabilities,
    Loopback,
    MountPipes,
    RunMount,
}

const STEPS: [Step; 22] = [
    Step::DeathSignal,
    Step::Unshare,
    Step::Fork,
    Step::PrivateMounts,
    Step::MountOverlay,
    Step::BindRoot,
    Step::MountProc,
    Step::MountDev,
    Step::DevNode,
    Step::DevLink,
    Step::MountShm,
    Step::BindFile,
    Step::PivotRoot,
    Step::Chdir,
    Step::SetGroups,
    Step::SetGid,
    Step::SetUid,
    Step::Hostname,
    Step::Capabilities,
    Step::Loopback,
    Step::MountPipes,
    Step::RunMount,
];

/// Docker's default capability set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP): a `RUN` gets what
/// a `docker run` container gets, and in particular no CAP_SYS_ADMIN to undo the sandbox.
const DOCKER_CAPABILITIES: u64 = 0xa804_25fb;

impl Step {
    /// Human description for [`super::RunError::Setup`].
    pub(super) fn describe(self) -> &'static str {
        match self {
            Step::DeathSignal => "setting the parent-death signal",
            Step::Unshare => "creating mount, pid, uts and ipc namespaces",
            Step::Fork => "forking the namespace's init process",
            Step::PrivateMounts => "making mounts private",
            Step::MountOverlay => "mounting an overlay on the root filesystem or a volume",
            Step::BindRoot => "bind-mounting the root filesystem",
            Step::MountProc => "mounting /proc",
            Step::MountDev => "mounting /dev",
            Step::DevNode => "creating a /dev node",
            Step::DevLink => "creating a /dev symlink",
            Step::MountShm => "mounting /dev/shm",
            Step::BindFile => "bind-mounting /etc/resolv.conf or /etc/hosts",
            Step::PivotRoot => "switching to the root filesystem",
            Step::Chdir => "changing to the working directory",
            Step::SetGroups => "setting supplementary groups",
            Step::SetGid => "setting the group id",
            Step::SetUid => "setting the user id",
            Step::Hostname => "setting the hostname",
            Step::Capabilities => "dropping capabilities",
            Step::Loopback => "bringing up the loopback interface of the new network namespace",
            Step::MountPipes => "mounting the heredoc script at /dev/pipes",
            Step::RunMount => "mounting a RUN --mount",
        }
    }

    pub(super) fn from_raw(raw: u32) -> Option<Step> {
        STEPS.get(raw as usize).copied()
    }
}

type StepResult = Result<(), (Step, rustix::io::Errno)>;

fn at(step: Step) -> impl Fn(rustix::io::Errno) -> (Step, rustix::io::Errno) {
    move |errno| (step, errno)
}

/// The `pre_exec` hook: in the direct child of kiln. Creates the namespaces, forks the command's
/// process (pid 1 of the new pid namespace) and, in this middle process, waits for it and exits
/// with its status; only the grandchild returns, to let `std` exec the command.
pub(super) fn enter(plan: &Plan) -> io::Result<()> {
    let result = middle(plan).and_then(|()| sandbox(plan));
    match result {
        Ok(()) => Ok(()),
        Err((step, errno)) => {
            let mut message = [0u8; 8];
            message[..4].copy_from_slice(&(step as u32).to_le_bytes());
            message[4..].copy_from_slice(&errno.raw_os_error().to_le_bytes());
            // Best effort: if the report cannot be written the parent still gets the errno.
            let _ = rustix::io::write(&plan.report, &message);
            Err(io::Error::from_raw_os_error(errno.raw_os_error()))
        }
    }
}

/// Runs in the middle process; returns only in the grandchild.
fn middle(plan: &Plan) -> StepResult {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(at(Step::DeathSignal))?;
    if rustix::process::getppid() != Some(plan.parent) {
        // kiln died between fork and prctl: nobody will wait for us.
        exit_now(1);
    }
    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC;
    if plan.network_none {
        flags |= UnshareFlags::NEWNET;
    }
    unshare(flags).map_err(at(Step::Unshare))?;
    // Blocked before the fork so that no stop request or child exit can slip in unseen; the
    // init below blocks its own set, the command gets an empty mask back.
    block_signals(&MIDDLE_SIGNALS);
    match fork().map_err(at(Step::Fork))? {
        None => Ok(()),
        Some(child) => wait_and_exit(child),
    }
}

/// What the middle process waits for: its child's exit, and kiln's stop request (SIGTERM from
/// [`super::cancel`], SIGINT/SIGHUP from a terminal).
const MIDDLE_SIGNALS: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Signals the sandbox's init passes on to the command, as Docker's init (tini) does.
const FORWARDED_SIGNALS: [i32; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// In the middle process: mirror the fate of the namespace's init, then exit without returning
/// to `std`. A stop request SIGKILLs the init; the kernel then kills every process of the pid
/// namespace, and reports the init's death only once they are all gone, so when this process
/// exits (taking the mount namespace with it) nothing of the RUN is left.
fn wait_and_exit(child: Pid) -> ! {
    // Drop our copies of std's exec-status pipe and of the report pipe so that kiln learns the
    // outcome of the exec (or of the setup) from the command alone.
    close_from(3);
    loop {
        match rustix::process::waitpid(Some(child), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    exit_now(code);
                }
                if let Some(signal) = status.terminating_signal() {
                    reraise(signal);
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => exit_now(127),
        }
        match wait_signal(&MIDDLE_SIGNALS) {
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP => {
                let _ = rustix::process::kill_process(child, Signal::KILL);
            }
            _ => {}
        }
    }
}

/// After the sandbox is set up, in pid 1 of the namespace: forks the command's process (which
/// returns, to be exec'd by `std`) and stays behind as the namespace's init, like Docker's
/// `--init`: it reaps every orphan the command leaves (no zombies pile up), forwards signals to
/// the command, and exits with the command's status as soon as the command exits, which makes
/// the kernel kill whatever it left running in the background (`sleep 1000 &` cannot hold the
/// build).
fn become_init() -> StepResult {
    block_signals(&FORWARDED_SIGNALS);
    match fork().map_err(at(Step::Fork))? {
        None => {
            unblock_all_signals();
            // Set again: the parent-death signal is not inherited across fork.
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(at(Step::DeathSignal))?;
            super::descriptors::close_on_exec_from_3();
            Ok(())
        }
        Some(command) => init_loop(command),
    }
}

fn init_loop(command: Pid) -> ! {
    close_from(3);
    // Signals from outside the namespace reach its init only if it handles them.
    for signal in FORWARDED_SIGNALS {
        install_noop_handler(signal);
    }
    let mut waited = [libc::SIGCHLD; 8];
    waited[1..].copy_from_slice(&FORWARDED_SIGNALS);
    loop {
        loop {
            match rustix::process::waitpid(None, WaitOptions::NOHANG) {
                Ok(Some((pid, status))) if pid == command => {
                    if let Some(code) = status.exit_status() {
                        exit_now(code);
                    }
                    // The namespace's init cannot die of its own signal: report it as a shell
                    // (and Docker's init) would.
                    exit_now(128 + status.terminating_signal().unwrap_or(0));
                }
                Ok(Some(_)) | Err(rustix::io::Errno::INTR) => {}
                Ok(None) => break,
                Err(_) => exit_now(127),
            }
        }
        let signal = wait_signal(&waited);
        if signal != libc::SIGCHLD
            && let Some(signal) = Signal::from_named_raw(signal)
        {
            let _ = rustix::process::kill_process(command, signal);
        }
    }
}

/// In the grandchild: pid 1 of the new namespaces.
fn sandbox(plan: &Plan) -> StepResult {
    let none: Option<&std::ffi::CStr> = None;
    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(at(Step::PrivateMounts))?;
    for (target, options) in &plan.overlays {
        mount_overlay(target, options).map_err(at(Step::MountOverlay))?;
    }
    if plan.network_none {
        loopback_up().map_err(at(Step::Loopback))?;
    }
    rustix::mount::mount_bind_recursive(plan.root.as_c_str(), plan.root.as_c_str())
        .map_err(at(Step::BindRoot))?;
    if let Some(proc) = &plan.proc {
        rustix::mount::mount(
            c"proc",
            proc.as_c_str(),
            c"proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            none,
        )
        .map_err(at(Step::MountProc))?;
    }
    if let Some(dev) = &plan.dev {
        mount_dev(dev)?;
    }
    if let Some(sys) = &plan.sys {
        // Only "if permitted": sysfs needs a network namespace we own, which we may not have.
        let _ = rustix::mount::mount(
            c"sysfs",
            sys.as_c_str(),
            c"sysfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            none,
        );
    }
    for (source, target) in &plan.files {
        rustix::mount::mount_bind(source.as_c_str(), target.as_c_str())
            .map_err(at(Step::BindFile))?;
        rustix::mount::mount_remount(
            target.as_c_str(),
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            c"",
        )
        .map_err(at(Step::BindFile))?;
    }
    for mount in &plan.mounts {
        run_mount(mount).map_err(at(Step::RunMount))?;
    }
    switch_root(plan)?;
    sethostname(plan.hostname).map_err(at(Step::Hostname))?;
    enter_workdir(plan).map_err(at(Step::Chdir))?;
    drop_capabilities(DOCKER_CAPABILITIES).map_err(at(Step::Capabilities))?;
    rustix::thread::set_thread_groups(&plan.groups).map_err(at(Step::SetGroups))?;
    rustix::thread::set_thread_gid(Gid::from_raw(plan.gid)).map_err(at(Step::SetGid))?;
    rustix::thread::set_thread_uid(Uid::from_raw(plan.uid)).map_err(at(Step::SetUid))?;
    // Set last: changing credentials clears it. If the middle process dies, so does the namespace.
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(at(Step::DeathSignal))?;
    become_init()
}

fn run_mount(mount: &MountPlan) -> rustix::io::Result<()> {
    match mount {
        MountPlan::Bind(source, target, readonly) => {
            rustix::mount::mount_bind_recursive(source.as_c_str(), target.as_c_str())?;
            let mut flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV;
            if *readonly {
                flags |= MountFlags::RDONLY;
            }
            rustix::mount::mount_remount(target.as_c_str(), flags, c"")
        }
        MountPlan::Tmpfs(target, options) => rustix::mount::mount(
            c"tmpfs",
            target.as_c_str(),
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(options.as_c_str()),
        ),
        MountPlan::Overlay(target, options) => mount_overlay(target, options),
    }
}

fn mount_overlay(target: &CString, options: &CString) -> rustix::io::Result<()> {
    rustix::mount::mount(
        c"overlay",
        target.as_c_str(),
        c"overlay",
        MountFlags::empty(),
        Some(options.as_c_str()),
    )
}

/// Whether an overlay with `options` can be mounted on `target` here: tried in a forked child
/// with its own mount namespace, so nothing stays mounted and kiln's own namespace is untouched.
pub(crate) fn probe_overlay(target: &CString, options: &CString) -> io::Result<()> {
    match fork()? {
        None => {
            let outcome = unshare(UnshareFlags::NEWNS)
                .and_then(|()| {
                    rustix::mount::mount_change(
                        c"/",
                        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
                    )
                })
                .and_then(|()| mount_overlay(target, options));
            exit_now(match outcome {
                Ok(()) => 0,
                Err(errno) => errno.raw_os_error(),
            })
        }
        Some(child) => loop {
            match rustix::process::waitpid(Some(child), WaitOptions::empty()) {
                Ok(Some((_, status))) => {
                    return match status.exit_status() {
                        Some(0) => Ok(()),
                        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                        None => Err(io::Error::other("the overlay probe was killed")),
                    };
                }
                Ok(None) | Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        },
    }
}

fn mount_dev(dev: &DevPlan) -> StepResult {
    rustix::mount::mount(
        c"tmpfs",
        dev.dir.as_c_str(),
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(at(Step::MountDev))?;
    for (host, node) in &dev.nodes {
        let fd = rustix::fs::openat(
            CWD,
            node.as_c_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(at(Step::DevNode))?;
        drop(fd);
        rustix::mount::mount_bind(host.as_c_str(), node.as_c_str()).map_err(at(Step::DevNode))?;
    }
    for (target, link) in &dev.links {
        rustix::fs::symlinkat(target.as_c_str(), CWD, link.as_c_str())
            .map_err(at(Step::DevLink))?;
    }
    rustix::fs::mkdirat(CWD, dev.pts.as_c_str(), Mode::from_raw_mode(0o755))
        .map_err(at(Step::DevNode))?;
    // A private devpts instance is a convenience (ttys in RUN); its absence must not fail a build.
    let _ = rustix::mount::mount(
        c"devpts",
        dev.pts.as_c_str(),
        c"devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
    );
    rustix::fs::mkdirat(CWD, dev.shm.as_c_str(), Mode::from_raw_mode(0o1777))
        .map_err(at(Step::MountShm))?;
    rustix::mount::mount(
        c"shm",
        dev.shm.as_c_str(),
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(at(Step::MountShm))?;
    if let Some((host, target)) = &dev.pipes {
        rustix::fs::mkdirat(CWD, target.as_c_str(), Mode::from_raw_mode(0o755))
            .map_err(at(Step::MountPipes))?;
        rustix::mount::mount_bind(host.as_c_str(), target.as_c_str())
            .map_err(at(Step::MountPipes))?;
        rustix::mount::mount_remount(
            target.as_c_str(),
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            c"",
        )
        .map_err(at(Step::MountPipes))?;
    }
    Ok(())
}

/// Sets `IFF_UP` on `lo`, the only interface of a new network namespace.
#[allow(unsafe_code)]
fn loopback_up() -> rustix::io::Result<()> {
    let errno = || {
        rustix::io::Errno::from_raw_os_error(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM),
        )
    };
    // SAFETY: socket, ioctl and close are async-signal-safe; `request` is a zeroed `ifreq` on
    // our stack holding a NUL-terminated name, valid for both ioctls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request);
        if result == 0 {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(fd, libc::SIOCSIFFLAGS, &request);
        }
        let failure = (result != 0).then(errno);
        libc::close(fd);
        failure.map_or(Ok(()), Err)
    }
}

/// Makes the stage's working directory the current one, resolved inside the new root with magic
/// links refused. Until the exec this process holds every descriptor kiln has open (close-on-exec
/// only acts at the exec), so a plain `chdir` to `WORKDIR /proc/self/fd/N` would land in a host
/// directory (runc's CVE-2024-21626).
fn enter_workdir(plan: &Plan) -> rustix::io::Result<()> {
    let dir = rustix::fs::openat2(
        CWD,
        plan.workdir.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    rustix::process::fchdir(&dir)
}

/// `pivot_root` into the root and detach the old one, so no path leads back to the host; falls
/// back to `chroot` where `pivot_root` is refused (a root on the initramfs).
fn switch_root(plan: &Plan) -> StepResult {
    rustix::process::chdir(plan.root.as_c_str()).map_err(at(Step::PivotRoot))?;
    match rustix::process::pivot_root(c".", c".") {
        Ok(()) => {
            rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(at(Step::PivotRoot))?;
        }
        Err(rustix::io::Errno::INVAL) => {
            rustix::process::chroot(c".").map_err(at(Step::PivotRoot))?;
        }
        Err(errno) => return Err((Step::PivotRoot, errno)),
    }
    rustix::process::chdir(c"/").map_err(at(Step::PivotRoot))?;
    Ok(())
}

#[allow(unsafe_code)]
fn unshare(flags: UnshareFlags) -> rustix::io::Result<()> {
    // SAFETY: called in a single-threaded forked child, and without `UnshareFlags::FILES`, so no
    // thread can observe a descriptor table it does not share.
    unsafe { rustix::thread::unshare_unsafe(flags) }
}

/// `fork`: `None` in the child, the child's pid in the parent.
#[allow(unsafe_code)]
fn fork() -> rustix::io::Result<Option<Pid>> {
    // SAFETY: the callers (the single-threaded child of `Command::spawn`, and the overlay probe
    // in kiln itself) only make async-signal-safe system calls in the child before `exec` or
    // `_exit`, on data prepared before the fork, so no lock held by another thread is needed.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(rustix::io::Errno::from_raw_os_error(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EAGAIN),
        )),
        0 => Ok(None),
        pid => Ok(Pid::from_raw(pid)),
    }
}

/// `_exit`: no atexit handlers or stdio flushing of the forked copy of kiln.
#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor from `first` up.
#[allow(unsafe_code)]
fn close_from(first: u32) {
    // SAFETY: close_range only closes descriptors; this process never uses them again.
    unsafe {
        libc::close_range(first, u32::MAX, 0);
    }
}

/// Dies of `signal` like the command did, so kiln sees the same wait status; exits 128+signal if
/// the signal does not kill.
#[allow(unsafe_code)]
fn reraise(signal: i32) -> ! {
    // SAFETY: prctl, signal, kill and getpid are async-signal-safe; no Rust state is touched.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::signal(signal, libc::SIG_DFL);
        libc::kill(libc::getpid(), signal);
    }
    exit_now(128 + signal)
}

#[allow(unsafe_code)]
fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset write only into the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in signals {
            libc::sigaddset(&mut set, *signal);
        }
        set
    }
}

/// Adds `signals` to this thread's blocked set.
#[allow(unsafe_code)]
fn block_signals(signals: &[i32]) {
    let set = signal_set(signals);
    // SAFETY: sigprocmask is async-signal-safe; `set` lives on our stack.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Empties the blocked set (exec keeps it, and the command must start with none blocked).
#[allow(unsafe_code)]
fn unblock_all_signals() {
    let set = signal_set(&[]);
    // SAFETY: as in `block_signals`.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Waits for one of `signals` (which must be blocked) and returns its number.
#[allow(unsafe_code)]
fn wait_signal(signals: &[i32]) -> i32 {
    let set = signal_set(signals);
    // SAFETY: sigwaitinfo is a plain system call on our stack's set; a null info is allowed.
    unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) }
}

extern "C" fn noop_handler(_signal: libc::c_int) {}

/// Gives `signal` a handler that does nothing (the signal stays blocked and is collected with
/// `sigwaitinfo`): exec resets handlers, and the kernel delivers signals to a namespace's init
/// only if it handles them.
#[allow(unsafe_code)]
fn install_noop_handler(signal: i32) {
    // SAFETY: sigaction with a zeroed struct naming an `extern "C"` function that does nothing;
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = noop_handler as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Removes every capability not in `keep` from the bounding set, which caps what the command (and
/// anything it execs) can ever hold. Capabilities the kernel does not know are skipped.
#[allow(unsafe_code)]
fn drop_capabilities(keep: u64) -> rustix::io::Result<()> {
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only; async-signal-safe.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM);
            if errno == libc::EINVAL {
                break;
            }
            return Err(rustix::io::Errno::from_raw_os_error(errno));
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn sethostname(name: &[u8]) -> rustix::io::Result<()> {
    // SAFETY: `name` is a valid slice for the duration of the call.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(rustix::io::Errno::from_raw_os_error(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM),
        ))
    }
}
