"""The physical limits of each scenario, measured in the same run with standard tools on the
same bytes: read and blake3-hash the context (b3sum), sha256 and compress the layer bytes kiln
produced (sha256sum, gzip -6, zstd -3 -T0), and upload the image's blobs with a plain client
(curl, three at a time as kiln does). The limit of a variant is what any builder must at least
do: hash the context, compress what is new and upload it."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import distribution, measure
from .errors import BenchError

PARALLEL_UPLOADS = 3


@dataclass(frozen=True)
class Cost:
    """Seconds to process `bytes` bytes (None: nothing to measure)."""

    bytes: int
    seconds: float

    def rate(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Limits:
    """One scenario's measured floors, and the limit of each variant derived from them."""

    context: Cost
    layers: Cost  # sha256sum of the new layers' uncompressed bytes
    gzip: Cost
    zstd: Cost
    upload: Cost
    changed_gzip: Cost | None
    changed_upload: Cost | None

    def of(self, variant: str, push_only: bool) -> float | None:
        if push_only:
            return self.upload.seconds if variant == "cold" else None
        if variant == "cold":
            return self.context.seconds + self.gzip.seconds + self.upload.seconds
        if variant == "warm":
            return self.context.seconds
        if variant == "change" and self.changed_gzip and self.changed_upload:
            return self.context.seconds + self.changed_gzip.seconds + self.changed_upload.seconds
        return None


def _files(root: Path) -> list[str]:
    return [str(path) for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()]


def _size(paths: list[str]) -> int:
    return sum(Path(path).stat().st_size for path in paths)


def hash_context(context: Path, log: Path) -> Cost:
    """b3sum over every file of the context: reading it and hashing it."""
    files = _files(context)
    if not files:
        return Cost(0, 0.0)
    seconds = measure.wall(["sh", "-c", 'xargs -0 b3sum > /dev/null < "$1"', "sh", _list(files, log)], log)
    return Cost(_size(files), seconds)


def _list(files: list[str], log: Path) -> str:
    listing = log.with_name("context-files.bin")
    listing.write_bytes(b"".join(name.encode() + b"\0" for name in files))
    return str(listing)


def _tool(argv: str, source: Path, log: Path) -> Cost:
    seconds = measure.wall(["sh", "-c", f'{argv} < "$1" > /dev/null', "sh", str(source)], log)
    return Cost(source.stat().st_size, seconds)


def _uncompressed(blobs: list[Path], into: Path) -> Path:
    """The layers' tar bytes, one after another in one file."""
    with open(into, "wb") as out:
        for blob in blobs:
            with gzip.open(blob, "rb") as layer:
                shutil.copyfileobj(layer, out, 1 << 20)
    return into


def upload(registry: str, repository: str, blobs: list[tuple[str, Path]], log: Path) -> Cost:
    """Monolithic PUTs with curl, `PARALLEL_UPLOADS` at a time, of blobs to a fresh repository
    (no `Expect: 100-continue`, which would make curl wait a second before each large body)."""
    pending = list(blobs)
    running: list[tuple[subprocess.Popen, str]] = []
    start = time.monotonic()
    with open(log, "ab") as out:
        while pending or running:
            while pending and len(running) < PARALLEL_UPLOADS:
                digest, path = pending.pop(0)
                location = distribution.start_upload(registry, repository)
                separator = "&" if "?" in location else "?"
                argv = [
                    "curl", "-sSf", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
                    "-T", str(path), f"{location}{separator}digest={digest}",
                ]
                running.append((subprocess.Popen(argv, stdout=out, stderr=out), digest))
            process, digest = running.pop(0)
            if process.wait() != 0:
                raise BenchError(f"curl upload of {digest} to {registry}/{repository} failed: see {log}")
    return Cost(sum(path.stat().st_size for _, path in blobs), time.monotonic() - start)


def measure_limits(
    context: Path,
    registry: str,
    counted: str,
    built: tuple[str, dict],
    changed: tuple[str, dict] | None,
    bases: list[dict],
    workdir: Path,
    label: str,
) -> Limits:
    """The limits for one scenario. `built` is kiln's cold image (repository, manifest),
    `changed` its one-file-changed image, `bases` the manifests of the images it starts from.
    Blobs are read from `registry` directly and uploaded through `counted`, the proxy the
    builders push through, so the plain client pays what they pay."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "limits.log"
    repository, cold = built
    base_layers = {layer["digest"] for base in bases for layer in base["layers"]}

    def fetch(repo: str, digest: str) -> Path:
        return distribution.download(registry, repo, digest, workdir / "blobs")

    all_blobs = [(d["digest"], fetch(repository, d["digest"])) for d in [cold["config"], *cold["layers"]]]
    new = [fetch(repository, d["digest"]) for d in cold["layers"] if d["digest"] not in base_layers]

    context_cost = hash_context(context, log)
    if new:
        tar = _uncompressed(new, workdir / "new-layers.tar")
        layers = _tool("sha256sum", tar, log)
        gzip_cost = _tool("gzip -6 -c", tar, log)
        zstd_cost = _tool("zstd -q -3 -T0 -c", tar, log)
        tar.unlink()
    else:
        layers = gzip_cost = zstd_cost = Cost(0, 0.0)
    upload_cost = upload(counted, f"limit/{label}-cold", all_blobs, log)

    changed_gzip = changed_upload = None
    if changed is not None:
        changed_repo, manifest = changed
        old = {d["digest"] for d in cold["layers"]}
        different = [d["digest"] for d in manifest["layers"] if d["digest"] not in old]
        blobs = [(d, fetch(changed_repo, d)) for d in different]
        if blobs:
            tar = _uncompressed([path for _, path in blobs], workdir / "changed-layers.tar")
            changed_gzip = _tool("gzip -6 -c", tar, log)
            tar.unlink()
        else:
            changed_gzip = Cost(0, 0.0)
        config = manifest["config"]["digest"]
        blobs.append((config, fetch(changed_repo, config)))
        changed_upload = upload(counted, f"limit/{label}-change", blobs, log)
    shutil.rmtree(workdir / "blobs", ignore_errors=True)
    return Limits(context_cost, layers, gzip_cost, zstd_cost, upload_cost, changed_gzip, changed_upload)
