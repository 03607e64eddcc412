//! These tests run real commands (Debian's static busybox) in the sandbox; they need root.

use super::*;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{PermissionsExt, symlink};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 12] = [
    "sh", "touch", "mkdir", "id", "echo", "pwd", "cat", "rm", "test", "ls", "grep", "hostname",
];

/// A root holding only `/bin/busybox` and its applet symlinks.
fn busybox_root() -> tempfile::TempDir {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    for applet in APPLETS {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    tmp
}

/// A busybox root with accounts and a world-writable /tmp.
fn root_with_users() -> tempfile::TempDir {
    let tmp = busybox_root();
    fs::create_dir(tmp.path().join("etc")).unwrap();
    fs::write(
        tmp.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        tmp.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
    fs::create_dir(tmp.path().join("tmp")).unwrap();
    fs::set_permissions(tmp.path().join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    tmp
}

fn sh(script: &str) -> RunSpec {
    RunSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        workdir: "/".into(),
        user: String::new(),
        ..Default::default()
    }
}

fn mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

#[test]
fn a_zero_exit_is_success_and_other_codes_are_reported() {
    let tmp = busybox_root();
    let root = RootFs::open(tmp.path()).unwrap();
    run(&root, &sh("exit 0")).unwrap();
    match run(&root, &sh("exit 3")) {
        Err(RunError::Exit { code: 3 }) => {}
        other => panic!("expected exit code 3, got {other:?}"),
    }
}

#[test]
fn env_user_groups_workdir_and_home_are_what_the_command_sees() {
    let tmp = root_with_users();
    fs::create_dir_all(tmp.path().join("srv/app")).unwrap();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh(
        "echo \"$GREETING|$(id -u):$(id -g):$(id -G)|$(pwd)|$HOME|$PATH|$(hostname)|$HOSTNAME\" > /tmp/out",
    );
    spec.env.push(("GREETING".into(), "hello world".into()));
    spec.user = "app".into();
    spec.workdir = "/srv/app".into();
    run(&root, &spec).unwrap();
    let out = fs::read_to_string(tmp.path().join("tmp/out")).unwrap();
    assert_eq!(
        out.trim(),
        "hello world|1000:1000:1000 2000|/srv/app|/home/app|/bin|buildkitsandbox|buildkitsandbox"
    );
}

#[test]
fn missing_path_and_home_get_docker_defaults() {
    let tmp = root_with_users();
    let root = RootFs::open(tmp.path()).unwrap();
    let spec = RunSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo \"$PATH|$HOME\" > /tmp/out".into(),
        ],
        env: Vec::new(),
        workdir: "/".into(),
        user: "4242".into(),
        ..Default::default()
    };
    run(&root, &spec).unwrap();
    let out = fs::read_to_string(tmp.path().join("tmp/out")).unwrap();
    assert_eq!(out.trim(), format!("{DEFAULT_PATH}|/"));
}

#[test]
fn the_command_changes_only_the_root_and_no_mount_leaks() {
    let tmp = busybox_root();
    fs::write(tmp.path().join("victim"), "delete me").unwrap();
    let root = RootFs::open(tmp.path()).unwrap();
    let marker = format!("kiln-run-probe-{}", std::process::id());
    assert!(!Path::new("/").join(&marker).exists());
    let before = mountinfo();
    run(
        &root,
        &sh(&format!(
            "touch /{marker} && mkdir /{marker}.d && rm /victim && test -e /proc/self/status \
             && test -c /dev/null && test -d /dev/shm"
        )),
    )
    .unwrap();
    assert_eq!(
        mountinfo(),
        before,
        "mounts leaked into the caller's namespace"
    );
    assert!(!mountinfo().contains(&tmp.path().display().to_string()));
    assert!(tmp.path().join(&marker).is_file());
    assert!(tmp.path().join(format!("{marker}.d")).is_dir());
    assert!(
        !tmp.path().join("victim").exists(),
        "deleted file must be gone"
    );
    assert!(
        !Path::new("/").join(&marker).exists(),
        "host / was modified"
    );
    assert!(!Path::new("/").join(format!("{marker}.d")).exists());
}

#[test]
fn mount_point_stubs_are_removed_and_parent_times_restored() {
    let tmp = busybox_root();
    let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    let root_mtime = mtime(tmp.path());
    let root = RootFs::open(tmp.path()).unwrap();
    run(
        &root,
        &sh("test -d /proc/1 && test -d /dev && test -d /sys"),
    )
    .unwrap();
    for stub in ["proc", "dev", "sys", "etc"] {
        assert!(!tmp.path().join(stub).exists(), "stub /{stub} left behind");
    }
    assert_eq!(mtime(tmp.path()), root_mtime);
}

