"""Single-layer base images written as OCI layouts by streaming a tar through gzip to disk,
hashing both sides on the way (never holding a layer in memory), then pushed with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import BenchError

MTIME = 1_700_000_000
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_arch() -> str:
    """The Go name of the host architecture, which every builder resolves images to."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class _Hashing:
    """A write-only file that hashes what passes through it."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (tarfile reads file bodies from it)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks: Iterator[bytes] = iter(chunks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count


class LayerWriter:
    """One gzip layer being written into `blobs`; `finish` names it by its digest."""

    def __init__(self, blobs: Path) -> None:
        blobs.mkdir(parents=True, exist_ok=True)
        self.blobs = blobs
        self.partial = blobs / "layer.partial"
        self.out = open(self.partial, "wb")
        self.compressed = _Hashing(self.out)
        self.gzip = gzip.GzipFile(fileobj=self.compressed, mode="wb", compresslevel=1, mtime=0)
        self.uncompressed = _Hashing(self.gzip)
        self.tar = tarfile.open(fileobj=self.uncompressed, mode="w|", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int, uid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid = info.gid = uid
        info.mtime = MTIME
        return info

    def dir(self, name: str, mode: int = 0o755, uid: int = 0) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def stream(self, name: str, size: int, chunks: Iterable[bytes], mode: int = 0o644) -> None:
        """A file whose `size` bytes come from `chunks`, never all in memory."""
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = size
        self.tar.addfile(info, _Chunks(chunks))

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def finish(self) -> dict:
        """Closes the layer; returns its descriptor plus the diff id under `diff_id`."""
        self.tar.close()
        self.gzip.close()
        self.out.close()
        digest = self.compressed.hash.hexdigest()
        os.replace(self.partial, self.blobs / digest)
        return {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": f"sha256:{digest}",
            "size": self.compressed.size,
            "diff_id": f"sha256:{self.uncompressed.hash.hexdigest()}",
        }


def _put(blobs: Path, media_type: str, document: dict) -> dict:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_image(layout: Path, layer: dict, created_by: str) -> None:
    """Completes an OCI layout holding one image tagged `latest` whose only layer is `layer`."""
    blobs = layout / "blobs" / "sha256"
    config = _put(
        blobs,
        "application/vnd.oci.image.config.v1+json",
        {
            "created": CREATED,
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"]]},
            "history": [{"created": CREATED, "created_by": created_by}],
        },
    )
    descriptor = {key: layer[key] for key in ("mediaType", "digest", "size")}
    manifest = _put(
        blobs,
        "application/vnd.oci.image.manifest.v1+json",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [descriptor],
        },
    )
    manifest["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))


def push(layout: Path, image: str, log: Path) -> None:
    """`skopeo copy` of the layout's `latest` to `image` (a plain-HTTP registry)."""
    argv = [
        "skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
        f"oci:{layout}:latest", f"docker://{image}",
    ]
    with open(log, "ab") as out:
        if subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out).returncode != 0:
            raise BenchError(f"pushing {layout} to {image} failed: see {log}")
