//! `ADD` beyond plain copies: bzip2 and xz archives, remote URLs (checksums, modes, times,
//! naming, node keys) and git repositories, each pushed to the real registry and read back with
//! umoci.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::{Project, Registry, build_and_unpack};

/// A tar with one executable owned by 1000:50.
fn tool_tar() -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(6);
    header.set_mode(0o750);
    header.set_uid(1000);
    header.set_gid(50);
    archive
        .append_data(&mut header, "tool/bin/run", &b"#!run\n"[..])
        .unwrap();
    archive.into_inner().unwrap()
}

/// `bytes` compressed by the system's `bzip2`/`xz`, as users make their archives.
fn compressed_with(tool: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{tool} is needed (apt-get install {tool}): {err}"));
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}

#[test]
fn add_extracts_bzip2_and_xz_archives_with_their_owners() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nADD tool.tar.bz2 /opt/bz/\nADD tool.txz /opt/xz/\n"
    ));
    std::fs::write(
        project.path().join("tool.tar.bz2"),
        compressed_with("bzip2", &tool_tar()),
    )
    .unwrap();
    std::fs::write(
        project.path().join("tool.txz"),
        compressed_with("xz", &tool_tar()),
    )
    .unwrap();
    let rootfs = build_and_unpack(&registry, &project, "add-bz-xz:1");
    for dir in ["opt/bz", "opt/xz"] {
        let run = std::fs::metadata(rootfs.join(dir).join("tool/bin/run")).unwrap();
        assert_eq!((run.uid(), run.gid()), (1000, 50), "{dir}");
        assert_eq!(run.permissions().mode() & 0o7777, 0o750, "{dir}");
        assert_eq!(
            std::fs::read(rootfs.join(dir).join("tool/bin/run")).unwrap(),
            b"#!run\n"
        );
    }
    assert!(!rootfs.join("opt/bz/tool.tar.bz2").exists());
    assert!(!rootfs.join("opt/xz/tool.txz").exists());
}
