//! `kiln cache gc`: removes least recently used blobs from a cache directory until it is within
//! the limits asked for (see `kiln_cas::gc` for what is kept and why).

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use kiln_cas::gc::{Limits, collect};
use kiln_cas::{Index, Store};

use crate::args::GcArgs;

/// Without `--max-age` or `--max-size`: `--cache-ttl`'s default, since results older than that
/// are not used by builds anyway.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(336 * 60 * 60);

/// Runs `kiln cache gc`.
pub fn run(args: GcArgs) -> anyhow::Result<()> {
    let cache_dir = match args.cache_dir {
        Some(dir) => dir,
        None => crate::build::settings::default_cache_dir()?,
    };
    let store_dir = cache_dir.join("store");
    let store = match Store::open(&store_dir) {
        Err(kiln_cas::Error::ReadOnlyStore(_)) => anyhow::bail!(
            "the cache directory {} is read-only: collect garbage where it is mounted writable",
            cache_dir.display()
        ),
        other => other.with_context(|| format!("opening the store in {}", store_dir.display()))?,
    };
    let index_dir = cache_dir.join("index");
    let index = Index::open(&index_dir)
        .with_context(|| format!("opening the cache index in {}", index_dir.display()))?;
    let limits = match (args.max_age, args.max_size) {
        (None, None) => Limits {
            max_age: Some(DEFAULT_MAX_AGE),
            max_size: None,
        },
        (max_age, max_size) => Limits { max_age, max_size },
    };
    let report = collect(&store, &index, limits, SystemTime::now())
        .with_context(|| format!("collecting garbage in {}", cache_dir.display()))?;
    println!(
        "Removed {} blobs ({} bytes), {} index records and {} context file hashes; kept {} blobs ({} bytes) in {}",
        report.removed,
        report.freed,
        report.records_forgotten,
        report.file_hashes_forgotten,
        report.kept,
        report.kept_bytes,
        cache_dir.display()
    );
    Ok(())
}

/// Parses a size in bytes: a number with an optional unit (`k`, `M`, `G`, `T` in powers of 1000;
/// `Ki`, `Mi`, `Gi`, `Ti` in powers of 1024; an optional trailing `B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let unit_start = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(unit_start);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 500000000, 500M, 20Gi)"))?;
    let unit = unit.trim().strip_suffix(['B', 'b']).unwrap_or(unit.trim());
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" | "m" => 1_000_000,
        "G" | "g" => 1_000_000_000,
        "T" | "t" => 1_000_000_000_000,
        "Ki" | "KI" | "ki" => 1 << 10,
        "Mi" | "MI" | "mi" => 1 << 20,
        "Gi" | "GI" | "gi" => 1 << 30,
        "Ti" | "TI" | "ti" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use k, M, G, T, Ki, Mi, Gi or Ti)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("500M"), Ok(500_000_000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("20Gi"), Ok(20 << 30));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
