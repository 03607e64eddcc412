#!/bin/sh
# Layer writing: throughput of a 300 MB / 20k-file layer with each compressor next to the raw
# compressors and sha256 on the same bytes (exec/benches/layer_write.rs), then kiln's peak memory
# building and pushing an incompressible 2 GiB layer to a real registry (the integration test
# that asserts the bound, run alone to print the figure). Results go in docs/benchmarks.md,
# "Layer writing".
set -eu
cd "$(dirname "$0")/.."
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p kiln-exec --bench layer_write
cargo test -p kiln-cli --test integration -- --nocapture --exact \
    layers::a_2gib_layer_is_written_and_pushed_with_peak_memory_under_256mib
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
