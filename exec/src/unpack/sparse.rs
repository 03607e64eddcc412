//! Writing file contents with holes where the content is zeros.
//!
//! A tar stream carries a sparse file's holes as zeros (GNU sparse entries are expanded by the
//! reader, and most layer writers store holes as plain zeros anyway). Writing those zeros would
//! turn a 1 GiB mostly-empty database file into 1 GiB of disk; seeking over them instead leaves
//! a hole, which reads back as the same zeros, so the content is exact either way.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// The granularity of holes: a filesystem block on every filesystem kiln runs on. Smaller runs
/// of zeros are written, since a hole cannot be smaller than a block.
const HOLE_BLOCK: usize = 4096;

/// A file being written front to back that skips all-zero blocks.
#[derive(Debug)]
pub(super) struct SparseWriter {
    file: File,
    /// Bytes of the content so far, holes included.
    len: u64,
    /// Whether the content ends in a hole, which only `set_len` can materialise.
    pending_hole: bool,
}

impl SparseWriter {
    pub(super) fn new(file: File) -> Self {
        Self {
            file,
            len: 0,
            pending_hole: false,
        }
    }

    /// Appends `data`. Whole file blocks of zeros are skipped; anything else is written.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let start = self.len;
        let mut written_from = 0;
        let mut offset = 0;
        while offset < data.len() {
            // Blocks are aligned to the file, not to `data`, whose chunks may have any size.
            let in_block = ((start + offset as u64) % HOLE_BLOCK as u64) as usize;
            let end = (offset + HOLE_BLOCK - in_block).min(data.len());
            let whole = in_block == 0 && end - offset == HOLE_BLOCK;
            if whole && data[offset..end].iter().all(|&b| b == 0) {
                self.file.write_all(&data[written_from..offset])?;
                self.file.seek(SeekFrom::Current(HOLE_BLOCK as i64))?;
                self.pending_hole = true;
                written_from = end;
            }
            offset = end;
        }
        if written_from < data.len() {
            self.file.write_all(&data[written_from..])?;
            self.pending_hole = false;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Gives the file its full length (a trailing hole is not written by seeking alone).
    pub(super) fn finish(self) -> io::Result<File> {
        if self.pending_hole {
            self.file.set_len(self.len)?;
        }
        Ok(self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    fn write_through(chunks: &[Vec<u8>]) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut writer = SparseWriter::new(File::create(&path).unwrap());
        for chunk in chunks {
            writer.write(chunk).unwrap();
        }
        writer.finish().unwrap();
        let mut content = Vec::new();
        File::open(&path)
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        (content, std::fs::metadata(&path).unwrap().blocks())
    }

    #[test]
    fn zero_blocks_become_holes_and_content_is_unchanged() {
        let mut expected = vec![7u8; 100];
        expected.extend(vec![0u8; 1 << 20]);
        expected.extend(vec![9u8; 5000]);
        expected.extend(vec![0u8; 1 << 20]);
        let chunks: Vec<Vec<u8>> = expected.chunks(128 * 1024).map(<[u8]>::to_vec).collect();
        let (content, blocks) = write_through(&chunks);
        assert_eq!(content, expected);
        assert!(
            blocks * 512 < 64 * 1024,
            "{blocks} blocks allocated for 2 MiB of mostly zeros"
        );
    }

    #[test]
    fn short_and_misaligned_chunks_keep_the_content_exact() {
        let mut expected = vec![0u8; 100];
        expected.extend(vec![1u8; 10]);
        expected.extend(vec![0u8; 50_000]);
        expected.extend(vec![2u8; 3]);
        for size in [1, 7, 4096, 5000] {
            let chunks: Vec<Vec<u8>> = expected.chunks(size).map(<[u8]>::to_vec).collect();
            let (content, _) = write_through(&chunks);
            assert_eq!(content, expected, "chunks of {size}");
        }
        let (content, _) = write_through(&[vec![0u8; 4096 * 3]]);
        assert_eq!(content, vec![0u8; 4096 * 3]);
    }
}
