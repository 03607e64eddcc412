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
