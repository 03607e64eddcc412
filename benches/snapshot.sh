#!/bin/sh
# Snapshot cost after a RUN that touches 10 files in a 200k-file root filesystem, for each
# strategy (overlay, scan) and scan mode (redo, time, full). Prints a Markdown table for
# docs/benchmarks.md ("Snapshotting"). Needs root and busybox-static.
#
#   benches/snapshot.sh [FILES] [WORKDIR]
#
# WORKDIR must be on the filesystem kiln's cache directory lives on (default: $TMPDIR or /tmp).
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: RUN needs namespaces and overlayfs" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "/bin/busybox is missing: apt-get install busybox-static" >&2; exit 1; }
cargo build --release -q -p kiln-exec --example snapshot_bench
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/examples/snapshot_bench" "${1:-200000}" ${2:+"$2"}
