//! Layer writing throughput: a 300 MB / 20k-file tree written as a layer with each compressor,
//! next to the raw throughput of that compressor and of sha256 on the same tar bytes, measured
//! in the same run (the physical limit the layer writer is held against).
//!
//! Run with `benches/layers.sh` (or `cargo bench -p kiln-exec --bench layer_write`). The corpus
//! is generated once under `$KILN_BENCH_DIR` (default `target/bench-corpus`) and reused.

#![allow(missing_docs, clippy::unwrap_used)]

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_exec::compression::Compression;
use kiln_exec::layer::{LayerOptions, write_layer};
use kiln_exec::{Changes, RootFs};
use sha2::{Digest, Sha256};

const FILES: usize = 20_000;
const TOTAL_BYTES: usize = 300_000_000;
const DIRS: usize = 200;

/// Deterministic xorshift, so every run writes the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// File contents like an application tree: mostly text-like tokens (source, configs, metadata)
/// with one incompressible stretch in four (already-compressed assets, binaries' data).
fn contents(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    const WORDS: &[&str] = &[
        "fn",
        "let",
        "return",
        "import",
        "class",
        "self",
        "value",
        "config",
        "error",
        "string",
        "node_modules",
        "package",
        "version",
        "0.1.0",
        "true",
        "false",
        "null",
        "{",
        "}",
        "(",
        ")",
        "=>",
        "const",
        "export",
        "default",
        "module",
        "require",
        "async",
        "await",
        "data",
    ];
    out.clear();
    while out.len() < len {
        if rng.next().is_multiple_of(4) {
            for _ in 0..64 {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            for _ in 0..32 {
                let word = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                out.extend_from_slice(word.as_bytes());
                out.push(if rng.next().is_multiple_of(8) {
                    b'\n'
                } else {
                    b' '
                });
            }
        }
    }
    out.truncate(len);
}

/// The corpus tree and the changes naming every file in it.
fn corpus(dir: &Path) -> Changes {
    let marker = dir.join(".complete");
    let mut changes = Changes::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::new();
    let built = marker.exists();
    if !built {
        eprintln!("writing the corpus into {} ...", dir.display());
        let _ = fs::remove_dir_all(dir);
    }
    let mean = TOTAL_BYTES / FILES;
    for i in 0..FILES {
        let sub = format!("app/d{:03}", i % DIRS);
        let path = format!("{sub}/file-{i:05}.dat");
        // Sizes from tiny to 2x the mean, so headers and padding weigh as in real trees.
        let len = (rng.next() % (2 * mean as u64)) as usize;
        if !built {
            fs::create_dir_all(dir.join(&sub)).unwrap();
            contents(&mut rng, len, &mut buf);
            fs::write(dir.join(&path), &buf).unwrap();
        }
        changes.add_changed(sub);
        changes.add_changed(path);
    }
    if !built {
        File::create(&marker).unwrap();
    }
    changes
}

/// A sink that hashes what it is given, as the store's blob writer does, without the disk.
struct HashSink(Sha256, u64);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that only counts, for the raw compressor rows.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// CPU time this process (all its threads) has used, from `/proc/self/stat` (clock ticks are
/// 1/100 s on Linux): unlike wall time, it does not depend on what else the machine runs.
fn cpu_time() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// One measurement: the best wall time of `runs`, the CPU time of that run, and the result.
struct Timing<T> {
    wall: Duration,
    cpu: Duration,
    value: T,
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> Timing<T> {
    let mut best: Option<Timing<T>> = None;
    for _ in 0..runs {
        let (start, cpu_start) = (Instant::now(), cpu_time());
        let value = f();
        let timing = Timing {
            wall: start.elapsed(),
            cpu: cpu_time() - cpu_start,
            value,
        };
        if best.as_ref().is_none_or(|b| timing.wall < b.wall) {
            best = Some(timing);
        }
    }
    best.unwrap()
}

/// Streams the tar file through `sink` in 1 MiB reads.
fn stream_tar(tar: &Path, sink: &mut dyn Write) {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(tar).unwrap());
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n]).unwrap();
    }
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn main() {
    let dir = std::env::var_os("KILN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-corpus"));
    let runs: usize = std::env::var("KILN_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let tree = dir.join("tree");
    let changes = corpus(&tree);
    let root = RootFs::open(&tree).unwrap();
    let cores = std::thread::available_parallelism().unwrap();

    // The uncompressed tar: the bytes every compressor below sees.
    let tar_path = dir.join("layer.tar");
    let layer = |options: LayerOptions| {
        let written = write_layer(&root, &changes, &options, HashSink(Sha256::new(), 0)).unwrap();
        (written.uncompressed_size, written.sink.1)
    };
    {
        let options = LayerOptions {
            compression: Compression::None,
            ..LayerOptions::default()
        };
        let file = File::create(&tar_path).unwrap();
        write_layer(&root, &changes, &options, file).unwrap();
    }
    let tar_size = fs::metadata(&tar_path).unwrap().len();

    let mut rows: Vec<(String, Timing<u64>)> = Vec::new();
    let t = best(runs, || {
        stream_tar(&tar_path, &mut io::sink());
        tar_size
    });
    rows.push(("read the tar file (page cache)".into(), t));
    let t = best(runs, || {
        stream_tar(&tar_path, &mut HashSink(Sha256::new(), 0));
        tar_size
    });
    rows.push(("raw sha256".into(), t));
    let t = best(runs, || {
        let mut counting = Counter(0);
        let mut enc = flate2::write::GzEncoder::new(&mut counting, flate2::Compression::new(6));
        stream_tar(&tar_path, &mut enc);
        enc.finish().unwrap();
        counting.0
    });
    rows.push(("raw gzip -6, flate2/zlib-rs, 1 thread".into(), t));
    for workers in [0, cores.get() as u32] {
        let t = best(runs, || {
            let mut counting = Counter(0);
            let mut enc = zstd::stream::write::Encoder::new(&mut counting, 3).unwrap();
            enc.multithread(workers).unwrap();
            stream_tar(&tar_path, &mut enc);
            enc.finish().unwrap();
            counting.0
        });
        let what = match workers {
            0 => "raw zstd -3, 1 thread".to_owned(),
            n => format!("raw zstd -3, zstdmt {n} workers"),
        };
        rows.push((what, t));
    }

    let options = |compression, threads: usize| LayerOptions {
        compression,
        threads: NonZeroUsize::new(threads).unwrap(),
        ..LayerOptions::default()
    };
    for (what, compression, threads) in [
        (
            "uncompressed (tar + 2x sha256)".to_owned(),
            Compression::None,
            1,
        ),
        ("gzip -6, 1 thread".to_owned(), Compression::Gzip, 1),
        (
            format!("gzip -6, {cores} threads"),
            Compression::Gzip,
            cores.get(),
        ),
        (
            format!("zstd -3, {cores} workers"),
            Compression::Zstd,
            cores.get(),
        ),
    ] {
        let t = best(runs, || layer(options(compression, threads)).1);
        rows.push((format!("kiln layer, {what}"), t));
    }

    println!(
        "Layer of {FILES} files, {:.0} MB uncompressed tar; best of {runs}; {cores} cores\n",
        tar_size as f64 / 1e6
    );
    println!("| what | MB/s (wall) | MB per CPU-second | output MB | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (what, t) in rows {
        println!(
            "| {what} | {:.0} | {:.0} | {:.1} | {:.3} |",
            mb_per_s(tar_size, t.wall),
            mb_per_s(tar_size, t.cpu),
            t.value as f64 / 1e6,
            t.value as f64 / tar_size as f64
        );
    }
    println!(
        "\nload average after: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
