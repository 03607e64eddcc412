//! Overlay strategy tests live with the snapshotter (`snapshotter/tests.rs`), which drives the
//! overlay through real commands; here only the mount options.

use super::*;

#[test]
fn mount_options_turn_off_redirects_metacopy_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    std::fs::create_dir(&lower).unwrap();
    let overlay = Overlay::create(&lower, &tmp.path().join("ov")).unwrap();
    let mount = overlay.mount().unwrap();
    let options = mount.options.to_str().unwrap().to_owned();
    assert!(
        options.contains("redirect_dir=off,metacopy=off,index=off"),
        "{options}"
    );
    assert!(
        options.starts_with(&format!("lowerdir={}", lower.display())),
        "{options}"
    );
    overlay.discard().unwrap();
    assert!(!tmp.path().join("ov").exists());
}

#[test]
fn a_directory_with_a_comma_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("a,b");
    std::fs::create_dir(&lower).unwrap();
    let overlay = Overlay::create(&lower, &tmp.path().join("ov")).unwrap();
    let err = overlay.mount().unwrap_err().to_string();
    assert!(err.contains("a,b"), "{err}");
}

#[test]
fn the_probe_finds_volatile_overlays_on_this_kernel_and_later_mounts_use_them() {
    let tmp = tempfile::tempdir().unwrap();
    if let Err(err) = probe(tmp.path()) {
        panic!("this test needs overlayfs (root, a kernel with overlay): {err}");
    }
    assert!(
        volatile(),
        "overlayfs mounted here, but not with `volatile`: this test needs Linux 5.10 or later"
    );
    let lower = tmp.path().join("lower");
    std::fs::create_dir(&lower).unwrap();
    let overlay = Overlay::create(&lower, &tmp.path().join("ov")).unwrap();
    let options = overlay
        .mount()
        .unwrap()
        .options
        .to_str()
        .unwrap()
        .to_owned();
    assert!(options.ends_with(",volatile"), "{options}");
    assert!(
        !tmp.path().join("overlay-probe").exists(),
        "the probe's directories are removed"
    );
}