#[test]
fn existing_mount_points_and_etc_files_are_kept_untouched() {
    let tmp = root_with_users();
    fs::create_dir(tmp.path().join("proc")).unwrap();
    fs::write(tmp.path().join("etc/hosts"), "image hosts\n").unwrap();
    let root = RootFs::open(tmp.path()).unwrap();
    run(
        &root,
        &sh("cat /etc/hosts > /tmp/hosts; echo x 2>/dev/null >> /etc/hosts; true"),
    )
    .unwrap();
    assert!(tmp.path().join("proc").is_dir());
    assert_eq!(
        fs::read_to_string(tmp.path().join("etc/hosts")).unwrap(),
        "image hosts\n",
        "the read-only host /etc/hosts mount must shield the image's file"
    );
    if Path::new("/etc/hosts").is_file() {
        assert_eq!(
            fs::read_to_string(tmp.path().join("tmp/hosts")).unwrap(),
            fs::read_to_string("/etc/hosts").unwrap()
        );
    }
    assert!(
        !tmp.path().join("etc/resolv.conf").exists(),
        "the resolv.conf stub must be removed"
    );
}

#[test]
fn the_command_runs_under_its_own_init_in_a_new_pid_namespace() {
    let tmp = root_with_users();
    let root = RootFs::open(tmp.path()).unwrap();
    run(
        &root,
        &sh("echo $$ > /tmp/pid; ls /proc | grep -c '^[0-9]' > /tmp/count"),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(tmp.path().join("tmp/pid"))
            .unwrap()
            .trim(),
        "2",
        "pid 1 is the sandbox's init"
    );
    // The init, sh itself, plus ls and grep of the pipeline: nothing from the host.
    let count: u32 = fs::read_to_string(tmp.path().join("tmp/count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(count <= 4, "saw {count} processes");
}

#[test]
fn the_command_gets_dockers_default_capabilities() {
    let tmp = root_with_users();
    let root = RootFs::open(tmp.path()).unwrap();
    run(&root, &sh("grep CapBnd /proc/self/status > /tmp/caps")).unwrap();
    let caps = fs::read_to_string(tmp.path().join("tmp/caps")).unwrap();
    assert_eq!(caps.trim(), "CapBnd:\t00000000a80425fb");
}

#[test]
fn an_unknown_program_is_a_spawn_error_naming_it() {
    let tmp = busybox_root();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh("");
    spec.argv = vec!["no-such-tool".into()];
    let err = run(&root, &spec).unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-tool"), "{err}");
    for stub in ["proc", "dev", "sys"] {
        assert!(!tmp.path().join(stub).exists());
    }
}

#[test]
fn an_unknown_user_fails_before_anything_runs() {
    let tmp = root_with_users();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh("touch /tmp/ran");
    spec.user = "ghost".into();
    assert!(matches!(run(&root, &spec), Err(RunError::User(_))));
    assert!(!tmp.path().join("tmp/ran").exists());
}

#[test]
fn a_missing_workdir_is_a_setup_error() {
    let tmp = busybox_root();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh("true");
    spec.workdir = "/nowhere".into();
    match run(&root, &spec) {
        Err(RunError::Setup { step, .. }) => assert!(step.contains("working directory"), "{step}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
}

/// CVE-2024-21626 (runc): between fork and exec the sandbox holds every descriptor kiln has
/// open, so `WORKDIR /proc/self/fd/N` would make a host directory the command's working
/// directory.
#[test]
fn a_workdir_through_a_proc_fd_link_cannot_reach_a_host_directory_kiln_has_open() {
    let tmp = root_with_users();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("marker"), "host secret").unwrap();
    let held = fs::File::open(host.path()).unwrap();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh("cat marker > /tmp/out; pwd >> /tmp/out");
    spec.workdir = format!("/proc/self/fd/{}", held.as_raw_fd());
    let outcome = run(&root, &spec);
    let leaked = fs::read_to_string(tmp.path().join("tmp/out")).unwrap_or_default();
    assert!(
        !leaked.contains("host secret"),
        "the command read a host file: {leaked}"
    );
    match outcome {
        Err(RunError::Setup { step, .. }) => assert!(step.contains("working directory"), "{step}"),
        other => panic!("expected a setup error, got {other:?} (output {leaked:?})"),
    }
}

/// A descriptor kiln inherited without close-on-exec (a jobserver pipe, say) is not the
/// command's to see: it gets its stdio and nothing else.
#[test]
fn the_command_inherits_only_its_stdio_even_of_descriptors_kiln_inherited() {
    let tmp = root_with_users();
    let held = fs::File::open(tmp.path()).unwrap();
    // `dup` never sets close-on-exec.
    let inheritable = rustix::io::dup(&held).unwrap();
    assert!(inheritable.as_raw_fd() > 2);
    let root = RootFs::open(tmp.path()).unwrap();
    let outcome = run(&root, &sh("ls /proc/self/fd > /tmp/fds"));
    drop(inheritable);
    outcome.unwrap();
    assert_eq!(
        fs::read_to_string(tmp.path().join("tmp/fds")).unwrap(),
        "0\n1\n2\n3\n",
        "3 is the directory ls reads"
    );
}

#[test]
fn network_none_leaves_only_loopback_and_brings_it_up() {
    let tmp = root_with_users();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh(
        "cat /proc/net/dev > /tmp/dev; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags > /tmp/lo",
    );
    spec.network = Network::None;
    run(&root, &spec).unwrap();
    let dev = fs::read_to_string(tmp.path().join("tmp/dev")).unwrap();
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{dev}");
    let lo = fs::read_to_string(tmp.path().join("tmp/lo")).unwrap();
    let flags = lo.lines().nth(1).unwrap().trim_start_matches("0x");
    assert_eq!(
        u32::from_str_radix(flags, 16).unwrap() & 1,
        1,
        "lo is not up: {lo}"
    );

    let mut host = sh("cat /proc/net/dev > /tmp/dev");
    host.network = Network::Host;
    run(&root, &host).unwrap();
    let dev = fs::read_to_string(tmp.path().join("tmp/dev")).unwrap();
    assert!(
        dev.lines().count() > 3,
        "the host network has more than lo: {dev}"
    );
}

#[test]
fn pipes_directory_is_mounted_read_only_and_leaves_no_trace() {
    let tmp = root_with_users();
    let pipes = tempfile::tempdir().unwrap();
    fs::write(
        pipes.path().join("EOF"),
        "#!/bin/sh\necho from-script > /tmp/out\n",
    )
    .unwrap();
    fs::set_permissions(pipes.path().join("EOF"), fs::Permissions::from_mode(0o755)).unwrap();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh("/dev/pipes/EOF && ! touch /dev/pipes/x");
    spec.pipes = Some(pipes.path().to_path_buf());
    run(&root, &spec).unwrap();
    let out = fs::read_to_string(tmp.path().join("tmp/out")).unwrap();
    assert_eq!(out, "from-script\n");
    assert!(!tmp.path().join("dev/pipes").exists());
}

#[test]
fn run_mounts_show_host_dirs_files_and_tmpfs_and_leave_nothing_in_the_root() {
    let tmp = busybox_root();
    let host = tempfile::tempdir().unwrap();
    fs::create_dir(host.path().join("cache")).unwrap();
    fs::create_dir(host.path().join("src")).unwrap();
    fs::write(host.path().join("src/input"), "from the host").unwrap();
    fs::write(host.path().join("secret"), "s3cret").unwrap();
    let root = RootFs::open(tmp.path()).unwrap();
    let mut spec = sh(
        "echo kept > /cache/out && cat /src/input /run/secrets/token > /scratch/seen \
         && cat /scratch/seen > /cache/seen && ! touch /src/new 2>/dev/null",
    );
    let bind = |path: &Path, readonly| MountSource::Bind {
        path: path.to_path_buf(),
        readonly,
    };
    spec.mounts = vec![
        RunMount {
            target: "/cache".into(),
            source: bind(&host.path().join("cache"), false),
        },
        RunMount {
            target: "/src".into(),
            source: bind(&host.path().join("src"), true),
        },
        RunMount {
            target: "/run/secrets/token".into(),
            source: bind(&host.path().join("secret"), true),
        },
        RunMount {
            target: "/scratch".into(),
            source: MountSource::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    run(&root, &spec).unwrap();
    assert_eq!(
        fs::read_to_string(host.path().join("cache/seen")).unwrap(),
        "from the hosts3cret"
    );
    assert!(!host.path().join("src/new").exists());
    for stub in ["cache", "src", "run", "scratch"] {
        assert!(
            !tmp.path().join(stub).exists(),
            "the mount point /{stub} stayed in the root"
        );
    }
}

#[test]
fn running_without_isolation_refuses_a_root_that_is_not_slash() {
    let dir = tempfile::tempdir().unwrap();
    let root = RootFs::open(dir.path()).unwrap();
    let spec = RunSpec {
        argv: vec!["/bin/true".into()],
        ..RunSpec::default()
    };
    let err = run_direct(&root, &spec).unwrap_err().to_string();
    assert!(err.contains("not /"), "{err}");
}
