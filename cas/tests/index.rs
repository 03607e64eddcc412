//! The cache index across sessions, as builds use it.

use kiln_cas::{FileIdentity, ImageRecord, Index, LayerRecord, StepRecord};

fn digest(byte: char) -> oci_spec::image::Digest {
    format!("sha256:{}", byte.to_string().repeat(64))
        .parse()
        .expect("digest")
}

fn record() -> StepRecord {
    StepRecord {
        layer: Some(LayerRecord {
            digest: digest('a'),
            size: 10,
            diff_id: format!("sha256:{}", "b".repeat(64)),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }),
        recorded: 1_700_000_000,
    }
}

#[test]
fn a_step_written_in_one_session_is_read_in_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(dir.path()).expect("open");
    index
        .write()
        .expect("write session")
        .put_step(&[7; 32], &record())
        .expect("put");
    let session = index.read().expect("read session");
    assert_eq!(session.step(&[7; 32]).expect("get"), Some(record()));
    assert_eq!(session.step(&[8; 32]).expect("get"), None);
}

#[test]
fn reading_an_index_never_written_finds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(&dir.path().join("new")).expect("open");
    assert_eq!(
        index.read().expect("read").step(&[1; 32]).expect("get"),
        None
    );
}

#[test]
fn aliases_files_images_and_blobs_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(dir.path()).expect("open");
    let identity = FileIdentity {
        dev: 1,
        ino: 2,
        size: 3,
        mtime_ns: 4,
        ctime_ns: 5,
        mode: 0o100644,
    };
    let image = ImageRecord {
        manifest: digest('c'),
        fetched: 42,
    };
    {
        let session = index.write().expect("write");
        session.put_alias(&[1; 32], &[2; 32]).expect("alias");
        session.put_files(&[(identity, [9; 32])]).expect("files");
        session
            .put_image("busybox:latest linux/amd64", &image)
            .expect("image");
        session.touch_blobs([&digest('d')], 100).expect("touch");
    }
    let session = index.read().expect("read");
    assert_eq!(session.alias(&[1; 32]).expect("alias"), Some([2; 32]));
    assert_eq!(session.file(&identity).expect("file"), Some([9; 32]));
    let other = FileIdentity {
        ctime_ns: 6,
        ..identity
    };
    assert_eq!(
        session.files(&[other, identity]).expect("files"),
        vec![None, Some([9; 32])],
        "a batched lookup answers in order, and a changed ctime is another file"
    );
    assert_eq!(
        session.image("busybox:latest linux/amd64").expect("image"),
        Some(image)
    );
    assert_eq!(session.blobs().expect("blobs"), vec![(digest('d'), 100)]);
}

#[test]
fn concurrent_writers_from_many_threads_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(dir.path()).expect("open");
    std::thread::scope(|scope| {
        for n in 0..8u8 {
            let index = index.clone();
            scope.spawn(move || {
                for i in 0..5u8 {
                    let mut key = [n; 32];
                    key[31] = i;
                    index
                        .write()
                        .expect("write")
                        .put_step(&key, &record())
                        .expect("put");
                }
            });
        }
    });
    let session = index.read().expect("read");
    for n in 0..8u8 {
        for i in 0..5u8 {
            let mut key = [n; 32];
            key[31] = i;
            assert!(session.step(&key).expect("get").is_some(), "{n} {i}");
        }
    }
}
