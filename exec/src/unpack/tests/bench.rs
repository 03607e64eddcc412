//! Sequential against pipelined extraction of a five-layer gzip image, timed side by side in
//! the same run. Run with
//! `cargo test -p kiln-exec --release -- --ignored --nocapture five_layer`.

use super::*;
use crate::unpack::{LayerStream, apply_layers};
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

/// Deterministic, moderately compressible bytes (gzip gets ~2x, like binaries and libraries).
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state & 0x0f) as u8 + b'a'
        })
        .collect()
}

/// A gzip layer of `files` files of mixed sizes (1-64 KiB) plus two 8 MiB files.
fn write_layer(path: &Path, layer: u64, files: u64) -> u64 {
    let mut builder = tar::Builder::new(Vec::new());
    let mut total = 0;
    for i in 0..files + 2 {
        let len = if i >= files {
            8 << 20
        } else {
            1024 + ((i * 7919) % 64) as usize * 1024
        };
        let data = content(layer * 1_000_003 + i, len);
        let mut header = tar::Header::new_ustar();
        header.set_size(len as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        builder
            .append_data(
                &mut header,
                format!("l{layer}/d{}/f{i}", i % 50),
                data.as_slice(),
            )
            .unwrap();
        total += len as u64;
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap();
    total
}

fn open_layer(path: &Path) -> Box<dyn Read + Send> {
    let file = fs::File::open(path).unwrap();
    Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
        1 << 20,
        file,
    )))
}

/// CPU time (user + system) used so far by the process, or by the calling thread alone, from
/// `/proc` (100 Hz ticks). The calling thread's time is the critical path of a pipelined run
/// on an idle machine; wall times on the shared CI machine are mostly other people's load.
fn cpu_time(thread_only: bool) -> Duration {
    let file = if thread_only {
        "/proc/thread-self/stat"
    } else {
        "/proc/self/stat"
    };
    let stat = fs::read_to_string(file).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Decoding alone: the work pipelining moves off the writer's thread.
fn decode_only(layers: &[PathBuf]) -> Duration {
    let cpu = cpu_time(true);
    for path in layers {
        io::copy(&mut open_layer(path), &mut io::sink()).unwrap();
    }
    cpu_time(true) - cpu
}

fn timed(layers: &[PathBuf], pipelined: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let root = RootFs::open(dir.path()).unwrap();
    let started = Instant::now();
    let (cpu, own_cpu) = (cpu_time(false), cpu_time(true));
    if pipelined {
        let streams = layers
            .iter()
            .map(|path| LayerStream {
                label: path.display().to_string(),
                tar: open_layer(path),
            })
            .collect();
        apply_layers(&root, streams).unwrap();
    } else {
        for path in layers {
            apply_layer(&root, open_layer(path), &path.display().to_string()).unwrap();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{}: {elapsed:?} wall, {:?} CPU, {:?} of it on the writing thread",
        if pipelined {
            "pipelined "
        } else {
            "sequential"
        },
        cpu_time(false) - cpu,
        cpu_time(true) - own_cpu
    );
    // Count the deletion out of the measurement, but make sure it is done before the next run.
    drop(dir);
    elapsed
}

#[test]
#[ignore = "benchmark: writes five layers of ~35 MiB"]
fn five_layer_image_sequential_against_pipelined() {
    let dir = tempfile::tempdir().unwrap();
    let mut layers = Vec::new();
    let mut bytes = 0;
    for layer in 0..5 {
        let path = dir.path().join(format!("layer{layer}.tar.gz"));
        bytes += write_layer(&path, layer, 600);
        layers.push(path);
    }
    let compressed: u64 = layers.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    println!(
        "5 layers, 3010 files, {} MiB uncompressed, {} MiB gzip",
        bytes >> 20,
        compressed >> 20
    );
    println!("decoding alone: {:?} CPU", decode_only(&layers));
    let (mut sequential, mut pipelined) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        sequential.push(timed(&layers, false));
        pipelined.push(timed(&layers, true));
    }
    println!("sequential: {sequential:?}");
    println!("pipelined:  {pipelined:?}");
    let median = |runs: &[Duration]| {
        let mut sorted = runs.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    let mib = (bytes >> 20) as f64;
    println!(
        "median: sequential {:?} ({:.0} MiB/s), pipelined {:?} ({:.0} MiB/s)",
        median(&sequential),
        mib / median(&sequential).as_secs_f64(),
        median(&pipelined),
        mib / median(&pipelined).as_secs_f64()
    );
}
