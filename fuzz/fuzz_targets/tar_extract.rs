//! A layer (or an `ADD`ed archive) is a tar stream chosen by whoever built the image. The
//! extractor must return an error or apply it, never panic, and never create, change or delete
//! anything outside the root it was given, whatever the names, link targets, whiteouts and
//! symlinked parents say. The stream is decoded as `ADD` decodes archives (gzip, zstd, bzip2,
//! xz or plain, by magic number), so the decompressors are fuzzed too.
//!
//! Layout per run: `<tmp>/root` is the extraction root; `<tmp>/outside` (a file) and
//! `<tmp>/outdir/keep` sit next to it. After extracting, the temp dir must hold exactly those.
#![no_main]

use std::fs;
use std::io::Read;
use std::path::Path;

use kiln_exec::RootFs;
use kiln_exec::archive::{Format, decode};
use kiln_exec::unpack::apply_layer;
use libfuzzer_sys::fuzz_target;

/// Bounds what one input may write (a bomb would otherwise fill the disk of the fuzzing host).
const MAX_DECODED: u64 = 8 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else {
        return;
    };
    let base = tmp.path();
    let root_path = base.join("root");
    let (Ok(()), Ok(()), Ok(()), Ok(())) = (
        fs::create_dir(&root_path),
        fs::write(base.join("outside"), b"host"),
        fs::create_dir(base.join("outdir")),
        fs::write(base.join("outdir/keep"), b"keep"),
    ) else {
        return;
    };
    let Ok(root) = RootFs::open(&root_path) else {
        return;
    };
    let format = Format::sniff(&data[..data.len().min(6)]);
    if let Ok(stream) = decode(format, data) {
        let _ = apply_layer(&root, stream.take(MAX_DECODED), "fuzz");
    }
    assert_outside_untouched(base);
});

fn assert_outside_untouched(base: &Path) {
    let mut names: Vec<_> = fs::read_dir(base)
        .expect("temp dir readable")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["outdir", "outside", "root"],
        "extraction wrote next to its root"
    );
    assert_eq!(
        fs::read(base.join("outside")).expect("outside file"),
        b"host"
    );
    let inner: Vec<_> = fs::read_dir(base.join("outdir"))
        .expect("outdir readable")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    assert_eq!(inner, ["keep"], "extraction wrote into a sibling directory");
    assert_eq!(
        fs::read(base.join("outdir/keep")).expect("kept file"),
        b"keep"
    );
    let meta = fs::symlink_metadata(base.join("outside")).expect("outside metadata");
    assert!(meta.file_type().is_file(), "outside replaced");
    assert_eq!(meta.len(), 4);
}
