"""The few OCI distribution calls the harness makes itself (manifests and blobs on the direct,
uncounted address), streaming blobs to and from disk."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from .errors import BenchError

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def manifest(registry: str, repository: str, reference: str = "latest") -> dict:
    """The image manifest of `repository:reference`."""
    url = f"http://{registry}/v2/{repository}/manifests/{reference}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except OSError as err:
        raise BenchError(f"fetching the manifest of {registry}/{repository}:{reference}: {err}") from err


def download(registry: str, repository: str, digest: str, into: Path) -> Path:
    """Blob `digest` of `repository` as a file in `into` (kept if already there)."""
    path = into / digest.replace(":", "-")
    if path.exists():
        return path
    into.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    url = f"http://{registry}/v2/{repository}/blobs/{digest}"
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as err:
        raise BenchError(f"downloading {digest} from {registry}/{repository}: {err}") from err
    partial.rename(path)
    return path


def start_upload(registry: str, repository: str) -> str:
    """Opens a blob upload session; returns its absolute location."""
    url = f"http://{registry}/v2/{repository}/blobs/uploads/"
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request) as response:
            location = response.headers["Location"]
    except OSError as err:
        raise BenchError(f"starting an upload to {registry}/{repository}: {err}") from err
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    return location
